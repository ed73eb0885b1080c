// vp.openDataset(dir): a folder with `annotations.jsonl` (one JSON object a line)
// and the clips it names: `.npy` (uint8 [F, H, W, 3]) or a video file decoded
// with ffmpeg. Annotations and clips are validated when the dataset opens, so a
// bad line or a missing or unreadable clip is reported (file, line, field,
// clip) before any training starts. Opening reads each clip's first bytes.
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { extname, isAbsolute, join } from 'node:path';
import { inputDir, inputFile, pathError, reason } from '../paths.js';
import { Tensor } from '../tensor.js';
import { readNpy, readNpyHeader } from './npy.js';
import { decodeVideo, type DecodeOptions } from './video.js';

export interface EventAnnotation {
  /** The event's action keyword, e.g. "jump". */
  keyword: string;
  /** Time span in seconds (the clip's time base: frameTimes, or fps). */
  start: number;
  end: number;
}

export interface QuestionAnnotation {
  question: string;
  options: string[];
  /** The index of the right option, or its text. */
  answer: number | string;
}

export interface Annotation {
  id: string;
  /** Path of the clip, relative to the dataset folder (or absolute). */
  video: string;
  caption: string;
  events?: EventAnnotation[];
  questions?: QuestionAnnotation[];
  /** Frame rate of an .npy clip (frame f at t = f / fps); default 1. */
  fps?: number;
  /** Explicit time of each frame of an .npy clip (overrides fps). */
  frameTimes?: number[];
  /** The caption task's prompt (default vp.CAPTION_PROMPT); a conversation record's user turn (vp.openConversations). */
  prompt?: string;
  /** Event keywords of a clip without annotated events: what rewards and evaluation score the caption against (a conversation record's: its answer's). */
  keywords?: string[];
}

export interface VideoSample extends Annotation {
  /** uint8 RGB frames [F, H, W, 3]. */
  frames: Uint8Array;
  shape: [number, number, number, 3];
  /** Time in seconds of each frame. */
  frameTimes: number[];
  /** The resolved path of the clip. */
  videoPath: string;
}

export interface OpenDatasetOptions extends DecodeOptions {
  /** Annotation file name inside the folder (default annotations.jsonl). */
  annotations?: string;
  /**
   * Check every clip when the dataset opens (default true): the file exists,
   * an .npy file's header says uint8 [F, H, W, 3] and the data is all there
   * (and frameTimes has F entries), a video file starts with its container's
   * header. A dataset that opens is one training can read to the end.
   */
  checkClips?: boolean;
}

const VIDEO_EXTS = ['.mp4', '.webm', '.avi', '.mkv', '.mov', '.m4v'];

// The first bytes of each video container (a file that does not start so is not one).
function videoHeaderOk(path: string, ext: string): boolean {
  const b = Buffer.alloc(12);
  const fd = openSync(path, 'r');
  let n = 0;
  try {
    n = readSync(fd, b, 0, 12, 0);
  } finally {
    closeSync(fd);
  }
  if (n < 12) return false;
  const at = (o: number, s: string) => b.toString('latin1', o, o + s.length) === s;
  if (ext === '.webm' || ext === '.mkv') return b.readUInt32BE(0) === 0x1a45dfa3; // EBML
  if (ext === '.avi') return at(0, 'RIFF') && at(8, 'AVI ');
  return ['ftyp', 'moov', 'mdat', 'wide', 'free', 'skip'].some((box) => at(4, box)); // MP4 / QuickTime boxes
}

/** Why clip `path` of annotation `a` cannot be read, or undefined when it can. */
export function clipProblem(a: Annotation, path: string): string | undefined {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    return `clip ${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : reason(e)}`;
  }
  if (st.isDirectory()) return `clip ${path}: is a folder, expected a clip file`;
  if (!st.isFile()) return `clip ${path}: not a regular file`;
  const ext = extname(path).toLowerCase();
  try {
    if (ext === '.npy') {
      const h = readNpyHeader(path);
      if (h.dtype !== 'uint8' || h.shape.length !== 4 || h.shape[3] !== 3 || h.shape[0] < 1)
        return `clip ${path}: must hold uint8 [F, H, W, 3] with F >= 1, got ${h.dtype} [${h.shape.join(', ')}]`;
      if (a.frameTimes && a.frameTimes.length !== h.shape[0]) return `"frameTimes" has ${a.frameTimes.length} entries for the clip's ${h.shape[0]} frames`;
      return undefined;
    }
    if (!VIDEO_EXTS.includes(ext)) return `clip ${path}: unsupported clip type (use .npy or one of ${VIDEO_EXTS.join(', ')})`;
    if (!videoHeaderOk(path, ext)) return `clip ${path}: not a readable ${ext} file (its first bytes are not a ${ext} header)`;
    return undefined;
  } catch (e) {
    return `clip ${path}: ${(e as Error).message.replace(/^readNpy: /, '').replace(`${path}: `, '')}`;
  }
}

function invalid(where: string, msg: string): never {
  throw new TypeError(`openDataset: ${where}: ${msg}`);
}

function checkAnnotation(raw: unknown, where: string): Annotation {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) invalid(where, 'each line must be a JSON object');
  const a = raw as Record<string, unknown>;
  if (typeof a.id !== 'string' && typeof a.id !== 'number') invalid(where, `"id" must be a string or number, got ${JSON.stringify(a.id)}`);
  if (typeof a.video !== 'string' || !a.video) invalid(where, `"video" must be a non-empty path, got ${JSON.stringify(a.video)}`);
  if (typeof a.caption !== 'string') invalid(where, `"caption" must be a string, got ${JSON.stringify(a.caption)}`);
  if (a.events !== undefined) {
    if (!Array.isArray(a.events)) invalid(where, '"events" must be an array');
    a.events.forEach((e: unknown, i: number) => {
      const ev = e as Record<string, unknown>;
      if (!ev || typeof ev.keyword !== 'string') invalid(where, `events[${i}].keyword must be a string`);
      if (typeof ev.start !== 'number' || typeof ev.end !== 'number' || !Number.isFinite(ev.start) || !Number.isFinite(ev.end))
        invalid(where, `events[${i}].start and .end must be finite numbers`);
      if ((ev.start as number) > (ev.end as number)) invalid(where, `events[${i}]: start ${ev.start} is after end ${ev.end}`);
    });
  }
  if (a.questions !== undefined) {
    if (!Array.isArray(a.questions)) invalid(where, '"questions" must be an array');
    a.questions.forEach((q: unknown, i: number) => {
      const qq = q as Record<string, unknown>;
      if (!qq || typeof qq.question !== 'string') invalid(where, `questions[${i}].question must be a string`);
      if (!Array.isArray(qq.options) || qq.options.length < 2 || !qq.options.every((o) => typeof o === 'string'))
        invalid(where, `questions[${i}].options must be an array of at least 2 strings`);
      const opts = qq.options as string[];
      if (typeof qq.answer === 'number') {
        if (!Number.isInteger(qq.answer) || qq.answer < 0 || qq.answer >= opts.length)
          invalid(where, `questions[${i}].answer ${qq.answer} is not an option index (0..${opts.length - 1})`);
      } else if (typeof qq.answer !== 'string' || !opts.includes(qq.answer)) {
        invalid(where, `questions[${i}].answer must be an option index or one of the options' text`);
      }
    });
  }
  if (a.fps !== undefined && !(typeof a.fps === 'number' && a.fps > 0 && Number.isFinite(a.fps))) invalid(where, `"fps" must be a positive number`);
  if (a.frameTimes !== undefined && !(Array.isArray(a.frameTimes) && a.frameTimes.every((t) => typeof t === 'number' && Number.isFinite(t))))
    invalid(where, '"frameTimes" must be an array of finite numbers');
  if (a.prompt !== undefined && typeof a.prompt !== 'string') invalid(where, `"prompt" must be a string, got ${JSON.stringify(a.prompt)}`);
  if (a.keywords !== undefined && !(Array.isArray(a.keywords) && a.keywords.every((k) => typeof k === 'string'))) invalid(where, '"keywords" must be an array of strings');
  return { ...(a as unknown as Annotation), id: String(a.id) };
}

export class Dataset implements Iterable<VideoSample> {
  readonly dir: string;
  readonly annotations: readonly Annotation[];
  readonly options: OpenDatasetOptions;
  /** The file the annotations were read from (annotations.jsonl, or a conversation file). */
  readonly source: string;

  constructor(dir: string, annotations: Annotation[], options: OpenDatasetOptions, source = join(dir, options.annotations ?? 'annotations.jsonl')) {
    this.dir = dir;
    this.source = source;
    this.annotations = Object.freeze(annotations);
    this.options = options;
  }

  get length(): number {
    return this.annotations.length;
  }

  /** The resolved path of sample i's clip. */
  videoPath(i: number): string {
    const v = this.annotations[i].video;
    return isAbsolute(v) ? v : join(this.dir, v);
  }

  /** Loads sample i: its annotation plus decoded frames and frame times. */
  load(i: number): VideoSample {
    if (!Number.isInteger(i) || i < 0 || i >= this.length) throw new RangeError(`Dataset.load: index must be in [0, ${this.length}), got ${i}`);
    const a = this.annotations[i];
    const path = this.videoPath(i);
    if (!existsSync(path)) throw new Error(`Dataset.load: sample ${a.id} (record ${i} of ${this.source}): clip file not found: ${path} (was it removed after the dataset was opened?)`);
    if (path.toLowerCase().endsWith('.npy')) {
      const arr = readNpy(path);
      if (arr.dtype !== 'uint8' || arr.shape.length !== 4 || arr.shape[3] !== 3)
        throw new TypeError(`Dataset.load: sample ${a.id}: ${path} must hold uint8 [F, H, W, 3], got ${arr.dtype} [${arr.shape.join(', ')}]`);
      const F = arr.shape[0];
      let times = a.frameTimes;
      if (times && times.length !== F) throw new RangeError(`Dataset.load: sample ${a.id}: frameTimes has ${times.length} entries for ${F} frames`);
      times ??= Array.from({ length: F }, (_, f) => f / (a.fps ?? 1));
      return { ...a, frames: arr.data as Uint8Array, shape: arr.shape as [number, number, number, 3], frameTimes: times, videoPath: path };
    }
    if (!VIDEO_EXTS.some((e) => path.toLowerCase().endsWith(e)))
      throw new TypeError(`Dataset.load: sample ${a.id}: unsupported clip type ${path} (use .npy or one of ${VIDEO_EXTS.join(', ')})`);
    const d = decodeVideo(path, this.options);
    return { ...a, frames: d.frames, shape: d.shape, frameTimes: d.frameTimes, videoPath: path };
  }

  *[Symbol.iterator](): Iterator<VideoSample> {
    for (let i = 0; i < this.length; i++) yield this.load(i);
  }
}

/**
 * Opens a dataset folder; validates every annotation line (errors name the file
 * and line) and, unless `checkClips: false`, every clip (see OpenDatasetOptions).
 */
export function openDataset(dir: string, opts: OpenDatasetOptions = {}): Dataset {
  if (typeof dir !== 'string' || !dir) throw new TypeError(`openDataset: dir must be a folder path, got ${JSON.stringify(dir)}`);
  inputDir('openDataset: dir', dir, 'a dataset folder (annotations.jsonl and the clips it names)');
  const file = join(dir, opts.annotations ?? 'annotations.jsonl');
  if (!existsSync(file)) throw new Error(`openDataset: ${file} not found (a dataset folder holds annotations.jsonl and the clips it names)`);
  inputFile('openDataset: dir', file, 'the annotations file (JSON lines)');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw pathError('openDataset: dir', file, e, 'read it');
  }
  const lines = text.split('\n');
  const lineOf: number[] = [];
  const anns: Annotation[] = [];
  const ids = new Set<string>();
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    const where = `${file} line ${i + 1}`;
    let raw: unknown;
    try {
      raw = JSON.parse(line);
    } catch (e) {
      throw new SyntaxError(`openDataset: ${where}: invalid JSON (${(e as Error).message})`);
    }
    const a = checkAnnotation(raw, where);
    if (ids.has(a.id)) invalid(where, `duplicate id ${JSON.stringify(a.id)}`);
    ids.add(a.id);
    anns.push(a);
    lineOf.push(i + 1);
  });
  const ds = new Dataset(dir, anns, opts);
  if (opts.checkClips ?? true) {
    const problems: string[] = [];
    anns.forEach((a, i) => {
      const p = clipProblem(a, ds.videoPath(i));
      if (p) problems.push(`${file} line ${lineOf[i]} (id ${JSON.stringify(a.id)}): ${p}`);
    });
    if (problems.length > 0) {
      const shown = problems.slice(0, 5).join('\n  ');
      const more = problems.length > 5 ? `\n  … and ${problems.length - 5} more` : '';
      throw new Error(`openDataset: ${problems.length} of ${anns.length} clips cannot be read:\n  ${shown}${more}`);
    }
  }
  return ds;
}

/** Frames as a float32 CPU tensor [F, H, W, 3] in [0, 1] (what detectTransientFrames and the model take). */
export function framesToTensor(sample: { frames: Uint8Array; shape: readonly number[] }): Tensor {
  const out = new Float32Array(sample.frames.length);
  for (let i = 0; i < out.length; i++) out[i] = sample.frames[i] / 255;
  return new Tensor(sample.shape, 'float32', 'cpu', out);
}
