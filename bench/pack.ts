// Benchmark of frame-substitution token packing against a memcpy-class copy.
//
//   node --import=tsx bench/pack.ts [--videos 64] [--frames 16] [--tokens 64] [--dims 256] [--reps 15]
//
// The batch is what stage 1 packs: per video, sequence A = the original video
// and sequence B = its KIM variant (1–3 key frames replaced by their nearest
// neighbours), so the packed tokens are twice the video tokens. Forward:
// vp.packTokens; backward: vp.packTokensBackward (a scatter-add: frames that
// were duplicated receive the sum of their copies' gradients). The peer is
// Float32Array.prototype.set copying a buffer as large as the op's output
// (forward) or its input gradient (backward), measured in the same run.
//
// Bandwidth counts the bytes a kernel must move: read + written. Forward:
// N·Dm·4 read + N·Dm·4 written; backward: N·Dm·4 read + V·F·P·Dm·4 written;
// the copy: its bytes twice. Outputs are written into reused buffers in both
// (steady state, as inside a training loop); the "fresh" rows allocate a new
// output each call, for ours and for the copy alike (Float32Array.slice).
import { cpus, totalmem } from 'node:os';
import * as vp from '../lib/index.js';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

const V = arg('videos', 64);
const F = arg('frames', 16);
const P = arg('tokens', 64);
const D = arg('dims', 256);
const REPS = arg('reps', 15);

function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Median wall times in milliseconds of `a` and `b`, called alternately `reps`
 * times each after two warm-up calls, so drifts of the machine hit both alike.
 */
function timePair(a: () => void, b: () => void, reps = REPS): [number, number] {
  a();
  b();
  a();
  b();
  const ta: number[] = [];
  const tb: number[] = [];
  for (let i = 0; i < reps; i++) {
    let t0 = process.hrtime.bigint();
    a();
    ta.push(Number(process.hrtime.bigint() - t0) / 1e6);
    t0 = process.hrtime.bigint();
    b();
    tb.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  const med = (xs: number[]) => xs.sort((x, y) => x - y)[xs.length >> 1];
  return [med(ta), med(tb)];
}

const r = seeded(1);
const videoData = new Float32Array(V * F * P * D);
for (let i = 0; i < videoData.length; i++) videoData[i] = r() - 0.5;
const video = vp.tensor(videoData, [V, F, P, D]);
const sequences: vp.PackSegment[][] = [];
for (let v = 0; v < V; v++) {
  const nKey = 1 + Math.floor(r() * 3);
  const key = new Set<number>();
  while (key.size < nKey) key.add(Math.floor(r() * F));
  sequences.push([{ video: v }]);
  sequences.push([{ video: v, frames: vp.planSubstitution(F, [...key]) }]);
}

const packed = vp.packTokens({ video, sequences });
const N = packed.tokens.shape[0];
const outBytes = N * D * 4;
const videoBytes = V * F * P * D * 4;
const dTokens = vp.tensor(Float32Array.from({ length: N * D }, () => r() - 0.5), [N, D]);
const grads = vp.packTokensBackward(dTokens, packed);
const copySrc = dTokens.data as Float32Array;
const copyDst = new Float32Array(N * D);

const info = vp.backendInfo();
const machine = `${cpus()[0]?.model.trim() ?? 'unknown CPU'}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, isa ${info.cpu.isa}`;
const shape = { videos: V, frames: F, tokensPerFrame: P, dims: D, packedRows: N };

interface Row {
  case: string;
  threads: number;
  oursMs: number;
  peerMs: number;
  oursGBs: number;
  peerGBs: number;
}
const rows: Row[] = [];
const gbs = (bytes: number, ms: number) => bytes / (ms * 1e6);

function run(threads: number) {
  vp.setNumThreads(threads);
  const copy = () => copyDst.set(copySrc);
  const copyFresh = () => void copySrc.slice();
  const add = (name: string, ours: () => void, peer: () => void, oursBytes: number) => {
    const [oursMs, peerMs] = timePair(ours, peer);
    rows.push({ case: name, threads, oursMs, peerMs, oursGBs: gbs(oursBytes, oursMs), peerGBs: gbs(2 * outBytes, peerMs) });
  };
  add('forward', () => vp.packTokens({ video, sequences }, { out: packed.tokens }), copy, 2 * outBytes);
  add('backward', () => vp.packTokensBackward(dTokens, packed, { dVideo: grads.dVideo, dText: grads.dText }), copy, outBytes + videoBytes);
  add('forward (fresh output)', () => void vp.packTokens({ video, sequences }), copyFresh, 2 * outBytes);
  add('backward (fresh output)', () => void vp.packTokensBackward(dTokens, packed), copyFresh, outBytes + videoBytes);
}

const maxThreads = info.cpu.threads;
run(maxThreads);
if (maxThreads > 1) run(1);
vp.setNumThreads(maxThreads);

console.log(`pack: ${V} videos x ${F} frames x ${P} tokens x ${D} dims, A + KIM B per video -> ${N} rows (${(outBytes / 2 ** 20).toFixed(0)} MiB packed)`);
console.log(`machine: ${machine}`);
console.log('peer: Float32Array.prototype.set of the same bytes (fresh rows: Float32Array.prototype.slice); GB/s = (bytes read + bytes written) / time\n');
const header = ['case', 'threads', 'ours ms', 'ours GB/s', 'copy ms', 'copy GB/s', 'ratio'];
const table = rows.map((x) => [x.case, String(x.threads), x.oursMs.toFixed(2), x.oursGBs.toFixed(2), x.peerMs.toFixed(2), x.peerGBs.toFixed(2), (x.oursGBs / x.peerGBs).toFixed(2)]);
const widths = header.map((h, i) => Math.max(h.length, ...table.map((t) => t[i].length)));
const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
console.log(line(header));
for (const t of table) console.log(line(t));
console.log('');
for (const x of rows) {
  console.log(JSON.stringify({
    bench: 'pack', case: x.case, shape, threads: x.threads,
    ours: { ms: +x.oursMs.toFixed(3), GBs: +x.oursGBs.toFixed(3) },
    peer: { name: 'Float32Array.prototype.' + (x.case.includes('fresh') ? 'slice' : 'set'), ms: +x.peerMs.toFixed(3), GBs: +x.peerGBs.toFixed(3) },
    ratio: +(x.oursGBs / x.peerGBs).toFixed(3), machine,
  }));
}
