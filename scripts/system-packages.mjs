// What `npm test` needs from the system besides Node packages: doctest (Debian's
// doctest-dev, a header and a CMake package) for the native tests, and Open MPI
// (openmpi-bin, libopenmpi-dev: `mpirun` and libmpi) for the data-parallel tests.
// CMake decides whether doctest was found (the build tree then has a
// CTestTestfile.cmake); Open MPI is missing when `mpirun --version` fails. A
// missing package is installed with apt-get when that is possible without asking
// (running as root on a machine with apt-get); otherwise the caller gets the one
// command that installs it.
// Cost: one `apt-get install` (plus `apt-get update` when the package lists are
// empty), only on a machine that lacks a package.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';

/** What each need installs, and why the tests need it. */
export const DOCTEST = { packages: ['doctest-dev'], name: 'doctest', why: 'the native tests need doctest, which is not installed' };
export const OPENMPI = { packages: ['openmpi-bin', 'libopenmpi-dev'], name: 'Open MPI', why: 'the data-parallel tests need Open MPI (mpirun), which is not installed' };

/** The command a user runs to install `spec`'s packages. */
export const installCommand = (spec) => `sudo apt-get install -y ${spec.packages.join(' ')}`;
export const INSTALL_COMMAND = installCommand(DOCTEST);
export const MPI_INSTALL_COMMAND = installCommand(OPENMPI);

/** True when `mpirun` (Open MPI's launcher) cannot run. */
export function mpirunMissing() {
  const r = spawnSync('mpirun', ['--version'], { stdio: 'ignore' });
  return r.error !== undefined || r.status !== 0;
}

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
 * Installs `spec`'s packages (DOCTEST or OPENMPI), or says why it cannot.
 *   env.isRoot        running as root (default: process.getuid() === 0)
 *   env.hasAptGet     apt-get exists (default: /usr/bin/apt-get exists)
 *   env.run(cmd, args) runs a command, returns its exit status
 *   env.listsEmpty    apt's package lists are empty (a fresh container): update first
 *   env.log(line)     progress messages (default console.log)
 * Returns { installed: true } after a successful install, or
 * { installed: false, message } with the one command the user should run.
 */
export function installPackages(spec, env = {}) {
  const isRoot = env.isRoot ?? (typeof process.getuid === 'function' && process.getuid() === 0);
  const hasAptGet = env.hasAptGet ?? existsSync('/usr/bin/apt-get');
  const run = env.run ?? defaultRun;
  const listsEmpty = env.listsEmpty ?? aptListsEmpty();
  const log = env.log ?? console.log;
  const command = installCommand(spec);
  if (!hasAptGet)
    return { installed: false, message: `${spec.why}; install your system's ${spec.name} packages (Debian/Ubuntu: ${command}), then run npm test again` };
  if (!isRoot) return { installed: false, message: `${spec.why}; run: ${command}   (then npm test again)` };
  log(`[test] ${spec.why}: installing ${spec.packages.join(' ')} with apt-get (running as root)`);
  const install = () => run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...spec.packages]);
  let status = listsEmpty ? 1 : install();
  if (status !== 0) {
    // Fresh containers ship without package lists: fetch them, then try again.
    if (run('apt-get', ['update', '-qq']) === 0) status = install();
  }
  if (status !== 0) return { installed: false, message: `${spec.why}, and apt-get could not install it (exit ${status}); run: ${command}` };
  return { installed: true };
}

/** installPackages(DOCTEST, env). */
export const installDoctest = (env = {}) => installPackages(DOCTEST, env);
/** installPackages(OPENMPI, env). */
export const installOpenMpi = (env = {}) => installPackages(OPENMPI, env);
