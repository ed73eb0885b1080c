// Shared helpers for the ava tests: seeded random data and relative error.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { decodePng } from '../lib/data/png.js';
import { seededRandom } from '../lib/random.js';

export { randomFloats } from '../lib/random.js';

/** A seeded generator of floats in [0, 1). */
export const rng = seededRandom;

/** ‖out − ref‖ / ‖ref‖ (NaN anywhere in `out` gives Infinity). */
export function relError(out: ArrayLike<number>, ref: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  if (out.length !== ref.length) return Infinity;
  for (let i = 0; i < ref.length; i++) {
    if (Number.isNaN(out[i])) return Infinity;
    const d = out[i] - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

/** Debian's Chromium, when installed (CI installs it). */
export const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));

export interface PageShot {
  /** The screenshot was written. */
  ok: boolean;
  width: number;
  /** Pixels that are not near-white, and pixels of the charts' first colour (#2b7bb9). */
  dark: number;
  chartBlue: number;
  consoleErrors: string[];
  stderr: string;
}

/** Opens a local HTML file in headless Chromium (no network), takes a screenshot and reads it back. */
export function screenshotPage(page: string, work: string): PageShot {
  const shot = join(work, 'shot.png');
  const r = spawnSync(CHROMIUM!, ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic',
    `--user-data-dir=${join(work, 'profile')}`, '--window-size=1200,1400', '--enable-logging=stderr', '--v=0',
    `--screenshot=${shot}`, `file://${page}`], { encoding: 'utf8', timeout: 90_000 });
  const stderr = `exit ${r.status}: ${(r.stderr ?? '').slice(-500)}`;
  const consoleErrors = (r.stderr ?? '').split('\n').filter((l) => /CONSOLE|Uncaught|ERR_FILE|Failed to load/.test(l));
  if (!existsSync(shot)) return { ok: false, width: 0, dark: 0, chartBlue: 0, consoleErrors, stderr };
  const img = decodePng(readFileSync(shot));
  let dark = 0, chartBlue = 0;
  for (let i = 0; i < img.rgba.length; i += 4) {
    const [rr, g, b] = [img.rgba[i], img.rgba[i + 1], img.rgba[i + 2]];
    if (rr + g + b < 600) dark++;
    if (Math.abs(rr - 0x2b) < 12 && Math.abs(g - 0x7b) < 12 && Math.abs(b - 0xb9) < 12) chartBlue++;
  }
  return { ok: true, width: img.width, dark, chartBlue, consoleErrors, stderr };
}

/** sha256 of every file under dir, by path relative to it; files named in `skip` are left out. */
export function fileHashes(dir: string, skip: readonly string[] = []): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const e of readdirSync(d)) {
      const p = join(d, e);
      if (statSync(p).isDirectory()) walk(p);
      else if (!skip.includes(e)) out.set(relative(dir, p), createHash('sha256').update(readFileSync(p)).digest('hex'));
    }
  };
  if (existsSync(dir)) walk(dir);
  return out;
}

export interface SignalledRun {
  code: number | null;
  signal: string | null;
  err: string;
  /** The event after which the signal was sent (undefined: never sent). */
  sentAfter?: { type: string; stage?: string; step?: number };
}

/**
 * Runs `node --import=tsx ...args` (cwd `cwd`), reads the JSON events it prints a line each,
 * and sends `sig` once, after the first event for which `when` is true.
 */
export function runAndSignal(args: string[], cwd: string, when: (e: { type: string; stage?: string; step?: number }) => boolean, sig: NodeJS.Signals): Promise<SignalledRun> {
  return new Promise((res) => {
    const child = spawn(process.execPath, ['--import=tsx', ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let buf = '';
    let err = '';
    let sentAfter: SignalledRun['sentAfter'];
    child.stderr.on('data', (d) => (err += d));
    child.stdout.on('data', (d) => {
      buf += d;
      const lines = buf.split('\n');
      buf = lines.pop()!;
      for (const l of lines) {
        if (sentAfter || !l.startsWith('{')) continue;
        const e = JSON.parse(l);
        if (when(e)) {
          sentAfter = e;
          child.kill(sig);
        }
      }
    });
    child.on('close', (code, signal) => res({ code, signal, err, sentAfter }));
  });
}
