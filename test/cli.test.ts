import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as vp from '../lib/index.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function cli(...args: string[]) {
  return spawnSync(process.execPath, ['--import=tsx', join(root, 'lib', 'cli.ts'), ...args], { cwd: root, encoding: 'utf8' });
}

/** A temporary folder holding a 4-clip dataset at <dir>/data; removed afterwards. */
function withData(body: (dir: string, data: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'vp-cli-'));
  try {
    const data = join(dir, 'data');
    const r = cli('synth', '--out', data, '--count', '4', '--frames', '8', '--size', '16', '--json');
    if (r.status !== 0) throw new Error(r.stderr);
    body(dir, data);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
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
    t.is(bad.status, 2);
    t.regex(bad.stderr, /--count must be an integer/);
    const missing = cli('synth');
    t.is(missing.status, 2);
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

test('bad command lines stop with status 2 and name the flag (typos, missing values, numbers)', (t) => {
  withData((dir, data) => {
    const out = join(dir, 'run');
    const cases: [string[], RegExp][] = [
      [['train', '--data', data, '--out', out, '--stpes', '3'], /train: unknown flag --stpes; did you mean --steps\?/],
      [['train', '--data', data, '--out', out, '--steps'], /train: --steps needs a value/],
      [['train', '--data', data, '--out', out, '--steps', '1e12'], /--steps must be an integer in \[1, 100000000\], got "1e12"/],
      [['train', '--data', data, '--out', out, '--batch-size', 'many'], /--batch-size must be an integer/],
      [['train', '--data', data, '--out', out, 'extra'], /unexpected argument "extra"/],
      [['synth', '--out', join(dir, 's1'), '--fps', 'abc'], /synth: --fps must be a number > 0 and <= 10000, got "abc"/],
      [['synth', '--out', join(dir, 's2'), '--count', '1e12'], /synth: --count must be an integer in \[1, 10000000\], got "1e12"/],
      [['generate', '--model', dir, '--video', dir, '--max-tokens', '-1'], /--max-tokens must be an integer in \[0/],
      [['demo', '--quick', '--seeds', '0,x'], /--seeds must be a comma-separated list/],
    ];
    for (const [args, re] of cases) {
      const r = cli(...args);
      t.is(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      t.regex(r.stderr, re, args.join(' '));
    }
    // Nothing was written by the refused commands.
    t.false(existsSync(join(dir, 's1')));
    t.false(existsSync(out));
  });
});

test('config files: unknown sections and keys are refused with the nearest valid name', (t) => {
  withData((dir, data) => {
    const cfg = join(dir, 'config.json');
    for (const [body, re] of [
      [{ model: { widht: 64 } }, /unknown key "model.widht"; did you mean "model.width"\?/],
      [{ sft: { batchsize: 4 } }, /unknown key "sft.batchsize"; did you mean "sft.batchSize"\?/],
      [{ rl: { groupSize: 2, beta1: 0.1 } }, /unknown key "rl.beta1"; did you mean "rl.beta"\?/],
      [{ modle: {} }, /unknown section "modle"; did you mean "model"\?/],
      [[1, 2], /must be a JSON object/],
    ] as const) {
      writeFileSync(cfg, JSON.stringify(body));
      const r = cli('train', '--data', data, '--out', join(dir, 'run'), '--config', cfg, '--steps', '1');
      t.is(r.status, 2, r.stderr);
      t.regex(r.stderr, re);
    }
    writeFileSync(cfg, '{ "model": ');
    t.regex(cli('train', '--data', data, '--out', join(dir, 'run'), '--config', cfg).stderr, /--config: .*config\.json: not valid JSON/);
  });
});

test('file arguments: errors name the flag and the path (folder vs file, missing, /proc)', (t) => {
  withData((dir, data) => {
    const file = join(data, 'annotations.jsonl');
    const cases: [string[], RegExp][] = [
      [['generate', '--model', dir, '--video', dir], new RegExp(`--video: ${dir}: is a folder, expected a clip`)],
      [['generate', '--model', file, '--video', file], /--model: .*annotations\.jsonl: is a file, expected a saved model folder/],
      [['train', '--data', file, '--out', join(dir, 'r')], /annotations\.jsonl:1: record 0: has a "caption" and no conversation: a line of a dataset folder's annotations\.jsonl \(give the folder/],
      [['train', '--data', join(dir, 'nope'), '--out', join(dir, 'r')], /--data: .*nope: no such folder/],
      [['train', '--data', data, '--out', file], /--out: .*annotations\.jsonl: is a file, expected a folder/],
      [['train', '--data', data, '--out', join(dir, 'r'), '--config', dir], new RegExp(`--config: ${dir}: is a folder, expected a JSON config file`)],
      [['synth', '--out', file], /--out: .*annotations\.jsonl: is a file, expected a folder/],
      [['synth', '--out', '/proc/vp-test/data', '--count', '2'], /--out: \/proc\/vp-test\/data: cannot create the folder/],
    ];
    for (const [args, re] of cases) {
      const r = spawnSync(process.execPath, ['--import=tsx', join(root, 'lib', 'cli.ts'), ...args], { cwd: root, encoding: 'utf8', timeout: 60_000 });
      t.is(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
      t.regex(r.stderr, re, args.join(' '));
      t.notRegex(r.stderr, /^E[A-Z]+:/m);
    }
  });
});

test('generate on a saved VideoLM: a .npy clip of any length is sampled to the model frames; --fps/--frames are refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vp-cli-gen-'));
  try {
    const tok = vp.Tokenizer.train(['a red ball falls', 'a blue cube spins'], { vocabSize: 30 });
    const m = await vp.VideoLM.create({ imageSize: 8, patchSize: 4, frames: 2, width: 32, layers: 1, heads: 4, kvHeads: 2, ffn: 64, maxSeq: 32, tokenizer: tok, seed: 3 });
    await m.save(join(dir, 'model'));
    m.dispose();
    const frames = new Uint8Array(5 * 8 * 8 * 3).map((_, i) => (i * 37) % 256);
    vp.writeNpy(join(dir, 'clip.npy'), { data: frames, shape: [5, 8, 8, 3], dtype: 'uint8' });
    const ok = cli('generate', '--model', join(dir, 'model'), '--video', join(dir, 'clip.npy'), '--max-tokens', '3', '--json');
    t.is(ok.status, 0, ok.stderr);
    t.is(typeof JSON.parse(ok.stdout.trim().split('\n').pop() ?? '').text, 'string');
    for (const flag of ['--fps', '--frames']) {
      const r = cli('generate', '--model', join(dir, 'model'), '--video', join(dir, 'clip.npy'), flag, '2');
      t.not(r.status, 0);
      t.regex(r.stderr, new RegExp(`${flag}: applies to Hugging Face video models; this VideoLM samples its own 2 frames`));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
