// Video decoding through an `ffmpeg` executable (FFMPEG_PATH, else PATH): the
// package links no codec library. Frames come back as uint8 RGB [F, H, W, 3],
// sampled uniformly (F frames over the clip) or at a given fps, optionally resized.
// ffmpeg writes the raw frames to a temporary file and only the frames kept are
// read back, so memory holds the result and nothing more, however long the clip.
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { bytesText } from '../fs.js';
import { inputFile, reason } from '../paths.js';

export interface DecodeOptions {
  /** Number of frames sampled uniformly over the clip (default 16). Ignored when `fps` is set. */
  frames?: number;
  /** Sample at this rate instead (frames at t = i / fps), at most `maxFrames` of them. */
  fps?: number;
  /** Cap on frames when sampling by fps (default 512). */
  maxFrames?: number;
  /** Output size [height, width] (default: the source size). */
  size?: [number, number];
}

export interface DecodedVideo {
  /** uint8 RGB, [F, H, W, 3] row-major. */
  frames: Uint8Array;
  shape: [number, number, number, 3];
  /** Time in seconds of each returned frame. */
  frameTimes: number[];
  /** The source's frame rate and duration as ffmpeg reports them. */
  sourceFps: number;
  durationSec: number;
}

/** The ffmpeg executable to use, or a clear error saying how to get one. */
export function findFfmpeg(forFile?: string): string {
  const what = forFile ? ` to decode ${forFile}` : '';
  const env = process.env.FFMPEG_PATH;
  if (env) {
    if (existsSync(env)) return env;
    throw new Error(`ffmpeg is needed${what}, but FFMPEG_PATH=${env} does not exist. Point FFMPEG_PATH at an ffmpeg executable, or unset it to search PATH.`);
  }
  for (const d of (process.env.PATH ?? '').split(delimiter)) {
    if (d && existsSync(join(d, 'ffmpeg'))) return join(d, 'ffmpeg');
  }
  throw new Error(`ffmpeg is needed${what}, but no ffmpeg executable was found on PATH. Install it (Debian/Ubuntu: apt-get install ffmpeg) or set FFMPEG_PATH; or convert the clip to an .npy file (uint8 [F, H, W, 3]).`);
}

interface StreamInfo {
  width: number;
  height: number;
  fps: number;
  duration: number;
}

function probe(ffmpeg: string, path: string): StreamInfo {
  const ffprobe = join(dirname(ffmpeg), 'ffprobe');
  if (existsSync(ffprobe)) {
    const r = spawnSync(ffprobe, ['-v', 'error', '-select_streams', 'v:0', '-show_entries',
      'stream=width,height,avg_frame_rate,r_frame_rate,duration:format=duration', '-of', 'json', path], { encoding: 'utf8' });
    if (r.status === 0) {
      const j = JSON.parse(r.stdout) as { streams?: Record<string, string | number>[]; format?: { duration?: string } };
      const s = j.streams?.[0];
      if (!s) throw new Error(`decodeVideo: ${path} has no video stream`);
      const rate = (v: unknown) => {
        const [a, b] = String(v ?? '0/1').split('/').map(Number);
        return b ? a / b : a;
      };
      const fps = rate(s.avg_frame_rate) || rate(s.r_frame_rate);
      const duration = Number(s.duration ?? j.format?.duration ?? NaN);
      return { width: Number(s.width), height: Number(s.height), fps, duration };
    }
  }
  // No ffprobe: parse what `ffmpeg -i` prints.
  const r = spawnSync(ffmpeg, ['-hide_banner', '-i', path], { encoding: 'utf8' });
  const text = r.stderr ?? '';
  const v = /Stream #.*Video:.*?(\d{2,5})x(\d{2,5})/.exec(text);
  if (!v) throw new Error(`decodeVideo: ${path}: ffmpeg found no video stream (${text.trim().split('\n').pop()})`);
  const fps = Number(/([\d.]+) fps/.exec(text)?.[1] ?? /([\d.]+) tbr/.exec(text)?.[1] ?? NaN);
  const d = /Duration: (\d+):(\d+):([\d.]+)/.exec(text);
  const duration = d ? Number(d[1]) * 3600 + Number(d[2]) * 60 + Number(d[3]) : NaN;
  return { width: Number(v[1]), height: Number(v[2]), fps, duration };
}

/** Decodes a video file's frames with ffmpeg. */
export function decodeVideo(path: string, opts: DecodeOptions = {}): DecodedVideo {
  if (typeof path !== 'string' || !path) throw new TypeError(`decodeVideo: path must be a video file path, got ${JSON.stringify(path)}`);
  inputFile('decodeVideo: path', path, 'a video file');
  const F = opts.frames ?? 16;
  if (!Number.isInteger(F) || F < 1 || F > 1 << 20) throw new RangeError(`decodeVideo: opts.frames must be an integer in [1, 1048576], got ${F}`);
  if (opts.fps !== undefined && !(opts.fps > 0 && Number.isFinite(opts.fps))) throw new RangeError(`decodeVideo: opts.fps must be > 0, got ${opts.fps}`);
  const maxFrames = opts.maxFrames ?? 512;
  if (!Number.isInteger(maxFrames) || maxFrames < 1) throw new RangeError(`decodeVideo: opts.maxFrames must be a positive integer, got ${opts.maxFrames}`);
  if (opts.size && !(opts.size.length === 2 && opts.size.every((x) => Number.isInteger(x) && x > 0 && x % 2 === 0 && x <= 16384)))
    throw new RangeError(`decodeVideo: opts.size must be [height, width] of positive even integers up to 16384, got ${JSON.stringify(opts.size)}`);
  const ffmpeg = findFfmpeg(path);
  const info = probe(ffmpeg, path);
  const [H, W] = opts.size ?? [info.height, info.width];
  const frameBytes = H * W * 3;
  // Frames at a fixed rate: the requested fps, or F over the clip's duration
  // (a little more, then exactly F picked uniformly from them).
  const uniform = opts.fps === undefined;
  const rate = opts.fps ?? (Number.isFinite(info.duration) && info.duration > 0 ? (F + 1) / info.duration : info.fps || 25);
  const keep = uniform ? F : maxFrames;
  const total = os.totalmem();
  if (keep * frameBytes > total / 2)
    throw new RangeError(`decodeVideo: ${keep} frames of ${H}x${W} need ${bytesText(keep * frameBytes)}, more than half of this machine's ${bytesText(total)} memory (lower opts.${uniform ? 'frames' : 'maxFrames'} or opts.size)`);
  // ffmpeg writes the raw frames to a temporary file, never to a pipe buffer (whose
  // size would bound the clip); only the frames kept are read back. With fps
  // sampling it stops after maxFrames frames.
  const work = mkdtempSync(join(os.tmpdir(), 'vp-decode-'));
  const raw = join(work, 'frames.rgb');
  try {
    const filters = [`fps=${rate}`, `scale=${W}:${H}:flags=area`];
    const limit = uniform ? [] : ['-frames:v', String(maxFrames)];
    const r = spawnSync(ffmpeg, ['-v', 'error', '-nostdin', '-i', path, '-vf', filters.join(','), ...limit, '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-y', raw], {
      encoding: 'utf8', maxBuffer: 1 << 24,
    });
    if (r.error) throw new Error(`decodeVideo: could not run ${ffmpeg}: ${r.error.message}`);
    if (r.status !== 0) throw new Error(`decodeVideo: ffmpeg failed on ${path}: ${(r.stderr ?? '').trim().split('\n').slice(-2).join(' ')}`);
    const n = existsSync(raw) ? Math.floor(statSync(raw).size / frameBytes) : 0;
    if (n === 0) throw new Error(`decodeVideo: ${path}: ffmpeg produced no frames`);
    const picks = uniform ? Array.from({ length: F }, (_, i) => Math.min(n - 1, Math.floor(((i + 0.5) * n) / F))) : Array.from({ length: Math.min(n, maxFrames) }, (_, i) => i);
    const frames = new Uint8Array(picks.length * frameBytes);
    const fd = openSync(raw, 'r');
    try {
      picks.forEach((p, i) => {
        let off = 0;
        while (off < frameBytes) {
          const got = readSync(fd, frames, i * frameBytes + off, frameBytes - off, p * frameBytes + off);
          if (got === 0) throw new Error(`decodeVideo: ${path}: the decoded frames ended early`);
          off += got;
        }
      });
    } finally {
      closeSync(fd);
    }
    return {
      frames, shape: [picks.length, H, W, 3], frameTimes: picks.map((p) => p / rate),
      sourceFps: info.fps, durationSec: info.duration,
    };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code && !(e as Error).message.startsWith('decodeVideo:')) throw new Error(`decodeVideo: ${path}: decoding through ${work}: ${reason(e)}`);
    throw e;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
