// Child process of synth-cache.test.ts: opens (generating if needed) the cached
// dataset in argv[2] with argv[3] clips and prints its first clip's id and the
// sum of every clip's pixels, so the parent can compare what each process saw.
import { cachedSynthDataset } from '../lib/data/synth-cache.js';

const dir = process.argv[2]!;
const count = Number(process.argv[3]);
const data = cachedSynthDataset(dir, count, 7);
let sum = 0;
for (let i = 0; i < data.length; i++) for (const v of data.load(i).frames) sum += v;
process.stdout.write(JSON.stringify({ length: data.length, id: data.annotations[0]!.id, sum }) + '\n');
