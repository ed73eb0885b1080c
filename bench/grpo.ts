// GRPO core vs PyTorch CPU, on the same inputs in the same run:
//
//   linearTokenLogprobsBackward (the log-probs and both gradients, one pass)
//                                            vs  hidden @ weight.T → log_softmax → gather, autograd
//   linearGrpoLoss                           vs  the same → TRL's GRPO loss ('dapo'), autograd
//
// at N = 4096 tokens, d = 256, V = 8192 (2 threads each: vp.setNumThreads and
// torch.set_num_threads). Rounds alternate ours and the peer (a persistent
// python3 worker) so that both see the same machine load; each side reports
// its median. Per case: time, ratio (peer / ours, > 1 = we are faster), peak
// memory beyond inputs and outputs (each measured in a fresh process), our
// GFLOP/s as a fraction of our SGEMM's on the same projection, and the
// agreement of the gradients with PyTorch's. A last case runs
// linearTokenLogprobs forward + backward at N = 8192, d = 512, V = 32768 and
// checks that it needs < 256 MB beyond inputs and outputs (the logits alone
// would be 1 GiB), against one call of PyTorch's composite (time and memory),
// which is reported missing when the machine lacks the memory for it.
//
//   node --import=tsx bench/grpo.ts [--quick] [--json]     (or via bench/run.ts: export run)
// Environment: VP_BENCH_THREADS (default 2), VP_BENCH_PYTHON (default /usr/bin/python3).
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as vp from '../lib/index.js';
import { benchDir, machineInfo, makeContext, memAvailableMB, PYTHON, type BenchContext, type CaseReport } from './harness.js';

const THREADS = Number(process.env.VP_BENCH_THREADS ?? 2);
const MB = 2 ** 20;

// ---- inputs ----------------------------------------------------------------------------

function randomFloats(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = lo + (hi - lo) * (((t ^ (t >>> 14)) >>> 0) / 4294967296);
  }
  return out;
}

interface Problem {
  n: number;
  d: number;
  v: number;
  hidden: vp.Tensor;
  weight: vp.Tensor;
  targets: Int32Array;
  dlogp: Float32Array;
  old: Float32Array;
  ref: Float32Array;
  advantages: Float32Array;
  cuSeqlens: Int32Array;
}

const GRPO_OPTS = { epsLow: 0.2, epsHigh: 0.28, beta: 0.04, lossType: 'dapo' as const };

function makeProblem(n: number, d: number, v: number, withPolicy: boolean): Problem {
  const hidden = vp.tensor(randomFloats(n * d, 1), [n, d]);
  const weight = vp.tensor(randomFloats(v * d, 2, -0.2, 0.2), [v, d]);
  const tr = randomFloats(n, 3, 0, 1);
  const targets = Int32Array.from(tr, (x) => Math.min(v - 1, Math.floor(x * v)));
  const dlogp = randomFloats(n, 4, -1 / n, 1 / n);
  // responses of 64 tokens, 4 per prompt; per-sequence advantages from group rewards
  const seqLen = 64;
  const b = Math.ceil(n / seqLen);
  const cuSeqlens = Int32Array.from({ length: b + 1 }, (_, i) => Math.min(n, i * seqLen));
  const rewards = randomFloats(b, 5, 0, 1);
  const advSeq = vp.groupAdvantages(rewards, b % 4 === 0 ? 4 : 1);
  const advantages = new Float32Array(n);
  for (let s = 0; s < b; s++) advantages.fill(advSeq[s], cuSeqlens[s], cuSeqlens[s + 1]);
  let old = new Float32Array(0), ref = new Float32Array(0);
  if (withPolicy) {
    // the sampling policy and the reference model: near the current policy
    const lp = vp.linearTokenLogprobs(hidden, weight, targets);
    const j1 = randomFloats(n, 6, -0.3, 0.3), j2 = randomFloats(n, 7, -0.3, 0.3);
    old = Float32Array.from(lp, (x, i) => x + j1[i]);
    ref = Float32Array.from(lp, (x, i) => x + j2[i]);
  }
  return { n, d, v, hidden, weight, targets, dlogp, old, ref, advantages, cuSeqlens };
}

// 'lp': the forward values and gradients of Σ dlogp·logp. dlogp does not depend on
// the log-probs (an SFT loss), so the backward call alone computes both (three
// projections), as PyTorch's forward + autograd does in its one step.
function runCase(p: Problem, name: 'lp' | 'grpo'): { dHidden: vp.Tensor; dWeight: vp.Tensor; loss?: number; logprobs?: Float32Array } {
  if (name === 'lp') return vp.linearTokenLogprobsBackward(p.dlogp, p.hidden, p.weight, p.targets);
  const r = vp.linearGrpoLoss(
    { hidden: p.hidden, weight: p.weight, targets: p.targets, oldLogprobs: p.old, refLogprobs: p.ref, advantages: p.advantages, cuSeqlens: p.cuSeqlens },
    GRPO_OPTS,
  );
  return { dHidden: r.dHidden, dWeight: r.dWeight, loss: r.loss };
}

// ---- memory: one case in a fresh process ----------------------------------------------

// Peak RSS of this process since the last resetPeak() (Linux: VmHWM, reset by
// writing 5 to /proc/self/clear_refs), else the lifetime peak.
function statusKB(field: string): number | null {
  try {
    const m = new RegExp(`^${field}:\\s*(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

function resetPeak(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

/** In a child: peak RSS growth of one call beyond what its outputs hold. */
function memoryChild(name: 'lp' | 'grpo', n: number, d: number, v: number): void {
  vp.setNumThreads(THREADS);
  const p = makeProblem(n, d, v, name === 'grpo');
  // load the addon's code paths and start the thread pool on a small problem first
  const warm = makeProblem(64, 8, 64, name === 'grpo');
  runCase(warm, name);
  const exact = resetPeak();
  const base = (statusKB('VmRSS') ?? process.memoryUsage().rss / 1024) * 1024;
  const t0 = performance.now();
  const r = runCase(p, name);
  const ms = performance.now() - t0;
  const peak = ((exact ? statusKB('VmHWM') : null) ?? process.resourceUsage().maxRSS) * 1024;
  const outputs = (r.dHidden.size + r.dWeight.size + n) * 4;
  console.log(JSON.stringify({ extraMB: (peak - base - outputs) / MB, outputMB: outputs / MB, ms, exact }));
}

function measureOursMemory(name: 'lp' | 'grpo', n: number, d: number, v: number): { extraMB: number; ms: number } | null {
  const r = spawnSync(process.execPath, ['--import=tsx', fileURLToPath(import.meta.url), '--memory-child', name, String(n), String(d), String(v)], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
    env: { ...process.env, VP_NUM_THREADS: String(THREADS) },
  });
  const last = (r.stdout ?? '').trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(last);
  } catch {
    console.error(`memory child failed (exit ${r.status}): ${(r.stderr ?? '').slice(-500)}`);
    return null;
  }
}

// ---- the PyTorch worker ---------------------------------------------------------------------

class Peer {
  private proc: ChildProcessWithoutNullStreams;
  private lines: AsyncIterator<string>;
  readonly dir: string;
  constructor(p: Problem, dir: string) {
    this.dir = dir;
    const inputs: Record<string, { path: string; dtype: string; shape: number[] }> = {};
    const add = (name: string, data: Float32Array | Int32Array, shape: number[]) => {
      const path = join(dir, `${name}.bin`);
      writeFileSync(path, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      inputs[name] = { path, dtype: data instanceof Float32Array ? 'float32' : 'int32', shape };
    };
    add('hidden', p.hidden.data as Float32Array, [p.n, p.d]);
    add('weight', p.weight.data as Float32Array, [p.v, p.d]);
    add('targets', p.targets, [p.n]);
    add('dlogp', p.dlogp, [p.n]);
    add('old', p.old, [p.n]);
    add('ref', p.ref, [p.n]);
    add('advantages', p.advantages, [p.n]);
    this.proc = spawn(PYTHON, [join(benchDir, 'peers', 'torch_grpo.py')], {
      env: { ...process.env, OMP_NUM_THREADS: String(THREADS), OPENBLAS_NUM_THREADS: String(THREADS), MKL_NUM_THREADS: String(THREADS) },
    });
    this.proc.stderr.on('data', (b) => process.stderr.write(b));
    this.lines = createInterface({ input: this.proc.stdout })[Symbol.asyncIterator]();
    this.proc.stdin.write(JSON.stringify({ inputs, threads: THREADS, ...GRPO_OPTS }) + '\n');
  }
  async ask(cmd: Record<string, unknown>): Promise<Record<string, number>> {
    this.proc.stdin.write(JSON.stringify(cmd) + '\n');
    const r = await this.lines.next();
    if (r.done) throw new Error('the PyTorch peer exited');
    return JSON.parse(r.value);
  }
  close(): void {
    this.proc.stdin.write(JSON.stringify({ op: 'quit' }) + '\n');
    this.proc.stdin.end();
  }
}

function torchAvailable(): { ok: boolean; version?: string; why?: string } {
  const r = spawnSync(PYTHON, ['-c', 'import torch, numpy; print(torch.__version__)'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return { ok: false, why: `${PYTHON} with torch and numpy is not available (apt-get install python3-torch)` };
  return { ok: true, version: r.stdout.trim() };
}

// ---- reporting -----------------------------------------------------------------------------

function median(x: number[]): number {
  const s = [...x].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / (den || 1));
}

// ---- the benchmark ----------------------------------------------------------------------------

export async function run(ctx?: BenchContext): Promise<void> {
  const jsonOnly = process.argv.includes('--json');
  // Standalone (node bench/grpo.ts): the same table and JSON lines as bench/run.ts prints.
  const c = ctx ?? makeContext({ quick: process.argv.includes('--quick'), json: jsonOnly });
  const quick = c.quick;
  vp.setNumThreads(THREADS);
  const torch = torchAvailable();
  const report = (r: CaseReport) => c.report(r);
  if (!ctx && !jsonOnly) console.log(`machine: ${JSON.stringify(machineInfo())}`);

  const N = 4096, D = 256, V = 8192;
  const p = makeProblem(N, D, V, true);
  const proj = 2 * N * D * V;  // one projection's FLOPs

  // Our SGEMM on the same projection (hidden · weightᵀ), timed in the same
  // rounds as each case: the compute ceiling the fused kernels are compared to.
  const sgemm = () => {
    const t0 = performance.now();
    vp.matmul(p.hidden, p.weight, { transB: true }).dispose();
    return performance.now() - t0;
  };
  sgemm();

  const dir = mkdtempSync(join(tmpdir(), 'vp-bench-grpo-'));
  const peer = torch.ok ? new Peer(p, dir) : null;
  const reps = quick ? 3 : 7;
  try {
    for (const [name, projections, title] of [
      ['lp', 3, 'linearTokenLogprobs fwd+bwd'],
      ['grpo', 3, 'linearGrpoLoss (fwd+bwd fused)'],
    ] as const) {
      // warm-up, then alternate ours and the peer
      runCase(p, name);
      if (peer) await peer.ask({ op: 'time', case: name });
      const ours: number[] = [], theirs: number[] = [], sg: number[] = [];
      for (let r = 0; r < reps; r++) {
        sg.push(sgemm());
        const t0 = performance.now();
        const out = runCase(p, name);
        ours.push(performance.now() - t0);
        out.dHidden.dispose();
        out.dWeight.dispose();
        if (peer) theirs.push((await peer.ask({ op: 'time', case: name })).ms);
      }
      // agreement with PyTorch on the same inputs
      let agree: Record<string, number | null> = { dHiddenRelErr: null, dWeightRelErr: null };
      if (peer) {
        const chk = await peer.ask({ op: 'check', case: name, out: dir });
        const mine = runCase(p, name);
        const th = new Float32Array(readFileSync(join(dir, 'dHidden.bin')).buffer.slice(0));
        const tw = new Float32Array(readFileSync(join(dir, 'dWeight.bin')).buffer.slice(0));
        const tl = new Float32Array(readFileSync(join(dir, 'logp.bin')).buffer.slice(0));
        agree = { dHiddenRelErr: relError(mine.dHidden.data, th), dWeightRelErr: relError(mine.dWeight.data, tw) };
        if (mine.logprobs) agree.logprobsRelErr = relError(mine.logprobs, tl);
        if (name === 'grpo') agree.lossRelErr = Math.abs((mine.loss as number) - chk.loss) / Math.abs(chk.loss);
      }
      const oursMs = median(ours), peerMs = peer ? median(theirs) : null;
      const mem = measureOursMemory(name, N, D, V);
      let peerMem: number | null = null;
      if (torch.ok) {
        const fresh = new Peer(p, dir);
        peerMem = (await fresh.ask({ op: 'memory', case: name })).peakMB - 0;
        const outMB = (N * D + V * D) * 4 / MB;
        peerMem -= outMB;
        fresh.close();
      }
      const gflops = (projections * proj) / (oursMs * 1e6);
      const sgemmGflops = proj / (median(sg) * 1e6);
      report({
        bench: 'grpo',
        case: `${title} N=${N} d=${D} V=${V}`,
        shape: { n: N, d: D, v: V, threads: THREADS },
        oursMs,
        peerMs,
        ratio: peerMs === null ? null : peerMs / oursMs,
        peer: 'torch',
        peerMissing: torch.why,
        flops: projections * proj,
        extra: {
          oursMinMs: Math.min(...ours),
          peerMinMs: peer ? Math.min(...theirs) : null,
          oursPeakMB: mem ? mem.extraMB : null,
          peerPeakMB: peerMem,
          oursGflops: gflops,
          projections,
          sgemmGflops,
          fractionOfSgemm: gflops / sgemmGflops,
          ...agree,
        },
      });
    }
  } finally {
    peer?.close();
    rmSync(dir, { recursive: true, force: true });
  }

  // The memory bound at the large shape: one call each, ours and PyTorch's composite (which
  // holds the 1 GiB logits and more), each in a fresh process, on the same inputs.
  const [BN, BD, BV] = [8192, 512, 32768];
  const big = measureOursMemory('lp', BN, BD, BV);
  const bound = 256;
  let bigPeer: { ms: number; extraMB: number } | null = null;
  let bigMissing = torch.why;
  if (torch.ok) {
    const logitsMB = (BN * BV * 4) / MB;
    const avail = memAvailableMB();
    if (avail !== undefined && avail < 4 * logitsMB + 1024) {
      bigMissing = `not run: PyTorch needs about ${Math.round(4 * logitsMB + 1024)} MB here, only ${Math.round(avail)} MB available`;
    } else {
      const pb = makeProblem(BN, BD, BV, false);
      pb.old = new Float32Array(BN);  // unused by the log-probs case
      pb.ref = new Float32Array(BN);
      const bigDir = mkdtempSync(join(tmpdir(), 'vp-bench-grpo-'));
      try {
        const fresh = new Peer(pb, bigDir);
        const r = await fresh.ask({ op: 'memory', case: 'lp' });
        fresh.close();
        bigPeer = { ms: r.ms, extraMB: r.peakMB - r.outputMB };
      } catch (e) {
        bigMissing = `the PyTorch peer failed: ${(e as Error).message}`;
      } finally {
        rmSync(bigDir, { recursive: true, force: true });
      }
    }
  }
  report({
    bench: 'grpo',
    case: `linearTokenLogprobs fwd+bwd N=${BN} d=${BD} V=${BV} memory`,
    shape: { n: BN, d: BD, v: BV, threads: THREADS },
    oursMs: big ? big.ms : NaN,
    peerMs: bigPeer ? bigPeer.ms : null,
    ratio: bigPeer && big ? bigPeer.ms / big.ms : null,
    peer: 'torch (one call)',
    peerMissing: bigPeer ? undefined : bigMissing,
    flops: 3 * 2 * BN * BD * BV,  // the three projections of the fused forward and backward
    extra: {
      oursPeakMB: big ? big.extraMB : null,
      peerPeakMB: bigPeer ? bigPeer.extraMB : null,
      boundMB: bound,
      withinBound: big ? (big.extraMB < bound ? 'yes' : 'NO') : null,
      workspaceMB: vp.linearLogprobsWorkspaceBytes(8192, 512, 32768, { threads: THREADS, backward: true }) / MB,
      logitsMB: (8192 * 32768 * 4) / MB,
    },
  });
}

const isMain = process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) {
  const i = process.argv.indexOf('--memory-child');
  if (i >= 0) {
    const [name, n, d, v] = process.argv.slice(i + 1);
    memoryChild(name as 'lp' | 'grpo', Number(n), Number(d), Number(v));
  } else {
    await run();
  }
}
