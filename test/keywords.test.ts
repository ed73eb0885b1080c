// vp.extractEventKeywords on varied captions: action verbs and their short
// phrases, lemmatized; auxiliaries, copulas, negated verbs and light verbs
// dropped unless they carry the action.
import test from 'ava';
import * as vp from '../lib/index.js';

const CASES: [string, string[]][] = [
  // Synthetic-clip captions (the synth generator's style).
  ['the red square drifts left; the blue circle briefly jumps', ['drift left', 'jump']],
  ['The red circle drifts left.', ['drift left']],
  ['the red square drifts slowly left', ['drift left']],
  ['the small blue square drifts down while the circle spins', ['drift down', 'spin']],
  ['the blue circle briefly flashes while the red square drifts up', ['flash', 'drift up']],
  ['the green triangle flashes once', ['flash']],
  ['the yellow circle vanishes for a moment', ['vanish']],
  ['the purple circle moves right and then shrinks', ['move right', 'shrink']],
  ['the orange square spins quickly', ['spin']],
  ['the white circle changes colour', ['change']],
  ['the cube rotates clockwise', ['rotate clockwise']],
  ['the green circle shrinks, then grows back', ['shrink', 'grow back']],
  ['the square teleports to the corner', ['teleport']],
  ['the cyan square stays still; the yellow circle drifts left and briefly jumps', ['drift left', 'jump']],
  ['the orange circle stays still and briefly vanishes', ['vanish']],
  // Auxiliaries, copulas, passives, negation.
  ['A man is running and then he suddenly stops.', ['run', 'stop']],
  ['the cat has jumped', ['jump']],
  ["he's jumping over the fence", ['jump']],
  ['the ball was thrown by the boy', ['throw']],
  ['the ball is red', []],
  ['the man did not move', []],
  ['nothing happens', []],
  // Catenative and light verbs.
  ['the top begins to spin', ['spin']],
  ['the ball keeps rolling', ['roll']],
  ['he seems to vanish', ['vanish']],
  ['she starts running', ['run']],
  ['the blue square continues to drift right', ['drift right']],
  ['the runner stops running', ['stop']],
  ['She picks up the cup and takes a sip.', ['pick up', 'sip']],
  ['the car makes a sharp turn', ['turn']],
  ['a gymnast does a backflip', ['backflip']],
  ['she gives a quick wave', ['wave']],
  ['the kids have fun', []],
  ['the dog gets up', ['get up']],
  ['the elevator goes down', ['go down']],
  ['a star appears in the corner', ['appear']],
  // Everyday video captions.
  ['The ball bounces twice before rolling off the table.', ['bounce', 'roll']],
  ['the dog wags its tail', ['wag']],
  ['two players kick the ball back and forth', ['kick']],
  ['the cyclist falls off the bike', ['fall off']],
  ['the light blinks three times', ['blink']],
  ['the bird flies away', ['fly away']],
  ['The woman waves at the camera.', ['wave']],
  ['the pot boils over', ['boil over']],
  ['the glass shatters on the floor', ['shatter']],
  ['he opens the door and walks in', ['open', 'walk in']],
  ['the chef chops onions', ['chop']],
  ['the man throws the frisbee and the dog catches it', ['throw', 'catch']],
  ['a leaf drops from the tree', ['drop']],
  ['a boy quickly turns around', ['turn around']],
  ['the balloon pops', ['pop']],
  ['the frog hops twice', ['hop']],
  ['the cat is sleeping on the sofa', ['sleep']],
];

test(`extractEventKeywords on ${CASES.length} varied captions`, (t) => {
  t.true(CASES.length >= 30);
  for (const [caption, want] of CASES) t.deepEqual(vp.extractEventKeywords(caption), want, caption);
});

test('each keyword appears once, in order of appearance', (t) => {
  t.deepEqual(vp.extractEventKeywords('the square jumps, the circle jumps, then the square drifts left'), ['jump', 'drift left']);
});

test('keyword spans point at the words in the caption', (t) => {
  const caption = 'the red square drifts slowly left; the blue circle briefly jumps';
  const spans = vp.extractEventKeywordSpans(caption);
  t.deepEqual(spans.map((s) => caption.slice(s.start, s.end)), ['drifts slowly left', 'jumps']);
  t.deepEqual(spans.map((s) => s.verb), ['drift', 'jump']);
});

test('findKeywordSpan locates an annotation keyword by lemma, by its words, or not at all', (t) => {
  const caption = 'the red square drifts left; the blue circle briefly jumps';
  const at = (k: string) => {
    const s = vp.findKeywordSpan(caption, k);
    return s && caption.slice(s.start, s.end);
  };
  t.is(at('jump'), 'jumps');
  t.is(at('drift left'), 'drifts left');
  t.is(at('drift'), 'drifts left');
  t.is(at('Blue Circle'), 'blue circle');
  t.is(at('spin'), null);
  t.is(at('  '), null);
});

test('extractEventKeywords rejects a non-string caption', (t) => {
  t.throws(() => vp.extractEventKeywords(42 as unknown as string), { instanceOf: TypeError, message: /caption must be a string/ });
  t.deepEqual(vp.extractEventKeywords(''), []);
});
