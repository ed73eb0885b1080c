// The CPU row log-sum-exp (row_lse.h) on the ISA-dispatched row routines of
// layers_kernels.h.
#include "row_lse.h"

#include <algorithm>

#include "layers_kernels.h"

namespace vp::detail {
namespace {

constexpr int64_t kChunk = 2048;

bool has_nan_or_posinf(const float* x, int64_t n) {
  for (int64_t j = 0; j < n; ++j)
    if (std::isnan(x[j]) || x[j] == std::numeric_limits<float>::infinity()) return true;
  return false;
}

}  // namespace

void row_lse_add(RowLse& st, const float* x, int64_t n, float scale) {
  const LayerKernels& k = layer_kernels();
  for (int64_t j0 = 0; j0 < n; j0 += kChunk) {
    const int64_t len = std::min(kChunk, n - j0);
    const float mc = k.row_max(x + j0, len) * scale;
    if (!(mc > -std::numeric_limits<float>::infinity())) {  // all −inf, or NaN that the max passed over
      if (has_nan_or_posinf(x + j0, len)) st.s = std::numeric_limits<float>::quiet_NaN();
      continue;
    }
    if (mc > st.m) {
      st.s *= std::exp(st.m - mc);
      st.m = mc;
    }
    st.s += k.row_sum_exp(x + j0, len, scale, st.m);
  }
}

void row_scaled_softmax(const float* x, int64_t n, float scale, float lse, float c, float* out) {
  layer_kernels().row_scaled_exp(x, n, scale, lse, c, out);
}

}  // namespace vp::detail
