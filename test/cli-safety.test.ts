// Nothing lost, nothing hidden at the command line: `synth` refuses a
// folder that holds files unless --force (synthDataset: overwrite), and then
// replaces the dataset without touching other files; `train --resume` keeps the
// run's own tokenizer when --data changed since the run started (and says which
// words are new), and Trainer.resume refuses a model whose tokenizer differs
// from the checkpoint's; a Trainer option error names the flag and leaves no
// empty run folder; resuming a finished run refuses a changed hyper-parameter
// and says that there is nothing to do.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vp from '../lib/index.js';
import { fileHashes } from './helpers.js';

const ROOT = join(import.meta.dirname, '..');
const MODEL = { imageSize: 16, patchSize: 8, frames: 4, width: 32, layers: 2, heads: 2, kvHeads: 1, mlpRatio: 2, maxSeq: 128, tied: true };
const SYNTH = { frames: 4, size: 16, fps: 4 } as const;

const work = mkdtempSync(join(tmpdir(), 'vp-cli-safety-'));
test.after.always(() => rmSync(work, { recursive: true, force: true }));
let n = 0;
const fresh = (name: string) => join(work, `${name}-${n++}`);

function cli(...args: string[]) {
  return spawnSync(process.execPath, ['--import=tsx', join(ROOT, 'lib', 'cli.ts'), ...args], { cwd: ROOT, encoding: 'utf8' });
}

/** A finished (or, with stopAt, stopped) SFT run as `train --data data --out run --stage sft --steps S --batch-size 2` writes it. */
async function sftRun(data: string, steps: number, stopAt?: number): Promise<string> {
  const run = fresh('run');
  const ds = vp.openDataset(data);
  const m = await vp.VideoLM.create({ ...MODEL, tokenizer: vp.tokenizerForDataset(ds.annotations), seed: 0 });
  const stop = new AbortController();
  const tr = new vp.Trainer(m, { runDir: run, onStep: (e) => e.type === 'step' && e.step === stopAt && stop.abort() });
  const r = await tr.sft(ds, { steps, batchSize: 2, signal: stop.signal });
  if (r.status === 'done') await m.save(join(run, 'model'));
  tr.dispose();
  m.dispose();
  return run;
}

test('synth refuses a folder that holds files (naming --out and the path); --force replaces the dataset, removes its stale clips, keeps other files', (t) => {
  const mine = fresh('mine');
  mkdirSync(mine);
  writeFileSync(join(mine, 'annotations.jsonl'), '{"my":"own"}\n');
  writeFileSync(join(mine, 'notes.txt'), 'keep me\n');
  const r = cli('synth', '--out', mine, '--count', '2', '--frames', '4', '--size', '16');
  t.is(r.status, 1);
  t.regex(r.stderr, /--out: .*mine-\d+: the folder is not empty \(annotations\.jsonl, notes\.txt\).*--force/);
  t.is(readFileSync(join(mine, 'annotations.jsonl'), 'utf8'), '{"my":"own"}\n');
  t.false(existsSync(join(mine, 'clips')));

  const ds = fresh('ds');
  vp.synthDataset(ds, { ...SYNTH, count: 5, seed: 1 });
  writeFileSync(join(ds, 'clips', 'other.npy'), 'not a clip of the generator');
  writeFileSync(join(ds, 'notes.txt'), 'keep me\n');
  const f = cli('synth', '--out', ds, '--count', '2', '--seed', '2', '--frames', '4', '--size', '16', '--fps', '4', '--force', '--json');
  t.is(f.status, 0, f.stderr);
  t.deepEqual(readdirSync(join(ds, 'clips')).sort(), ['clip-00000.npy', 'clip-00001.npy', 'other.npy']);
  t.is(readFileSync(join(ds, 'notes.txt'), 'utf8'), 'keep me\n');
  t.deepEqual(readdirSync(ds).sort(), ['README.txt', 'annotations.jsonl', 'clips', 'notes.txt']);
  t.regex(readFileSync(join(ds, 'README.txt'), 'utf8'), /seed 2, 2 clips/);
  const again = fresh('again');
  vp.synthDataset(again, { ...SYNTH, count: 2, seed: 2 });
  t.deepEqual(readFileSync(join(ds, 'annotations.jsonl')), readFileSync(join(again, 'annotations.jsonl')));
  t.deepEqual(readFileSync(join(ds, 'clips', 'clip-00001.npy')), readFileSync(join(again, 'clips', 'clip-00001.npy')));
});

test('synthDataset: a folder with files is refused unless overwrite; a failure while generating leaves the earlier dataset whole', (t) => {
  const ds = fresh('api');
  vp.synthDataset(ds, { ...SYNTH, count: 3, seed: 1 });
  const before = fileHashes(ds);
  t.throws(() => vp.synthDataset(ds, { ...SYNTH, count: 2, seed: 2 }), { message: /synthDataset: dir: .*: the folder is not empty \(README\.txt, annotations\.jsonl, clips\).*\{ overwrite: true \}/ });
  t.throws(() => vp.synthDataset(ds, { ...SYNTH, count: 2, overwrite: 'yes' as unknown as boolean }), { instanceOf: TypeError, message: /synthDataset: overwrite must be a boolean/ });
  // Interrupted at the second new clip: nothing of the earlier dataset changed, no staging folder left.
  t.throws(() => vp.synthDataset(ds, { ...SYNTH, count: 4, seed: 2, overwrite: true, onProgress: (d) => { if (d === 2) throw new Error('stop here'); } }), { message: 'stop here' });
  t.deepEqual(fileHashes(ds), before);
  t.deepEqual(readdirSync(ds).sort(), ['README.txt', 'annotations.jsonl', 'clips']);
  // A staging folder left by a process that ended holds no dataset: not counted, and removed.
  const empty = fresh('staged');
  mkdirSync(join(empty, '.synth-tmp-999999999'), { recursive: true });
  t.is(vp.synthDataset(empty, { ...SYNTH, count: 1 }).length, 1);
  t.deepEqual(readdirSync(empty).sort(), ['README.txt', 'annotations.jsonl', 'clips']);
  vp.synthDataset(ds, { ...SYNTH, count: 1, seed: 2, overwrite: true });
  t.deepEqual(readdirSync(join(ds, 'clips')), ['clip-00000.npy']);
  t.is(vp.openDataset(ds).length, 1);
});

test('train --resume keeps the run\'s tokenizer when --data changed (new words said, read as <unk>); Trainer.resume refuses a model with another tokenizer', async (t) => {
  const data = fresh('data');
  vp.synthDataset(data, { ...SYNTH, count: 4, seed: 0 });
  const run = await sftRun(data, 3, 1);
  const ck = join(run, 'checkpoints', 'sft-000001');
  const saved = readFileSync(join(ck, 'tokenizer.json'), 'utf8');
  // The dataset changes: the same number of words in another order (a tokenizer rebuilt from it would mis-pair silently).
  vp.synthDataset(data, { ...SYNTH, count: 4, seed: 5, overwrite: true });
  const other = vp.tokenizerForDataset(vp.openDataset(data).annotations);
  const runs = vp.Tokenizer.load(join(ck, 'tokenizer.json'));
  t.is(other.vocabSize, runs.vocabSize);
  t.notDeepEqual(other.vocab, runs.vocab);

  const m = await vp.VideoLM.create({ ...MODEL, tokenizer: other, seed: 0 });
  const tr = new vp.Trainer(m);
  await t.throwsAsync(() => tr.resume(run), { instanceOf: vp.CheckpointError, message: /the checkpoint was trained with another tokenizer than this model's \(.*id \d+ is ".*" there, ".*" here\).*VideoLM\.load/ });
  m.dispose();

  // The run's config comes from its checkpoint too: a --preset that contradicts it is refused, naming both.
  const p = cli('train', '--data', data, '--out', run, '--stage', 'sft', '--steps', '3', '--batch-size', '2', '--resume', '--preset', 'tiny');
  t.is(p.status, 2);
  t.regex(p.stderr, /train --resume: --preset tiny asks for imageSize 32, .* but the run's model has imageSize 16, .*config\.json\); a resumed run keeps its model/);
  const r = cli('train', '--data', data, '--out', run, '--stage', 'sft', '--steps', '3', '--batch-size', '2', '--resume', '--json');
  t.is(r.status, 0, r.stderr);
  t.regex(r.stderr, /\d+ words? of --data .* not in the run's vocabulary \(.*sft-000001.tokenizer\.json, saved when it started\) \(".*"\); read as <unk>/);
  t.is(readFileSync(join(run, 'model', 'tokenizer.json'), 'utf8'), saved);
  t.is(readFileSync(join(run, 'checkpoints', 'sft-000003', 'tokenizer.json'), 'utf8'), saved);
});

test('train: a Trainer option error names the flag (or the config key) and leaves no empty run folder behind', (t) => {
  const data = fresh('data');
  vp.synthDataset(data, { ...SYNTH, count: 2, seed: 0 });
  const parent = fresh('new');
  const r = cli('train', '--data', data, '--out', join(parent, 'run'), '--stage', 'sft', '--batch-size', '1000000000');
  t.is(r.status, 2);
  t.regex(r.stderr, /^train: --batch-size must be small enough for one step to fit in memory/m);
  t.notRegex(r.stderr, /opts\.batchSize/);
  t.false(existsSync(parent));
  const cfg = join(work, 'big-batch.json');
  writeFileSync(cfg, JSON.stringify({ sft: { batchSize: 1000000000 } }));
  const c = cli('train', '--data', data, '--out', join(parent, 'run'), '--stage', 'sft', '--config', cfg);
  t.is(c.status, 2);
  t.regex(c.stderr, /^train: --config .*big-batch\.json: "sft\.batchSize" must be small enough/m);
  t.false(existsSync(parent));
});

test('resuming a finished run: a changed hyper-parameter is refused (or, with --override, said); nothing to do is said; the model is left as it is', async (t) => {
  const data = fresh('data');
  vp.synthDataset(data, { ...SYNTH, count: 4, seed: 0 });
  const run = await sftRun(data, 2);
  const before = fileHashes(run);
  const base = ['train', '--data', data, '--out', run, '--stage', 'sft', '--batch-size', '2', '--resume'];
  const lr = cli(...base, '--steps', '2', '--lr', '0.01');
  t.is(lr.status, 1);
  t.regex(lr.stderr, /other hyper-parameters \(lr 0\.001 → 0\.01.*--override/);
  const fewer = cli(...base, '--steps', '1');
  t.is(fewer.status, 1);
  t.regex(fewer.stderr, /other hyper-parameters \(steps 2 → 1/);
  const same = cli(...base, '--steps', '2');
  t.is(same.status, 0, same.stderr);
  t.regex(same.stdout, /run already finished at step 2 \(sft\): nothing to train/);
  const over = cli(...base, '--steps', '2', '--lr', '0.01', '--override');
  t.is(over.status, 0, over.stderr);
  t.regex(over.stderr, /with changed hyper-parameters: lr 0\.001 → 0\.01/);
  t.regex(over.stdout, /run already finished at step 2/);
  t.deepEqual(fileHashes(run), before);

  // The same through the API: the trainer refuses, or with override trains no step.
  const ds = vp.openDataset(data);
  const m = await vp.VideoLM.load(join(run, 'model'));
  const tr = new vp.Trainer(m, { runDir: run });
  await tr.resume(run);
  await t.throwsAsync(() => tr.sft(ds, { steps: 2, batchSize: 2, lr: 0.01 }), { instanceOf: RangeError, message: /Trainer\.sft: the run being resumed was trained with other hyper-parameters \(lr/ });
  await tr.resume(run, { override: true });
  const r = await tr.sft(ds, { steps: 2, batchSize: 2, lr: 0.01 });
  t.is(r.status, 'done');
  t.is(r.last, undefined);
  m.dispose();
  t.deepEqual(fileHashes(run), before);
});

test('train --resume without --seed continues with the run\'s own seed', async (t) => {
  const data = fresh('data');
  vp.synthDataset(data, { ...SYNTH, count: 4, seed: 0 });
  const run = fresh('run');
  const ds = vp.openDataset(data);
  const m = await vp.VideoLM.create({ ...MODEL, tokenizer: vp.tokenizerForDataset(ds.annotations), seed: 0 });
  const stop = new AbortController();
  const tr = new vp.Trainer(m, { runDir: run, seed: 5, onStep: (e) => e.type === 'step' && e.step === 1 && stop.abort() });
  t.is((await tr.sft(ds, { steps: 3, batchSize: 2, signal: stop.signal })).status, 'aborted');
  tr.dispose();
  m.dispose();
  const r = cli('train', '--data', data, '--out', run, '--stage', 'sft', '--steps', '3', '--batch-size', '2', '--resume', '--json');
  t.is(r.status, 0, r.stderr);
  const other = cli('train', '--data', data, '--out', run, '--stage', 'sft', '--steps', '3', '--batch-size', '2', '--resume', '--seed', '6');
  t.not(other.status, 0);
  t.regex(other.stderr, /seed/);
});
