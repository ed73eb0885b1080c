// The device-side building blocks of the pretrained models on CUDA
// (vp/pretrained_kernels.h): vector arithmetic, bias rows, row gathers and
// scatter-adds, float32 / bfloat16 embedding lookups, RoPE from a cos/sin
// table, and the KV-cache decode attention.
//
// Host index arrays are checked on the host against their bounds and copied
// into leased scratch (cuda/scratch_pool.h; pageable copies, so the caller's
// arrays may go away as soon as a call returns) before any kernel runs; the row
// kernels themselves are vp/model_kernels.h's (cuda/rows.cu,
// cuda/decode_attention.cu, cuda/layers.cu), whose reductions run in a fixed
// order. Element-wise kernels are grid-stride loops. Cost: O(elements) each,
// plus one host→device copy of the indices (4 bytes each) per call.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "core/arg_checks.h"
#include "kernel_util.cuh"
#include "scratch_pool.h"
#include "vp/layers.h"
#include "vp/model_kernels.h"
#include "vp/pretrained_kernels.h"

namespace vp::cuda {
namespace {

using kutil::grid_for;
using kutil::kBlock;
using kutil::launch_status;

__global__ void k_axpy(float* __restrict__ y, const float* __restrict__ x, float alpha, int64_t n) {
  VP_GRID_STRIDE(i, n) y[i] += alpha * x[i];
}
__global__ void k_scale(float* __restrict__ x, float alpha, int64_t n) {
  VP_GRID_STRIDE(i, n) x[i] *= alpha;
}
__global__ void k_mul(float* __restrict__ y, const float* __restrict__ x, int64_t n) {
  VP_GRID_STRIDE(i, n) y[i] *= x[i];
}
__global__ void k_add_bias(float* __restrict__ y, const float* __restrict__ b, int64_t rows, int64_t cols) {
  VP_GRID_STRIDE(i, rows * cols) y[i] += b[i % cols];
}
__global__ void k_embed_bf16(const __nv_bfloat16* __restrict__ table, int64_t d, const int32_t* __restrict__ ids,
                             int64_t n, float* __restrict__ out) {
  VP_GRID_STRIDE(i, n * d) out[i] = __bfloat162float(table[static_cast<int64_t>(ids[i / d]) * d + i % d]);
}
// Each thread rotates one pair (reads both values, then writes both): out may equal x.
__global__ void k_rope_table(const float* x, const int32_t* __restrict__ pos, int64_t tokens, int64_t heads,
                             int64_t hd, const float* __restrict__ ct, const float* __restrict__ st, bool inverse,
                             float* out) {
  const int64_t half = hd / 2;
  VP_GRID_STRIDE(i, tokens * heads * half) {
    const int64_t k = i % half, th = i / half, t = th / heads;
    const int64_t at = static_cast<int64_t>(pos[t]) * half + k;
    const float c = ct[at], s = inverse ? -st[at] : st[at];
    const float x1 = x[th * hd + k], x2 = x[th * hd + k + half];
    out[th * hd + k] = x1 * c - x2 * s;
    out[th * hd + k + half] = x2 * c + x1 * s;
  }
}

using ::vp::detail::need;

// Checks host indices v[0..n) against [0, bound) and copies them into scratch (*dev).
Status upload_indices(Scratch& scratch, const char* fn, const char* arg, const int32_t* v, int64_t n, int64_t bound,
                      const int32_t** dev) {
  if (n > 0 && v == nullptr) return Status::Invalid(std::string(fn) + ": " + arg + " is null");
  for (int64_t i = 0; i < n; ++i)
    if (v[i] < 0 || v[i] >= bound)
      return Status::OutOfRange(std::string(fn) + ": " + arg + "[" + std::to_string(i) + "] = " + std::to_string(v[i]) +
                                " is outside [0, " + std::to_string(bound) + ")");
  int32_t* d = nullptr;
  VP_RETURN_IF_ERROR(scratch.get(&d, static_cast<size_t>(std::max<int64_t>(n, 1)), fn));
  if (n > 0) VP_RETURN_IF_ERROR(copy_to_device(d, v, static_cast<size_t>(n) * sizeof(int32_t)));
  *dev = d;
  return Status::Ok();
}

Status elementwise_args(const char* fn, int64_t n, const void* a, const void* b) {
  if (n < 0) return Status::Invalid(std::string(fn) + ": n must be >= 0");
  if (n == 0) return Status::Ok();
  VP_RETURN_IF_ERROR(need(a, fn, "y"));
  if (b != a) VP_RETURN_IF_ERROR(need(b, fn, "x"));
  return kutil::check_available(fn);
}

}  // namespace

Status axpy(float* y, const float* x, float alpha, int64_t n) {
  VP_RETURN_IF_ERROR(elementwise_args("axpy", n, y, x));
  if (n == 0) return Status::Ok();
  k_axpy<<<grid_for(n), kBlock>>>(y, x, alpha, n);
  return launch_status("axpy");
}

Status scale(float* x, float alpha, int64_t n) {
  VP_RETURN_IF_ERROR(elementwise_args("scale", n, x, x));
  if (n == 0) return Status::Ok();
  k_scale<<<grid_for(n), kBlock>>>(x, alpha, n);
  return launch_status("scale");
}

Status mul_inplace(float* y, const float* x, int64_t n) {
  VP_RETURN_IF_ERROR(elementwise_args("mul_inplace", n, y, x));
  if (n == 0) return Status::Ok();
  k_mul<<<grid_for(n), kBlock>>>(y, x, n);
  return launch_status("mul_inplace");
}

Status add_bias_rows(float* y, const float* b, int64_t rows, int64_t cols) {
  if (rows < 0 || cols < 0) return Status::Invalid("add_bias_rows: rows and cols must be >= 0");
  VP_RETURN_IF_ERROR(elementwise_args("add_bias_rows", rows * cols, y, b));
  if (rows * cols == 0) return Status::Ok();
  k_add_bias<<<grid_for(rows * cols), kBlock>>>(y, b, rows, cols);
  return launch_status("add_bias_rows");
}

Status gather_rows(const float* src, int64_t src_rows, const int32_t* rows, int64_t n, int64_t d, float* out) {
  const char* fn = "gather_rows";
  if (n < 0 || d < 0 || src_rows < 0) return Status::Invalid(std::string(fn) + ": negative size");
  if (n == 0 || d == 0) return Status::Ok();
  VP_RETURN_IF_ERROR(need(src, fn, "src"));
  VP_RETURN_IF_ERROR(need(out, fn, "out"));
  VP_RETURN_IF_ERROR(kutil::check_available(fn));
  Scratch scratch;
  const int32_t* dr = nullptr;
  VP_RETURN_IF_ERROR(upload_indices(scratch, fn, "rows", rows, n, src_rows, &dr));
  return rows_gather(src, dr, n, d, out);
}

Status scatter_add_rows(const float* src, const int32_t* rows, int64_t n, int64_t d, float* dst, int64_t dst_rows) {
  const char* fn = "scatter_add_rows";
  if (n < 0 || d < 0 || dst_rows < 0) return Status::Invalid(std::string(fn) + ": negative size");
  if (n == 0 || d == 0) return Status::Ok();
  VP_RETURN_IF_ERROR(need(src, fn, "src"));
  VP_RETURN_IF_ERROR(need(dst, fn, "dst"));
  VP_RETURN_IF_ERROR(kutil::check_available(fn));
  Scratch scratch;
  const int32_t* dr = nullptr;
  VP_RETURN_IF_ERROR(upload_indices(scratch, fn, "rows", rows, n, dst_rows, &dr));
  return rows_scatter_add(src, dr, n, d, dst);
}

Status embedding_lookup(const void* table, bool bf16, int64_t vocab, int64_t d, const int32_t* ids, int64_t n,
                        float* out) {
  const char* fn = "embedding_lookup";
  if (vocab <= 0 || d <= 0 || n < 0) return Status::Invalid(std::string(fn) + ": vocab and d must be > 0, n >= 0");
  if (n == 0) return Status::Ok();
  VP_RETURN_IF_ERROR(need(table, fn, "table"));
  VP_RETURN_IF_ERROR(need(out, fn, "out"));
  VP_RETURN_IF_ERROR(kutil::check_available(fn));
  Scratch scratch;
  const int32_t* di = nullptr;
  VP_RETURN_IF_ERROR(upload_indices(scratch, fn, "ids", ids, n, vocab, &di));
  if (!bf16) return embedding_forward(static_cast<const float*>(table), vocab, d, di, n, out);
  k_embed_bf16<<<grid_for(n * d), kBlock>>>(static_cast<const __nv_bfloat16*>(table), d, di, n, out);
  return launch_status(fn);
}

Status embedding_grad(const float* dout, const int32_t* ids, int64_t n, int64_t vocab, int64_t d, float* dtable,
                      bool accumulate) {
  const char* fn = "embedding_grad";
  if (vocab <= 0 || d <= 0 || n < 0) return Status::Invalid(std::string(fn) + ": vocab and d must be > 0, n >= 0");
  VP_RETURN_IF_ERROR(need(dtable, fn, "dtable"));
  if (n > 0) VP_RETURN_IF_ERROR(need(dout, fn, "dout"));
  VP_RETURN_IF_ERROR(kutil::check_available(fn));
  Scratch scratch;
  const int32_t* di = nullptr;
  VP_RETURN_IF_ERROR(upload_indices(scratch, fn, "ids", ids, n, vocab, &di));
  return embedding_backward(dout, di, n, vocab, d, dtable, accumulate);
}

Status rope_table(const float* x, const int32_t* positions, int64_t tokens, int64_t heads, int64_t head_dim,
                  const float* cos_table, const float* sin_table, int64_t table_positions, bool inverse, float* out) {
  const char* fn = "rope_table";
  if (tokens < 0 || heads <= 0 || head_dim <= 0 || head_dim % 2 != 0 || table_positions <= 0)
    return Status::Invalid(std::string(fn) + ": bad sizes (heads > 0, head_dim even > 0, table_positions > 0)");
  if (tokens == 0) return Status::Ok();
  VP_RETURN_IF_ERROR(need(x, fn, "x"));
  VP_RETURN_IF_ERROR(need(out, fn, "out"));
  VP_RETURN_IF_ERROR(need(cos_table, fn, "cos_table"));
  VP_RETURN_IF_ERROR(need(sin_table, fn, "sin_table"));
  VP_RETURN_IF_ERROR(kutil::check_available(fn));
  Scratch scratch;
  const int32_t* dp = nullptr;
  VP_RETURN_IF_ERROR(upload_indices(scratch, fn, "positions", positions, tokens, table_positions, &dp));
  const size_t tn = static_cast<size_t>(table_positions * (head_dim / 2));
  float *dc = nullptr, *ds = nullptr;
  VP_RETURN_IF_ERROR(scratch.get(&dc, tn, fn));
  VP_RETURN_IF_ERROR(scratch.get(&ds, tn, fn));
  VP_RETURN_IF_ERROR(copy_to_device(dc, cos_table, tn * sizeof(float)));
  VP_RETURN_IF_ERROR(copy_to_device(ds, sin_table, tn * sizeof(float)));
  k_rope_table<<<grid_for(tokens * heads * (head_dim / 2)), kBlock>>>(x, dp, tokens, heads, head_dim, dc, ds, inverse,
                                                                       out);
  return launch_status(fn);
}

Status rope_theta(const float* x, const int32_t* positions, int64_t tokens, int64_t heads, int64_t head_dim,
                  float theta, bool inverse, float* out) {
  const char* fn = "rope_theta";
  if (tokens < 0) return Status::Invalid(std::string(fn) + ": tokens must be >= 0");
  if (tokens == 0) return Status::Ok();
  VP_RETURN_IF_ERROR(kutil::check_available(fn));
  Scratch scratch;
  const int32_t* dp = nullptr;
  VP_RETURN_IF_ERROR(upload_indices(scratch, fn, "positions", positions, tokens, INT32_MAX, &dp));
  return rope_apply(x, dp, tokens, heads, head_dim, theta, inverse, out);
}

Status decode_attention_rows(const float* q, const float* kcache, const float* vcache, int64_t cache_rows,
                             const int32_t* base, const int32_t* nkeys, int64_t n, int64_t heads, int64_t kv_heads,
                             int64_t head_dim, float scale_, float* out) {
  const char* fn = "decode_attention_rows";
  if (n < 0 || cache_rows < 0) return Status::Invalid(std::string(fn) + ": negative size");
  if (n == 0) return Status::Ok();
  if (!base || !nkeys) return Status::Invalid(std::string(fn) + ": base and nkeys must not be null");
  int64_t max_keys = 1;
  for (int64_t i = 0; i < n; ++i) {
    if (base[i] < 0 || nkeys[i] < 0 || static_cast<int64_t>(base[i]) + nkeys[i] > cache_rows)
      return Status::OutOfRange(std::string(fn) + ": row " + std::to_string(i) + " reads cache rows [" +
                                std::to_string(base[i]) + ", " + std::to_string(static_cast<int64_t>(base[i]) + nkeys[i]) +
                                ") outside [0, " + std::to_string(cache_rows) + ")");
    max_keys = std::max<int64_t>(max_keys, nkeys[i]);
  }
  VP_RETURN_IF_ERROR(need(q, fn, "q"));
  VP_RETURN_IF_ERROR(need(kcache, fn, "kcache"));
  VP_RETURN_IF_ERROR(need(vcache, fn, "vcache"));
  VP_RETURN_IF_ERROR(need(out, fn, "out"));
  VP_RETURN_IF_ERROR(kutil::check_available(fn));
  Scratch scratch;
  const int32_t *db = nullptr, *dn = nullptr;
  VP_RETURN_IF_ERROR(upload_indices(scratch, fn, "base", base, n, INT32_MAX, &db));
  VP_RETURN_IF_ERROR(upload_indices(scratch, fn, "nkeys", nkeys, n, INT32_MAX, &dn));
  return decode_attention(q, kcache, vcache, db, dn, n, heads, kv_heads, head_dim, scale_, max_keys, out);
}

}  // namespace vp::cuda
