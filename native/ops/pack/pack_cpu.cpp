// CPU kernels of token packing: a threaded row gather and its adjoint, a
// scatter-add that owns source rows (no atomics, deterministic).
//
// Rows are copied with 16-byte SSE vectors (the x86-64 baseline, so no ISA
// dispatch is needed: this is bandwidth-bound work where wider vectors buy
// nothing). Runs of consecutive source rows (a whole frame, or a whole video
// under the identity map) are copied as one block. When the output is larger
// than the last-level cache, stores bypass the cache (non-temporal), as a
// large memcpy does, so the destination is not first read for ownership.
#include <atomic>
#include <cstdint>
#include <cstring>

#include <unistd.h>

#include "vp/pack.h"
#include "vp/thread_pool.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define VP_PACK_SSE 1
#else
#define VP_PACK_SSE 0
#endif

namespace vp::cpu {
namespace {

// Work per task: at least this many bytes, so small batches stay on one thread.
constexpr int64_t kGrainBytes = 64 * 1024;

std::atomic<int64_t> g_stream_override{0};

int64_t stream_threshold_bytes() {
  if (int64_t o = g_stream_override.load(std::memory_order_relaxed)) return o;
  static const int64_t t = [] {
    long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    int64_t bytes = l3 > 0 ? static_cast<int64_t>(l3) : (8ll << 20);
    return bytes < (4ll << 20) ? (4ll << 20) : bytes;
  }();
  return t;
}

inline float* row_ptr(const PackRows& r, int64_t row, int64_t width) {
  return row < r.rows_a ? static_cast<float*>(r.a) + row * width
                        : static_cast<float*>(r.b) + (row - r.rows_a) * width;
}

// dst[0..n) = src[0..n), 16-byte vectors; `stream`: non-temporal stores.
inline void copy_floats(float* __restrict dst, const float* __restrict src, int64_t n, bool stream) {
#if VP_PACK_SSE
  int64_t i = 0;
  if (stream) {
    for (; i < n && (reinterpret_cast<uintptr_t>(dst + i) & 15); ++i) dst[i] = src[i];
    if (!(reinterpret_cast<uintptr_t>(dst + i) & 15)) {
      for (; i + 16 <= n; i += 16) {
        __m128 a = _mm_loadu_ps(src + i), b = _mm_loadu_ps(src + i + 4);
        __m128 c = _mm_loadu_ps(src + i + 8), d = _mm_loadu_ps(src + i + 12);
        _mm_stream_ps(dst + i, a);
        _mm_stream_ps(dst + i + 4, b);
        _mm_stream_ps(dst + i + 8, c);
        _mm_stream_ps(dst + i + 12, d);
      }
      for (; i + 4 <= n; i += 4) _mm_stream_ps(dst + i, _mm_loadu_ps(src + i));
    }
  }
  for (; i + 16 <= n; i += 16) {
    __m128 a = _mm_loadu_ps(src + i), b = _mm_loadu_ps(src + i + 4);
    __m128 c = _mm_loadu_ps(src + i + 8), d = _mm_loadu_ps(src + i + 12);
    _mm_storeu_ps(dst + i, a);
    _mm_storeu_ps(dst + i + 4, b);
    _mm_storeu_ps(dst + i + 8, c);
    _mm_storeu_ps(dst + i + 12, d);
  }
  for (; i + 4 <= n; i += 4) _mm_storeu_ps(dst + i, _mm_loadu_ps(src + i));
  for (; i < n; ++i) dst[i] = src[i];
#else
  (void)stream;
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
#endif
}

inline void zero_floats(float* dst, int64_t n, bool stream) {
#if VP_PACK_SSE
  int64_t i = 0;
  if (stream) {
    for (; i < n && (reinterpret_cast<uintptr_t>(dst + i) & 15); ++i) dst[i] = 0.0f;
    const __m128 z = _mm_setzero_ps();
    if (!(reinterpret_cast<uintptr_t>(dst + i) & 15))
      for (; i + 4 <= n; i += 4) _mm_stream_ps(dst + i, z);
  }
  if (i < n) std::memset(dst + i, 0, static_cast<size_t>(n - i) * sizeof(float));
#else
  (void)stream;
  std::memset(dst, 0, static_cast<size_t>(n) * sizeof(float));
#endif
}

// dst = sum of the rows src[idx[0]], src[idx[1]], ... (count >= 2), summed in
// the order given: ((r0 + r1) + r2) + ...
inline void sum_rows(float* __restrict dst, const float* __restrict base, const int32_t* idx, int64_t count,
                     int64_t width, bool stream) {
#if VP_PACK_SSE
  int64_t i = 0;
  const bool aligned = stream && !(reinterpret_cast<uintptr_t>(dst) & 15) && !(width & 3);
  for (; i + 8 <= width; i += 8) {
    const float* r0 = base + static_cast<int64_t>(idx[0]) * width + i;
    __m128 a = _mm_loadu_ps(r0), b = _mm_loadu_ps(r0 + 4);
    for (int64_t k = 1; k < count; ++k) {
      const float* rk = base + static_cast<int64_t>(idx[k]) * width + i;
      a = _mm_add_ps(a, _mm_loadu_ps(rk));
      b = _mm_add_ps(b, _mm_loadu_ps(rk + 4));
    }
    if (aligned) {
      _mm_stream_ps(dst + i, a);
      _mm_stream_ps(dst + i + 4, b);
    } else {
      _mm_storeu_ps(dst + i, a);
      _mm_storeu_ps(dst + i + 4, b);
    }
  }
  for (; i < width; ++i) {
    float acc = base[static_cast<int64_t>(idx[0]) * width + i];
    for (int64_t k = 1; k < count; ++k) acc += base[static_cast<int64_t>(idx[k]) * width + i];
    dst[i] = acc;
  }
#else
  (void)stream;
  for (int64_t i = 0; i < width; ++i) {
    float acc = base[static_cast<int64_t>(idx[0]) * width + i];
    for (int64_t k = 1; k < count; ++k) acc += base[static_cast<int64_t>(idx[k]) * width + i];
    dst[i] = acc;
  }
#endif
}

inline void fence(bool stream) {
#if VP_PACK_SSE
  if (stream) _mm_sfence();
#else
  (void)stream;
#endif
}

int64_t grain_rows(int64_t width) {
  const int64_t row_bytes = width * static_cast<int64_t>(sizeof(float));
  const int64_t g = kGrainBytes / (row_bytes > 0 ? row_bytes : 1);
  return g > 0 ? g : 1;
}

}  // namespace

void set_pack_stream_threshold(int64_t bytes) { g_stream_override.store(bytes > 0 ? bytes : 0); }

void pack_gather(const PackRows& src, const int32_t* source, int64_t n, int64_t width, float* out) {
  const bool stream = n * width * static_cast<int64_t>(sizeof(float)) >= stream_threshold_bytes();
  parallel_for(n, grain_rows(width), [&](int64_t begin, int64_t end, int) {
    int64_t i = begin;
    while (i < end) {
      // Extend a run of consecutive source rows that stay inside one buffer.
      const int64_t r0 = source[i];
      const int64_t limit = r0 < src.rows_a ? src.rows_a : src.rows_a + src.rows_b;
      int64_t j = i + 1;
      while (j < end && source[j] == source[j - 1] + 1 && source[j] < limit) ++j;
      copy_floats(out + i * width, row_ptr(src, r0, width), (j - i) * width, stream);
      i = j;
    }
    fence(stream);
  });
}

void pack_scatter_add(const float* d_tokens, const int32_t* offsets, const int32_t* dests, int64_t width,
                      const PackRows& dst) {
  const int64_t num_rows = dst.rows_a + dst.rows_b;
  const bool stream = num_rows * width * static_cast<int64_t>(sizeof(float)) >= stream_threshold_bytes();
  parallel_for(num_rows, grain_rows(width), [&](int64_t begin, int64_t end, int) {
    int64_t r = begin;
    while (r < end) {
      const int64_t limit = r < dst.rows_a ? dst.rows_a : num_rows;
      const int32_t count = offsets[r + 1] - offsets[r];
      int64_t j = r + 1;
      if (count == 0) {
        while (j < end && j < limit && offsets[j + 1] == offsets[j]) ++j;
        zero_floats(row_ptr(dst, r, width), (j - r) * width, stream);
      } else if (count == 1) {
        // A run of rows that each have one destination, the destinations consecutive.
        while (j < end && j < limit && offsets[j + 1] - offsets[j] == 1 &&
               dests[offsets[j]] == dests[offsets[j - 1]] + 1)
          ++j;
        copy_floats(row_ptr(dst, r, width), d_tokens + static_cast<int64_t>(dests[offsets[r]]) * width,
                    (j - r) * width, stream);
      } else {
        sum_rows(row_ptr(dst, r, width), d_tokens, dests + offsets[r], count, width, stream);
      }
      r = j;
    }
    fence(stream);
  });
}

}  // namespace vp::cpu
