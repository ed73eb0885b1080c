// bench/gpu.sh never reports success without a GPU or without doctest: its
// preflight stops it (exit 3, nothing built) with a message saying what is
// missing and how to get it. Runs on any machine: CUDA_VISIBLE_DEVICES=-1 hides
// every GPU, and VP_DOCTEST_INCLUDE points the script at a chosen folder.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function gpuSh(args: string[], env: Record<string, string>, out: string) {
  return spawnSync('bash', [join(root, 'bench', 'gpu.sh'), ...args, '--out', out], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, ...env, VP_BUILD_DIR: join(out, 'build') },
    timeout: 60_000,
  });
}

test('gpu.sh --quick without a GPU exits 3 with a clear message and builds nothing', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vp-gpu-sh-'));
  try {
    // A header where the script looks, so the GPU check is the one that stops it.
    mkdirSync(join(dir, 'inc', 'doctest'), { recursive: true });
    writeFileSync(join(dir, 'inc', 'doctest', 'doctest.h'), '// placeholder\n');
    const r = gpuSh(['--quick'], { CUDA_VISIBLE_DEVICES: '-1', VP_DOCTEST_INCLUDE: join(dir, 'inc') }, dir);
    t.is(r.status, 3, r.stdout + r.stderr);
    t.regex(r.stdout, /cannot run: no usable NVIDIA GPU/);
    t.regex(r.stdout, /NOT OK \(preflight failed: nothing was built, tested or timed\)/);
    t.notRegex(r.stdout, /gpu\.sh: OK/);
    t.false(existsSync(join(dir, 'build')), 'nothing was built');
    // The log of the run says the same.
    const log = readdirSync(dir).find((f) => f.endsWith('.txt'));
    t.truthy(log);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('gpu.sh --quick without doctest exits 3 and says how to bring the header along', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vp-gpu-sh-'));
  try {
    mkdirSync(join(dir, 'empty'));
    const r = gpuSh(['--quick'], { VP_DOCTEST_INCLUDE: join(dir, 'empty') }, dir);
    t.is(r.status, 3, r.stdout + r.stderr);
    t.regex(r.stdout, /doctest's header \(doctest\/doctest\.h\) is not in .*empty/);
    t.regex(r.stdout, /build-deps\/include\/doctest/);
    t.regex(r.stdout, /VP_DOCTEST_INCLUDE/);
    t.notRegex(r.stdout, /gpu\.sh: OK/);
    t.false(existsSync(join(dir, 'build')), 'nothing was built');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('gpu.sh rejects an unknown argument with exit 2', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vp-gpu-sh-'));
  try {
    const r = gpuSh(['--bogus'], {}, dir);
    t.is(r.status, 2, r.stdout + r.stderr);
    t.regex(r.stdout, /unknown argument --bogus/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
