// InfoNCE forward+backward: ours — vp.infoNceWithGrad (one pass, three matrix
// products) and vp.infoNce + vp.infoNceBackward (four) — against PyTorch CPU
// (F.normalize → matmul → F.cross_entropy, autograd) on the same inputs in the
// same run, at N = M = 4096, D = 256 (2048 with --quick).
//
// Per case: times, the ratio, the peak memory of one call on each side (above
// what was resident before it, outputs included), and our GFLOP/s counting the
// products we actually do, as a fraction of our SGEMM's on a product of the
// same size. Then one line (also with --quick) for N = M = 16384: the peak
// memory beyond inputs and outputs, against the 64 MB budget (the N×M matrix
// alone would take 1 GiB), beside the time and peak of one step of PyTorch's
// composite on the same inputs (missing, saying why, when memory is short).
//
// Memory is measured in a child process whose glibc maps every block of 128 KB
// or more on its own (MALLOC_MMAP_THRESHOLD_), so that what is freed leaves the
// resident set and the peak is the peak of live memory; the PyTorch peer reports
// the same measure for one training step, in a second run with the same setting
// (its timing run keeps glibc's defaults, as ours does).
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as vp from '../lib/index.js';
import { PeerInputs, randomFloats, runPeer, runPeerWithin, type BenchContext, type PeerResult, type Timing } from './harness.js';

const TEMPERATURE = 0.07;
const MEMORY_CHILD = 'VP_BENCH_INFONCE_MEMORY';

function inputs(n: number, m: number, d: number) {
  const q = randomFloats(n * d, 1);
  const k = randomFloats(m * d, 2);
  const positive = Int32Array.from({ length: n }, (_, i) => i % m);
  return { q, k, positive, qt: vp.tensor(q, [n, d]), kt: vp.tensor(k, [m, d]) };
}

/** Times each function `reps` times, round-robin after one warm-up call each: the samples in ms. */
function sample<K extends string>(fns: Record<K, () => unknown>, reps: number): Record<K, number[]> {
  const names = Object.keys(fns) as K[];
  const out = Object.fromEntries(names.map((k) => [k, [] as number[]])) as Record<K, number[]>;
  for (const k of names) fns[k]();
  for (let r = 0; r < reps; r++) {
    for (const k of names) {
      const t0 = performance.now();
      fns[k]();
      out[k].push(performance.now() - t0);
    }
  }
  return out;
}

function summarize(samples: number[]): Timing {
  const s = [...samples].sort((a, b) => a - b);
  return { medianMs: s[Math.floor(s.length / 2)], minMs: s[0], reps: s.length };
}

function statusKB(key: string): number {
  const m = new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** In the child: the peak of one call of each variant above what was resident before it. */
async function memoryChild(spec: { n: number; m: number; d: number }): Promise<void> {
  const { n, m, d } = spec;
  const { positive, qt, kt } = inputs(n, m, d);
  const opts = { positive, temperature: TEMPERATURE };
  const variants: Record<string, () => unknown> = {
    withGrad: () => vp.infoNceWithGrad(qt, kt, opts),
    separate: () => {
      const f = vp.infoNce(qt, kt, opts);
      return [f, vp.infoNceBackward(qt, kt, f.lse, opts)];
    },
  };
  // Warm up on a small problem: the thread pool and the allocator's first arenas.
  const small = inputs(8, 8, d);
  vp.infoNceWithGrad(small.qt, small.kt, { positive: small.positive });
  const out: Record<string, number> = { outputsMB: ((n + m) * d + n) * 4 / 2 ** 20 };
  for (const [name, fn] of Object.entries(variants)) {
    // Collect, then let V8 hand freed buffers back before the baseline is read (a
    // buffer freed during the call would lower the peak measured above it).
    (globalThis as { gc?: () => void }).gc?.();
    await new Promise((resolve) => setTimeout(resolve, 300));
    writeFileSync('/proc/self/clear_refs', '5');
    const base = statusKB('VmRSS');
    const t0 = performance.now();
    const result = fn();
    out[`${name}Ms`] = performance.now() - t0;
    out[name] = (statusKB('VmHWM') - base) / 1024;
    void result;
  }
  console.log(JSON.stringify(out));
}

/** Runs memoryChild in a fresh node process; a string saying why where that cannot be done. */
function measureMemory(n: number, m: number, d: number): Record<'withGrad' | 'separate' | 'withGradMs' | 'outputsMB', number> | string {
  const r = spawnSync(process.execPath, ['--import=tsx', '--expose-gc', fileURLToPath(import.meta.url)], {
    env: { ...process.env, [MEMORY_CHILD]: JSON.stringify({ n, m, d }), MALLOC_MMAP_THRESHOLD_: '131072' },
    encoding: 'utf8',
  });
  const last = (r.stdout ?? '').trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(last);
  } catch {
    return `memory child failed (exit ${r.status}): ${(r.stderr ?? '').trim().split('\n').slice(-2).join(' | ')}`;
  }
}

export async function run(ctx: BenchContext): Promise<void> {
  const n = ctx.quick ? 2048 : 4096;
  const d = 256;
  const { q, k, positive, qt, kt } = inputs(n, n, d);
  const opts = { positive, temperature: TEMPERATURE };
  // Rounds: ours (our SGEMM on one product of the same size, the fused call, the
  // separate calls, in alternation), then the peer, again and again, so that load
  // from elsewhere on a shared machine falls on both sides alike; each side's
  // median and minimum are over all its samples. The SGEMM is [N, M] · [M, D] (the
  // shape of dQ = G · K): Q · Kᵀ would time the page faults of a fresh 64 MB output.
  const rounds = 3;
  const reps = 3;
  const scoresLike = vp.tensor(randomFloats(n * n, 3), [n, n]);
  const files = new PeerInputs().add('q', q, [n, d]).add('k', k, [n, d]).add('positive', positive, [n]);
  const peerSpec = { inputs: files.specs, temperature: TEMPERATURE, reps, warmup: 1 };
  const ours = { sgemm: [] as number[], fused: [] as number[], separate: [] as number[] };
  const peerSamples: number[] = [];
  let peer: PeerResult = { ok: false, missing: 'not run' };
  for (let r = 0; r < rounds; r++) {
    const t = sample({
      sgemm: () => vp.matmul(scoresLike, kt),
      fused: () => vp.infoNceWithGrad(qt, kt, opts),
      separate: () => vp.infoNceBackward(qt, kt, vp.infoNce(qt, kt, opts).lse, opts),
    }, reps);
    for (const key of Object.keys(ours) as Array<keyof typeof ours>) ours[key].push(...t[key]);
    peer = runPeer('torch_infonce.py', peerSpec, ctx.threads);
    if (!peer.ok) break;
    peerSamples.push(...(peer.samples as number[]));
  }
  scoresLike.dispose();
  const [sgemm, fused, separate] = [ours.sgemm, ours.fused, ours.separate].map(summarize);
  const peerT = peer.ok ? summarize(peerSamples) : null;
  const ourLoss = vp.infoNce(qt, kt, opts).loss;
  process.env.MALLOC_MMAP_THRESHOLD_ = '131072';  // the memory runs: see the top of this file
  const peerMem = runPeer('torch_infonce.py', { ...peerSpec, memoryOnly: true }, ctx.threads);
  delete process.env.MALLOC_MMAP_THRESHOLD_;
  files.dispose();
  const mem = measureMemory(n, n, d);

  // GFLOP/s from the medians (ours and the SGEMM were timed in alternation).
  const product = 2 * n * n * d;  // one N×M×D product
  const sgemmGflops = product / (sgemm.medianMs * 1e6);
  const shape = { n, m: n, d, temperature: TEMPERATURE, threads: ctx.threads };
  const lossAgrees = peer.ok ? Math.abs((peer.loss as number) - ourLoss) <= 1e-4 * Math.abs(ourLoss) : null;
  for (const [name, t, products, target] of [
    ['infoNceWithGrad', fused, 3, 1.8],
    ['infoNce+infoNceBackward', separate, 4, 1.25],
  ] as const) {
    const gflops = (products * product) / (t.medianMs * 1e6);
    ctx.report({
      bench: 'infonce', case: `${name} ${n}x${n}x${d}`, shape,
      oursMs: t.medianMs, peerMs: peerT ? peerT.medianMs : null,
      ratio: peerT ? peerT.medianMs / t.medianMs : null,
      peer: 'torch', peerMissing: peer.missing,
      flops: products * product,
      extra: {
        target: `>=${target}x`,
        oursMinMs: t.minMs, peerMinMs: peerT ? peerT.minMs : null, samples: `${t.reps} + ${peerT?.reps ?? 0}`,
        oursGflops: gflops, sgemmGflops, fractionOfSgemm: gflops / sgemmGflops,
        oursPeakMB: typeof mem === 'string' ? null : mem[name === 'infoNceWithGrad' ? 'withGrad' : 'separate'],
        peerPeakMB: peerMem.ok ? (peerMem.peakMB as number) : null,
        lossAgrees: lossAgrees === null ? 'n/a' : String(lossAgrees),
        ...(typeof mem === 'string' ? { memory: mem } : {}),
      },
    });
  }

  // The memory check at N = M = 16384 (also with --quick): one infoNceWithGrad call in a
  // child process against one step of PyTorch's composite in its own (same inputs, same
  // malloc setting): times and peaks beyond inputs and outputs (the N×M logits are 1 GiB).
  const big = 16384;
  const bigMem = measureMemory(big, big, d);
  const bigIn = inputs(big, big, d);
  const bigFiles = new PeerInputs().add('q', bigIn.q, [big, d]).add('k', bigIn.k, [big, d]).add('positive', bigIn.positive, [big]);
  const logitsMB = (big * big * 4) / 2 ** 20;
  const bigPeer = runPeerWithin('torch_infonce.py', { inputs: bigFiles.specs, temperature: TEMPERATURE, memoryOnly: true, warmSmall: true },
    ctx.threads, 4 * logitsMB + 1024, { MALLOC_MMAP_THRESHOLD_: '131072' });
  bigFiles.dispose();
  bigIn.qt.dispose();
  bigIn.kt.dispose();
  const beyond = (v: number, o: number) => v - o;
  const oursBigMs = typeof bigMem === 'string' ? NaN : bigMem.withGradMs;
  const peerBigMs = bigPeer.ok ? (bigPeer.ms as number) : null;
  const outputsMB = typeof bigMem === 'string' ? ((2 * big * d + big) * 4) / 2 ** 20 : bigMem.outputsMB;
  ctx.report({
    bench: 'infonce', case: `memory ${big}x${big}x${d}`, shape: { n: big, m: big, d, threads: ctx.threads },
    oursMs: oursBigMs, peerMs: peerBigMs,
    ratio: peerBigMs === null || !Number.isFinite(oursBigMs) ? null : peerBigMs / oursBigMs,
    peer: 'torch (one step)', peerMissing: bigPeer.missing,
    flops: 3 * 2 * big * big * d,  // infoNceWithGrad: three N×M×D products
    extra: typeof bigMem === 'string' ? { memory: bigMem } : {
      budgetMB: 64,
      withGradBeyondInputsOutputsMB: beyond(bigMem.withGrad, bigMem.outputsMB),
      separateBeyondInputsOutputsMB: beyond(bigMem.separate, bigMem.outputsMB),
      peerBeyondInputsOutputsMB: bigPeer.ok && typeof bigPeer.peakMB === 'number' ? beyond(bigPeer.peakMB, outputsMB) : null,
      outputsMB: bigMem.outputsMB,
    },
  });
}

if (process.env[MEMORY_CHILD]) await memoryChild(JSON.parse(process.env[MEMORY_CHILD]));
