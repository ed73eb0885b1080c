// Internal: the CPU attention kernels, written once over a small vector type V
// and compiled per ISA by attention_isa.h (which includes this file after the
// target pragma of core/simd.h, inside an anonymous namespace, with V defined).
//
// This file includes nothing: everything it calls must be compiled for the
// including file's ISA or be a compiler builtin, so no out-of-line function
// compiled for AVX-512 can be picked by the linker for another path.
//
// V is simd::Vec (core/simd.h: T, M, W, zero/set1/load/loadm/store/storem/mask,
// fma/mul/add/sub/max, keep, hsum) plus NVMAX (vectors per micro-tile row),
// mr_for(nv) (micro-tile rows), the block sizes and exp2 (x <= 0 in practice; -inf gives 0).
//
// Forward (per query block of BQ rows, one head): the scores are kept transposed,
// S^T = K_blk · (c·Q_blk)^T with c = scale·log2(e), so the online-softmax
// statistics of the BQ queries are vectors (no horizontal reductions), and both
// products read K, V and P^T in place with no packing:
//   S^T[j, i] = sum_d K[j, d] Q^T[d, i]          A = K rows, B = Q^T (packed once)
//   O^T[d, i] = alpha[i]·O^T[d, i] + sum_j V[j, d] P^T[j, i]
// Backward (per key block of BK keys, one KV head, all query heads of its group):
//   S = Q·K^T, dP = dO·V^T (K^T, V^T packed once per key block),
//   P = exp2(c·S − log2(e)·lse), dS = scale · P ∘ (dP − delta),
//   dV += P^T·dO, dK += dS^T·Q, dQ += dS·K  (dQ straight into the caller's rows).
// Every product is one call of small_gemm below, whose micro-kernel broadcasts
// A(r, k) = a[r·a_rs + k·a_ks] and loads rows of B, so any of these operand
// layouts works without copies.

#define VP_ATT_INLINE inline __attribute__((always_inline))

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr float kNegInf = -__builtin_inff();

VP_ATT_INLINE int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
VP_ATT_INLINE int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
VP_ATT_INLINE int64_t round_up(int64_t a, int64_t m) { return (a + m - 1) / m * m; }

// ---- the micro-kernel --------------------------------------------------------
// C[MR x (NV·W)] op= A(MR x kc) · B(kc x NV·W); the last vector of each row is
// masked by `last` (columns past n). mode 0: C = AB; 1: C += AB;
// 2: C = colscale ∘ C + AB (colscale a row vector over the columns).
template <int MR, int NV>
VP_ATT_INLINE void micro(int64_t kc, const float* a, int64_t a_rs, int64_t a_ks, const float* b,
                         int64_t ldb, float* c, int64_t ldc, typename V::M last, int mode,
                         const float* colscale) {
  typename V::T acc[MR][NV];
  if (mode == 0) {
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = V::zero();
  } else {
    typename V::T cs[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v)
      cs[v] = mode == 2 ? (v == NV - 1 ? V::loadm(colscale + v * V::W, last) : V::load(colscale + v * V::W))
                        : V::set1(1.0f);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        typename V::T x = v == NV - 1 ? V::loadm(c + r * ldc + v * V::W, last) : V::load(c + r * ldc + v * V::W);
        acc[r][v] = mode == 2 ? V::mul(x, cs[v]) : x;
      }
  }
  if (a_ks == 1) {
    // A rows contiguous in k (rows of Q, K, dO or of a score block).
    const float* ar[MR];
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) ar[r] = a + r * a_rs;
    for (int64_t k = 0; k < kc; ++k) {
      typename V::T bv[NV];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) bv[v] = v == NV - 1 ? V::loadm(b + v * V::W, last) : V::load(b + v * V::W);
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) {
        const typename V::T x = V::set1(ar[r][k]);
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) acc[r][v] = V::fma(x, bv[v], acc[r][v]);
      }
      b += ldb;
    }
  } else {
    // A(r, k) = a[r·a_rs + k·a_ks]; in our uses a_rs == 1 here (columns of V or of a score block).
    for (int64_t k = 0; k < kc; ++k) {
      typename V::T bv[NV];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) bv[v] = v == NV - 1 ? V::loadm(b + v * V::W, last) : V::load(b + v * V::W);
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) {
        const typename V::T x = V::set1(a[r * a_rs]);
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) acc[r][v] = V::fma(x, bv[v], acc[r][v]);
      }
      a += a_ks;
      b += ldb;
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      if (v == NV - 1) V::storem(c + r * ldc + v * V::W, acc[r][v], last);
      else V::store(c + r * ldc + v * V::W, acc[r][v]);
    }
}

template <int NV, int MR>
VP_ATT_INLINE void micro_rows(int mr, int64_t kc, const float* a, int64_t a_rs, int64_t a_ks,
                              const float* b, int64_t ldb, float* c, int64_t ldc, typename V::M last,
                              int mode, const float* colscale) {
  if constexpr (MR > 0) {
    if (mr == MR) return micro<MR, NV>(kc, a, a_rs, a_ks, b, ldb, c, ldc, last, mode, colscale);
    micro_rows<NV, MR - 1>(mr, kc, a, a_rs, a_ks, b, ldb, c, ldc, last, mode, colscale);
  }
}

// C[m x n] op= A(m x kc) · B(kc x n), see micro() for the operand layouts and modes.
template <int NV>
__attribute__((noinline)) void gemm_cols(int64_t m, int64_t kc, const float* a, int64_t a_rs,
                                         int64_t a_ks, const float* b, int64_t ldb, float* c,
                                         int64_t ldc, typename V::M last, int mode,
                                         const float* colscale) {
  constexpr int MR = V::mr_for(NV);
  int64_t r = 0;
  for (; r + MR <= m; r += MR)
    micro<MR, NV>(kc, a + r * a_rs, a_rs, a_ks, b, ldb, c + r * ldc, ldc, last, mode, colscale);
  if (r < m)
    micro_rows<NV, MR - 1>(static_cast<int>(m - r), kc, a + r * a_rs, a_rs, a_ks, b, ldb, c + r * ldc,
                           ldc, last, mode, colscale);
}

template <int NV>
VP_ATT_INLINE void gemm_nv(int nv, int64_t m, int64_t kc, const float* a, int64_t a_rs, int64_t a_ks,
                           const float* b, int64_t ldb, float* c, int64_t ldc, typename V::M last,
                           int mode, const float* colscale) {
  if constexpr (NV > 0) {
    if (nv == NV) return gemm_cols<NV>(m, kc, a, a_rs, a_ks, b, ldb, c, ldc, last, mode, colscale);
    gemm_nv<NV - 1>(nv, m, kc, a, a_rs, a_ks, b, ldb, c, ldc, last, mode, colscale);
  }
}

void small_gemm(int64_t m, int64_t n, int64_t kc, const float* a, int64_t a_rs, int64_t a_ks,
                const float* b, int64_t ldb, float* c, int64_t ldc, int mode,
                const float* colscale = nullptr) {
  constexpr int64_t chunk = static_cast<int64_t>(V::NVMAX) * V::W;
  for (int64_t c0 = 0; c0 < n; c0 += chunk) {
    const int64_t cols = imin(chunk, n - c0);
    const int nv = static_cast<int>((cols + V::W - 1) / V::W);
    const typename V::M last = V::mask(static_cast<int>(cols - (nv - 1) * V::W));
    gemm_nv<V::NVMAX>(nv, m, kc, a, a_rs, a_ks, b + c0, ldb, c + c0, ldc, last, mode,
                      colscale ? colscale + c0 : nullptr);
  }
}

// ---- forward -----------------------------------------------------------------
constexpr int FBQ = V::FWD_BQ;  // queries per block (a multiple of W)
constexpr int FBK = V::FWD_BK;  // keys per block
constexpr int FNV = FBQ / V::W;

size_t fwd_scratch(int64_t d) {
  // Q^T [D x BQ], S^T/P^T [BK x BQ], O^T [D x BQ], m, l, alpha [BQ]
  return static_cast<size_t>(2 * d * FBQ + FBK * FBQ + 3 * FBQ + 64);
}

void fwd_item(const AttnFwdArgs& a, int64_t s, int64_t h, int64_t qb, float* scratch) {
  const AttentionProblem& p = *a.p;
  const int64_t D = p.head_dim, H = p.heads, G = p.heads / p.kv_heads, hk = h / G;
  const int64_t ldq = H * D, ldk = a.ldk;
  const int64_t qbeg = p.cu_q[s], Tq = p.cu_q[s + 1] - qbeg;
  const int64_t kbeg = p.cu_k[s], Tk = p.cu_k[s + 1] - kbeg;
  const int64_t i0 = qb * FBQ, nq = imin(FBQ, Tq - i0);
  const int64_t off = Tk - Tq;  // bottom-right alignment: row i sees keys j <= i + off
  const int64_t kend = p.causal ? imin(Tk, i0 + nq + off) : Tk;
  float* outp = a.out + (qbeg + i0) * ldq + h * D;
  float* lsep = a.lse + h * p.total_q + qbeg + i0;
  if (kend <= 0) {  // no row of this block sees a key
    for (int64_t i = 0; i < nq; ++i) {
      for (int64_t d = 0; d < D; ++d) outp[i * ldq + d] = 0.0f;
      lsep[i] = kNegInf;
    }
    return;
  }
  float* QT = scratch;
  float* ST = QT + D * FBQ;
  float* OT = ST + FBK * FBQ;
  float* mrow = OT + D * FBQ;
  float* lrow = mrow + FBQ;
  float* alpha = lrow + FBQ;

  const float c = p.scale * kLog2e;
  const float* qp = a.q + (qbeg + i0) * ldq + h * D;
  for (int64_t i = 0; i < nq; ++i)
    for (int64_t d = 0; d < D; ++d) QT[d * FBQ + i] = qp[i * ldq + d] * c;
  for (int64_t i = nq; i < FBQ; ++i)
    for (int64_t d = 0; d < D; ++d) QT[d * FBQ + i] = 0.0f;
  for (int64_t x = 0; x < D * FBQ; x += V::W) V::store(OT + x, V::zero());
  for (int64_t x = 0; x < FBQ; x += V::W) {
    V::store(mrow + x, V::set1(kNegInf));
    V::store(lrow + x, V::zero());
  }
  const typename V::T lowest = V::set1(-__FLT_MAX__);

  for (int64_t k0 = 0; k0 < kend; k0 += FBK) {
    const int64_t nk = imin(FBK, kend - k0);
    const float* kp = a.k + (hk - a.kv_h0) * a.kv_hstride + (kbeg + k0) * ldk;
    const float* vp = a.v + (hk - a.kv_h0) * a.kv_hstride + (kbeg + k0) * ldk;
    // S^T = K_blk · Q^T (already scaled to log2 units)
    small_gemm(nk, FBQ, D, kp, ldk, 1, QT, FBQ, ST, FBQ, 0);
    if (p.causal && k0 + nk - 1 > i0 + off) {
      // key k0+j is hidden from query i0+i when k0+j > i0+i+off, i.e. i < k0+j-i0-off
      for (int64_t j = 0; j < nk; ++j) {
        const int64_t lim = imin(FBQ, k0 + j - i0 - off);
        for (int64_t i = 0; i < lim; ++i) ST[j * FBQ + i] = kNegInf;
      }
    }
    typename V::T mx[FNV], ms[FNV], ls[FNV];
#pragma GCC unroll 16
    for (int v = 0; v < FNV; ++v) mx[v] = V::load(mrow + v * V::W);
    for (int64_t j = 0; j < nk; ++j)
#pragma GCC unroll 16
      for (int v = 0; v < FNV; ++v) mx[v] = V::max(mx[v], V::load(ST + j * FBQ + v * V::W));
#pragma GCC unroll 16
    for (int v = 0; v < FNV; ++v) {
      // a column with no visible key yet keeps m = -inf; subtracting -FLT_MAX then
      // still gives exp2(-inf) = 0 instead of NaN
      ms[v] = V::max(mx[v], lowest);
      V::store(alpha + v * V::W, V::exp2(V::sub(V::load(mrow + v * V::W), ms[v])));
      V::store(mrow + v * V::W, mx[v]);
      ls[v] = V::zero();
    }
    for (int64_t j = 0; j < nk; ++j)
#pragma GCC unroll 16
      for (int v = 0; v < FNV; ++v) {
        const typename V::T pv = V::exp2(V::sub(V::load(ST + j * FBQ + v * V::W), ms[v]));
        V::store(ST + j * FBQ + v * V::W, pv);
        ls[v] = V::add(ls[v], pv);
      }
#pragma GCC unroll 16
    for (int v = 0; v < FNV; ++v)
      V::store(lrow + v * V::W, V::fma(V::load(lrow + v * V::W), V::load(alpha + v * V::W), ls[v]));
    // O^T = alpha ∘ O^T + V_blk^T · P^T
    small_gemm(D, FBQ, nk, vp, 1, ldk, ST, FBQ, OT, FBQ, 2, alpha);
  }

  for (int64_t i = 0; i < nq; ++i) {
    const float l = lrow[i];
    if (l > 0.0f) {
      const float inv = 1.0f / l;
      for (int64_t d = 0; d < D; ++d) outp[i * ldq + d] = OT[d * FBQ + i] * inv;
      lsep[i] = (mrow[i] + __builtin_log2f(l)) * kLn2;
    } else {
      for (int64_t d = 0; d < D; ++d) outp[i * ldq + d] = 0.0f;
      lsep[i] = kNegInf;
    }
  }
}

// ---- backward ----------------------------------------------------------------
constexpr int BBQ = V::BWD_BQ;  // queries per block
constexpr int BBK = V::BWD_BK;  // keys per block (a multiple of W)

size_t bwd_scratch(int64_t d) {
  // K^T, V^T [D x BK], S/P and dP/dS [BQ x BK], dK, dV [BK x D]
  return static_cast<size_t>(2 * d * BBK + 2 * BBQ * BBK + 2 * BBK * d + 64);
}

void delta_rows(const AttentionProblem& p, const float* dout, const float* out, int64_t r0,
                int64_t r1, float* delta) {
  const int64_t D = p.head_dim, H = p.heads;
  const typename V::M last = V::mask(static_cast<int>(D - (D - 1) / V::W * V::W));
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t h = 0; h < H; ++h) {
      const float* x = dout + (r * H + h) * D;
      const float* y = out + (r * H + h) * D;
      typename V::T acc = V::zero();
      int64_t d = 0;
      for (; d + V::W < D; d += V::W) acc = V::fma(V::load(x + d), V::load(y + d), acc);
      acc = V::fma(V::loadm(x + d, last), V::loadm(y + d, last), acc);
      delta[h * p.total_q + r] = V::hsum(acc);
    }
}

void bwd_item(const AttnBwdArgs& a, int64_t s, int64_t g, int64_t kb0, int64_t kb1, float* dq_base,
              int64_t dq_ld, float* scratch) {
  const AttentionProblem& p = *a.p;
  const int64_t D = p.head_dim, H = p.heads, G = p.heads / p.kv_heads;
  const int64_t ldq = H * D, ldk = p.kv_heads * D;
  const int64_t qbeg = p.cu_q[s], Tq = p.cu_q[s + 1] - qbeg;
  const int64_t kbeg = p.cu_k[s], Tk = p.cu_k[s + 1] - kbeg;
  const int64_t off = Tk - Tq;
  float* KT = scratch;
  float* VT = KT + D * BBK;
  float* S = VT + D * BBK;
  float* dP = S + BBQ * BBK;
  float* dKa = dP + BBQ * BBK;
  float* dVa = dKa + BBK * D;
  const float c = p.scale * kLog2e;
  const float scale = p.scale;
  const typename V::T vc = V::set1(c), vscale = V::set1(scale);

  for (int64_t kb = kb0; kb < kb1; ++kb) {
    const int64_t k0 = kb * BBK, nk = imin(BBK, Tk - k0), njp = round_up(nk, V::W);
    const int64_t nvj = njp / V::W;
    const float* kp = a.k + (kbeg + k0) * ldk + g * D;
    const float* vp = a.v + (kbeg + k0) * ldk + g * D;
    for (int64_t j = 0; j < nk; ++j)
      for (int64_t d = 0; d < D; ++d) {
        KT[d * BBK + j] = kp[j * ldk + d];
        VT[d * BBK + j] = vp[j * ldk + d];
      }
    for (int64_t j = nk; j < njp; ++j)
      for (int64_t d = 0; d < D; ++d) KT[d * BBK + j] = VT[d * BBK + j] = 0.0f;
    for (int64_t x = 0; x < nk * D; ++x) dKa[x] = dVa[x] = 0.0f;

    const int64_t q_lo = p.causal ? imax(0, k0 - off) : 0;
    for (int64_t gi = 0; gi < G && q_lo < Tq; ++gi) {
      const int64_t h = g * G + gi;
      const float* qh = a.q + qbeg * ldq + h * D;
      const float* doh = a.dout + qbeg * ldq + h * D;
      const float* lseh = a.lse + h * p.total_q + qbeg;
      const float* delh = a.delta + h * p.total_q + qbeg;
      for (int64_t i0 = q_lo; i0 < Tq; i0 += BBQ) {
        const int64_t nq = imin(BBQ, Tq - i0);
        small_gemm(nq, njp, D, qh + i0 * ldq, ldq, 1, KT, BBK, S, BBK, 0);
        small_gemm(nq, njp, D, doh + i0 * ldq, ldq, 1, VT, BBK, dP, BBK, 0);
        for (int64_t i = 0; i < nq; ++i) {
          const float lse = lseh[i0 + i];
          // a row that sees no key has lse = -inf and P = 0: exp2(x - inf) = 0
          const typename V::T vl = V::set1(lse == kNegInf ? __builtin_inff() : lse * kLog2e);
          const typename V::T vd = V::set1(delh[i0 + i]);
          int64_t jlim = nk;
          if (p.causal) jlim = imin(nk, i0 + i + off - k0 + 1);
          float* srow = S + i * BBK;
          float* drow = dP + i * BBK;
          for (int64_t v = 0; v < nvj; ++v) {
            const int64_t j = v * V::W;
            typename V::T pv;
            if (j >= jlim) {
              pv = V::zero();
            } else {
              pv = V::exp2(V::fma(V::load(srow + j), vc, V::sub(V::zero(), vl)));
              if (j + V::W > jlim) pv = V::keep(pv, V::mask(static_cast<int>(jlim - j)));
            }
            V::store(srow + j, pv);
            V::store(drow + j, V::mul(V::mul(pv, V::sub(V::load(drow + j), vd)), vscale));
          }
        }
        // dV += P^T · dO,  dK += dS^T · Q  (rows: keys; inner: queries)
        small_gemm(nk, D, nq, S, 1, BBK, doh + i0 * ldq, ldq, dVa, D, 1);
        small_gemm(nk, D, nq, dP, 1, BBK, qh + i0 * ldq, ldq, dKa, D, 1);
        // dQ += dS · K  (rows: queries; inner: keys)
        small_gemm(nq, D, nk, dP, BBK, 1, kp, ldk, dq_base + i0 * dq_ld + gi * D, dq_ld, 1);
      }
    }
    float* dkp = a.dk + (kbeg + k0) * ldk + g * D;
    float* dvp = a.dv + (kbeg + k0) * ldk + g * D;
    for (int64_t j = 0; j < nk; ++j)
      for (int64_t d = 0; d < D; ++d) {
        dkp[j * ldk + d] = dKa[j * D + d];
        dvp[j * ldk + d] = dVa[j * D + d];
      }
  }
}

AttnKernels make_kernels() {
  AttnKernels k;
  k.fwd_item = fwd_item;
  k.bwd_item = bwd_item;
  k.delta_rows = delta_rows;
  k.fwd_bq = FBQ;
  k.fwd_bk = FBK;
  k.bwd_bq = BBQ;
  k.bwd_bk = BBK;
  k.fwd_scratch = fwd_scratch;
  k.bwd_scratch = bwd_scratch;
  return k;
}
