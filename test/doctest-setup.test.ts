// `npm test` on a fresh machine: when CMake found no doctest, or `mpirun` does not
// run, scripts/test.mjs installs the package with apt-get as root (updating empty
// package lists first), or stops with the one command that installs it.
// Exercised with a recorded command runner, so nothing is installed here.
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
// scripts/system-packages.mjs is plain JavaScript (no type declarations)
import { doctestMissing, installDoctest, installOpenMpi, INSTALL_COMMAND, MPI_INSTALL_COMMAND } from '../scripts/system-packages.mjs';

function recorder(statuses: number[] = []) {
  const calls: string[] = [];
  return { calls, log: () => {}, run: (cmd: string, args: string[]) => (calls.push([cmd, ...args].join(' ')), statuses.shift() ?? 0) };
}

test('as root with apt-get: installs doctest-dev', (t) => {
  const r = recorder();
  t.deepEqual(installDoctest({ isRoot: true, hasAptGet: true, listsEmpty: false, run: r.run, log: r.log }), { installed: true });
  t.deepEqual(r.calls, ['apt-get install -y -qq --no-install-recommends doctest-dev']);
});

test('as root on a fresh container (no package lists): apt-get update, then install', (t) => {
  const r = recorder();
  t.true(installDoctest({ isRoot: true, hasAptGet: true, listsEmpty: true, run: r.run, log: r.log }).installed);
  t.deepEqual(r.calls, ['apt-get update -qq', 'apt-get install -y -qq --no-install-recommends doctest-dev']);
  const failing = recorder([100, 0, 100]);
  const res = installDoctest({ isRoot: true, hasAptGet: true, listsEmpty: false, run: failing.run, log: failing.log });
  t.false(res.installed);
  t.is(failing.calls.length, 3);
  t.true(res.message.includes(INSTALL_COMMAND));
});

test('not root, or no apt-get: nothing runs, the message gives the command', (t) => {
  const r = recorder();
  const res = installDoctest({ isRoot: false, hasAptGet: true, listsEmpty: false, run: r.run, log: r.log });
  t.false(res.installed);
  t.deepEqual(r.calls, []);
  t.true(res.message.includes('sudo apt-get install -y doctest-dev'));
  t.regex(installDoctest({ isRoot: true, hasAptGet: false, run: r.run, log: r.log }).message, /doctest package/);
});

test('a build tree configured without doctest is recognized from its CMake cache', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vp-doctest-'));
  try {
    const cache = join(dir, 'CMakeCache.txt');
    t.false(doctestMissing(cache));
    writeFileSync(cache, 'FOO:BOOL=ON\ndoctest_DIR:PATH=doctest_DIR-NOTFOUND\n');
    t.true(doctestMissing(cache));
    writeFileSync(cache, 'doctest_DIR:PATH=/usr/lib/cmake/doctest\n');
    t.false(doctestMissing(cache));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('Open MPI for the data-parallel tests: installed as root, or the command to install it', (t) => {
  const r = recorder();
  t.deepEqual(installOpenMpi({ isRoot: true, hasAptGet: true, listsEmpty: false, run: r.run, log: r.log }), { installed: true });
  t.deepEqual(r.calls, ['apt-get install -y -qq --no-install-recommends openmpi-bin libopenmpi-dev']);
  const user = recorder();
  const res = installOpenMpi({ isRoot: false, hasAptGet: true, listsEmpty: false, run: user.run, log: user.log });
  t.false(res.installed);
  t.deepEqual(user.calls, []);
  t.is(MPI_INSTALL_COMMAND, 'sudo apt-get install -y openmpi-bin libopenmpi-dev');
  t.true(res.message.includes(MPI_INSTALL_COMMAND));
  t.regex(res.message, /data-parallel tests need Open MPI/);
});
