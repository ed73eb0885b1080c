// The CUDA kernels' scratch memory: a process-wide pool of grow-only device
// blocks, so that a call costs no cudaMalloc/cudaFree in the steady state
// (cudaFree synchronizes the whole device).
//
// Algorithm: a call leases blocks (Scratch, below) and gives them back when it
// returns. A lease takes the smallest free block that is large enough; when
// every free block is too small, the largest free one is freed and replaced by
// one of the requested size (blocks only grow); when no block is free, a new
// one is allocated. A block is never handed to two leases at once, so calls on
// different host threads never share scratch. Requests are rounded up to 256
// bytes. Cost: O(blocks) host work per lease under one mutex; blocks = the most
// leases ever held at once (a handful per call), bytes = the sum of their
// largest requests. scratch_trim() (vp/cuda.h) frees the blocks not leased.
//
// Why giving a block back before its kernels finish is safe: every kernel,
// memset and copy of the core is issued on the legacy default stream, which
// runs them in issue order, so the next user's work on a block starts after
// the previous user's work on it has ended; freeing a block (cudaFree) waits
// for the device. Code that uses other streams must not use this pool.
//
// ScratchPool is plain C++ with the allocator passed in (the native tests run it
// with malloc/free); cuda/runtime.cu instantiates the device pool.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "vp/cuda.h"
#include "vp/status.h"

namespace vp::cuda {

class ScratchPool {
 public:
  // Allocates `bytes` into *p; returns "" or why it failed.
  using AllocFn = std::string (*)(void** p, size_t bytes);
  using FreeFn = void (*)(void* p);

  ScratchPool(AllocFn alloc, FreeFn free) : alloc_(alloc), free_(free) {}
  ScratchPool(const ScratchPool&) = delete;
  ScratchPool& operator=(const ScratchPool&) = delete;

  static size_t round_up(size_t bytes) { return bytes == 0 ? 256 : (bytes + 255) / 256 * 256; }

  // Leases a block of at least `bytes`: *p and *slot (for release). "" or why not.
  std::string acquire(size_t bytes, void** p, size_t* slot) {
    const size_t want = round_up(bytes);
    std::lock_guard<std::mutex> lock(mu_);
    size_t best = kNone, largest = kNone, empty = kNone;
    for (size_t i = 0; i < blocks_.size(); ++i) {
      const Block& b = blocks_[i];
      if (b.leased) continue;
      if (!b.ptr) {
        empty = i;
        continue;
      }
      if (b.bytes >= want && (best == kNone || b.bytes < blocks_[best].bytes)) best = i;
      if (largest == kNone || b.bytes > blocks_[largest].bytes) largest = i;
    }
    if (best == kNone) {
      // Grow the largest free block, or fill an empty slot, or add one.
      best = largest != kNone ? largest : empty;
      if (best == kNone) {
        blocks_.push_back(Block{});
        best = blocks_.size() - 1;
      }
      Block& b = blocks_[best];
      if (b.ptr) release_memory(b);
      std::string err = alloc_(&b.ptr, want);
      if (!err.empty()) {
        // Out of memory: give back every unleased block and try once more.
        b.ptr = nullptr;
        for (Block& o : blocks_)
          if (!o.leased && o.ptr) release_memory(o);
        err = alloc_(&b.ptr, want);
        if (!err.empty()) {
          b.ptr = nullptr;
          return err;
        }
      }
      b.bytes = want;
      bytes_ += want;
      ++allocations_;
    }
    blocks_[best].leased = true;
    *p = blocks_[best].ptr;
    *slot = best;
    return "";
  }

  void release(size_t slot) {
    std::lock_guard<std::mutex> lock(mu_);
    if (slot < blocks_.size()) blocks_[slot].leased = false;
  }

  // Frees every block not leased; returns the bytes freed.
  size_t trim() {
    std::lock_guard<std::mutex> lock(mu_);
    size_t freed = 0;
    for (Block& b : blocks_)
      if (!b.leased && b.ptr) {
        freed += b.bytes;
        release_memory(b);
      }
    return freed;
  }

  ScratchStats stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    ScratchStats s;
    for (const Block& b : blocks_) {
      if (!b.ptr) continue;
      ++s.blocks;
      if (b.leased) ++s.leased;
    }
    s.bytes = bytes_;
    s.allocations = allocations_;
    s.frees = frees_;
    return s;
  }

 private:
  static constexpr size_t kNone = static_cast<size_t>(-1);
  struct Block {
    void* ptr = nullptr;
    size_t bytes = 0;
    bool leased = false;
  };
  void release_memory(Block& b) {
    free_(b.ptr);
    bytes_ -= b.bytes;
    ++frees_;
    b.ptr = nullptr;
    b.bytes = 0;
  }

  AllocFn alloc_;
  FreeFn free_;
  mutable std::mutex mu_;
  std::vector<Block> blocks_;
  size_t bytes_ = 0;
  uint64_t allocations_ = 0, frees_ = 0;
};

// The device pool (cuda/runtime.cu; cudaMalloc/cudaFree, never destroyed).
ScratchPool& device_scratch_pool();

// The leases of one call: device memory valid until this object is destroyed.
class Scratch {
 public:
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() {
    for (size_t s : slots_) device_scratch_pool().release(s);
  }
  // `count` elements of U (uninitialized) into *out; `what` names the caller in errors.
  template <typename U>
  Status get(U** out, size_t count, const char* what) {
    void* p = nullptr;
    size_t slot = 0;
    std::string err = device_scratch_pool().acquire(count * sizeof(U), &p, &slot);
    if (!err.empty())
      return Status::Internal(std::string(what) + ": scratch memory of " + std::to_string(count * sizeof(U)) +
                              " bytes: " + err);
    slots_.push_back(slot);
    *out = static_cast<U*>(p);
    return Status::Ok();
  }

 private:
  std::vector<size_t> slots_;
};

}  // namespace vp::cuda
