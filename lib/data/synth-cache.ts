// A generated dataset kept between runs: the demo's training and held-out sets
// are synthesized once into its output folder and reused by every later run,
// and by other processes sharing that folder at the same time. The spec
// (count, seed, options, generator version) is stamped in dataset.json; a
// folder with another stamp is regenerated.
// Cost: one synthDataset of `count` clips the first time (seconds per thousand
// 32×32 clips), then a stamp read and openDataset.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { writeFileAtomic } from '../fs.js';
import { openDataset, type Dataset } from './dataset.js';
import { removeStaleStaging } from './dataset-dir.js';
import { pathError } from '../paths.js';
import { synthDataset, type SynthOptions } from './synth.js';

/**
 * The dataset of `count` clips from `seed`, generated into `dir` once and then
 * reused. It is generated in a private folder beside `dir`
 * (`.<name>.synth-<pid>`) and renamed into place whole, so several processes
 * sharing one output folder (`--seeds 0,1,2,3,4` and `--seeds 5,6,7,8,9` at
 * once) never read or remove each other's half-written clips: the first rename
 * wins and the others use its dataset. A dataset of another spec is replaced.
 */
export function cachedSynthDataset(dir: string, count: number, seed: number, synth: SynthOptions = {}): Dataset {
  const spec = JSON.stringify({ count, seed, ...synth, generator: 3 });
  const stamp = join(dir, 'dataset.json');
  const ready = () => existsSync(stamp) && readFileSync(stamp, 'utf8') === spec && existsSync(join(dir, 'annotations.jsonl'));
  if (!ready()) {
    const parent = dirname(dir);
    mkdirSync(parent, { recursive: true });
    // Left by a run that was killed while generating.
    removeStaleStaging(parent, new RegExp(`^\\.${basename(dir).replace(/[^\w-]/g, '\\$&')}\\.synth-(\\d+)$`));
    const tmp = join(parent, `.${basename(dir)}.synth-${process.pid}`);
    rmSync(tmp, { recursive: true, force: true });
    try {
      synthDataset(tmp, { ...synth, count, seed });
      writeFileAtomic(join(tmp, 'dataset.json'), spec);
      for (let attempt = 1; !ready(); attempt++) {
        try {
          renameSync(tmp, dir);
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if ((code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'EPERM') || attempt >= 5) throw pathError('cachedSynthDataset: dir', dir, e, 'move the generated dataset into place');
          // Another process's dataset landed (ready() ends the loop), or a stale one is in the way.
          if (!ready()) rmSync(dir, { recursive: true, force: true });
        }
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  return openDataset(dir);
}
