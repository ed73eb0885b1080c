// The CLI's flag parser and file-argument checks: unknown flags with the nearest
// valid name, flags missing their value, numbers checked (type and range), every
// flag a command's usage line names is one it accepts (and the reverse), and
// file/folder arguments named in their errors.
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, usageFlags, UsageError, type FlagSpecs } from '../lib/cli-args.js';
import { COMMANDS } from '../lib/cli.js';
import { inputDir, inputFile, outputDir, PathError } from '../lib/paths.js';
import { editDistance, nearest } from '../lib/suggest.js';

const SPECS: FlagSpecs = {
  steps: { kind: 'int', min: 1, max: 1000 },
  lr: { kind: 'number', gt: 0 },
  'batch-size': { kind: 'int', min: 1, max: 64 },
  stage: { kind: 'string', choices: ['sft', 'rl', 'both'] },
  seeds: { kind: 'int-list', min: 0, max: 9 },
  json: { kind: 'bool' },
};

test('values: --name value and --name=value, converted and range-checked', (t) => {
  const a = parseArgs('train', ['--steps', '12', '--lr=1e-3', '--stage', 'rl', '--seeds', '0,1,2', '--json'], SPECS);
  t.is(a.num('steps'), 12);
  t.is(a.num('lr'), 1e-3);
  t.is(a.str('stage'), 'rl');
  t.deepEqual(a.list('seeds'), [0, 1, 2]);
  t.true(a.flag('json'));
  t.is(a.num('batch-size', 8), 8);
});

test('an unknown flag is refused with the nearest valid one', (t) => {
  const e = t.throws(() => parseArgs('train', ['--stpes', '3'], SPECS), { instanceOf: UsageError });
  t.regex(e!.message, /unknown flag --stpes; did you mean --steps\?/);
  t.regex(t.throws(() => parseArgs('train', ['--batch', '3'], SPECS))!.message, /did you mean --batch-size\?/);
  t.notRegex(t.throws(() => parseArgs('train', ['--zzzzzzzz'], SPECS))!.message, /did you mean/);
});

test('a flag with no value, an empty value, a repeated flag and a stray argument are refused', (t) => {
  t.regex(t.throws(() => parseArgs('train', ['--steps'], SPECS))!.message, /--steps needs a value/);
  t.regex(t.throws(() => parseArgs('train', ['--steps', '--json'], SPECS))!.message, /--steps needs a value/);
  t.regex(t.throws(() => parseArgs('train', ['--steps='], SPECS))!.message, /--steps needs a value/);
  t.regex(t.throws(() => parseArgs('train', ['--steps', '2', '--steps', '3'], SPECS))!.message, /given twice/);
  t.regex(t.throws(() => parseArgs('train', ['data'], SPECS))!.message, /unexpected argument "data"/);
  t.regex(t.throws(() => parseArgs('train', ['--json=yes'], SPECS))!.message, /takes no value/);
});

test('numbers: not a number, not an integer, out of range', (t) => {
  for (const [args, re] of [
    [['--steps', 'abc'], /--steps must be an integer in \[1, 1000\], got "abc"/],
    [['--steps', '1e12'], /--steps must be an integer in \[1, 1000\], got "1e12"/],
    [['--steps', '2.5'], /integer/],
    [['--steps', '0x10'], /integer/],
    [['--steps', ' '], /integer/],
    [['--lr', '0'], /--lr must be a number > 0/],
    [['--lr', 'NaN'], /--lr must be a number/],
    [['--lr', 'Infinity'], /--lr must be a number/],
    [['--seeds', '1,x'], /comma-separated/],
    [['--stage', 'rll'], /one of sft, rl, both, got "rll"; did you mean rl\?/],
  ] as const) t.regex(t.throws(() => parseArgs('train', [...args], SPECS))!.message, re);
});

test('every command accepts exactly the flags its usage line names', (t) => {
  for (const [name, c] of Object.entries(COMMANDS)) {
    if (name === 'start') continue; // "[demo options]"
    t.deepEqual(usageFlags(c.usage).sort(), Object.keys(c.flags).sort(), name);
  }
});

test('nearest name: edit distance with swaps', (t) => {
  t.is(editDistance('widht', 'width'), 1);
  t.is(editDistance('', 'abc'), 3);
  t.is(nearest('widht', ['width', 'height', 'layers']), 'width');
  t.is(nearest('lyaers', ['width', 'layers']), 'layers');
  t.is(nearest('qqq', ['width', 'layers']), undefined);
});

test('file and folder arguments: errors name the argument, the path and what is wrong', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vp-paths-'));
  try {
    const file = join(dir, 'f.txt');
    writeFileSync(file, 'x');
    t.regex(t.throws(() => inputFile('--video', dir), { instanceOf: PathError })!.message, new RegExp(`^--video: ${dir}: is a folder, expected a file`));
    t.regex(t.throws(() => inputFile('--video', join(dir, 'nope')))!.message, /--video: .*nope: no such file/);
    t.regex(t.throws(() => inputDir('--data', file))!.message, /^--data: .*f\.txt: is a file, expected a folder/);
    t.regex(t.throws(() => inputDir('--data', join(dir, 'nope')))!.message, /^--data: .*nope: no such folder/);
    t.regex(t.throws(() => outputDir('--out', file))!.message, /^--out: .*f\.txt: is a file, expected a folder/);
    t.regex(t.throws(() => outputDir('--out', join(file, 'sub')))!.message, /^--out: .*f\.txt is a file, not a folder/);
    t.is(outputDir('--out', join(dir, 'a', 'b', 'c')), join(dir, 'a', 'b', 'c'));
    // A pseudo file system where Node's recursive mkdir never returns.
    const t0 = Date.now();
    t.regex(t.throws(() => outputDir('--out', '/proc/vp-test/x'))!.message, /^--out: \/proc\/vp-test\/x: cannot create the folder/);
    t.true(Date.now() - t0 < 2000);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
