// vp::pack_* — validation, the packing plan, the inverse source map, and
// dispatch of the gather / scatter-add to the CPU or CUDA backend.
#include "vp/pack.h"

#include <cstdint>
#include <limits>
#include <string>

namespace vp {
namespace {

constexpr int64_t kMaxRows = std::numeric_limits<int32_t>::max();

std::string seg_name(int64_t sequence, int64_t index_in_sequence) {
  return "sequences[" + std::to_string(sequence) + "][" + std::to_string(index_in_sequence) + "]";
}

// Walks the table, validating every entry; calls row_fn(count) per segment
// with the number of rows it contributes. Shared by pack_count and pack_plan.
Status validate_table(const PackSources& src, const PackSegment* segs, int64_t num_segments,
                      int64_t num_sequences, const int32_t* frame_map, int64_t frame_map_len,
                      int64_t* total_rows) {
  const char* fn = "packTokens: ";
  if (src.num_videos < 0 || src.frames < 0 || src.tokens_per_frame < 0 || src.num_text < 0)
    return Status::Invalid(std::string(fn) + "source sizes must be non-negative");
  if (src.total_rows() > kMaxRows)
    return Status::OutOfRange(std::string(fn) + "the sources hold " + std::to_string(src.total_rows()) +
                              " rows; at most 2^31-1 are supported");
  if (num_sequences < 0 || num_sequences >= kMaxRows)
    return Status::OutOfRange(std::string(fn) + "the number of sequences must be in [0, 2^31-1), got " +
                              std::to_string(num_sequences));
  if (num_segments < 0) return Status::Invalid(std::string(fn) + "negative segment count");
  if (num_segments > 0 && !segs) return Status::Invalid(std::string(fn) + "segment table is null");
  if (frame_map_len < 0 || (frame_map_len > 0 && !frame_map))
    return Status::Invalid(std::string(fn) + "frame map is null");
  int64_t total = 0, seq_len = 0, prev_seq = 0, index_in_seq = 0;
  for (int64_t k = 0; k < num_segments; ++k) {
    const PackSegment& s = segs[k];
    if (s.sequence < 0 || s.sequence >= num_sequences)
      return Status::OutOfRange(std::string(fn) + "segment " + std::to_string(k) + " names sequence " +
                                std::to_string(s.sequence) + ", outside [0, " +
                                std::to_string(num_sequences) + ")");
    if (s.sequence < prev_seq)
      return Status::Invalid(std::string(fn) + "segment " + std::to_string(k) + " names sequence " +
                             std::to_string(s.sequence) + " after sequence " + std::to_string(prev_seq) +
                             ": segments must be listed sequence by sequence");
    if (s.sequence != prev_seq) {
      seq_len = 0;
      index_in_seq = 0;
      prev_seq = s.sequence;
    }
    const std::string name = seg_name(s.sequence, index_in_seq);
    int64_t rows = 0;
    if (s.kind == PackSegmentKind::kVideo) {
      if (s.video < 0 || s.video >= src.num_videos)
        return Status::OutOfRange(std::string(fn) + name + ".video must be in [0, " +
                                  std::to_string(src.num_videos) + "), got " + std::to_string(s.video));
      if (s.num_frames < 0)
        return Status::Invalid(std::string(fn) + name + ": negative frame count " + std::to_string(s.num_frames));
      if (s.frames_offset == -1) {
        if (s.num_frames != src.frames)
          return Status::Invalid(std::string(fn) + name + ": without a frame map it has " +
                                 std::to_string(src.frames) + " frames, the table says " +
                                 std::to_string(s.num_frames));
      } else {
        if (s.frames_offset < 0 || s.frames_offset + s.num_frames > frame_map_len)
          return Status::OutOfRange(std::string(fn) + name + ".frames lies outside the frame map (offset " +
                                    std::to_string(s.frames_offset) + ", " + std::to_string(s.num_frames) +
                                    " frames, map length " + std::to_string(frame_map_len) + ")");
        for (int64_t j = 0; j < s.num_frames; ++j) {
          const int32_t f = frame_map[s.frames_offset + j];
          if (f < 0 || f >= src.frames)
            return Status::OutOfRange(std::string(fn) + name + ".frames[" + std::to_string(j) +
                                      "] must be a frame index in [0, " + std::to_string(src.frames) +
                                      "), got " + std::to_string(f));
        }
      }
      rows = static_cast<int64_t>(s.num_frames) * src.tokens_per_frame;
    } else if (s.kind == PackSegmentKind::kText) {
      if (s.text_start < 0 || s.text_length < 0 || s.text_start > src.num_text ||
          s.text_length > src.num_text - s.text_start)
        return Status::OutOfRange(std::string(fn) + name + ".text [" + std::to_string(s.text_start) + ", " +
                                  std::to_string(s.text_length) + "] must lie within the " +
                                  std::to_string(src.num_text) + " text rows");
      rows = s.text_length;
    } else {
      return Status::Invalid(std::string(fn) + "segment " + std::to_string(k) + " has unknown kind " +
                             std::to_string(static_cast<int32_t>(s.kind)));
    }
    seq_len += rows;
    total += rows;
    if (seq_len > kMaxRows || total > kMaxRows)
      return Status::OutOfRange(std::string(fn) + "the packed batch would exceed 2^31-1 rows");
    ++index_in_seq;
  }
  *total_rows = total;
  return Status::Ok();
}

bool views_on(const TensorView& a, Device d) { return a.device == d; }

// Rows of a view read as [rows, width]: every dimension but the last.
int64_t leading_rows(const TensorView& v) {
  int64_t r = 1;
  for (int i = 0; i + 1 < v.ndim; ++i) r *= v.shape[i];
  return r;
}

Status check_source(const char* fn, const int32_t* source, int64_t n, int64_t num_rows) {
  if (n > 0 && !source) return Status::Invalid(std::string(fn) + "source is null");
  for (int64_t i = 0; i < n; ++i) {
    if (source[i] < 0 || source[i] >= num_rows)
      return Status::OutOfRange(std::string(fn) + "source[" + std::to_string(i) + "] = " +
                                std::to_string(source[i]) + " is outside the " + std::to_string(num_rows) +
                                " source rows");
  }
  return Status::Ok();
}

// Shared checks of pack_tokens / pack_tokens_backward: `rows` is the packed
// side ([n, D]), `video` and `text` the source side.
Status check_views(const char* fn, const char* rows_name, const TensorView& rows, int64_t n,
                   const char* video_name, const TensorView& video, const char* text_name,
                   const TensorView& text, int64_t* width) {
  if (rows.ndim != 2 || rows.shape[0] != n)
    return Status::Invalid(std::string(fn) + rows_name + " must be [" + std::to_string(n) + ", D], got " +
                           rows.shape_string());
  const int64_t d = rows.shape[1];
  if (video.ndim < 2 || video.shape[video.ndim - 1] != d)
    return Status::Invalid(std::string(fn) + video_name + " must have width D = " + std::to_string(d) +
                           " in its last dimension, got shape " + video.shape_string());
  if (text.ndim != 2 || text.shape[1] != d)
    return Status::Invalid(std::string(fn) + text_name + " must be [T, " + std::to_string(d) + "], got " +
                           text.shape_string());
  if (!views_on(video, rows.device) || !views_on(text, rows.device))
    return Status::Invalid(std::string(fn) + "tensors are on different devices (" + rows_name + ": " +
                           device_name(rows.device) + ", " + video_name + ": " + device_name(video.device) +
                           ", " + text_name + ": " + device_name(text.device) + ")");
  if (video.dtype != rows.dtype || text.dtype != rows.dtype)
    return Status::Invalid(std::string(fn) + "dtypes differ (" + rows_name + ": " + dtype_name(rows.dtype) +
                           ", " + video_name + ": " + dtype_name(video.dtype) + ", " + text_name + ": " +
                           dtype_name(text.dtype) + ")");
  if (rows.device == Device::kCPU && rows.dtype != DType::kFloat32)
    return Status::Invalid(std::string(fn) + "CPU computes in float32, got " + dtype_name(rows.dtype));
  if (rows.dtype == DType::kInt32)
    return Status::Invalid(std::string(fn) + "token rows must be floating point, got int32");
  if (leading_rows(video) + text.shape[0] > kMaxRows)
    return Status::OutOfRange(std::string(fn) + "the sources hold more than 2^31-1 rows");
  if (d > 0) {
    if (rows.numel() > 0 && !rows.data) return Status::Invalid(std::string(fn) + rows_name + " data is null");
    if (video.numel() > 0 && !video.data) return Status::Invalid(std::string(fn) + video_name + " data is null");
    if (text.numel() > 0 && !text.data) return Status::Invalid(std::string(fn) + text_name + " data is null");
  }
  *width = d;
  return Status::Ok();
}

}  // namespace

Status pack_segments_from_table(const int32_t* table, int64_t num_segments, std::vector<PackSegment>* out) {
  out->clear();
  if (num_segments < 0) return Status::Invalid("packTokens: negative segment count");
  if (num_segments > 0 && !table) return Status::Invalid("packTokens: segment table is null");
  out->resize(static_cast<size_t>(num_segments));
  for (int64_t k = 0; k < num_segments; ++k) {
    const int32_t* r = table + k * kPackTableColumns;
    PackSegment& s = (*out)[k];
    s.sequence = r[0];
    if (r[1] == 0) {
      s.kind = PackSegmentKind::kVideo;
      s.video = r[2];
      s.num_frames = r[3];
      s.frames_offset = r[4];
    } else if (r[1] == 1) {
      s.kind = PackSegmentKind::kText;
      s.text_start = r[2];
      s.text_length = r[3];
    } else {
      return Status::Invalid("packTokens: segment " + std::to_string(k) + " has unknown kind " + std::to_string(r[1]));
    }
  }
  return Status::Ok();
}

Status pack_count(const PackSources& src, const PackSegment* segs, int64_t num_segments,
                  int64_t num_sequences, const int32_t* frame_map, int64_t frame_map_len,
                  int64_t* total_rows) {
  return validate_table(src, segs, num_segments, num_sequences, frame_map, frame_map_len, total_rows);
}

Status pack_plan(const PackSources& src, const PackSegment* segs, int64_t num_segments,
                 int64_t num_sequences, const int32_t* frame_map, int64_t frame_map_len,
                 int64_t total_rows, int32_t* source, int32_t* positions, int32_t* segment,
                 int32_t* cu_seqlens) {
  int64_t total = 0;
  VP_RETURN_IF_ERROR(validate_table(src, segs, num_segments, num_sequences, frame_map, frame_map_len, &total));
  if (total != total_rows)
    return Status::Invalid("packTokens: the plan has " + std::to_string(total) + " rows, the outputs hold " +
                           std::to_string(total_rows));
  if (total > 0 && (!source || !positions || !segment))
    return Status::Invalid("packTokens: plan outputs are null");
  if (!cu_seqlens) return Status::Invalid("packTokens: cu_seqlens is null");
  const int64_t P = src.tokens_per_frame;
  const int64_t F = src.frames;
  const int64_t text_base = src.video_rows();
  int64_t row = 0, seq = 0, pos = 0, index_in_seq = 0;
  cu_seqlens[0] = 0;
  for (int64_t k = 0; k < num_segments; ++k) {
    const PackSegment& s = segs[k];
    while (seq < s.sequence) {  // close this sequence (and any empty ones after it)
      cu_seqlens[++seq] = static_cast<int32_t>(row);
      pos = 0;
      index_in_seq = 0;
    }
    const int32_t seg_id = static_cast<int32_t>(index_in_seq++);
    if (s.kind == PackSegmentKind::kVideo) {
      const int64_t video_base = static_cast<int64_t>(s.video) * F;
      for (int64_t j = 0; j < s.num_frames; ++j) {
        const int64_t f = s.frames_offset < 0 ? j : frame_map[s.frames_offset + j];
        const int64_t base = (video_base + f) * P;
        for (int64_t p = 0; p < P; ++p, ++row, ++pos) {
          source[row] = static_cast<int32_t>(base + p);
          positions[row] = static_cast<int32_t>(pos);
          segment[row] = seg_id;
        }
      }
    } else {
      for (int64_t t = 0; t < s.text_length; ++t, ++row, ++pos) {
        source[row] = static_cast<int32_t>(text_base + s.text_start + t);
        positions[row] = static_cast<int32_t>(pos);
        segment[row] = seg_id;
      }
    }
  }
  while (seq < num_sequences) cu_seqlens[++seq] = static_cast<int32_t>(row);
  return Status::Ok();
}

Status pack_inverse_map(const int32_t* source, int64_t n, int64_t num_source_rows, int32_t* offsets,
                        int32_t* dests) {
  const char* fn = "packTokensBackward: ";
  if (num_source_rows < 0 || num_source_rows > kMaxRows || n < 0 || n > kMaxRows)
    return Status::OutOfRange(std::string(fn) + "row counts must be in [0, 2^31-1]");
  VP_RETURN_IF_ERROR(check_source(fn, source, n, num_source_rows));
  if (!offsets || (n > 0 && !dests)) return Status::Invalid(std::string(fn) + "inverse-map outputs are null");
  for (int64_t r = 0; r <= num_source_rows; ++r) offsets[r] = 0;
  for (int64_t i = 0; i < n; ++i) ++offsets[source[i] + 1];
  for (int64_t r = 0; r < num_source_rows; ++r) offsets[r + 1] += offsets[r];
  // Fill in ascending destination order; offsets[r] serves as the cursor, then
  // is restored by shifting back one slot.
  for (int64_t i = 0; i < n; ++i) dests[offsets[source[i]]++] = static_cast<int32_t>(i);
  for (int64_t r = num_source_rows; r > 0; --r) offsets[r] = offsets[r - 1];
  offsets[0] = 0;
  return Status::Ok();
}

Status pack_tokens(const TensorView& video, const TensorView& text, const int32_t* source, int64_t n,
                   const TensorView& out) {
  const char* fn = "packTokens: ";
  if (n < 0 || n > kMaxRows) return Status::OutOfRange(std::string(fn) + "row count must be in [0, 2^31-1]");
  int64_t width = 0;
  VP_RETURN_IF_ERROR(check_views(fn, "out", out, n, "video", video, "text", text, &width));
  PackRows src;
  src.a = video.data;
  src.rows_a = leading_rows(video);
  src.b = text.data;
  src.rows_b = text.shape[0];
  VP_RETURN_IF_ERROR(check_source(fn, source, n, src.rows_a + src.rows_b));
  if (n == 0 || width == 0) return Status::Ok();
  if (out.device == Device::kCUDA) return cuda::pack_gather(src, source, n, width, out.dtype, out.data);
  cpu::pack_gather(src, source, n, width, out.as<float>());
  return Status::Ok();
}

Status pack_tokens_backward(const TensorView& d_tokens, const int32_t* source, int64_t n,
                            const TensorView& d_video, const TensorView& d_text) {
  const char* fn = "packTokensBackward: ";
  if (n < 0 || n > kMaxRows) return Status::OutOfRange(std::string(fn) + "row count must be in [0, 2^31-1]");
  int64_t width = 0;
  VP_RETURN_IF_ERROR(check_views(fn, "dTokens", d_tokens, n, "dVideo", d_video, "dText", d_text, &width));
  PackRows dst;
  dst.a = d_video.data;
  dst.rows_a = leading_rows(d_video);
  dst.b = d_text.data;
  dst.rows_b = d_text.shape[0];
  const int64_t num_rows = dst.rows_a + dst.rows_b;
  std::vector<int32_t> offsets(static_cast<size_t>(num_rows) + 1), dests(static_cast<size_t>(n));
  VP_RETURN_IF_ERROR(pack_inverse_map(source, n, num_rows, offsets.data(), dests.data()));
  if (num_rows == 0 || width == 0) return Status::Ok();
  if (d_tokens.device == Device::kCUDA)
    return cuda::pack_scatter_add(d_tokens.data, n, offsets.data(), dests.data(), width, d_tokens.dtype, dst);
  cpu::pack_scatter_add(d_tokens.as<float>(), offsets.data(), dests.data(), width, dst);
  return Status::Ok();
}

}  // namespace vp
