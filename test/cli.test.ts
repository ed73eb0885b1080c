import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as vp from '../lib/index.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function cli(...args: string[]) {
  return spawnSync(process.execPath, ['--import=tsx', join(root, 'lib', 'cli.ts'), ...args], { cwd: root, encoding: 'utf8' });
}

test('doctor --json reports the binary, ISA path and the CUDA decision', (t) => {
  const r = cli('doctor', '--json');
  t.is(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  t.true(['avx512', 'avx2', 'generic'].includes(j.cpu.isa));
  t.true(j.binary.path.endsWith('.node'));
  if (j.cuda === null) t.true(j.cudaReason.length > 0);
});

test('synth writes a dataset; bad arguments fail with a message', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vp-cli-'));
  try {
    const r = cli('synth', '--out', dir, '--count', '5', '--seed', '1', '--json');
    t.is(r.status, 0, r.stderr);
    t.is(JSON.parse(r.stdout).count, 5);
    t.is(vp.openDataset(dir).length, 5);
    const bad = cli('synth', '--out', dir, '--count', 'x');
    t.is(bad.status, 1);
    t.regex(bad.stderr, /--count must be an integer/);
    const missing = cli('synth');
    t.is(missing.status, 1);
    t.regex(missing.stderr, /--out DIR is required/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('help lists the commands; an unknown command exits 2', (t) => {
  const h = cli('--help');
  t.is(h.status, 0);
  for (const c of ['doctor', 'synth', 'bench', 'build']) t.regex(h.stdout, new RegExp(`\\b${c}\\b`));
  t.regex(cli('synth', '--help').stdout, /--out DIR/);
  const u = cli('frobnicate');
  t.is(u.status, 2);
  t.regex(u.stderr, /unknown command 'frobnicate'/);
});
