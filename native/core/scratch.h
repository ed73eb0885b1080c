// Per-thread scratch memory that the CPU kernels reuse from one call to the next.
//
// Why: a kernel's workspace (a packed GEMM operand, attention's per-thread score
// blocks, a score block of the InfoNCE loss, the log-probs family's packed operands) used to be aligned_alloc'd on every
// call and freed at its end. From 128 KB up glibc serves such a request with a
// fresh mmap (until its dynamic threshold has grown past that size), so a call
// could pay one page fault per 4 KB it touched: measured on the 2-core KVM machine
// of docs/benchmarks.md, 1.8-2.5 µs a fault, 0.5-0.6 ms a MB, a third of a 512³
// SGEMM (the 1 MB packed B). Kept between calls, the pages stay mapped.
//
// How: each thread holds one block per ScratchSlot (a use site). A ScratchLease
// takes its slot's block out for the length of one call (grown if too small) and
// puts it back on destruction, so a nested use of the same slot on the same thread
// simply allocates its own block (no aliasing). A block over kScratchKeepBytes is
// freed instead of kept, bounding what each thread retains to the sum of its
// slots' kept blocks. Blocks of 4 MB or more are 2 MB-aligned and advised to use
// transparent huge pages (one fault per 2 MB where THP is "madvise" or "always").
// Cost: O(1) per lease when the kept block is large enough; otherwise one
// allocation, as before. Memory is not zeroed.
#pragma once

#include <cstddef>

namespace vp {

// The use sites: one kept block per slot and thread.
enum class ScratchSlot : int {
  kGemmPackA,       // sgemm: a pool thread's packed A block
  kGemmPackB,       // sgemm: the calling thread's packed B block
  kGemmBf16PackA,   // gemm_bf16: a pool thread's packed A block
  kGemmBf16PackB,   // gemm_bf16: the calling thread's packed B block
  kGemmBf16Acc,     // gemm_bf16: float32 accumulators of a bfloat16 C summed over k blocks
  kAttnFwd,         // attention forward: per-thread blocks of scores, Q^T, O^T
  kAttnFwdKv,       // attention forward: the head-major copy of K and V
  kAttnBwd,         // attention backward: per-thread blocks
  kAttnBwdDelta,    // attention backward: rowsum(dO ∘ O)
  kInfonceScores,   // InfoNCE: one block of scores
  kBf16RoundA,      // gemm_f32_bf16 / gemm_f32_via_bf16: the bfloat16-rounded A
  kBf16RoundB,      // gemm_f32_via_bf16: the bfloat16-rounded B
  kLogprobsWeight,  // the linear log-probs family: the packed output projection
  kLogprobsHidden,  //   the packed hidden rows
  kLogprobsLogits,  //   the backward's logits blocks
  kLogprobsRows,    //   per-row target logits
  kLogprobsTasks,   //   per-task log-sum-exp states and tiles
  kCount,
};

// Blocks larger than this are freed at the end of their lease, not kept: from 4 MB
// a block is in 2 MB pages, whose faults are few (6 for 12 MB), so keeping it would
// save little and hold much; what a thread keeps stays under 4 MB per slot.
constexpr size_t kScratchKeepBytes = size_t{4} << 20;

class ScratchLease {
 public:
  // At least `bytes` bytes (64-byte aligned; 2 MB-aligned from 4 MB), or null
  // (check with ok()) when the allocation failed.
  ScratchLease(ScratchSlot slot, size_t bytes);
  ~ScratchLease();
  ScratchLease(const ScratchLease&) = delete;
  ScratchLease& operator=(const ScratchLease&) = delete;

  bool ok() const { return ptr_ != nullptr; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  ScratchSlot slot_;
  void* ptr_ = nullptr;
  size_t cap_ = 0;
};

}  // namespace vp
