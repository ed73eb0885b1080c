// vp/pack.h — frame-substitution token packing (docs/method.md, stage 1 step 4, §3.3).
//
// Packing copies rows of two sources into one varlen batch:
//
//   sources  = [ video flattened to [V·F·P, D] ; text [T, D] ]   (a "source row" indexes this)
//   packed   = [N, D], out[i] = sources[source[i]]
//
// The layout comes from a table of segments. Each segment belongs to a sequence
// and is either a video (P tokens for each of its output frames, each output
// frame taking the tokens of a chosen source frame: the KIM substitution) or a
// span of text rows. From the table, pack_plan derives, for every packed row,
// its source row, its position inside its sequence, and the index of its
// segment inside its sequence, plus the sequences' cumulative lengths
// (cuSeqlens, what the varlen attention takes).
//
// pack_tokens is the gather; pack_tokens_backward is its adjoint, a scatter-add:
// a source row that was copied k times receives the sum of the k gradient rows.
// The backward inverts the source map into CSR form (for each source row, its
// destination rows in ascending order), so each thread owns whole source rows:
// no atomics, no races, and the summation order (ascending destination row) does
// not depend on the number of threads — the result is bitwise deterministic.
// The CUDA backend does the same with one warp per source row.
#pragma once

#include <cstdint>
#include <vector>

#include "vp/status.h"
#include "vp/tensor.h"

namespace vp {

enum class PackSegmentKind : int32_t { kVideo = 0, kText = 1 };

// Sizes of the two sources.
struct PackSources {
  int64_t num_videos = 0;        // V
  int64_t frames = 0;            // F
  int64_t tokens_per_frame = 0;  // P
  int64_t num_text = 0;          // T
  int64_t video_rows() const { return num_videos * frames * tokens_per_frame; }
  int64_t total_rows() const { return video_rows() + num_text; }
};

// One segment. Segments are listed sequence by sequence (`sequence` is
// non-decreasing); a sequence with no segments is empty (length 0).
struct PackSegment {
  int32_t sequence = 0;
  PackSegmentKind kind = PackSegmentKind::kVideo;
  // kVideo: which video, how many output frames, and where in frame_map their
  // source frames are (frames_offset = -1: the identity 0..F-1, num_frames == F).
  int32_t video = 0;
  int32_t num_frames = 0;
  int64_t frames_offset = -1;
  // kText: rows [text_start, text_start + text_length) of the text source.
  int64_t text_start = 0;
  int64_t text_length = 0;
};

// The int32 table the addon passes: one row of kPackTableColumns per segment,
//   video: [sequence, 0, video, num_frames, frames_offset, 0]
//   text:  [sequence, 1, text_start, text_length, 0, 0]
constexpr int kPackTableColumns = 6;
Status pack_segments_from_table(const int32_t* table, int64_t num_segments,
                                std::vector<PackSegment>* out);

// Validates the segment table against the sources and counts the packed rows.
// Every index is checked (video, frame, text span, sequence order) and the
// totals must fit int32 (source rows, packed rows).
Status pack_count(const PackSources& src, const PackSegment* segs, int64_t num_segments,
                  int64_t num_sequences, const int32_t* frame_map, int64_t frame_map_len,
                  int64_t* total_rows);

// Fills source/positions/segment ([total_rows] each) and cu_seqlens
// ([num_sequences + 1]). Validates like pack_count; total_rows must be its result.
Status pack_plan(const PackSources& src, const PackSegment* segs, int64_t num_segments,
                 int64_t num_sequences, const int32_t* frame_map, int64_t frame_map_len,
                 int64_t total_rows, int32_t* source, int32_t* positions, int32_t* segment,
                 int32_t* cu_seqlens);

// The CSR inverse of a source map: for source row r, its destinations are
// dests[offsets[r] .. offsets[r+1]) in ascending order. offsets has
// num_source_rows + 1 entries, dests n. Every source[i] must be in range.
Status pack_inverse_map(const int32_t* source, int64_t n, int64_t num_source_rows,
                        int32_t* offsets, int32_t* dests);

// out[i, :] = [video; text][source[i], :]. video has any shape whose last
// dimension is D (it is read as [V·F·P, D]); text is [T, D]; out is [n, D];
// `source` is a host array of n rows. All three on one device, one dtype (CPU:
// float32; CUDA: float32, bfloat16 or float16). Either source may be empty
// (data may then be null).
Status pack_tokens(const TensorView& video, const TensorView& text, const int32_t* source,
                   int64_t n, const TensorView& out);

// The adjoint: d_video = 0, d_text = 0, then [d_video; d_text][source[i]] += d_tokens[i].
// Every element of d_video and d_text is written. CUDA accumulates in float32.
Status pack_tokens_backward(const TensorView& d_tokens, const int32_t* source, int64_t n,
                            const TensorView& d_video, const TensorView& d_text);

// ---- backend entry points (arguments already validated by the functions above) ----

// A pair of row-major [rows, width] matrices seen as one: rows [0, rows_a) are
// in `a`, rows [rows_a, rows_a + rows_b) in `b`.
struct PackRows {
  void* a = nullptr;
  int64_t rows_a = 0;
  void* b = nullptr;
  int64_t rows_b = 0;
};

namespace cpu {
// Outputs of at least this many bytes are written with non-temporal stores
// (default: the last-level cache size, at least 4 MiB; 0 restores it). For tests.
void set_pack_stream_threshold(int64_t bytes);
// float32 rows of `width` elements.
void pack_gather(const PackRows& src, const int32_t* source, int64_t n, int64_t width, float* out);
void pack_scatter_add(const float* d_tokens, const int32_t* offsets, const int32_t* dests,
                      int64_t width, const PackRows& dst);
}  // namespace cpu

namespace cuda {
// Device pointers throughout except the host arrays source/offsets/dests,
// which these copy to the device. dtype: float32, bfloat16 or float16.
Status pack_gather(const PackRows& src, const int32_t* source, int64_t n, int64_t width,
                   DType dtype, void* out);
Status pack_scatter_add(const void* d_tokens, int64_t n, const int32_t* offsets,
                        const int32_t* dests, int64_t width, DType dtype, const PackRows& dst);
}  // namespace cuda

}  // namespace vp
