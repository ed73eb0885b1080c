// What `npm test` needs from the system for the native tests: doctest (Debian's
// doctest-dev, a header and a CMake package). CMake decides whether it was found
// (the build tree then has a CTestTestfile.cmake); when it was not, this module
// installs it with apt-get when that is possible without asking (running as root
// on a machine with apt-get), or says the one command that installs it.
// Cost: one `apt-get install` (plus `apt-get update` when the package lists are
// empty), only on a machine that lacks the package.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';

export const DOCTEST_PACKAGE = 'doctest-dev';
export const INSTALL_COMMAND = `sudo apt-get install -y ${DOCTEST_PACKAGE}`;

/** True when the CMake build tree whose cache is `cachePath` was configured without finding doctest. */
export function doctestMissing(cachePath) {
  return existsSync(cachePath) && /^doctest_DIR:PATH=.*NOTFOUND\s*$/m.test(readFileSync(cachePath, 'utf8'));
}

function defaultRun(cmd, args) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  return r.error ? 127 : (r.status ?? 1);
}

function aptListsEmpty() {
  try {
    return readdirSync('/var/lib/apt/lists').filter((f) => f.endsWith('_Packages')).length === 0;
  } catch {
    return true;
  }
}

/**
 * Makes doctest available, or says why it cannot.
 *   env.isRoot        running as root (default: process.getuid() === 0)
 *   env.hasAptGet     apt-get exists (default: /usr/bin/apt-get exists)
 *   env.run(cmd, args) runs a command, returns its exit status
 *   env.listsEmpty    apt's package lists are empty (a fresh container): update first
 *   env.log(line)     progress messages (default console.log)
 * Returns { installed: true } after a successful install, or
 * { installed: false, message } with the one command the user should run.
 */
export function installDoctest(env = {}) {
  const isRoot = env.isRoot ?? (typeof process.getuid === 'function' && process.getuid() === 0);
  const hasAptGet = env.hasAptGet ?? existsSync('/usr/bin/apt-get');
  const run = env.run ?? defaultRun;
  const listsEmpty = env.listsEmpty ?? aptListsEmpty();
  const log = env.log ?? console.log;
  const why = 'the native tests need doctest, which is not installed';
  if (!hasAptGet)
    return { installed: false, message: `${why}; install your system's doctest package (Debian/Ubuntu: ${INSTALL_COMMAND}), then run npm test again` };
  if (!isRoot) return { installed: false, message: `${why}; run: ${INSTALL_COMMAND}   (then npm test again)` };
  log(`[test] ${why}: installing ${DOCTEST_PACKAGE} with apt-get (running as root)`);
  const install = () => run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', DOCTEST_PACKAGE]);
  let status = listsEmpty ? 1 : install();
  if (status !== 0) {
    // Fresh containers ship without package lists: fetch them, then try again.
    if (run('apt-get', ['update', '-qq']) === 0) status = install();
  }
  if (status !== 0) return { installed: false, message: `${why}, and apt-get could not install it (exit ${status}); run: ${INSTALL_COMMAND}` };
  return { installed: true };
}
