// The word-level tokenizer: training, encode/decode, special tokens, offsets,
// save/load, determinism, validation.
import test from 'ava';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, Tokenizer, UNK_ID, VIDEO_ID } from '../lib/model/tokenizer.js';

const corpus = [
  'A man jumps over the fence.',
  'The man opens the door, then jumps!',
  "A woman's dog runs (fast) across the yard.",
  'the dog jumps; the man waves.',
];

test('trains a frequency-ordered vocabulary with fixed special ids', (t) => {
  const tok = Tokenizer.train(corpus);
  t.deepEqual(tok.vocab.slice(0, 6), [...SPECIAL_TOKENS]);
  t.is(tok.vocab[6], 'the'); // most frequent word
  t.is(tok.tokenToId('<pad>'), PAD_ID);
  t.is(tok.tokenToId('<video>'), VIDEO_ID);
  t.truthy(tok.tokenToId("'s"));
  t.truthy(tok.tokenToId('.'));
  t.is(tok.tokenToId('The'), undefined, 'lowercased');
  const small = Tokenizer.train(corpus, { vocabSize: 10 });
  t.is(small.vocabSize, 10);
  const freq = Tokenizer.train(corpus, { minFrequency: 3 });
  t.deepEqual(freq.vocab.slice(6), ['the', '.', 'jumps', 'man']);
});

test('training is deterministic and independent of corpus object identity', (t) => {
  const a = Tokenizer.train(corpus);
  const b = Tokenizer.train([...corpus]);
  t.deepEqual(a.toJSON(), b.toJSON());
});

test('encode / decode, special tokens, <unk>, bos/eos, offsets', (t) => {
  const tok = Tokenizer.train(corpus);
  const ids = tok.encode('<video> The man jumps over the fence.', { addBos: true, addEos: true });
  t.is(ids[0], BOS_ID);
  t.is(ids[1], VIDEO_ID);
  t.is(ids[ids.length - 1], EOS_ID);
  t.is(tok.decode(ids), 'the man jumps over the fence.');
  t.is(tok.decode(ids, { skipSpecial: false }), '<bos> <video> the man jumps over the fence. <eos>');
  t.is(tok.decode(tok.encode("A woman's dog runs (fast) across the yard.")), "a woman's dog runs (fast) across the yard.");
  const unk = tok.encode('The zebra jumps');
  t.deepEqual(Array.from(unk), [tok.tokenToId('the'), UNK_ID, tok.tokenToId('jumps')]);
  const { ids: ids2, offsets } = tok.encodeWithOffsets('Man JUMPS!');
  t.is(ids2.length, 3);
  t.deepEqual(Array.from(offsets), [0, 3, 4, 9, 9, 10]);
  t.is(tok.encode('').length, 0);
  t.is(tok.encode('ﬁ', {}).length, 1, 'NFKC applies per piece');
  t.throws(() => tok.decode([tok.vocabSize]), { instanceOf: RangeError, message: /ids\[0\] must be an integer in \[0, \d+\), got \d+/ });
  t.throws(() => tok.decode([1.5]), { instanceOf: RangeError });
  t.throws(() => tok.encode(5 as unknown as string), { instanceOf: TypeError, message: /text must be a string/ });
});

test('save → load gives the same tokenizer; corrupt files are rejected', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vp-tok-'));
  const p = join(dir, 'tokenizer.json');
  const tok = Tokenizer.train(corpus);
  tok.save(p);
  const back = Tokenizer.load(p);
  t.deepEqual(back.toJSON(), tok.toJSON());
  t.deepEqual(Array.from(back.encode(corpus[2])), Array.from(tok.encode(corpus[2])));
  const json = JSON.parse(readFileSync(p, 'utf8'));
  const bad = (mut: (o: Record<string, unknown>) => void, re: RegExp) => {
    const o = structuredClone(json);
    mut(o);
    writeFileSync(p, JSON.stringify(o));
    t.throws(() => Tokenizer.load(p), { message: re });
  };
  bad((o) => { o.type = 'bpe'; }, /type must be "word-level"/);
  bad((o) => { (o.vocab as string[])[0] = '<x>'; }, /vocab\[0\] must be the special token <pad>/);
  bad((o) => { (o.vocab as string[]).push('the'); }, /is a duplicate/);
  bad((o) => { o.version = 2; }, /version must be 1/);
  writeFileSync(p, '{oops');
  t.throws(() => Tokenizer.load(p), { message: /cannot read tokenizer/ });
  t.throws(() => Tokenizer.train(corpus, { vocabSize: 3 }), { instanceOf: RangeError, message: /vocabSize must be an integer >= 6/ });
  t.throws(() => Tokenizer.train([5 as unknown as string]), { instanceOf: TypeError, message: /corpus\[0\] must be a string/ });
});
