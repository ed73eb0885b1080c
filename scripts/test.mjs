#!/usr/bin/env node
// The test command: native tests (doctest under ctest) and the TypeScript tests
// (ava), with one closing line `N passed, N failed` over both. What the tests
// need from the system (doctest for the native tests, Open MPI for the
// data-parallel ones) is installed with apt-get when running as root (and the
// tree configured again after doctest); otherwise the run stops at once with the
// command that installs it (scripts/system-packages.mjs).
//   --native-only   only the native tests
//   --sanitize      build the native tests with VP_SANITIZE=address,undefined
//                   (CPU backend) in build-asan/ and run them
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpus } from 'node:os';
import { doctestMissing, installDoctest, installOpenMpi, mpirunMissing } from './system-packages.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const sanitize = argv.includes('--sanitize');
const nativeOnly = argv.includes('--native-only') || sanitize;
const jobs = String(Math.max(1, cpus().length));
let passed = 0;
let failed = 0;

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: root, encoding: 'utf8', maxBuffer: 1 << 28, ...opts });
  if (r.error) throw r.error;
  return r;
}

function fail(msg) {
  console.error(`[test] ${msg}`);
  failed += 1;
}

function runCtest(buildDir, label) {
  const r = run('ctest', ['--test-dir', buildDir, '--output-on-failure', '-j', jobs]);
  process.stdout.write(r.stdout);
  process.stderr.write(r.stderr);
  const m = /(\d+)% tests passed, (\d+) tests failed out of (\d+)/.exec(r.stdout);
  if (!m) return fail(`${label}: ctest printed no summary (exit ${r.status})`);
  const total = Number(m[3]);
  const bad = Number(m[2]);
  if (total === 0) return fail(`${label}: no native tests were found`);
  passed += total - bad;
  failed += bad;
}

/** doctest for a configured build tree: installed (and the tree configured again) when CMake did not find it. */
function ensureDoctest(dir) {
  if (!doctestMissing(join(dir, 'CMakeCache.txt'))) return true;
  const d = installDoctest();
  if (!d.installed) {
    console.error(`[test] ${d.message}`);
    process.exit(1);
  }
  return run('cmake', [dir], { stdio: 'inherit' }).status === 0;
}

function nativeTests() {
  if (sanitize) {
    const dir = join(root, 'build-asan');
    const gen = run('ninja', ['--version']).status === 0 ? ['-G', 'Ninja'] : [];
    let r = run('cmake', ['-S', '.', '-B', dir, ...gen, '-DVP_CUDA=off', '-DVP_SANITIZE=address,undefined',
      '-DCMAKE_BUILD_TYPE=RelWithDebInfo'], { stdio: 'inherit' });
    if (r.status !== 0 || !ensureDoctest(dir)) return fail('sanitizer build: cmake configure failed');
    r = run('cmake', ['--build', dir, '--target', 'vp_tests', '-j', jobs], { stdio: 'inherit' });
    if (r.status !== 0) return fail('sanitizer build: compile failed');
    if (!existsSync(join(dir, 'CTestTestfile.cmake'))) return fail('sanitizer build: no tests (install doctest-dev)');
    process.env.ASAN_OPTIONS = 'detect_leaks=1:abort_on_error=1';
    process.env.UBSAN_OPTIONS = 'print_stacktrace=1:halt_on_error=1';
    return runCtest(dir, 'native tests (ASan+UBSan)');
  }
  const dir = join(root, 'build-native');
  if (!existsSync(join(dir, 'build.ninja')) && !existsSync(join(dir, 'Makefile'))) {
    const r = run(process.execPath, [join(root, 'scripts', 'build-native.mjs')], { stdio: 'inherit' });
    if (r.status !== 0) return fail('native build failed');
  }
  if (!ensureDoctest(dir)) return fail('cmake could not configure build-native/ again after installing doctest');
  // Rebuild incrementally so the tests never run against stale binaries.
  const r = run('cmake', ['--build', dir, '-j', jobs], { stdio: 'inherit' });
  if (r.status !== 0) return fail('native build failed');
  if (!existsSync(join(dir, 'CTestTestfile.cmake')))
    return fail('native tests were not built: CMake did not find doctest (apt-get install doctest-dev)');
  runCtest(dir, 'native tests');
}

function avaTests() {
  const ava = join(root, 'node_modules', 'ava', 'entrypoints', 'cli.mjs');
  if (!existsSync(ava)) return fail('ava is not installed (npm install)');
  const r = run(process.execPath, [ava, '--tap', ...argv.filter((a) => !a.startsWith('--'))], {
    env: { ...process.env, FORCE_COLOR: '0' },
  });
  process.stdout.write(r.stdout);
  process.stderr.write(r.stderr);
  const pass = /^# pass (\d+)/m.exec(r.stdout);
  const bad = /^# fail (\d+)/m.exec(r.stdout);
  if (!pass) return fail(`ava printed no summary (exit ${r.status})`);
  passed += Number(pass[1]);
  failed += bad ? Number(bad[1]) : 0;
  if (r.status !== 0 && !(bad && Number(bad[1]) > 0)) fail(`ava exited with ${r.status}`);
}

/** Open MPI for the data-parallel tests: installed as root when missing, or the run stops with the command. */
function ensureOpenMpi() {
  if (!mpirunMissing()) return true;
  const m = installOpenMpi();
  if (!m.installed) {
    console.error(`[test] ${m.message}`);
    return false;
  }
  if (mpirunMissing()) return fail('Open MPI was installed but mpirun still does not run'), false;
  return true;
}

if (!nativeOnly && !ensureOpenMpi()) {
  console.log(`${passed} passed, 1 failed`);
  process.exit(1);
}
nativeTests();
if (!nativeOnly) avaTests();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
