import test from 'ava';
import * as vp from '../lib/index.js';

test('keywordRecall matches keywords on lemmas', (t) => {
  t.is(vp.keywordRecall('the blue circle jumped', ['jump']), 1);
  t.is(vp.keywordRecall('the square spun around and then shrank', ['spin', 'shrink']), 1);
  t.is(vp.keywordRecall('the red triangle changed colour', ['change colour']), 1);
  t.is(vp.keywordRecall('the red triangle changed', ['change colour']), 0);
  t.is(vp.keywordRecall('the circle drifts left', ['jump', 'vanish']), 0);
  t.is(vp.keywordRecall('it vanishes, then it flashes', ['vanish', 'jump']), 0.5);
  t.is(vp.keywordRecall('anything', []), 1);
  t.throws(() => vp.keywordRecall(5 as unknown as string, ['x']), { instanceOf: TypeError });
});

test('multipleChoiceMatch accepts the option text, its letter or its number', (t) => {
  const opts = ['the blue circle jumped', 'the red square spun', 'the blue circle vanished', 'nothing happened'];
  t.is(vp.multipleChoiceMatch('The blue circle jumped.', opts, 0), 1);
  t.is(vp.multipleChoiceMatch('the red square spun', opts, 0), 0);
  t.is(vp.multipleChoiceMatch('B', opts, 1), 1);
  t.is(vp.multipleChoiceMatch('(b)', opts, 1), 1);
  t.is(vp.multipleChoiceMatch('B. the red square spun', opts, 1), 1);
  t.is(vp.multipleChoiceMatch('a square spun', opts, 0), 0, 'a leading article is not the letter a');
  t.is(vp.multipleChoiceMatch('4', opts, 'nothing happened'), 1);
  t.is(vp.multipleChoiceMatch('nothing happened', opts, 'nothing happened'), 1);
  t.throws(() => vp.multipleChoiceMatch('x', opts, 4), { instanceOf: RangeError, message: /answer/ });
  t.throws(() => vp.multipleChoiceMatch('x', opts, 'not an option'), { instanceOf: RangeError });
});

test('defaultTaskReward: exact match for questions, keyword F1 for captions', (t) => {
  t.is(vp.defaultTaskReward({ response: 'the circle jumped', keywords: ['jump'] }), 1);
  t.is(vp.defaultTaskReward({ response: 'the circle jumped', keywords: ['jump'], question: { options: ['jumped', 'spun'], answer: 1 } }), 0);
  t.is(vp.defaultTaskReward({ response: 'spun', keywords: ['jump'], question: { options: ['jumped', 'spun'], answer: 1 } }), 1);
});

test('captionKeywordRecall averages over clips that have events', (t) => {
  t.is(vp.captionKeywordRecall([
    { caption: 'the circle jumped', keywords: ['jump'] },
    { caption: 'the square drifts', keywords: ['spin'] },
    { caption: 'nothing', keywords: [] },
  ]), 0.5);
  t.true(Number.isNaN(vp.captionKeywordRecall([])));
});

test('synth captions reach full recall of their own event keywords', (t) => {
  const rng = vp.makeRng(11);
  for (let i = 0; i < 60; i++) {
    const c = vp.synthClip(rng);
    t.is(vp.keywordRecall(c.caption, c.events.map((e) => e.keyword)), 1, c.caption);
  }
});

test('keywordF1: a caption that lists every event word does not score above the right one', (t) => {
  const vocabulary = ['jump', 'spin', 'flash', 'change colour', 'shrink', 'vanish'];
  // With the dataset's vocabulary a motion costs nothing; without it every action phrase counts.
  const rights = { vocabulary: 'the red circle drifts left and briefly jumps', extracted: 'the red circle briefly jumps' };
  const lists = [
    'it jumped, spun, flashed, changed colour, shrank and vanished',
    'the red circle jumps and spins and flashes and vanishes',
    'jump spin flash change colour shrink vanish',
  ];
  for (const vocab of [vocabulary, undefined]) {
    const right = vocab ? rights.vocabulary : rights.extracted;
    const good = vp.keywordF1(right, ['jump'], vocab);
    t.is(good, 1, `the right caption (${vocab ? 'dataset vocabulary' : 'extracted events'})`);
    for (const l of lists) {
      t.is(vp.keywordRecall(l, ['jump']), 1, 'recall alone is gamed');
      t.true(vp.keywordF1(l, ['jump'], vocab) < 0.5, `${l}: ${vp.keywordF1(l, ['jump'], vocab)}`);
      t.true(vp.defaultTaskReward({ response: l, keywords: ['jump'], vocabulary: vocab }) < vp.defaultTaskReward({ response: right, keywords: ['jump'], vocabulary: vocab }));
    }
  }
  t.is(vp.keywordF1('the circle spun', ['jump'], vocabulary), 0);
  t.is(vp.keywordF1('nothing happened', [], vocabulary), 1);
  t.is(vp.keywordF1('the circle jumped', [], vocabulary), 0);
  t.is(vp.keywordF1('it spun then jumped', ['jump', 'spin'], vocabulary), 1);
  t.throws(() => vp.keywordF1(3 as unknown as string, ['jump']), { instanceOf: TypeError, message: /response/ });
});

test('synth captions reach F1 1 of their own event keywords over the synth vocabulary', (t) => {
  const rng = vp.makeRng(12);
  const vocabulary = ['jump', 'spin', 'flash', 'change colour', 'shrink', 'vanish'];
  for (let i = 0; i < 60; i++) {
    const c = vp.synthClip(rng);
    t.is(vp.keywordF1(c.caption, c.events.map((e) => e.keyword), vocabulary), 1, c.caption);
  }
});
