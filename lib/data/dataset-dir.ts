// Writing a generated dataset into a folder without losing what the folder held:
//   * a folder that already holds files is refused (refuseNonEmpty) unless the
//     caller asks to replace the dataset in it; the message names the argument
//     (`--out`, `synthDataset: dir`), the path, what is there and the remedy;
//   * the new clips are written into a staging folder inside the target
//     (DatasetWriter.staging, `.synth-tmp-<pid>`), so an interruption during
//     generation leaves the earlier dataset whole; commit() then moves them into
//     clips/ (a rename each), replaces annotations.jsonl atomically, last, and
//     removes the earlier dataset's clip files that the new one does not use:
//     only names of the generator's own pattern (clips/clip-<digits>.npy|.mp4),
//     never any other file;
//   * a staging folder left by an interrupted run (its process gone) holds no
//     dataset: it does not make the folder "not empty" and is removed.
// Cost: a directory listing of the target and of clips/, one rename per clip.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../fs.js';
import { PathError, outputDir, pathError } from '../paths.js';

/** The generator's clip files: clips/clip-00042.npy (and .mp4). */
export const CLIP_FILE = /^clip-\d{5,}\.(npy|mp4)$/;
const STAGING = /^\.synth-tmp-(\d+)$/;

/** True while process `pid` runs (a staging folder of a synth still writing). */
function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the entries of `dir` whose name matches `staging` (its first group a
 * process id) and whose process has ended: what an interrupted generation left.
 */
export function removeStaleStaging(dir: string, staging: RegExp = STAGING): void {
  for (const n of readdirSync(dir)) {
    const m = staging.exec(n);
    if (m && !processAlive(Number(m[1]))) rmSync(join(dir, n), { recursive: true, force: true });
  }
}

/** The entries of `dir` that hold something: all but staging folders of runs that ended. */
export function folderEntries(dir: string): string[] {
  return readdirSync(dir).filter((n) => {
    const m = STAGING.exec(n);
    return !m || processAlive(Number(m[1]));
  });
}

/**
 * Throws a PathError naming `arg` and `dir` when the folder holds anything;
 * `remedy` says how to replace its dataset (`--force`, `{ overwrite: true }`).
 */
export function refuseNonEmpty(arg: string, dir: string, remedy: string): void {
  let entries: string[];
  try {
    entries = folderEntries(dir);
  } catch (e) {
    throw pathError(arg, dir, e, 'list the folder');
  }
  if (entries.length === 0) return;
  const shown = entries.sort().slice(0, 5).join(', ') + (entries.length > 5 ? `, … (${entries.length} entries)` : '');
  throw new PathError(arg, dir, `the folder is not empty (${shown}); a dataset is only written into an empty or new folder: give another folder, or ${remedy} ` +
    '(its annotations.jsonl and clips/clip-*.npy|.mp4 files are replaced; other files are kept)', 'ENOTEMPTY');
}

/** The files of one dataset being written into `dir`: clips into a staging folder, then commit(). */
export class DatasetWriter {
  readonly dir: string;
  readonly staging: string;
  readonly #arg: string;
  readonly #written: string[] = [];

  /** `arg` names the folder in errors. Staging folders of ended runs are removed. */
  constructor(arg: string, dir: string) {
    this.dir = dir;
    this.#arg = arg;
    const clips = join(dir, 'clips');
    if (existsSync(clips) && !statSync(clips).isDirectory()) throw new PathError(arg, clips, 'is a file, expected the clips folder', 'ENOTDIR');
    removeStaleStaging(dir);
    this.staging = join(dir, `.synth-tmp-${process.pid}`);
    rmSync(this.staging, { recursive: true, force: true });
    try {
      mkdirSync(this.staging);
    } catch (e) {
      throw pathError(arg, this.staging, e, 'create the staging folder');
    }
  }

  /** Where clip file `name` is written now (the staging folder); record it with add(). */
  path(name: string): string {
    return join(this.staging, name);
  }

  /** Records a clip file written at path(name). */
  add(name: string): void {
    this.#written.push(name);
  }

  /**
   * Moves the clips into clips/, writes annotations.jsonl atomically (last),
   * removes the earlier dataset's clip files the new one does not use and the
   * staging folder; `readme` (when given) is written if absent or written by the generator.
   */
  commit(annotations: string, readme?: { text: string; mine: (old: string) => boolean }): void {
    const clips = join(this.dir, 'clips');
    outputDir(this.#arg, clips);
    for (const n of this.#written) {
      try {
        renameSync(join(this.staging, n), join(clips, n));
      } catch (e) {
        throw pathError(this.#arg, join(clips, n), e, 'move the clip into place');
      }
    }
    const annPath = join(this.dir, 'annotations.jsonl');
    try {
      writeFileAtomic(annPath, annotations);
    } catch (e) {
      throw pathError(this.#arg, annPath, e, 'write the annotations');
    }
    const used = new Set(this.#written);
    for (const n of readdirSync(clips)) {
      if (!CLIP_FILE.test(n) || used.has(n)) continue;
      try {
        rmSync(join(clips, n), { force: true });
      } catch (e) {
        throw pathError(this.#arg, join(clips, n), e, "remove the earlier dataset's clip");
      }
    }
    this.discard();
    if (readme) {
      const p = join(this.dir, 'README.txt');
      let mine = !existsSync(p);
      if (!mine) {
        try {
          mine = readme.mine(readFileSync(p, 'utf8'));
        } catch {
          // unreadable: not the generator's, kept
        }
      }
      if (mine) {
        try {
          writeFileAtomic(p, readme.text);
        } catch (e) {
          throw pathError(this.#arg, p, e, 'write the README');
        }
      }
    }
  }

  /** Removes the staging folder (after commit, or on failure). */
  discard(): void {
    rmSync(this.staging, { recursive: true, force: true });
  }
}
