// Internal: the InfoNCE row passes, written once over a vector type V and
// compiled by each infonce_rows_<isa>.cpp (after its target pragma, inside an
// anonymous namespace, so no instantiation is shared between ISAs).
//
// V provides: R (the register type), W (lanes), set1, load, load_tail (lanes
// >= n read as 0), store, store_tail, keep(x, n, fill) (lanes >= n become fill),
// zero_lane(x, i), add, sub, mul, fmadd(a, b, c) = a·b + c, fnmadd(a, b, c) =
// c − a·b, min, max, round (to nearest), pow2(p, n) = p·2^n, keep_if_ge(v, x, lo)
// (v where x >= lo, else 0), hmax and hsum (to double).
//
// Sums run in float vector lanes over chunks of kChunk elements and are added
// up in double, so a long row keeps its precision.
// This header has no includes: the including file brings <cstdint> and <limits>.
#ifndef VP_INFONCE_ROWS_IMPL_H_
#define VP_INFONCE_ROWS_IMPL_H_

namespace rows_impl {

constexpr int64_t kChunk = 1024;

// exp(x) for x >= -87.3, 0 below (terms that underflow anyway): n = round(x / ln 2),
// r = x − n·ln 2 in two steps, Cephes' expf polynomial for e^r (about 1 ulp), · 2^n.
template <class V>
typename V::R vexp(typename V::R x) {
  using R = typename V::R;
  const R lo = V::set1(-87.33654f);
  const R xc = V::min(V::max(x, lo), V::set1(88.37626f));
  const R n = V::round(V::mul(xc, V::set1(1.44269504088896341f)));
  R r = V::fnmadd(n, V::set1(0.693359375f), xc);
  r = V::fnmadd(n, V::set1(-2.12194440e-4f), r);
  R p = V::set1(1.9875691500e-4f);
  p = V::fmadd(p, r, V::set1(1.3981999507e-3f));
  p = V::fmadd(p, r, V::set1(8.3334519073e-3f));
  p = V::fmadd(p, r, V::set1(4.1665795894e-2f));
  p = V::fmadd(p, r, V::set1(1.6666665459e-1f));
  p = V::fmadd(p, r, V::set1(5.0000001201e-1f));
  p = V::fmadd(V::mul(p, r), r, V::add(r, V::set1(1.0f)));
  return V::keep_if_ge(V::pow2(p, n), x, lo);
}

template <class V>
float scale_max(float* row, int64_t m, float a, const float* rk) {
  using R = typename V::R;
  const R va = V::set1(a);
  R mx = V::set1(-std::numeric_limits<float>::infinity());
  int64_t j = 0;
  for (; j + V::W <= m; j += V::W) {
    R x = V::mul(V::load(row + j), va);
    if (rk) x = V::mul(x, V::load(rk + j));
    V::store(row + j, x);
    mx = V::max(mx, x);
  }
  if (j < m) {
    const int n = static_cast<int>(m - j);
    R x = V::mul(V::load_tail(row + j, n), va);
    if (rk) x = V::mul(x, V::load_tail(rk + j, n));
    V::store_tail(row + j, x, n);
    mx = V::max(mx, V::keep(x, n, -std::numeric_limits<float>::infinity()));
  }
  return V::hmax(mx);
}

template <class V>
double exp_sum(float* row, int64_t m, float shift, float center, int64_t skip, bool store, double* dot) {
  using R = typename V::R;
  const R vs = V::set1(shift), vc = V::set1(center);
  double sum = 0.0, dsum = 0.0;
  for (int64_t c0 = 0; c0 < m; c0 += kChunk) {
    const int64_t c1 = c0 + kChunk < m ? c0 + kChunk : m;
    R s = V::set1(0.0f), d = V::set1(0.0f);
    for (int64_t j = c0; j < c1; j += V::W) {
      const int n = c1 - j < V::W ? static_cast<int>(c1 - j) : V::W;
      const R x = n == V::W ? V::load(row + j) : V::load_tail(row + j, n);
      R e = vexp<V>(V::sub(x, vs));
      if (n < V::W) e = V::keep(e, n, 0.0f);
      if (skip >= j && skip < j + n) e = V::zero_lane(e, static_cast<int>(skip - j));
      s = V::add(s, e);
      d = V::fmadd(e, V::sub(x, vc), d);
      if (store) {
        if (n == V::W) V::store(row + j, e);
        else V::store_tail(row + j, e, n);
      }
    }
    sum += V::hsum(s);
    dsum += V::hsum(d);
  }
  if (dot) *dot = dsum;
  return sum;
}

template <class V>
void scale(float* row, int64_t m, float c, const float* rk) {
  using R = typename V::R;
  const R vc = V::set1(c);
  int64_t j = 0;
  for (; j + V::W <= m; j += V::W) {
    R x = V::mul(V::load(row + j), vc);
    if (rk) x = V::mul(x, V::load(rk + j));
    V::store(row + j, x);
  }
  if (j < m) {
    const int n = static_cast<int>(m - j);
    R x = V::mul(V::load_tail(row + j, n), vc);
    if (rk) x = V::mul(x, V::load_tail(rk + j, n));
    V::store_tail(row + j, x, n);
  }
}

template <class V>
vp::detail::InfoNceRowKernels make_row_kernels() {
  return {scale_max<V>, exp_sum<V>, scale<V>};
}

}  // namespace rows_impl

#endif  // VP_INFONCE_ROWS_IMPL_H_
