import test from 'ava';
import * as vp from '../lib/index.js';
import { randomFloats, relError } from './helpers.js';

interface Spec {
  lq: number[];
  lk?: number[]; // omitted: K uses the Q lengths (no cuSeqlensK)
  H: number;
  Hkv: number;
  D: number;
  causal?: boolean;
  scale?: number;
  noCu?: boolean; // pass no cuSeqlens at all (one sequence)
}

interface Inputs {
  cuq: Int32Array;
  cuk: Int32Array;
  tq: number;
  tk: number;
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  dout: Float32Array;
}

function cumulative(l: number[]): Int32Array {
  const cu = new Int32Array(l.length + 1);
  for (let i = 0; i < l.length; i++) cu[i + 1] = cu[i] + l[i];
  return cu;
}

function inputs(s: Spec, seed: number): Inputs {
  const cuq = cumulative(s.lq);
  const cuk = cumulative(s.lk ?? s.lq);
  const tq = cuq[cuq.length - 1];
  const tk = cuk[cuk.length - 1];
  return {
    cuq, cuk, tq, tk,
    q: randomFloats(tq * s.H * s.D, seed, -1.5, 1.5),
    k: randomFloats(tk * s.Hkv * s.D, seed + 1, -1.5, 1.5),
    v: randomFloats(tk * s.Hkv * s.D, seed + 2),
    dout: randomFloats(tq * s.H * s.D, seed + 3),
  };
}

/** float64 reference, straight from the definition. */
function reference(s: Spec, x: Inputs) {
  const { H, Hkv, D } = s;
  const G = H / Hkv;
  const sc = s.scale ?? 1 / Math.sqrt(D);
  const out = new Float64Array(x.tq * H * D);
  const lse = new Float64Array(H * x.tq).fill(-Infinity);
  const dq = new Float64Array(x.tq * H * D);
  const dk = new Float64Array(x.tk * Hkv * D);
  const dv = new Float64Array(x.tk * Hkv * D);
  for (let b = 0; b + 1 < x.cuq.length; b++) {
    const q0 = x.cuq[b], Tq = x.cuq[b + 1] - q0, k0 = x.cuk[b], Tk = x.cuk[b + 1] - k0;
    for (let h = 0; h < H; h++) {
      const hk = Math.floor(h / G);
      for (let i = 0; i < Tq; i++) {
        const nvis = s.causal ? Math.min(Tk, Math.max(0, i + Tk - Tq + 1)) : Tk;
        if (nvis === 0) continue;
        const qo = ((q0 + i) * H + h) * D;
        const sc_ = new Float64Array(nvis);
        let m = -Infinity;
        for (let j = 0; j < nvis; j++) {
          const ko = ((k0 + j) * Hkv + hk) * D;
          let acc = 0;
          for (let d = 0; d < D; d++) acc += x.q[qo + d] * x.k[ko + d];
          sc_[j] = acc * sc;
          if (sc_[j] > m) m = sc_[j];
        }
        let l = 0;
        for (let j = 0; j < nvis; j++) l += (sc_[j] = Math.exp(sc_[j] - m));
        for (let j = 0; j < nvis; j++) sc_[j] /= l;
        lse[h * x.tq + q0 + i] = m + Math.log(l);
        const dp = new Float64Array(nvis);
        let delta = 0;
        for (let j = 0; j < nvis; j++) {
          const vo = ((k0 + j) * Hkv + hk) * D;
          let acc = 0;
          for (let d = 0; d < D; d++) {
            out[qo + d] += sc_[j] * x.v[vo + d];
            acc += x.dout[qo + d] * x.v[vo + d];
          }
          dp[j] = acc;
          delta += sc_[j] * acc;
        }
        for (let j = 0; j < nvis; j++) {
          const ds = sc_[j] * (dp[j] - delta) * sc;
          const ko = ((k0 + j) * Hkv + hk) * D;
          for (let d = 0; d < D; d++) {
            dq[qo + d] += ds * x.k[ko + d];
            dk[ko + d] += ds * x.q[qo + d];
            dv[ko + d] += sc_[j] * x.dout[qo + d];
          }
        }
      }
    }
  }
  return { out, lse, dq, dk, dv };
}

function opts(s: Spec, x: Inputs): vp.AttentionOptions {
  const o: vp.AttentionOptions = { causal: s.causal ?? false };
  if (!s.noCu) {
    o.cuSeqlensQ = x.cuq;
    if (s.lk) o.cuSeqlensK = x.cuk;
  }
  if (s.scale !== undefined) o.scale = s.scale;
  return o;
}

function run(s: Spec, x: Inputs) {
  const q = vp.tensor(x.q, [x.tq, s.H, s.D]);
  const k = vp.tensor(x.k, [x.tk, s.Hkv, s.D]);
  const v = vp.tensor(x.v, [x.tk, s.Hkv, s.D]);
  const o = opts(s, x);
  const { out, lse } = vp.attention(q, k, v, o);
  const g = vp.attentionBackward(vp.tensor(x.dout, [x.tq, s.H, s.D]), q, k, v, out, lse, o);
  return { out: out.data as Float32Array, lse: lse.data as Float32Array, dq: g.dq.data as Float32Array, dk: g.dk.data as Float32Array, dv: g.dv.data as Float32Array };
}

function lseError(ours: Float32Array, ref: Float64Array): number {
  const a: number[] = [];
  const b: number[] = [];
  for (let i = 0; i < ref.length; i++) {
    if (ref[i] === -Infinity) {
      if (ours[i] !== -Infinity) return Infinity;
      continue;
    }
    a.push(ours[i]);
    b.push(ref[i]);
  }
  return b.length ? relError(a, b) : 0;
}

function label(s: Spec): string {
  return `lq=[${s.lq}] lk=[${s.lk ?? ''}] H=${s.H} Hkv=${s.Hkv} D=${s.D}${s.causal ? ' causal' : ''}`;
}

function checkAgainstReference(t: import('ava').ExecutionContext, s: Spec, seed: number) {
  const x = inputs(s, seed);
  const r = reference(s, x);
  const o = run(s, x);
  const errs = {
    out: relError(o.out, r.out), lse: lseError(o.lse, r.lse),
    dq: relError(o.dq, r.dq), dk: relError(o.dk, r.dk), dv: relError(o.dv, r.dv),
  };
  for (const [name, e] of Object.entries(errs)) t.true(e <= 1e-5, `${label(s)}: ${name} rel error ${e}`);
}

test('attention matches a float64 reference for every head dim on a mixed batch with an empty sequence', (t) => {
  let seed = 10;
  for (const D of [16, 32, 64, 80, 128, 256])
    for (const causal of [false, true])
      checkAgainstReference(t, { lq: [17, 0, 129, 1, 64], H: 2, Hkv: 1, D, causal }, (seed += 10));
});

test('attention matches the reference for single sequences of length 1, 17, 127, 128, 129 and 1000', (t) => {
  let seed = 200;
  for (const T of [1, 17, 127, 128, 129, 1000])
    for (const causal of [false, true])
      checkAgainstReference(t, { lq: [T], H: 1, Hkv: 1, D: 64, causal, noCu: T % 2 === 1 }, (seed += 10));
});

test('attention matches the reference for grouped-query heads H/Hkv = 1, 2, 4, 8', (t) => {
  let seed = 400;
  for (const G of [1, 2, 4, 8])
    for (const causal of [false, true])
      checkAgainstReference(t, { lq: [33, 0, 70], H: 2 * G, Hkv: 2, D: 32, causal }, (seed += 10));
});

test('causal attention with Tq != Tk aligns bottom-right; rows that see no key give 0 and -Infinity', (t) => {
  const s: Spec = { lq: [5, 40, 1, 0, 3], lk: [17, 30, 0, 3, 0], H: 4, Hkv: 2, D: 16, causal: true, scale: 0.4 };
  checkAgainstReference(t, s, 600);
  checkAgainstReference(t, { ...s, causal: false }, 610);
  const x = inputs(s, 620);
  const o = run(s, x);
  // sequence 1: Tq = 40, Tk = 30, so its first 10 rows see nothing; sequence 2 has no keys at all
  const noKey = [...Array.from({ length: 10 }, (_, i) => 5 + i), 45];
  for (const row of noKey)
    for (let h = 0; h < s.H; h++) {
      t.is(o.lse[h * x.tq + row], -Infinity, `row ${row} head ${h}`);
      for (let d = 0; d < s.D; d++) {
        t.is(o.out[(row * s.H + h) * s.D + d], 0);
        t.is(o.dq[(row * s.H + h) * s.D + d], 0);
      }
    }
  t.true(Number.isFinite(o.lse[15]));
});

test('attention gradients agree with finite differences of the forward', (t) => {
  for (const causal of [false, true]) {
    const s: Spec = { lq: [3, 5], lk: [4, 6], H: 2, Hkv: 1, D: 4, causal };
    const x = inputs(s, causal ? 700 : 710);
    const g = run(s, x);
    const loss = () => {
      const o = vp.attention(vp.tensor(x.q, [x.tq, s.H, s.D]), vp.tensor(x.k, [x.tk, s.Hkv, s.D]), vp.tensor(x.v, [x.tk, s.Hkv, s.D]), opts(s, x));
      const out = o.out.data as Float32Array;
      let acc = 0;
      for (let i = 0; i < out.length; i++) acc += out[i] * x.dout[i];
      return acc;
    };
    for (const [name, arr, grad] of [['q', x.q, g.dq], ['k', x.k, g.dk], ['v', x.v, g.dv]] as const) {
      const fd = new Float64Array(arr.length);
      for (let i = 0; i < arr.length; i++) {
        const x0 = arr[i];
        const e = 2e-2;
        arr[i] = x0 + e;
        const lp = loss();
        arr[i] = x0 - e;
        const lm = loss();
        arr[i] = x0;
        fd[i] = (lp - lm) / (Math.fround(x0 + e) - Math.fround(x0 - e));
      }
      const err = relError(grad, fd);
      t.true(err <= 2e-3, `${name} causal=${causal}: finite-difference rel error ${err}`);
    }
  }
});

test('attention defaults: one sequence without cuSeqlens, scale 1/sqrt(D), K lengths from Q', (t) => {
  const s: Spec = { lq: [20], H: 2, Hkv: 2, D: 8, noCu: true };
  checkAgainstReference(t, s, 800);
  checkAgainstReference(t, { ...s, lq: [12, 8], noCu: false, causal: true }, 810); // cuSeqlensQ only
  // the cuSeqlens may be a 1-D CPU int32 tensor too
  const x = inputs({ ...s, lq: [12, 8] }, 820);
  const q = vp.tensor(x.q, [20, 2, 8]);
  const a = vp.attention(q, vp.tensor(x.k, [20, 2, 8]), vp.tensor(x.v, [20, 2, 8]), { cuSeqlensQ: vp.tensor(x.cuq, [3]) });
  const b = vp.attention(q, vp.tensor(x.k, [20, 2, 8]), vp.tensor(x.v, [20, 2, 8]), { cuSeqlensQ: x.cuq });
  t.deepEqual(Array.from(a.out.data), Array.from(b.out.data));
  t.deepEqual(a.lse.shape, [2, 20]);
  t.is(a.lse.dtype, 'float32');
});

test('attention rejects invalid calls with TypeError/RangeError naming the argument', (t) => {
  const q = vp.tensor(new Float32Array(4 * 4 * 8), [4, 4, 8]);
  const k = vp.tensor(new Float32Array(4 * 2 * 8), [4, 2, 8]);
  const v = vp.tensor(new Float32Array(4 * 2 * 8), [4, 2, 8]);
  t.notThrows(() => vp.attention(q, k, v));
  t.throws(() => vp.attention(vp.tensor(new Float32Array(32), [4, 8]), k, v), { instanceOf: RangeError, message: /attention: q\.shape must be 3-D/ });
  t.throws(() => vp.attention(q, vp.tensor(new Float32Array(4 * 3 * 8), [4, 3, 8]), vp.tensor(new Float32Array(4 * 3 * 8), [4, 3, 8])), { instanceOf: RangeError, message: /k\.shape.*Hkv dividing H=4/ });
  t.throws(() => vp.attention(q, vp.tensor(new Float32Array(4 * 2 * 4), [4, 2, 4]), v), { instanceOf: RangeError, message: /k\.shape.*D=8/ });
  t.throws(() => vp.attention(q, k, vp.tensor(new Float32Array(3 * 2 * 8), [3, 2, 8])), { instanceOf: RangeError, message: /v\.shape/ });
  const big = vp.tensor(new Float32Array(257), [1, 1, 257]);
  t.throws(() => vp.attention(big, big, big), { instanceOf: RangeError, message: /D <= 256/ });
  t.throws(() => vp.attention(q, k, vp.tensor(new Int32Array(64), [4, 2, 8])), { instanceOf: TypeError, message: /v\.dtype/ });
  t.throws(() => vp.attention(q, k, 'v' as unknown as vp.Tensor), { instanceOf: TypeError, message: /attention: v must be a Tensor/ });
  t.throws(() => vp.attention(q, k, v, { causal: 1 as unknown as boolean }), { instanceOf: TypeError, message: /opts\.causal/ });
  t.throws(() => vp.attention(q, k, v, { scale: NaN }), { instanceOf: RangeError, message: /opts\.scale/ });
  t.throws(() => vp.attention(q, k, v, { cuSeqlensQ: new Int32Array([0, 3]) }), { instanceOf: RangeError, message: /opts\.cuSeqlensQ\[1\]/ });
  t.throws(() => vp.attention(q, k, v, { cuSeqlensQ: new Int32Array([1, 4]) }), { instanceOf: RangeError, message: /opts\.cuSeqlensQ\[0\]/ });
  t.throws(() => vp.attention(q, k, v, { cuSeqlensQ: new Int32Array([0, 3, 2, 4]) }), { instanceOf: RangeError, message: /opts\.cuSeqlensQ\[2\]/ });
  t.throws(() => vp.attention(q, k, v, { cuSeqlensQ: [0, 4] as unknown as Int32Array }), { instanceOf: TypeError, message: /opts\.cuSeqlensQ/ });
  t.throws(() => vp.attention(q, k, v, { cuSeqlensK: new Int32Array([0, 4]) }), { instanceOf: TypeError, message: /opts\.cuSeqlensK/ });
  t.throws(() => vp.attention(q, k, v, { cuSeqlensQ: new Int32Array([0, 4]), cuSeqlensK: new Int32Array([0, 2, 4]) }), { instanceOf: RangeError, message: /opts\.cuSeqlensK\.length/ });
  t.throws(() => vp.attention(q, vp.tensor(new Float32Array(5 * 16), [5, 2, 8]), vp.tensor(new Float32Array(5 * 16), [5, 2, 8]), { cuSeqlensQ: new Int32Array([0, 4]) }), { instanceOf: RangeError, message: /without opts\.cuSeqlensK/ });
  const { out, lse } = vp.attention(q, k, v);
  const dout = vp.tensor(new Float32Array(4 * 4 * 8), [4, 4, 8]);
  t.notThrows(() => vp.attentionBackward(dout, q, k, v, out, lse));
  t.throws(() => vp.attentionBackward(vp.tensor(new Float32Array(4 * 4 * 7), [4, 4, 7]), q, k, v, out, lse), { instanceOf: RangeError, message: /attentionBackward: dout\.shape/ });
  t.throws(() => vp.attentionBackward(dout, q, k, v, out, vp.tensor(new Float32Array(8), [2, 4])), { instanceOf: RangeError, message: /lse\.shape.*H=4/ });
  t.throws(() => vp.attentionBackward(dout, q, k, v, vp.tensor(new Int32Array(128), [4, 4, 8]), lse), { instanceOf: TypeError, message: /out\.dtype/ });
  const fake = new vp.Tensor([4, 2, 8], 'float32', 'cuda', undefined, undefined);
  t.throws(() => vp.attention(q, fake, v), { instanceOf: TypeError, message: /attention: k must be on cpu like q/ });
});

test('attention on CUDA (bf16/f16/f32 against the float64 reference) or a clean skip', (t) => {
  const info = vp.backendInfo();
  if (!info.cuda) {
    t.log(`skipped: no CUDA device (${info.cudaReason})`);
    t.pass();
    return;
  }
  const s: Spec = { lq: [100, 0, 37], lk: [90, 5, 60], H: 4, Hkv: 2, D: 64, causal: true };
  const x = inputs(s, 900);
  const r = reference(s, x);
  for (const dtype of ['float32', 'bfloat16', 'float16'] as const) {
    const dev = (a: Float32Array, shape: number[]) => vp.tensor(a, shape).to('cuda', dtype);
    const q = dev(x.q, [x.tq, s.H, s.D]);
    const k = dev(x.k, [x.tk, s.Hkv, s.D]);
    const v = dev(x.v, [x.tk, s.Hkv, s.D]);
    const o = opts(s, x);
    const { out, lse } = vp.attention(q, k, v, o);
    const g = vp.attentionBackward(dev(x.dout, [x.tq, s.H, s.D]), q, k, v, out, lse, o);
    const tol = dtype === 'float32' ? 1e-5 : dtype === 'bfloat16' ? 2e-2 : 4e-3;
    const back = (tt: vp.Tensor) => Float32Array.from(tt.toArray());
    t.true(relError(back(out), r.out) <= tol, `${dtype} out`);
    t.true(lseError(back(lse), r.lse) <= tol, `${dtype} lse`);
    t.true(relError(back(g.dq), r.dq) <= 4 * tol, `${dtype} dq`);
    t.true(relError(back(g.dk), r.dk) <= 4 * tol, `${dtype} dk`);
    t.true(relError(back(g.dv), r.dv) <= 4 * tol, `${dtype} dv`);
  }
});

test('NaN in q or k and infinity in v reach the outputs that see them, as in PyTorch; other rows are untouched', (t) => {
  // One causal sequence of 12 rows, 2 heads sharing one KV head, D = 8.
  const T = 12, H = 2, D = 8;
  const q = randomFloats(T * H * D, 31, -1, 1), k = randomFloats(T * D, 32, -1, 1), v = randomFloats(T * D, 33, -1, 1);
  q[(2 * H + 1) * D + 3] = NaN; // row 2, head 1
  k[7 * D + 5] = NaN; // key 7: every row from 7 on
  v[4 * D + 6] = Infinity; // key 4, feature 6: rows 4..6 (rows 7.. are NaN already)
  const r = vp.attention(vp.tensor(q, [T, H, D]), vp.tensor(k, [T, 1, D]), vp.tensor(v, [T, 1, D]), { causal: true });
  const out = r.out.data as Float32Array, lse = r.lse.data as Float32Array;
  for (let i = 0; i < T; i++) {
    for (let h = 0; h < H; h++) {
      const rowNaN = (i === 2 && h === 1) || i >= 7;
      t.is(Number.isNaN(lse[h * T + i]), rowNaN, `lse row ${i} head ${h}`);
      for (let d = 0; d < D; d++) t.is(Number.isNaN(out[(i * H + h) * D + d]), rowNaN || (i >= 4 && d === 6), `out row ${i} head ${h} feature ${d}`);
    }
  }
});
