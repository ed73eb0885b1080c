// The vision side of a Hugging Face vision-language model, forward and
// backward, on the package's ops (on the CPU, or on CUDA through
// lib/pretrained/device.ts when the model was loaded there): the ViT towers of transformers'
// modeling_siglip.py, modeling_clip.py and modeling_idefics3.py /
// modeling_smolvlm.py, and the connectors (Idefics3/SmolVLM pixel shuffle +
// modality_projection, LLaVA's multi_modal_projector).
//
//   patches  = im2col(pixels [n, C, H, W]) (features in (c, ky, kx) order, the conv weight's)
//   e        = patches·Wpᵀ (+ bp)                       the stride-p convolution as one matmul
//   CLIP:      e = [cls; e];   SigLIP / NaViT: no class token
//   e       += pos[ids]   ids = 0.. (SigLIP, CLIP), or NaViT's bucketed grid ids (Idefics3)
//   CLIP:      e = LN_pre(e)
//   per layer: h = h + Attn(LN1(h))·Woᵀ + bo   (bidirectional, one sequence per image)
//              h = h + act(LN2(h)·W1ᵀ + b1)·W2ᵀ + b2
//   Idefics3 / SmolVLM: y = LN_post(h_L); pixel shuffle by s; y·Wprojᵀ
//   LLaVA:     y = concat over feature layers l of hidden_states[l] (first token dropped under
//              'default'); linear_2(act(linear_1(y)))
//
// Attention runs on vp.attention (varlen, never T×T). NaViT position ids
// reproduce torch.arange / torch.bucketize in float32 as torch 1.13+ on x86
// computes them (8-wide vector blocks), which can repeat an id for some grid
// sizes; transformers does the same. Cost per image: ≈ 2·S·(4D² + 2DF) + 2·S²·D
// multiply-adds forward per layer (S tokens), twice that backward; activations
// kept for backward ≈ (8D + 2F)·S floats per layer, only when the tower trains
// (a frozen tower keeps nothing; the connector keeps its input).
import { attention, attentionBackward } from '../ops/attention.js';
import { matmul } from '../ops/matmul.js';
import { recycleOutput, Tensor, tensor } from '../tensor.js';
import { Bf16Compute, bf16Tensor, embeddingW, isBf16, linearW } from './bf16.js';
import { addGrad, type Param } from './decoder.js';
import {
  addInto, colSum, embed, embedGrad, gatherRows, geluBackwardD, geluD, layerNormBackwardD, layerNormD, linear, matmulWeight,
  scatterAddRows, view, zerosOn, type Stats,
} from './device.js';
import type { VisionSpec, VlmSpec } from './vlm-config.js';

const f32 = (t: Tensor) => t.data as Float32Array;

interface Lin {
  w: Param;
  b?: Param;
}

interface VLayer {
  ln1g: Param;
  ln1b: Param;
  q: Lin;
  k: Lin;
  v: Lin;
  o: Lin;
  ln2g: Param;
  ln2b: Param;
  fc1: Lin;
  fc2: Lin;
}

interface VLayerSave {
  x: Tensor;
  n1: Tensor;
  m1: Stats;
  r1: Stats;
  q: Tensor;
  k: Tensor;
  v: Tensor;
  /** The q, k, v projections' outputs that q, k, v view. */
  qkv: Tensor[];
  att: Tensor;
  lse: Tensor;
  x2: Tensor;
  n2: Tensor;
  m2: Stats;
  r2: Stats;
  f1: Tensor;
  a: Tensor;
}

/** What a training forward keeps for the backward pass. */
export interface VisionSaved {
  n: number;
  seq: number;
  patches: Tensor;
  posIds: Int32Array;
  pre: { x: Tensor; m: Stats; r: Stats } | null;
  layers: VLayerSave[];
  post: { x: Tensor; m: Stats; r: Stats } | null;
}

function linFwd(x: Tensor, L: Lin, cw: Bf16Compute): Tensor {
  return linear(x, cw.weight(L.w), L.b?.value);
}

/** dx (or null) of y = x·Wᵀ + b, accumulating the trainable parameters' gradients. */
function linBwd(dy: Tensor, x: Tensor, L: Lin, needDx: boolean, cw: Bf16Compute): Tensor | null {
  if (L.w.trainable) addGrad(L.w, cw.weightGrad(dy, x));
  if (L.b?.trainable) addGrad(L.b, colSum(dy));
  return needDx ? matmulWeight(dy, cw.weight(L.w)) : null;
}

/** torch.arange(start, end, step) in float32 as torch's CPU kernel computes it (doubles, 8-wide vector blocks). */
export function torchArangeF32(start: number, end: number, step: number): Float32Array {
  const n = Math.max(0, Math.ceil((end - start) / step));
  const out = new Float32Array(n);
  const W = 8;
  let i = 0;
  for (; i + 2 * W <= n; i += 2 * W)
    for (let c = 0; c < 2; c++) {
      const base = Math.fround(start + step * (i + c * W));
      for (let k = 0; k < W; k++) out[i + c * W + k] = base + k * step;
    }
  for (; i < n; i++) out[i] = start + step * i;
  return out;
}

/** NaViT position ids of an hp × wp patch grid on a tower of `perSide` patches per side (Idefics3VisionEmbeddings). */
export function navitPositionIds(hp: number, wp: number, perSide: number): Int32Array {
  const boundaries = torchArangeF32(1 / perSide, 1, 1 / perSide);
  const bucket = (count: number): Int32Array => {
    const coords = torchArangeF32(0, 1 - 1e-6, Math.fround(1 / count));
    return Int32Array.from(coords, (x) => {
      let k = 0; // bucketize(right=True): the number of boundaries <= x
      while (k < boundaries.length && boundaries[k] <= x) k++;
      return k;
    });
  };
  const bh = bucket(hp), bw = bucket(wp);
  const ids = new Int32Array(hp * wp);
  for (let i = 0; i < hp; i++) for (let j = 0; j < wp; j++) ids[i * wp + j] = bh[i] * perSide + bw[j];
  return ids;
}

/** A ViT vision tower (see the file comment). */
export class VisionTower {
  readonly spec: VisionSpec;
  readonly patchW: Param;
  readonly patchB: Param | null;
  readonly pos: Param;
  readonly cls: Param | null;
  readonly preG: Param | null;
  readonly preB: Param | null;
  readonly layers: VLayer[];
  readonly postG: Param;
  readonly postB: Param;

  /** bfloat16 compute's weight copies, shared with the decoder (lib/pretrained/bf16.ts). */
  readonly compute: Bf16Compute;

  constructor(spec: VisionSpec, get: (name: string) => Param, prefix: string, compute = new Bf16Compute()) {
    this.spec = spec;
    this.compute = compute;
    const P = prefix;
    const lin = (path: string): Lin => ({ w: get(`${path}.weight`), b: get(`${path}.bias`) });
    this.patchW = get(`${P}embeddings.patch_embedding.weight`);
    this.patchB = spec.kind === 'clip' ? null : get(`${P}embeddings.patch_embedding.bias`);
    this.pos = get(`${P}embeddings.position_embedding.weight`);
    this.cls = spec.kind === 'clip' ? get(`${P}embeddings.class_embedding`) : null;
    this.preG = spec.kind === 'clip' ? get(`${P}pre_layrnorm.weight`) : null;
    this.preB = spec.kind === 'clip' ? get(`${P}pre_layrnorm.bias`) : null;
    this.layers = [];
    for (let l = 0; l < spec.layers; l++) {
      const q = `${P}encoder.layers.${l}.`;
      this.layers.push({
        ln1g: get(`${q}layer_norm1.weight`), ln1b: get(`${q}layer_norm1.bias`),
        q: lin(`${q}self_attn.q_proj`), k: lin(`${q}self_attn.k_proj`), v: lin(`${q}self_attn.v_proj`), o: lin(`${q}self_attn.out_proj`),
        ln2g: get(`${q}layer_norm2.weight`), ln2b: get(`${q}layer_norm2.bias`), fc1: lin(`${q}mlp.fc1`), fc2: lin(`${q}mlp.fc2`),
      });
    }
    this.postG = get(`${P}post_layernorm.weight`);
    this.postB = get(`${P}post_layernorm.bias`);
  }

  /** Tokens per image of an H × W input (class token included). */
  seqLen(H: number, W: number): number {
    const p = this.spec.patch;
    return (H / p) * (W / p) + (this.spec.kind === 'clip' ? 1 : 0);
  }

  /**
   * Runs the tower over pixels [n, C, H, W] (H, W multiples of the patch, and
   * the configured image size for SigLIP and CLIP). Returns hidden_states[i]
   * for i ≤ `upTo` (hidden_states[0] = the embeddings), and the post-LayerNormed
   * last state when `post` (then upTo must be the layer count).
   */
  forward(pixels: Float32Array, n: number, H: number, W: number, opts: { upTo: number; post: boolean; train: boolean }): { hidden: Tensor[]; post: Tensor | null; saved: VisionSaved | null } {
    const s = this.spec;
    const { patch: p, channels: C, hidden: D } = s;
    const hp = H / p, wp = W / p, np = hp * wp;
    const S = this.seqLen(H, W);
    const F = C * p * p;
    // im2col
    const pt = new Float32Array(n * np * F);
    for (let i = 0; i < n; i++)
      for (let py = 0; py < hp; py++)
        for (let px = 0; px < wp; px++) {
          const o = ((i * hp + py) * wp + px) * F;
          for (let c = 0; c < C; c++)
            for (let ky = 0; ky < p; ky++) {
              const src = ((i * C + c) * H + py * p + ky) * W + px * p;
              pt.set(pixels.subarray(src, src + p), o + (c * p + ky) * p);
            }
        }
    const pw = this.patchW.value;
    const posIds = s.kind === 'navit' ? navitPositionIds(hp, wp, s.imageSize / p) : Int32Array.from({ length: S }, (_, i) => i);
    const off = s.kind === 'clip' ? 1 : 0;
    let patches: Tensor;
    let x: Tensor;
    if (pw.device === 'cuda') {
      // [cls;] patch embeddings scattered into their rows of zeros, then + the position rows.
      patches = tensor(pt, [n * np, F]).to('cuda');
      const emb = linear(patches, view(pw, [D, F]), this.patchB?.value);
      x = zerosOn([n * S, D], 'cuda');
      scatterAddRows(x, emb, Int32Array.from({ length: n * np }, (_, r) => Math.floor(r / np) * S + off + (r % np)));
      if (this.cls) scatterAddRows(x, gatherRows(view(this.cls.value, [1, D]), new Int32Array(n)), Int32Array.from({ length: n }, (_, i) => i * S));
      addInto(x, embed(this.pos.value, tiledIds(posIds, n)));
    } else {
      patches = tensor(pt, [n * np, F]);
      const emb = f32(linearW(patches, isBf16(pw) ? bf16Tensor(pw.data as Uint16Array, [D, F]) : tensor(f32(pw), [D, F]), this.patchB?.value));
      const pe = f32(embeddingW(this.pos.value, posIds));
      const x0 = new Float32Array(n * S * D);
      for (let i = 0; i < n; i++) {
        if (this.cls) x0.set(f32(this.cls.value), i * S * D);
        x0.set(emb.subarray(i * np * D, (i + 1) * np * D), (i * S + off) * D);
        const row = x0.subarray(i * S * D, (i + 1) * S * D);
        for (let j = 0; j < S * D; j++) row[j] += pe[j];
      }
      x = tensor(x0, [n * S, D]);
    }
    let pre: VisionSaved['pre'] = null;
    if (this.preG) {
      const r = layerNormD(x, this.preG.value, this.preB!.value, s.eps);
      if (opts.train) pre = { x, m: r.mean, r: r.rstd };
      x = r.y;
    }
    const hidden: Tensor[] = [x];
    const cu = Int32Array.from({ length: n + 1 }, (_, i) => i * S);
    const saves: VLayerSave[] = [];
    for (let l = 0; l < opts.upTo; l++) {
      const L = this.layers[l];
      const a1 = layerNormD(x, L.ln1g.value, L.ln1b.value, s.eps);
      const qkv = [L.q, L.k, L.v].map((P) => linFwd(a1.y, P, this.compute));
      const [q, k, v] = qkv.map((t) => view(t, [n * S, s.heads, s.headDim]));
      const { out: att, lse } = attention(q, k, v, { cuSeqlensQ: cu, causal: false });
      const x2 = linFwd(view(att, [n * S, D]), L.o, this.compute);
      addInto(x2, x);
      const a2 = layerNormD(x2, L.ln2g.value, L.ln2b.value, s.eps);
      const f1 = linFwd(a2.y, L.fc1, this.compute);
      const a = geluD(f1, s.act);
      const x3 = linFwd(a, L.fc2, this.compute);
      addInto(x3, x2);
      if (opts.train) saves.push({ x, n1: a1.y, m1: a1.mean, r1: a1.rstd, q, k, v, qkv, att, lse, x2, n2: a2.y, m2: a2.mean, r2: a2.rstd, f1, a });
      // Without training the layer's intermediates are dead once x3 is formed: back to the
      // output pool (the hidden states themselves are returned).
      else recycleOutput(a1.y, ...qkv, att, lse, x2, a2.y, f1, a);
      x = x3;
      hidden.push(x);
    }
    let postOut: Tensor | null = null;
    let post: VisionSaved['post'] = null;
    if (opts.post) {
      const r = layerNormD(x, this.postG.value, this.postB.value, s.eps);
      postOut = r.y;
      if (opts.train) post = { x, m: r.mean, r: r.rstd };
    }
    const saved = opts.train ? { n, seq: S, patches, posIds, pre, layers: saves, post } : null;
    return { hidden, post: postOut, saved };
  }

  /**
   * Backward of forward(): gradients of hidden_states[i] (dHidden[i], may be
   * missing) and of the post-LayerNormed output; accumulates the gradients of
   * the trainable parameters.
   */
  backward(saved: VisionSaved, dHidden: (Tensor | null | undefined)[], dPost: Tensor | null): void {
    const s = this.spec;
    const D = s.hidden;
    const { n, seq: S } = saved;
    const rows = n * S;
    const cu = Int32Array.from({ length: n + 1 }, (_, i) => i * S);
    const top = saved.layers.length;
    const device = saved.patches.device;
    let dx: Tensor = zerosOn([rows, D], device);
    if (dPost && saved.post) {
      const r = layerNormBackwardD(dPost, saved.post.x, this.postG.value, saved.post.m, saved.post.r, s.eps);
      if (this.postG.trainable) addGrad(this.postG, r.dGamma);
      if (this.postB.trainable) addGrad(this.postB, r.dBeta);
      dx = r.dx;
    }
    if (dHidden[top]) addInto(dx, dHidden[top]!);
    for (let l = top - 1; l >= 0; l--) {
      const L = this.layers[l];
      const S_ = saved.layers[l];
      // MLP
      // Intermediates go back to the output pool once used, and so does what the layer's
      // forward saved (except its input: a hidden state the caller was given).
      const da = linBwd(dx, S_.a, L.fc2, true, this.compute)!;
      const df1 = geluBackwardD(da, S_.f1, s.act, true);
      const dn2 = linBwd(df1, S_.n2, L.fc1, true, this.compute)!;
      recycleOutput(da, df1);
      const r2 = layerNormBackwardD(dn2, S_.x2, L.ln2g.value, S_.m2, S_.r2, s.eps);
      if (L.ln2g.trainable) addGrad(L.ln2g, r2.dGamma);
      if (L.ln2b.trainable) addGrad(L.ln2b, r2.dBeta);
      const dx2 = r2.dx;
      addInto(dx2, dx);
      recycleOutput(dn2, dx);
      // Attention
      const dAtt = linBwd(dx2, view(S_.att, [rows, D]), L.o, true, this.compute)!;
      const g = attentionBackward(view(dAtt, [rows, s.heads, s.headDim]), S_.q, S_.k, S_.v, S_.att, S_.lse, { cuSeqlensQ: cu, causal: false });
      const dn1 = linBwd(view(g.dq, [rows, D]), S_.n1, L.q, true, this.compute)!;
      const dk1 = linBwd(view(g.dk, [rows, D]), S_.n1, L.k, true, this.compute)!;
      const dv1 = linBwd(view(g.dv, [rows, D]), S_.n1, L.v, true, this.compute)!;
      addInto(dn1, dk1);
      addInto(dn1, dv1);
      recycleOutput(dAtt, g.dq, g.dk, g.dv, dk1, dv1);
      const r1 = layerNormBackwardD(dn1, S_.x, L.ln1g.value, S_.m1, S_.r1, s.eps);
      if (L.ln1g.trainable) addGrad(L.ln1g, r1.dGamma);
      if (L.ln1b.trainable) addGrad(L.ln1b, r1.dBeta);
      addInto(r1.dx, dx2);
      recycleOutput(dn1, dx2, S_.n1, ...S_.qkv, S_.att, S_.lse, S_.x2, S_.n2, S_.f1, S_.a);
      dx = r1.dx;
      if (dHidden[l]) addInto(dx, dHidden[l]!);
    }
    if (saved.pre) {
      const r = layerNormBackwardD(dx, saved.pre.x, this.preG!.value, saved.pre.m, saved.pre.r, s.eps);
      if (this.preG!.trainable) addGrad(this.preG!, r.dGamma);
      if (this.preB!.trainable) addGrad(this.preB!, r.dBeta);
      dx = r.dx;
    }
    // Embeddings: positions, class token, the patch convolution.
    const off = s.kind === 'clip' ? 1 : 0;
    const np = S - off;
    if (device === 'cuda') {
      if (this.pos.trainable) {
        const dPos = zerosOn([...this.pos.shape], 'cuda');
        embedGrad(dx, tiledIds(saved.posIds, n), this.pos.shape[0], dPos);
        addGrad(this.pos, dPos);
      }
      if (this.cls?.trainable) addGrad(this.cls, colSum(gatherRows(dx, Int32Array.from({ length: n }, (_, i) => i * S))));
      if (this.patchW.trainable || this.patchB?.trainable) {
        const de = gatherRows(dx, Int32Array.from({ length: n * np }, (_, r) => Math.floor(r / np) * S + off + (r % np)));
        if (this.patchW.trainable) addGrad(this.patchW, view(matmul(de, saved.patches, { transA: true }), [...this.patchW.shape]));
        if (this.patchB?.trainable) addGrad(this.patchB, colSum(de));
      }
      return;
    }
    const g = f32(dx);
    if (this.pos.trainable) {
      const dPos = new Float32Array(this.pos.value.size);
      for (let i = 0; i < n; i++)
        for (let t = 0; t < S; t++) {
          const id = saved.posIds[t];
          for (let j = 0; j < D; j++) dPos[id * D + j] += g[(i * S + t) * D + j];
        }
      addGrad(this.pos, tensor(dPos, [...this.pos.shape]));
    }
    if (this.cls?.trainable) {
      const dc = new Float32Array(D);
      for (let i = 0; i < n; i++) for (let j = 0; j < D; j++) dc[j] += g[i * S * D + j];
      addGrad(this.cls, tensor(dc, [D]));
    }
    if (this.patchW.trainable || this.patchB?.trainable) {
      const dEmb = new Float32Array(n * np * D);
      for (let i = 0; i < n; i++) dEmb.set(g.subarray((i * S + off) * D, (i + 1) * S * D), i * np * D);
      const de = tensor(dEmb, [n * np, D]);
      if (this.patchW.trainable) addGrad(this.patchW, tensor(f32(matmul(de, saved.patches, { transA: true })), [...this.patchW.shape]));
      if (this.patchB?.trainable) addGrad(this.patchB, colSum(de));
    }
  }
}

/** Idefics3 / SmolVLM pixel shuffle of x [n·S, D] (S = side², side divisible by s) → [n·S/s², D·s²], or its adjoint. */
export function pixelShuffle(x: Float32Array, n: number, S: number, D: number, s: number, inverse = false): Float32Array {
  const side = Math.round(Math.sqrt(S));
  const o = side / s;
  const out = new Float32Array(x.length);
  const Do = D * s * s;
  for (let i = 0; i < n; i++)
    for (let h2 = 0; h2 < o; h2++)
      for (let w2 = 0; w2 < o; w2++)
        for (let a = 0; a < s; a++)
          for (let b = 0; b < s; b++) {
            const src = (i * S + (h2 * s + a) * side + (w2 * s + b)) * D;
            const dst = (i * o * o + h2 * o + w2) * Do + (a * s + b) * D;
            if (inverse) out.set(x.subarray(dst, dst + D), src);
            else out.set(x.subarray(src, src + D), dst);
          }
  return out;
}

/** What the connector's training forward keeps. */
export interface ConnectorSaved {
  /** The tower's activations; null when no tower parameter trains (backward stops at the connector). */
  tower: VisionSaved | null;
  /** Connector input [rows, in]. */
  x: Tensor;
  /** LLaVA: linear_1 output and the activation. */
  h1?: Tensor;
  a1?: Tensor;
  H: number;
  W: number;
}

/** The tower and its connector: pixels → visual tokens in the text model's width. */
export class VisionLanguageBridge {
  readonly spec: VlmSpec;
  readonly tower: VisionTower;
  readonly #get: (name: string) => Param;
  readonly #compute: Bf16Compute;

  constructor(spec: VlmSpec, compute: Bf16Compute, get: (name: string) => Param) {
    this.spec = spec;
    this.#get = get;
    this.#compute = compute;
    this.tower = new VisionTower(spec.vision, get, spec.names.vision, compute);
  }

  /** The connector's parameters. */
  connectorParams(): Param[] {
    const C = this.spec.names.connector;
    if (this.spec.family === 'idefics3') return [this.#get(`${C}modality_projection.proj.weight`)];
    const names = ['linear_1.weight', 'linear_2.weight', ...(this.spec.projector.bias ? ['linear_1.bias', 'linear_2.bias'] : [])];
    return names.map((x) => this.#get(`${C}${x}`));
  }

  /** Visual tokens per image of an H × W input. */
  tokensPer(H: number, W: number): number {
    const sp = this.spec;
    if (sp.family === 'idefics3') return this.tower.seqLen(H, W) / sp.scaleFactor ** 2;
    return this.tower.seqLen(H, W) - (sp.projector.strategy === 'default' ? 1 : 0);
  }

  /**
   * Features [n · tokensPer, textHidden] of pixels [n, C, H, W] (checked by the caller). With
   * `train`, keeps what backward() needs: the connector's input, and the tower's activations
   * only when some tower parameter trains (a frozen tower's would be gigabytes for nothing).
   */
  forward(pixels: Float32Array, n: number, H: number, W: number, train: boolean): { features: Tensor; saved: ConnectorSaved | null } {
    const sp = this.spec;
    const towerTrain = train && this.towerTrainable();
    const D = sp.vision.hidden;
    const C = sp.names.connector;
    if (sp.family === 'idefics3') {
      const r = this.tower.forward(pixels, n, H, W, { upTo: sp.vision.layers, post: true, train: towerTrain });
      const S = this.tower.seqLen(H, W);
      const s = sp.scaleFactor;
      const x = r.post!.device === 'cuda'
        ? view(gatherRows(r.post!, pixelShufflePerm(n, S, s)), [(n * S) / (s * s), D * s * s])
        : tensor(pixelShuffle(f32(r.post!), n, S, D, s), [(n * S) / (s * s), D * s * s]);
      // A frozen tower keeps nothing for backward: its outputs are dead once shuffled into x.
      if (!towerTrain) recycleOutput(...r.hidden, r.post);
      const features = linear(x, this.#compute.weight(this.#get(`${C}modality_projection.proj.weight`)));
      return { features, saved: train ? { tower: r.saved, x, H, W } : null };
    }
    const pr = sp.projector;
    const upTo = Math.max(...pr.featureLayers);
    const r = this.tower.forward(pixels, n, H, W, { upTo, post: false, train: towerTrain });
    const S = this.tower.seqLen(H, W);
    const drop = pr.strategy === 'default' ? 1 : 0;
    const K = pr.featureLayers.length;
    const rowsPer = S - drop;
    let x: Tensor;
    if (r.hidden[0].device === 'cuda') {
      // Row (i·rowsPer + t)·K + c of [n·rowsPer·K, D] holds hidden[featureLayers[c]] row i·S + t + drop.
      const xr = zerosOn([n * rowsPer * K, D], 'cuda');
      pr.featureLayers.forEach((l, c) => {
        const { src, dst } = featureRows(n, S, drop, K, c);
        scatterAddRows(xr, gatherRows(r.hidden[l], src), dst);
      });
      x = view(xr, [n * rowsPer, K * D]);
    } else {
      const xin = new Float32Array(n * rowsPer * K * D);
      pr.featureLayers.forEach((l, c) => {
        const h = f32(r.hidden[l]);
        for (let i = 0; i < n; i++)
          for (let t = 0; t < rowsPer; t++) xin.set(h.subarray((i * S + t + drop) * D, (i * S + t + drop + 1) * D), ((i * rowsPer + t) * K + c) * D);
      });
      x = tensor(xin, [n * rowsPer, K * D]);
    }
    if (!towerTrain) recycleOutput(...r.hidden); // copied into x; a frozen tower keeps nothing for backward
    const h1 = linear(x, this.#compute.weight(this.#get(`${C}linear_1.weight`)), pr.bias ? this.#get(`${C}linear_1.bias`).value : undefined);
    const a1 = this.#act(h1);
    const features = linear(a1, this.#compute.weight(this.#get(`${C}linear_2.weight`)), pr.bias ? this.#get(`${C}linear_2.bias`).value : undefined);
    return { features, saved: train ? { tower: r.saved, x, h1, a1, H, W } : null };
  }

  #act(h: Tensor): Tensor {
    const a = this.spec.projector.act;
    if (a === 'erf' || a === 'tanh' || a === 'quick') return geluD(h, a);
    if (h.device === 'cuda') throw new Error(`multi_modal_projector: projector_hidden_act '${a}' is not supported on CUDA (gelu variants are); load the model on 'cpu'`);
    const x = f32(h);
    const y = new Float32Array(x.length);
    if (a === 'relu') for (let i = 0; i < x.length; i++) y[i] = x[i] > 0 ? x[i] : 0;
    else for (let i = 0; i < x.length; i++) y[i] = x[i] / (1 + Math.exp(-x[i]));
    return tensor(y, [...h.shape]);
  }

  #actBackward(d: Tensor, h: Tensor): Tensor {
    const a = this.spec.projector.act;
    if (a === 'erf' || a === 'tanh' || a === 'quick') return geluBackwardD(d, h, a);
    const x = f32(h), g = f32(d);
    const out = new Float32Array(x.length);
    if (a === 'relu') for (let i = 0; i < x.length; i++) out[i] = x[i] > 0 ? g[i] : 0;
    else
      for (let i = 0; i < x.length; i++) {
        const sg = 1 / (1 + Math.exp(-x[i]));
        out[i] = g[i] * (sg + x[i] * sg * (1 - sg));
      }
    return tensor(out, [...h.shape]);
  }

  /** True when some parameter of the tower is trained (then backward goes through it). */
  towerTrainable(): boolean {
    const t = this.tower;
    return t.patchW.trainable || t.pos.trainable || t.postG.trainable || t.layers.some((L) => L.q.w.trainable || L.fc1.w.trainable || L.ln1g.trainable);
  }

  /** Backward of forward() given dFeatures; accumulates the gradients of the trainable connector and tower parameters. */
  backward(saved: ConnectorSaved, dFeatures: Tensor): void {
    const sp = this.spec;
    const C = sp.names.connector;
    const D = sp.vision.hidden;
    // The tower's activations are there only when it trained in forward().
    const tower = this.towerTrainable() ? saved.tower : null;
    const needTower = tower !== null;
    if (sp.family === 'idefics3') {
      const dx = linBwd(dFeatures, saved.x, { w: this.#get(`${C}modality_projection.proj.weight`) }, needTower, this.#compute);
      if (!dx || !tower) return;
      const dPost = dx.device === 'cuda'
        ? gatherRows(view(dx, [tower.n * tower.seq, D]), inversePerm(pixelShufflePerm(tower.n, tower.seq, sp.scaleFactor)))
        : tensor(pixelShuffle(f32(dx), tower.n, tower.seq, D, sp.scaleFactor, true), [tower.n * tower.seq, D]);
      this.tower.backward(tower, [], dPost);
      return;
    }
    const pr = sp.projector;
    const l1: Lin = { w: this.#get(`${C}linear_1.weight`), b: pr.bias ? this.#get(`${C}linear_1.bias`) : undefined };
    const l2: Lin = { w: this.#get(`${C}linear_2.weight`), b: pr.bias ? this.#get(`${C}linear_2.bias`) : undefined };
    const da1 = linBwd(dFeatures, saved.a1!, l2, true, this.#compute)!;
    const dh1 = this.#actBackward(da1, saved.h1!);
    const dx = linBwd(dh1, saved.x, l1, needTower, this.#compute);
    if (!dx || !tower) return;
    const n = tower.n;
    const S = tower.seq;
    const drop = pr.strategy === 'default' ? 1 : 0;
    const K = pr.featureLayers.length;
    const rowsPer = S - drop;
    const dHidden: (Tensor | null)[] = [];
    if (dx.device === 'cuda') {
      const dxr = view(dx, [n * rowsPer * K, D]);
      pr.featureLayers.forEach((l, c) => {
        const dh = dHidden[l] ?? zerosOn([n * S, D], 'cuda');
        const { src, dst } = featureRows(n, S, drop, K, c);
        scatterAddRows(dh, gatherRows(dxr, dst), src);
        dHidden[l] = dh;
      });
      this.tower.backward(tower, dHidden, null);
      return;
    }
    const g = f32(dx);
    pr.featureLayers.forEach((l, c) => {
      const dh = dHidden[l] ?? tensor(new Float32Array(n * S * D), [n * S, D]);
      const t = f32(dh);
      for (let i = 0; i < n; i++)
        for (let r = 0; r < rowsPer; r++) {
          const src = ((i * rowsPer + r) * K + c) * D, dst = (i * S + r + drop) * D;
          for (let j = 0; j < D; j++) t[dst + j] += g[src + j];
        }
      dHidden[l] = dh;
    });
    this.tower.backward(tower, dHidden, null);
  }
}

/** ids repeated for n images: [ids; ids; ...] (the position ids of every image's rows). */
function tiledIds(ids: Int32Array, n: number): Int32Array {
  const out = new Int32Array(n * ids.length);
  for (let i = 0; i < n; i++) out.set(ids, i * ids.length);
  return out;
}

/**
 * pixelShuffle as a row permutation: row k of the output viewed as [n·S, D] (D-wide chunks
 * of the [n·S/s², D·s²] rows) is row perm[k] of the input [n·S, D].
 */
export function pixelShufflePerm(n: number, S: number, s: number): Int32Array {
  const side = Math.round(Math.sqrt(S));
  const o = side / s;
  const perm = new Int32Array(n * S);
  for (let i = 0; i < n; i++)
    for (let h2 = 0; h2 < o; h2++)
      for (let w2 = 0; w2 < o; w2++)
        for (let a = 0; a < s; a++)
          for (let b = 0; b < s; b++) perm[(i * o * o + h2 * o + w2) * s * s + a * s + b] = i * S + (h2 * s + a) * side + (w2 * s + b);
  return perm;
}

function inversePerm(p: Int32Array): Int32Array {
  const inv = new Int32Array(p.length);
  p.forEach((v, k) => (inv[v] = k));
  return inv;
}

/** LLaVA's feature rows of layer slot c: hidden rows `src` go to rows `dst` of the [n·rowsPer·K, D] projector input. */
function featureRows(n: number, S: number, drop: number, K: number, c: number): { src: Int32Array; dst: Int32Array } {
  const rowsPer = S - drop;
  const src = new Int32Array(n * rowsPer), dst = new Int32Array(n * rowsPer);
  for (let i = 0; i < n; i++)
    for (let t = 0; t < rowsPer; t++) {
      src[i * rowsPer + t] = i * S + t + drop;
      dst[i * rowsPer + t] = (i * rowsPer + t) * K + c;
    }
  return { src, dst };
}
