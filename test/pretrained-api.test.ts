// The PretrainedModel public contract beside VideoLM's (docs/pretrained.md,
// generate as VideoLM's): onToken called once per sampled token in order
// (streams: test/distributed.test.ts), generateStream yielding what generate
// returns, Symbol.dispose / Symbol.asyncDispose on models and
// on vp.Trainer, chat messages whose content is a list of parts on a
// text-only template, unknown option keys refused with the key named, and
// the supported architectures listed when config.json names another.
import test from 'ava';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vp from '../lib/index.js';
import { FIXTURES, writeTinyModel } from './pretrained-fixtures.js';
import { IMAGE_ID, writeTinyVlm } from './vlm-fixtures.js';

function fixture(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `vp-pta-${name}-`));
  writeTinyModel(dir, FIXTURES[name]);
  return dir;
}

const SAMPLED = { maxTokens: 9, temperature: 1, topP: 0.95, seed: 7, eosId: -1 };

test('onToken: called once per token, in order, with the tokens generateBatch returns; its exception rejects the call after generation', async (t) => {
  const m = await vp.loadPretrained(fixture('qwen2-tied-f16'));
  const p = [265, 117, 115, 101, 114];
  const text = Int32Array.from([...p, ...p.slice(0, 3)]);
  const seen: [number, number][] = [];
  const out = await m.generateBatch({ text, sequences: [[{ text: [0, 5] }], [{ text: [5, 3] }]] }, { ...SAMPLED, onToken: (s, tok) => seen.push([s, tok]) });
  t.is(seen.length, out[0].length + out[1].length);
  for (const s of [0, 1]) t.deepEqual(seen.filter(([q]) => q === s).map(([, tok]) => tok), Array.from(out[s]));
  // Tokens arrive step by step: the k-th token of every sequence before the (k+1)-th of any.
  const step = new Map<number, number>();
  const order = seen.map(([s]) => {
    const k = step.get(s) ?? 0;
    step.set(s, k + 1);
    return k;
  });
  t.deepEqual(order, [...order].sort((a, b) => a - b));
  // generate() with onToken: the same tokens as its result.
  const one: number[] = [];
  const ids = (await m.generate(null, Int32Array.from(p), { ...SAMPLED, onToken: (s, tok) => (t.is(s, 0), one.push(tok)) })) as Int32Array;
  t.deepEqual(one, Array.from(ids));
  // An exception in the callback: no more calls, generation finishes, then the call rejects with it.
  let calls = 0;
  const boom = new Error('boom');
  await t.throwsAsync(() => m.generate(null, Int32Array.from(p), { ...SAMPLED, onToken: () => { calls++; throw boom; } }), { is: boom });
  t.is(calls, 1);
  await t.throwsAsync(() => m.generateBatch({ text, sequences: [[{ text: [0, 5] }]] }, { onToken: 3 as never }), { instanceOf: TypeError, message: /opts\.onToken/ });
});

test('generateStream yields what generate returns: token ids for ids, text pieces for a string or chat messages', async (t) => {
  const m = await vp.loadPretrained(fixture('qwen2-tied-f16'));
  const ids = Int32Array.of(265, 117, 115, 101, 114);
  const want = (await m.generate(null, ids, SAMPLED)) as Int32Array;
  const got: number[] = [];
  for await (const tok of m.generateStream(null, ids, SAMPLED)) got.push(tok);
  t.deepEqual(got, Array.from(want));
  for (const prompt of ['hello world', [{ role: 'user', content: 'hello world' }]] as const) {
    const text = (await m.generate(null, prompt, { ...SAMPLED, maxTokens: 12 })) as string;
    const pieces: string[] = [];
    for await (const s of m.generateStream(null, prompt, { ...SAMPLED, maxTokens: 12 })) pieces.push(s);
    t.true(pieces.length > 1);
    t.is(pieces.join(''), text);
  }
  // Stopping early ends the stream (the next call runs normally).
  let n = 0;
  for await (const _ of m.generateStream(null, ids, SAMPLED)) if (++n === 2) break;
  t.is(n, 2);
  t.deepEqual(Array.from((await m.generate(null, ids, SAMPLED)) as Int32Array), Array.from(want));
  const s = m.generateStream(null, ids, { onToken: () => undefined } as never);
  await t.throwsAsync(() => s.next(), { instanceOf: TypeError, message: /opts\.onToken/ });
});

test('generateStream of a vision-language model with a video: the same tokens and text as generate', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vp-pta-smol-'));
  writeTinyVlm(dir, { kind: 'smolvlm', seed: 33 });
  const m = await vp.loadPretrained(dir);
  const data = new Uint8Array(2 * 12 * 12 * 3).map((_, i) => (i * 37) % 251);
  const v = { data, shape: [2, 12, 12, 3] };
  const ids = Int32Array.of(IMAGE_ID, 5);
  const want = (await m.generate(v, ids, SAMPLED)) as Int32Array;
  const got: number[] = [];
  for await (const tok of m.generateStream(v, ids, SAMPLED)) got.push(tok);
  t.deepEqual(got, Array.from(want));
  const msgs = [{ role: 'user', content: '<video>hello' }];
  const text = (await m.generate(v, msgs, SAMPLED)) as string;
  let joined = '';
  for await (const s of m.generateStream(v, msgs, SAMPLED)) joined += s;
  t.true(text.length > 0);
  t.is(joined, text);
});

test('Symbol.dispose / Symbol.asyncDispose on PretrainedModel: later calls throw the disposed error', async (t) => {
  const m = await vp.loadPretrained(fixture('llama-untied-f32'));
  t.is(typeof m[Symbol.dispose], 'function');
  m[Symbol.dispose]();
  await t.throwsAsync(() => m.logits([1, 2, 3]), { message: /PretrainedModel\.logits: the model was disposed/ });
  await t.throwsAsync(() => m.generate(null, [1, 2, 3]), { message: /the model was disposed/ });
  t.notThrows(() => m[Symbol.dispose]()); // idempotent
  const m2 = await vp.loadPretrained(fixture('llama-untied-f32'));
  await m2[Symbol.asyncDispose]();
  await t.throwsAsync(() => m2.logits([1, 2, 3]), { message: /the model was disposed/ });
  // A stream open when the model is disposed ends with the same error.
  const m3 = await vp.loadPretrained(fixture('llama-untied-f32'));
  const it = m3.generateStream(null, Int32Array.of(1, 269, 270), { maxTokens: 6, eosId: -1 });
  t.is(typeof (await it.next()).value, 'number');
  m3.dispose();
  await t.throwsAsync(() => it.next(), { message: /the model was disposed/ });
});

test('Symbol.dispose / Symbol.asyncDispose on vp.Trainer: idempotent, later calls throw the disposed error', async (t) => {
  const data = join(mkdtempSync(join(tmpdir(), 'vp-pta-data-')), 'data');
  vp.synthDataset(data, { count: 2, seed: 3, frames: 4, size: 16, fps: 4 });
  const ds = vp.openDataset(data);
  const m = await vp.loadPretrained(fixture('qwen2-tied-f16'));
  const tr = new vp.Trainer(m, { seed: 1 });
  t.is(typeof tr[Symbol.dispose], 'function');
  tr[Symbol.dispose]();
  t.notThrows(() => tr[Symbol.dispose]());
  await t.throwsAsync(() => tr.sft(ds, { steps: 1 }), { message: /Trainer\.sft: the trainer was disposed/ });
  await t.throwsAsync(() => tr.rl(ds, { steps: 1 }), { message: /Trainer\.rl: the trainer was disposed/ });
  await t.throwsAsync(() => tr.evaluate(ds), { message: /Trainer\.evaluate: the trainer was disposed/ });
  t.throws(() => tr.clip(ds, 0), { message: /Trainer\.clip: the trainer was disposed/ });
  // The model stays the caller's.
  t.deepEqual((await m.logits([1, 2])).shape, [2, 288]);
  const tr2 = new vp.Trainer(m, { seed: 1 });
  await tr2[Symbol.asyncDispose]();
  await t.throwsAsync(() => tr2.sft(ds, { steps: 1 }), { message: /the trainer was disposed/ });
  // Disposed while a stage runs: the stage stops after its step, and asyncDispose waits for it.
  let disposing: Promise<void> | undefined;
  const tr3: vp.Trainer = new vp.Trainer(m, { seed: 1, onStep: (e) => { if (e.type === 'step' && e.step === 2) disposing = tr3[Symbol.asyncDispose](); } });
  const r = await tr3.sft(ds, { steps: 50, batchSize: 1, questions: false });
  t.is(r.status, 'aborted');
  t.is(r.steps, 2);
  t.truthy(disposing);
  await disposing;
  await t.throwsAsync(() => tr3.sft(ds, { steps: 1 }), { message: /the trainer was disposed/ });
});

test('chat messages with content parts on a text-only template render as the string content; a non-text part is named', async (t) => {
  for (const name of ['llama-untied-f32', 'llama-tied-bf16-sharded-llama3']) {
    const m = await vp.loadPretrained(fixture(name));
    const str = m.applyChatTemplate([{ role: 'system', content: 'be brief' }, { role: 'user', content: 'hello world' }], { addGenerationPrompt: true });
    const parts = m.applyChatTemplate([
      { role: 'system', content: 'be brief' },
      { role: 'user', content: [{ type: 'text', text: 'hello' }, { type: 'text', text: ' world' }] },
    ], { addGenerationPrompt: true });
    t.is(parts, str);
    t.notRegex(parts, /"type"/);
    t.throws(() => m.applyChatTemplate([{ role: 'user', content: 'x' }, { role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'image' }] }]),
      { instanceOf: TypeError, message: /messages\[1\]\.content\[1\].*text/ });
    t.throws(() => m.applyChatTemplate([{ role: 'user', content: [{ type: 'text', text: 3 }] as never }]), { instanceOf: TypeError, message: /messages\[0\]\.content\[0\]\.text/ });
    // generate() takes such messages too.
    const a = await m.generate(null, [{ role: 'user', content: [{ type: 'text', text: 'hello world' }] }], { maxTokens: 3, eosId: -1 });
    const b = await m.generate(null, [{ role: 'user', content: 'hello world' }], { maxTokens: 3, eosId: -1 });
    t.is(a, b);
  }
  // A template that reads parts itself still gets them as they are.
  const smol = new vp.ChatTemplate("{% for message in messages %}{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}|{% endfor %}");
  t.is(smol.render([{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'what?' }] }]), '<image>what?|');
});

test('unknown option keys are refused with the key named and the nearest valid one suggested', async (t) => {
  const dir = fixture('llama-untied-f32');
  await t.throwsAsync(() => vp.loadPretrained(dir, { bogus: 1 } as never), { instanceOf: TypeError, message: /loadPretrained: opts\.bogus is not an option/ });
  await t.throwsAsync(() => vp.loadPretrained(dir, { dtyp: 'float32' } as never), { instanceOf: TypeError, message: /opts\.dtyp is not an option.*dtype/ });
  const m = await vp.loadPretrained(dir);
  t.throws(() => m.addLora({ rank: 2, alpah: 4 } as never), { instanceOf: TypeError, message: /addLora: opts\.alpah is not an option.*alpha/ });
  t.is(m.lora, null);
  await t.throwsAsync(() => m.generate(null, [1, 2], { maxToken: 3 } as never), { instanceOf: TypeError, message: /PretrainedModel\.generate: opts\.maxToken is not an option.*maxTokens/ });
  await t.throwsAsync(() => m.generateBatch({ text: Int32Array.of(1, 2), sequences: [[{ text: [0, 2] }]] }, { temprature: 1 } as never),
    { instanceOf: TypeError, message: /PretrainedModel\.generateBatch: opts\.temprature is not an option.*temperature/ });
  await t.throwsAsync(() => m.logits([1, 2], { pixelValue: 1 } as never), { instanceOf: TypeError, message: /PretrainedModel\.logits: opts\.pixelValue is not an option.*pixelValues/ });
  t.throws(() => m.applyChatTemplate([{ role: 'user', content: 'x' }], { addGenerationPromt: true } as never), { instanceOf: TypeError, message: /applyChatTemplate: opts\.addGenerationPromt is not an option.*addGenerationPrompt/ });
  const s = m.generateStream(null, Int32Array.of(1, 2), { sed: 1 } as never);
  await t.throwsAsync(() => s.next(), { instanceOf: TypeError, message: /opts\.sed is not an option.*seed/ });
  // Every option that is documented still works.
  t.truthy(await m.generate(null, [1, 2], { maxTokens: 2, temperature: 0.5, topP: 0.9, seed: 1, eosId: [2], streams: Int32Array.of(0), onToken: () => undefined }));
  t.deepEqual((await m.logits([1, 2], {})).shape, [2, 288]);
  t.is(m.addLora({ rank: 2, alpha: 4, targets: ['q_proj'], dropout: 0, useRslora: false, layers: [0], seed: 1 }).targets.length, 1);
});

test('an unsupported architecture names the ones that are supported', async (t) => {
  const dir = fixture('llama-untied-f32');
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...cfg, architectures: ['MistralForCausalLM'] }));
  const err = await t.throwsAsync(() => vp.loadPretrained(dir));
  t.regex(err!.message, /MistralForCausalLM/);
  for (const a of [...vp.ARCHITECTURES, ...vp.VLM_ARCHITECTURES]) t.true(err!.message.includes(a), a);
  t.notRegex(err!.message, /not implemented yet/);
});
