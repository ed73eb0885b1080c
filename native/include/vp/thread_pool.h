// vp/thread_pool.h — the core's one CPU thread pool.
//
// Every threaded CPU kernel goes through parallel_for, so the whole process uses
// one set of worker threads (sized by VP_NUM_THREADS, default the cores this
// process may run on) and kernels never oversubscribe the machine by nesting.
#pragma once

#include <cstdint>
#include <functional>

namespace vp {

// Number of threads parallel_for uses (workers + the calling thread).
int num_threads();

// Resize the pool (n >= 1). Not safe while a parallel_for is running.
void set_num_threads(int n);

// Split [0, n) into contiguous chunks of at least `grain` items and run
// fn(begin, end, thread_index) on the pool; returns when every chunk is done.
// Called from inside a worker it runs serially (no nested parallelism).
void parallel_for(int64_t n, int64_t grain,
                  const std::function<void(int64_t begin, int64_t end, int thread)>& fn);

// Run fn(thread_index, num_threads) once on each of `nthreads` threads
// (at most num_threads()); for kernels that partition work themselves.
void parallel_run(int nthreads, const std::function<void(int thread, int nthreads)>& fn);

}  // namespace vp
