// LLaVA / ShareGPT conversation files as training data (lib/data/conversations.ts):
// the mapping of a record to an annotation (last user turn → prompt, the
// assistant's answer → caption, its event keywords), the checks when the file
// opens and when a video disappears afterwards (errors name file, line, record
// and path), the trainer's batches holding the record's prompt, and the CLI's
// train --data conv.json (two SFT steps, one RL step) and eval --data conv.json
// on a tiny SmolVLM, whose saved folder reloads. Clips: synthDataset's .mp4 files
// (decoded by ffmpeg) and .npy files.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vp from '../lib/index.js';
import { readSafetensors } from '../lib/model/safetensors.js';
import { writeTinyVlm } from './vlm-fixtures.js';

const work = mkdtempSync(join(tmpdir(), 'vp-vlmconv-'));
test.after.always(() => rmSync(work, { recursive: true, force: true }));
const CLI = join(import.meta.dirname, '..', 'lib', 'cli.ts');
const cli = (...args: string[]) => spawnSync(process.execPath, ['--import=tsx', CLI, ...args], { encoding: 'utf8', timeout: 300_000 });

// Three clips (clips/clip-0000k.mp4 and .npy) and their captions as the answers.
const anns = vp.synthDataset(join(work, 'data'), { count: 3, seed: 4, frames: 8, fps: 4, mp4: true });
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** A conversation file in data/: records 0 and 2 ShareGPT with .mp4 clips, record 1 in the messages form with an .npy clip. */
function writeConversations(name: string, edit?: (records: Record<string, unknown>[]) => void): string {
  const records: Record<string, unknown>[] = [
    { id: 'a', video: 'clips/clip-00000.mp4', conversations: [{ from: 'human', value: '<video>\nWhat happens in the clip?' }, { from: 'gpt', value: anns[0].caption }] },
    {
      videos: ['clips/clip-00001.npy'], messages: [
        { role: 'system', content: 'You watch videos.' },
        { role: 'user', content: '<video>Which shape moves?' }, { role: 'assistant', content: 'a square' },
        { role: 'user', content: 'What does the diamond do?' }, { role: 'assistant', content: anns[1].caption },
      ],
    },
    { id: 'c', video: 'clips/clip-00002.mp4', conversations: [{ from: 'human', value: 'Describe <video> briefly.' }, { from: 'gpt', value: anns[2].caption }] },
  ];
  edit?.(records);
  const file = join(work, 'data', name);
  writeFileSync(file, name.endsWith('.jsonl') ? records.map((r) => JSON.stringify(r)).join('\n') + '\n' : JSON.stringify(records, null, 2));
  return file;
}

test('a conversation record maps to the prompt (last user turn, <video> taken out), the answer as caption and its event keywords', (t) => {
  const file = writeConversations('conv.json');
  const ds = vp.openConversations(file);
  t.true(ds instanceof vp.Dataset);
  t.is(ds.length, 3);
  t.is(ds.source, file);
  t.deepEqual(ds.annotations.map((a) => a.prompt), ['What happens in the clip?', 'What does the diamond do?', 'Describe briefly.']);
  t.deepEqual(ds.annotations.map((a) => a.caption), anns.map((a) => a.caption));
  t.deepEqual(ds.annotations.map((a) => a.id), ['a', '1', 'c']);
  t.deepEqual(ds.annotations[1].keywords, vp.extractEventKeywords(anns[1].caption));
  t.true(ds.annotations[1].keywords!.includes('jump'));
  t.is(ds.videoPath(0), join(work, 'data', 'clips', 'clip-00000.mp4'));
  // The caption task asks the record's prompt; RL and evaluation score against its keywords.
  t.deepEqual(vp.clipTasks(ds.annotations[1]), [{ kind: 'caption', prompt: 'What does the diamond do?', response: anns[1].caption }]);
  t.deepEqual(vp.annotatedKeywords(ds.annotations[1]), vp.extractEventKeywords(anns[1].caption));
  // An annotations.jsonl clip without events or a prompt keeps the fixed prompt and no keywords.
  t.is(vp.captionPrompt(anns[0]), vp.CAPTION_PROMPT);
  t.deepEqual(vp.annotatedKeywords(anns[0]), []);
  // The video decoded as openDataset decodes: the .mp4 by ffmpeg (16 frames by default), the .npy as stored.
  const s0 = ds.load(0);
  t.deepEqual(s0.shape, [16, 32, 32, 3]);
  t.is(s0.frameTimes.length, 16);
  t.deepEqual(ds.load(1).shape, [8, 32, 32, 3]);
  // JSON Lines reads the same.
  t.deepEqual(vp.openConversations(writeConversations('conv.jsonl')).annotations, ds.annotations);
});

test('a malformed record: errors name the file, the line, the record and the path, when the file opens and in the trainer', async (t) => {
  const missing = writeConversations('missing.json', (r) => (r[2].video = 'clips/nope.mp4'));
  const e = t.throws(() => vp.openConversations(missing), { instanceOf: vp.DataFormatError });
  t.regex(e!.message, new RegExp(`^${esc(missing)}:\\d+: record 2 \\(id "c"\\): video ${esc(join(work, 'data', 'clips', 'nope.mp4'))}: not found`));
  t.is((e as vp.DataFormatError).line, JSON.stringify(JSON.parse(readFileSync(missing, 'utf8')).slice(0, 2), null, 2).split('\n').length);
  const noAnswer = writeConversations('noanswer.jsonl', (r) => (r[1].messages = [{ role: 'assistant', content: 'hi' }, { role: 'user', content: '<video>and?' }]));
  t.throws(() => vp.openConversations(noAnswer), { instanceOf: vp.DataFormatError, message: /noanswer\.jsonl:2: record 1: the last assistant turn has no user turn before it/ });
  const twoVideos = writeConversations('two.jsonl', (r) => ((r[0].conversations as { value: string }[])[0].value = '<video><video> what?'));
  t.throws(() => vp.openConversations(twoVideos), { instanceOf: vp.DataFormatError, message: /two\.jsonl:1: record 0: the conversation holds 2 "<video>" tags/ });
  const notMp4 = writeConversations('bad-mp4.json', (r) => (r[0].video = 'clips/fake.mp4'));
  writeFileSync(join(work, 'data', 'clips', 'fake.mp4'), 'not a video at all');
  t.throws(() => vp.openConversations(notMp4), { instanceOf: vp.DataFormatError, message: /bad-mp4\.json:2: record 0 \(id "a"\): video .*fake\.mp4: not a readable \.mp4 file/ });
  // A video removed after the file opened: the trainer's step names the record and the path.
  const dir = join(work, 'smol-bad');
  writeTinyVlm(dir, { kind: 'smolvlm', seed: 36 });
  const m = await vp.loadPretrained(dir);
  const clip = join(work, 'data', 'clips', 'gone.mp4');
  copyFileSync(join(work, 'data', 'clips', 'clip-00000.mp4'), clip);
  const ds = vp.openConversations(writeConversations('gone.json', (r) => r.splice(1, 2, { ...r[0], id: 'g', video: 'clips/gone.mp4' })));
  rmSync(clip);
  await t.throwsAsync(new vp.Trainer(m, { seed: 1 }).sft(ds, { steps: 2, batchSize: 2 }), { message: new RegExp(`sample g \\(record 1 of ${esc(join(work, 'data', 'gone.json'))}\\): clip file not found: ${esc(clip)}`) });
  m.dispose();
  // Through the CLI: exit 1, the message names the file, line, record and path.
  const r = cli('train', '--model', dir, '--data', missing, '--out', join(work, 'run-bad'), '--steps', '1');
  t.is(r.status, 1, r.stderr);
  t.regex(r.stderr, new RegExp(`${esc(missing)}:\\d+: record 2 \\(id "c"\\): video .*nope\\.mp4: not found`));
  const txt = join(work, 'data', 'conv.txt');
  writeFileSync(txt, '[]');
  t.regex(cli('train', '--model', dir, '--data', txt, '--out', join(work, 'run-bad')).stderr, /--data: .*conv\.txt: a file must be a LLaVA \/ ShareGPT conversation file ending in \.json or \.jsonl/);
});

test('the trainer on conversations: each record\'s prompt in the user turn, the answer as the only targets, KIM and the contrastive term', async (t) => {
  const dir = join(work, 'smol-api');
  writeTinyVlm(dir, { kind: 'smolvlm', seed: 37 });
  const m = await vp.loadPretrained(dir);
  const ds = vp.openConversations(writeConversations('api.json'));
  const tr = new vp.Trainer(m, { seed: 1 });
  const b = tr.sftBatch([tr.clip(ds, 1)], { contrastive: false });
  t.is(b.batch.sequences.length, 1); // the caption task alone: a record has no multiple-choice questions
  const ids = b.batch.text;
  const targets = Array.from(b.batch.targets!).filter((x) => x >= 0);
  t.is(m.tokenizer.decode(targets, { skipSpecialTokens: true }), anns[1].caption);
  t.regex(m.tokenizer.decode(ids), /<\|im_start\|>user\n.*What does the diamond do\?<\|im_end\|>\n<\|im_start\|>assistant\n/s);
  t.notRegex(m.tokenizer.decode(ids), /<video>|You watch videos|Which shape moves/);
  // The method's stage 1 on them: KIM sequences and contrastive groups (key frames by the detector, keywords from the answers).
  const full = tr.sftBatch([0, 1, 2].map((i) => tr.clip(ds, i)));
  t.true(full.groups.length > 0 && full.kimSequences > 0, `groups ${full.groups.length}, skipped ${JSON.stringify(full.skipped)}`);
  m.dispose();
});

test('CLI: train --model SMOLVLM --data conv.json --stage both (2 SFT steps, 1 RL step), eval --data conv.json; the saved folder reloads', async (t) => {
  const dir = join(work, 'smol-cli');
  writeTinyVlm(dir, { kind: 'smolvlm', seed: 38 });
  const data = writeConversations('cli.json');
  const out = join(work, 'run-cli');
  const r = cli('train', '--model', dir, '--data', data, '--lora-rank', '2', '--stage', 'both', '--steps', '2', '--rl-steps', '1', '--batch-size', '2', '--group-size', '2', '--out', out, '--json');
  t.is(r.status, 0, r.stderr.slice(-2000));
  const steps = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { type: string; stage: string; step: number; loss: number; contrastSamples?: number; rewardDegraded?: number });
  const sft = steps.filter((e) => e.type === 'step' && e.stage === 'sft');
  const rl = steps.filter((e) => e.type === 'step' && e.stage === 'rl');
  t.deepEqual(sft.map((e) => e.step), [1, 2]);
  t.deepEqual(rl.map((e) => e.step), [1]);
  t.true([...sft, ...rl].every((e) => Number.isFinite(e.loss)));
  t.true(sft.some((e) => (e.contrastSamples ?? 0) > 0), 'the contrastive term had samples');
  t.true(Number.isFinite(rl[0].rewardDegraded), 'RL generated from the KIM variants');
  t.deepEqual(readSafetensors(join(out, 'model', 'model.safetensors')).order, readSafetensors(join(dir, 'model.safetensors')).order);
  const again = await vp.loadPretrained(join(out, 'model'));
  t.is(again.architecture, 'SmolVLMForConditionalGeneration');
  again.dispose();
  const e = cli('eval', '--model', join(out, 'model'), '--data', data, '--max-tokens', '3', '--json');
  t.is(e.status, 0, e.stderr.slice(-2000));
  const ev = JSON.parse(e.stdout) as { summary: Record<string, number>; captions: { id: string; reference: string; keywords: string[] }[]; questions: unknown[] };
  t.is(ev.summary.captions, 3);
  t.deepEqual(ev.captions.map((c) => c.reference), anns.map((a) => a.caption));
  t.deepEqual(ev.captions[1].keywords, vp.extractEventKeywords(anns[1].caption));
  t.true(Number.isFinite(ev.summary.keywordF1));
  t.deepEqual(ev.questions, []);
});
