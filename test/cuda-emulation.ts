// A host emulation of the addon's CUDA entry points, for testing the TypeScript
// composition of the pretrained models on device 'cuda' (lib/pretrained/device.ts
// and its callers) on a machine without a GPU. It replaces, in the loaded addon,
// backendInfo (reports an emulated device), the device buffers (cudaAlloc /
// Upload / Download / Clone / Convert / Free: a "handle" is an object over an
// ArrayBuffer), the ops that take device tensors (matmul, attention and its
// backward, the token log-probs) — which it runs on the CPU kernels with the
// buffers' host arrays — and every dev* binding, each checking, as the real
// binding does, that a buffer holds exactly the bytes its count needs, and that
// indices are in range. It tests shapes, sizes, dispatch and the data flow of
// the CUDA branches; not the CUDA kernels (native/tests/test_pretrained_cuda.cpp
// does, on a GPU). Cost: the CPU kernels' own.
import { native } from '../lib/native.js';
import { convertHost } from '../lib/tensor.js';

interface FakeBuffer {
  fake: true;
  buf: ArrayBuffer;
  freed: boolean;
}

type Fn = (...args: never[]) => unknown;

function isFake(v: unknown): v is FakeBuffer {
  return typeof v === 'object' && v !== null && (v as FakeBuffer).fake === true;
}

function need(v: unknown, name: string): FakeBuffer {
  if (!isFake(v)) throw new TypeError(`${name}: not a CUDA buffer (emulated)`);
  if (v.freed) throw new Error(`${name}: the CUDA tensor was disposed (emulated)`);
  return v;
}

/** A float32 view of a buffer that must hold exactly `count` values (CudaView's check). */
function f32(v: unknown, count: number, name: string): Float32Array {
  const b = need(v, name);
  if (b.buf.byteLength !== count * 4) throw new RangeError(`${name}: CUDA buffer holds ${b.buf.byteLength} bytes, shape needs ${count * 4} (emulated)`);
  return new Float32Array(b.buf);
}

function u16(v: unknown, count: number, name: string): Uint16Array {
  const b = need(v, name);
  if (b.buf.byteLength !== count * 2) throw new RangeError(`${name}: CUDA buffer holds ${b.buf.byteLength} bytes, shape needs ${count * 2} (emulated)`);
  return new Uint16Array(b.buf);
}

function indices(ids: Int32Array, bound: number, name: string): void {
  ids.forEach((x, i) => {
    if (!(x >= 0 && x < bound)) throw new RangeError(`${name}[${i}] = ${x} is outside [0, ${bound}) (emulated)`);
  });
}

/** A fake handle's bytes as the typed array of `dtype`; a host array is returned as it is. */
function host(v: unknown, dtype: string): unknown {
  if (!isFake(v)) return v;
  const b = need(v, 'tensor');
  return dtype === 'float32' ? new Float32Array(b.buf) : dtype === 'int32' ? new Int32Array(b.buf) : new Uint16Array(b.buf);
}

/** Installs the emulation into the loaded addon; returns a function that removes it. */
export function emulateCuda(): () => void {
  const a = native() as unknown as Record<string, Fn>;
  const orig: Record<string, Fn> = { ...a };
  const call = (name: string, ...args: unknown[]) => (orig[name] as (...x: unknown[]) => unknown)(...args);
  const fresh = (bytes: number): FakeBuffer => ({ fake: true, buf: new ArrayBuffer(bytes), freed: false });
  const patch: Record<string, (...args: never[]) => unknown> = {
    backendInfo: () => {
      const r = call('backendInfo') as Record<string, unknown>;
      return { ...r, cuda: { available: true, compiled: true, device: 'emulated (host)', computeCapability: '0.0', memoryBytes: 2 ** 34, reason: '' } };
    },
    cudaAlloc: (bytes: number) => fresh(bytes),
    cudaUpload: (t: ArrayBufferView) => {
      const b = fresh(t.byteLength);
      new Uint8Array(b.buf).set(new Uint8Array(t.buffer, t.byteOffset, t.byteLength));
      return b;
    },
    cudaDownload: (h: unknown, t: ArrayBufferView) => {
      const b = need(h, 'tensor');
      if (t.byteLength !== b.buf.byteLength) throw new RangeError('download: size mismatch');
      new Uint8Array(t.buffer, t.byteOffset, t.byteLength).set(new Uint8Array(b.buf));
    },
    cudaClone: (h: unknown) => {
      const b = need(h, 'tensor');
      return { fake: true, buf: b.buf.slice(0), freed: false };
    },
    cudaConvert: (src: unknown, shape: number[], sd: string, dst: unknown, dd: string) => {
      const n = shape.reduce((x, y) => x * y, 1);
      const s = sd === 'float32' ? f32(src, n, 'src') : u16(src, n, 'src');
      const out = convertHost(s, sd as 'float32', dd as 'bfloat16');
      new Uint8Array(need(dst, 'dst').buf).set(new Uint8Array(out.buffer, out.byteOffset, out.byteLength));
    },
    cudaFree: (h: unknown) => {
      const b = need(h, 'tensor');
      b.freed = true;
    },
    matmul: (o: Record<string, unknown>) => call('matmul', { ...o, a: host(o.a, o.dtype as string), b: host(o.b, o.dtype as string), out: host(o.out, o.dtype as string) }),
    attention: (o: Record<string, unknown>) =>
      call('attention', { ...o, q: host(o.q, 'float32'), k: host(o.k, 'float32'), v: host(o.v, 'float32'), out: host(o.out, 'float32'), lse: host(o.lse, 'float32') }),
    attentionBackward: (o: Record<string, unknown>) => {
      const m: Record<string, unknown> = { ...o };
      for (const k of ['dout', 'q', 'k', 'v', 'out', 'lse', 'dq', 'dk', 'dv']) m[k] = host(o[k], 'float32');
      return call('attentionBackward', m);
    },
    tokenLogprobs: (l: unknown, shape: number[], dtype: string, t: unknown, out: unknown, temp: number) => call('tokenLogprobs', host(l, dtype), shape, dtype, t, out, temp),
    tokenLogprobsBackward: (o: Record<string, unknown>) =>
      call('tokenLogprobsBackward', { ...o, logits: host(o.logits, o.dtype as string), dLogits: host(o.dLogits, o.dtype as string) }),
    devAxpy: (o: { y: unknown; x: unknown; alpha: number; n: number }) => {
      const y = f32(o.y, o.n, 'y'), x = f32(o.x, o.n, 'x');
      for (let i = 0; i < o.n; i++) y[i] += Math.fround(o.alpha * x[i]);
    },
    devScale: (o: { x: unknown; alpha: number; n: number }) => {
      const x = f32(o.x, o.n, 'x');
      for (let i = 0; i < o.n; i++) x[i] *= o.alpha;
    },
    devMul: (o: { y: unknown; x: unknown; n: number }) => {
      const y = f32(o.y, o.n, 'y'), x = f32(o.x, o.n, 'x');
      for (let i = 0; i < o.n; i++) y[i] *= x[i];
    },
    devAddBias: (o: { y: unknown; b: unknown; rows: number; cols: number }) => {
      const y = f32(o.y, o.rows * o.cols, 'y'), b = f32(o.b, o.cols, 'b');
      for (let i = 0; i < y.length; i++) y[i] += b[i % o.cols];
    },
    devGatherRows: (o: { src: unknown; srcRows: number; rows: Int32Array; d: number; out: unknown }) => {
      const s = f32(o.src, o.srcRows * o.d, 'src'), out = f32(o.out, o.rows.length * o.d, 'out');
      indices(o.rows, o.srcRows, 'rows');
      o.rows.forEach((r, i) => out.set(s.subarray(r * o.d, (r + 1) * o.d), i * o.d));
    },
    devScatterAddRows: (o: { src: unknown; rows: Int32Array; d: number; dst: unknown; dstRows: number }) => {
      const s = f32(o.src, o.rows.length * o.d, 'src'), t = f32(o.dst, o.dstRows * o.d, 'dst');
      indices(o.rows, o.dstRows, 'rows');
      o.rows.forEach((r, i) => {
        for (let j = 0; j < o.d; j++) t[r * o.d + j] += s[i * o.d + j];
      });
    },
    devEmbedding: (o: { table: unknown; bf16: boolean; vocab: number; d: number; ids: Int32Array; out: unknown }) => {
      const tab = o.bf16 ? (convertHost(u16(o.table, o.vocab * o.d, 'table'), 'bfloat16', 'float32') as Float32Array) : f32(o.table, o.vocab * o.d, 'table');
      const out = f32(o.out, o.ids.length * o.d, 'out');
      indices(o.ids, o.vocab, 'ids');
      o.ids.forEach((r, i) => out.set(tab.subarray(r * o.d, (r + 1) * o.d), i * o.d));
    },
    devEmbeddingBackward: (o: { dOut: unknown; ids: Int32Array; vocab: number; d: number; dTable: unknown; accumulate: boolean }) =>
      call('embeddingBackward', f32(o.dOut, o.ids.length * o.d, 'dOut'), o.ids, o.vocab, o.d, f32(o.dTable, o.vocab * o.d, 'dTable'), o.accumulate),
    devRope: (o: { x: unknown; positions: Int32Array; heads: number; headDim: number; theta: number; inverse: boolean; out: unknown; cos: Float32Array | null; sin: Float32Array | null; tablePositions: number }) => {
      const T = o.positions.length, n = T * o.heads * o.headDim;
      const x = f32(o.x, n, 'x'), out = f32(o.out, n, 'out');
      if (!o.cos || !o.sin) {
        call('ropeApply', { x, positions: o.positions, tokens: T, heads: o.heads, headDim: o.headDim, theta: o.theta, inverse: o.inverse, out });
        return;
      }
      const half = o.headDim / 2;
      if (o.cos.length !== o.tablePositions * half || o.sin.length !== o.tablePositions * half) throw new RangeError('cos/sin: wrong length (emulated)');
      indices(o.positions, o.tablePositions, 'positions');
      for (let t = 0; t < T; t++)
        for (let h = 0; h < o.heads; h++)
          for (let i = 0; i < half; i++) {
            const at = o.positions[t] * half + i, base = (t * o.heads + h) * o.headDim;
            const c = o.cos[at], s = o.inverse ? -o.sin[at] : o.sin[at];
            const x1 = x[base + i], x2 = x[base + half + i];
            out[base + i] = Math.fround(x1 * c - x2 * s);
            out[base + half + i] = Math.fround(x2 * c + x1 * s);
          }
    },
    devRmsnormForward: (o: { x: unknown; gain: unknown; rows: number; dim: number; eps: number; y: unknown; rstd: unknown }) =>
      call('rmsnormForward', { x: f32(o.x, o.rows * o.dim, 'x'), gain: f32(o.gain, o.dim, 'gain'), rows: o.rows, dim: o.dim, eps: o.eps, y: f32(o.y, o.rows * o.dim, 'y'), rstd: f32(o.rstd, o.rows, 'rstd') }),
    devRmsnormBackward: (o: Record<string, unknown> & { rows: number; dim: number }) =>
      call('rmsnormBackward', {
        dy: f32(o.dy, o.rows * o.dim, 'dy'), x: f32(o.x, o.rows * o.dim, 'x'), gain: f32(o.gain, o.dim, 'gain'), rstd: f32(o.rstd, o.rows, 'rstd'),
        rows: o.rows, dim: o.dim, eps: o.eps, dx: f32(o.dx, o.rows * o.dim, 'dx'), dGain: f32(o.dGain, o.dim, 'dGain'), accumulate: o.accumulate,
      }),
    devSwigluForward: (o: { gate: unknown; up: unknown; rows: number; ffn: number; h: unknown }) =>
      call('swigluForward', f32(o.gate, o.rows * o.ffn, 'gate'), f32(o.up, o.rows * o.ffn, 'up'), o.rows, o.ffn, f32(o.h, o.rows * o.ffn, 'h')),
    devSwigluBackward: (o: Record<string, unknown> & { rows: number; ffn: number }) => {
      const n = o.rows * o.ffn;
      return call('swigluBackward', { dh: f32(o.dh, n, 'dh'), gate: f32(o.gate, n, 'gate'), up: f32(o.up, n, 'up'), rows: o.rows, ffn: o.ffn, dGate: f32(o.dGate, n, 'dGate'), dUp: f32(o.dUp, n, 'dUp') });
    },
    devLayernormForward: (o: Record<string, unknown> & { rows: number; dim: number }) =>
      call('layernormForward', {
        x: f32(o.x, o.rows * o.dim, 'x'), gamma: f32(o.gamma, o.dim, 'gamma'), beta: o.beta === null ? null : f32(o.beta, o.dim, 'beta'), rows: o.rows, dim: o.dim, eps: o.eps,
        y: f32(o.y, o.rows * o.dim, 'y'), mean: f32(o.mean, o.rows, 'mean'), rstd: f32(o.rstd, o.rows, 'rstd'),
      }),
    devLayernormBackward: (o: Record<string, unknown> & { rows: number; dim: number }) =>
      call('layernormBackward', {
        dy: f32(o.dy, o.rows * o.dim, 'dy'), x: f32(o.x, o.rows * o.dim, 'x'), gamma: f32(o.gamma, o.dim, 'gamma'), mean: f32(o.mean, o.rows, 'mean'), rstd: f32(o.rstd, o.rows, 'rstd'),
        rows: o.rows, dim: o.dim, eps: o.eps, dx: f32(o.dx, o.rows * o.dim, 'dx'),
        dGamma: o.dGamma === null ? null : f32(o.dGamma, o.dim, 'dGamma'), dBeta: o.dBeta === null ? null : f32(o.dBeta, o.dim, 'dBeta'), accumulate: o.accumulate,
      }),
    devGeluForward: (o: { x: unknown; n: number; kind: number; y: unknown }) => call('geluForward', { x: f32(o.x, o.n, 'x'), n: o.n, kind: o.kind, y: f32(o.y, o.n, 'y') }),
    devGeluBackward: (o: { dy: unknown; x: unknown; n: number; kind: number; dx: unknown }) =>
      call('geluBackward', { dy: f32(o.dy, o.n, 'dy'), x: f32(o.x, o.n, 'x'), n: o.n, kind: o.kind, dx: f32(o.dx, o.n, 'dx') }),
    devMatmulF32Bf16: (o: { a: unknown; b: unknown; bias: unknown; out: unknown; m: number; n: number; k: number; transB: boolean }) =>
      call('matmulF32Bf16', {
        a: f32(o.a, o.m * o.k, 'a'), b: u16(o.b, o.k * o.n, 'b'), bias: o.bias === null ? null : f32(o.bias, o.n, 'bias'), out: f32(o.out, o.m * o.n, 'out'),
        m: o.m, n: o.n, k: o.k, transB: o.transB,
      }),
    devAdamw: (o: Record<string, unknown> & { n: number }) =>
      call('adamwStep', {
        param: f32(o.param, o.n, 'param'), grad: f32(o.grad, o.n, 'grad'), m: f32(o.m, o.n, 'm'), v: f32(o.v, o.n, 'v'),
        lr: o.lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay, step: o.step, gradScale: o.gradScale,
      }),
    devSumSquares: (o: { x: unknown; n: number }) => {
      const x = f32(o.x, o.n, 'x');
      let s = 0;
      for (let i = 0; i < x.length; i++) s += x[i] * x[i];
      return s;
    },
    devDecodeAttention: (o: { q: unknown; kcache: unknown; vcache: unknown; cacheRows: number; base: Int32Array; nkeys: Int32Array; heads: number; kvHeads: number; headDim: number; scale: number; out: unknown }) => {
      const { heads: H, kvHeads: Hkv, headDim: D } = o;
      const n = o.base.length;
      const q = f32(o.q, n * H * D, 'q'), kc = f32(o.kcache, o.cacheRows * Hkv * D, 'kcache'), vc = f32(o.vcache, o.cacheRows * Hkv * D, 'vcache');
      const out = f32(o.out, n * H * D, 'out');
      for (let i = 0; i < n; i++) {
        if (o.base[i] < 0 || o.nkeys[i] < 0 || o.base[i] + o.nkeys[i] > o.cacheRows) throw new RangeError(`decode: row ${i} outside the cache (emulated)`);
        for (let h = 0; h < H; h++) {
          const g = Math.floor(h / (H / Hkv));
          const s = new Float64Array(o.nkeys[i]);
          let mx = -Infinity, sum = 0;
          for (let t = 0; t < o.nkeys[i]; t++) {
            let dot = 0;
            for (let j = 0; j < D; j++) dot += q[(i * H + h) * D + j] * kc[((o.base[i] + t) * Hkv + g) * D + j];
            s[t] = dot * o.scale;
            mx = Math.max(mx, s[t]);
          }
          for (let t = 0; t < s.length; t++) sum += (s[t] = Math.exp(s[t] - mx));
          for (let j = 0; j < D; j++) {
            let acc = 0;
            for (let t = 0; t < s.length; t++) acc += (s[t] / sum) * vc[((o.base[i] + t) * Hkv + g) * D + j];
            out[(i * H + h) * D + j] = acc;
          }
        }
      }
    },
  };
  for (const [k, f] of Object.entries(patch)) a[k] = f as Fn;
  return () => {
    for (const k of Object.keys(patch)) a[k] = orig[k];
  };
}
