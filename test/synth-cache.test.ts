// The demo's cached synthetic datasets (lib/data/synth-cache.ts): processes
// sharing one output folder at the same time all get the same whole dataset,
// a cached dataset is reused, a dataset of another spec is replaced, and a
// staging folder left by a killed run is cleaned up.
import test from 'ava';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cachedSynthDataset } from '../lib/data/synth-cache.js';

const CHILD = join(import.meta.dirname, 'synth-cache-child.ts');

function child(dir: string, count: number): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((done) => {
    const p = spawn(process.execPath, ['--import=tsx', CHILD, dir, String(count)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (b) => (out += b));
    p.stderr.on('data', (b) => (err += b));
    p.on('close', (code) => done({ code, out, err }));
  });
}

test('three processes generating the same cached dataset at once all read the same whole dataset', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'vp-synth-cache-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const dir = join(root, 'data', 'train-300');
  const runs = await Promise.all([child(dir, 300), child(dir, 300), child(dir, 300)]);
  for (const r of runs) t.is(r.code, 0, r.err);
  const seen = runs.map((r) => r.out.trim());
  t.is(new Set(seen).size, 1, seen.join('\n'));
  // The same dataset as one process writing alone.
  const solo = await child(join(root, 'solo', 'train-300'), 300);
  t.is(solo.out.trim(), seen[0]);
  t.is(JSON.parse(seen[0]!).length, 300);
  // No staging folder is left beside the dataset.
  t.deepEqual(readdirSync(join(root, 'data')), ['train-300']);
});

test('a cached dataset is reused; one of another spec is replaced; a killed run\'s staging folder is removed', (t) => {
  const root = mkdtempSync(join(tmpdir(), 'vp-synth-cache-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const dir = join(root, 'train');
  t.is(cachedSynthDataset(dir, 12, 3).length, 12);
  const made = statSync(join(dir, 'annotations.jsonl')).mtimeMs;
  t.is(cachedSynthDataset(dir, 12, 3).length, 12);
  t.is(statSync(join(dir, 'annotations.jsonl')).mtimeMs, made, 'the cached dataset was generated again');
  // A process id that cannot be running (above the kernel's pid_max).
  const stale = join(root, '.train.synth-4999999');
  mkdirSync(stale);
  writeFileSync(join(stale, 'half.npy'), 'x');
  const other = cachedSynthDataset(dir, 20, 3);
  t.is(other.length, 20);
  t.false(existsSync(stale));
  t.deepEqual(readdirSync(root), ['train']);
});
