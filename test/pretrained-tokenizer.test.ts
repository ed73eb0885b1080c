// Tokenizers and chat templates of Hugging Face folders, against token ids
// written by hand from the tiny vocabularies and merges in
// test/pretrained-fixtures.ts (worked through merge by merge there):
// a SentencePiece-style BPE with byte fallback (Llama 2) whose BOS comes from
// tokenizer_config.json's add_bos_token, and a byte-level BPE (SmolLM2/Qwen2)
// that adds no BOS; chat templates from tokenizer_config.json,
// chat_template.json and chat_template.jinja.
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vp from '../lib/index.js';
import { FIXTURES, writeTinyModel } from './pretrained-fixtures.js';

function fixture(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `vp-ptt-${name}-`));
  writeTinyModel(dir, FIXTURES[name]);
  return dir;
}

const byte = (b: number) => 3 + b; // <0xNN> in the SentencePiece fixture

test('SentencePiece BPE with byte fallback: hand-written ids, BOS from add_bos_token, decoding', async (t) => {
  const m = await vp.loadPretrained(fixture('llama-untied-f32'));
  const tok = m.tokenizer;
  // "hello world" → ▁hello▁world → ▁hel lo ▁wor ld
  t.deepEqual(Array.from(tok.encode('hello world')), [1, 269, 270, 273, 274]);
  t.deepEqual(Array.from(tok.encode('hello world', { addSpecialTokens: false })), [269, 270, 273, 274]);
  // "hi!" → ▁h, then bytes 0x69 'i' and 0x21 '!' (not in the vocabulary)
  t.deepEqual(Array.from(tok.encode('hi!')), [1, 267, byte(0x69), byte(0x21)]);
  // "é" (UTF-8 C3 A9) → ▁ then its two bytes
  t.deepEqual(Array.from(tok.encode('é', { addSpecialTokens: false })), [259, byte(0xc3), byte(0xa9)]);
  // Added special tokens are matched whole.
  t.deepEqual(Array.from(tok.encode('</s>', { addSpecialTokens: false })), [2]);
  t.is(tok.decode([269, 270, 273, 274]), 'hello world');
  t.is(tok.decode([267, byte(0x69), byte(0x21)]), 'hi!');
  t.is(tok.decode([259, byte(0xc3), byte(0xa9)]), 'é');
  t.is(tok.decode([1, 269, 270, 2], { skipSpecialTokens: true }), 'hello');
  t.is(tok.decode([]), '');
  t.is(tok.bosId, 1);
  t.is(tok.eosId, 2);
  t.is(tok.vocabSize, 277);
  t.is(tok.idToToken(269), '▁hel');
  t.is(tok.tokenToId('ld'), 274);
  t.throws(() => tok.encode(5 as never), { instanceOf: TypeError, message: /text must be a string/ });
  t.throws(() => tok.decode([1, -2]), { instanceOf: RangeError, message: /ids\[1\]/ });
});

test('add_bos_token / add_eos_token in tokenizer_config.json decide BOS and EOS for Llama tokenizers', async (t) => {
  const dir = fixture('llama-untied-f32');
  const p = join(dir, 'tokenizer_config.json');
  const cfg = JSON.parse(readFileSync(p, 'utf8'));
  writeFileSync(p, JSON.stringify({ ...cfg, add_bos_token: false, add_eos_token: true }));
  const m = await vp.loadPretrained(dir);
  t.deepEqual(Array.from(m.tokenizer.encode('hello')), [269, 270, 2]);
});

test('byte-level BPE: hand-written ids, no BOS, added tokens, newline and multi-byte characters', async (t) => {
  const m = await vp.loadPretrained(fixture('qwen2-untied-bf16-sharded'));
  const tok = m.tokenizer;
  // "hello" merges to one token (263); " world" → Ġwor ld.
  t.deepEqual(Array.from(tok.encode('hello world')), [263, 258, 259]);
  t.deepEqual(Array.from(tok.encode('hi\n')), [104, 105, 10]);
  t.deepEqual(Array.from(tok.encode('é')), [0xc3, 0xa9]);
  t.deepEqual(Array.from(tok.encode('<|im_start|>hello<|im_end|>')), [265, 263, 266]);
  t.is(tok.decode([263, 258, 259]), 'hello world');
  t.is(tok.decode([0xc3, 0xa9]), 'é');
  t.is(tok.decode([265, 263, 266]), '<|im_start|>hello<|im_end|>');
  t.is(tok.decode([265, 263, 266], { skipSpecialTokens: true }), 'hello');
  t.is(tok.bosId, undefined);
  t.is(tok.eosId, 266);
  t.is(tok.padId, 264);
});

test('chat templates from tokenizer_config.json, chat_template.json and chat_template.jinja, with the special tokens as variables', async (t) => {
  const msgs = [{ role: 'user', content: 'hello world' }];
  const chatml = await vp.loadPretrained(fixture('qwen2-tied-f16')); // tokenizer_config.json
  t.is(chatml.applyChatTemplate(msgs), '<|im_start|>user\nhello world<|im_end|>\n');
  const prompt = chatml.applyChatTemplate(msgs, { addGenerationPrompt: true });
  t.is(prompt, '<|im_start|>user\nhello world<|im_end|>\n<|im_start|>assistant\n');
  t.deepEqual(Array.from(chatml.tokenizer.encode(prompt, { addSpecialTokens: false })),
    [265, 117, 115, 101, 114, 10, 263, 258, 259, 266, 10, 265, 97, 115, 115, 105, 115, 116, 97, 110, 116, 10]);
  const json = await vp.loadPretrained(fixture('llama-tied-bf16-sharded-llama3')); // chat_template.json, uses bos_token / eos_token
  t.is(json.applyChatTemplate([...msgs, { role: 'assistant', content: 'hi' }], { addGenerationPrompt: true }), '<s>[user] hello world</s>[assistant] hi</s>[assistant]');
  const jinja = await vp.loadPretrained(fixture('qwen2-untied-bf16-sharded')); // chat_template.jinja
  t.is(jinja.applyChatTemplate(msgs, { addGenerationPrompt: true }), prompt);
  t.regex(jinja.chatTemplate ?? '', /im_start/);
  t.throws(() => jinja.applyChatTemplate('hi' as never), { instanceOf: TypeError, message: /messages must be an array/ });
  t.throws(() => jinja.applyChatTemplate([{ role: 3 } as never]), { instanceOf: TypeError, message: /messages\[0\]\.role/ });
});

test("a template written for message parts (SmolVLM's) takes string contents as one text part each", (t) => {
  // transformers' processing_smolvlm.py DEFAULT_CHAT_TEMPLATE: it iterates message['content'].
  const smol = new vp.ChatTemplate("<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}");
  const want = '<|im_start|>User: hello<end_of_utterance>\nAssistant: hi<end_of_utterance>\nAssistant:';
  t.is(smol.render([{ role: 'user', content: 'hello' }, { role: 'assistant', content: 'hi' }], { addGenerationPrompt: true }), want);
  t.is(smol.render([{ role: 'user', content: [{ type: 'text', text: 'hello' }] }, { role: 'assistant', content: [{ type: 'text', text: 'hi' }] }], { addGenerationPrompt: true }), want);
  t.is(smol.render([{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'what?' }] }]), '<|im_start|>User:<image>what?<end_of_utterance>\n');
  // A template that fails either way still reports its own error.
  const bad = new vp.ChatTemplate("{% for m in messages %}{{ raise_exception('no') }}{% endfor %}");
  t.throws(() => bad.render([{ role: 'user', content: 'x' }]), { message: /the chat template failed: .*no/ });
});

test('generate() takes a string or chat messages and returns text; ids return ids', async (t) => {
  const m = await vp.loadPretrained(fixture('qwen2-tied-f16'));
  const text = await m.generate(null, 'hello world', { maxTokens: 4, eosId: -1 });
  t.is(typeof text, 'string');
  const chat = await m.generate(null, [{ role: 'user', content: 'hello world' }], { maxTokens: 4, eosId: -1 });
  t.is(typeof chat, 'string');
  const ids = (await m.generate(null, Int32Array.from(m.tokenizer.encode(m.applyChatTemplate([{ role: 'user', content: 'hello world' }], { addGenerationPrompt: true }), { addSpecialTokens: false })), { maxTokens: 4, eosId: -1 })) as Int32Array;
  t.is(m.tokenizer.decode(ids, { skipSpecialTokens: true }), chat);
  t.deepEqual(m.eosIds, [2]); // generation_config.json's eos_token_id
});

test('a folder without tokenizer.json or chat template still computes logits; the missing pieces are named', async (t) => {
  const dir = fixture('llama-untied-f32');
  rmSync(join(dir, 'tokenizer.json'));
  const m = await vp.loadPretrained(dir);
  t.false(m.hasTokenizer);
  t.throws(() => m.tokenizer, { message: /has no tokenizer\.json/ });
  t.throws(() => m.applyChatTemplate([{ role: 'user', content: 'x' }]), { message: /has no chat template/ });
  t.deepEqual((await m.logits([1, 2, 3])).shape, [3, 288]);
  const bad = fixture('llama-untied-f32');
  writeFileSync(join(bad, 'tokenizer.json'), '{"model": 3');
  await t.throwsAsync(() => vp.loadPretrained(bad), { instanceOf: vp.CheckpointError, message: /tokenizer\.json: not valid JSON/ });
});
