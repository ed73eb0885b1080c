// The core's thread pool: persistent workers that take chunks of a range from a
// shared atomic counter. The calling thread works too, so a pool of N threads
// has N-1 workers. Workers spin briefly before sleeping, so back-to-back kernels
// (the usual case inside a training step) do not pay a futex wake-up each.
#include "vp/thread_pool.h"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace vp {
namespace {

thread_local bool t_in_worker = false;

int default_threads() {
  if (const char* env = std::getenv("VP_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n >= 1) return std::min(n, 1024);
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n >= 1) return n;
  }
  unsigned hc = std::thread::hardware_concurrency();
  return hc ? static_cast<int>(hc) : 1;
}

class Pool {
 public:
  explicit Pool(int n) { start(n); }
  ~Pool() { stop(); }

  int size() const { return size_; }

  void resize(int n) {
    if (n == size_) return;
    stop();
    start(n);
  }

  // Run task(t) for t in [0, ntasks) across the pool; returns when all are done.
  void run(int ntasks, const std::function<void(int)>& task) {
    if (ntasks <= 0) return;
    if (ntasks == 1 || size_ == 1 || t_in_worker) {
      for (int t = 0; t < ntasks; ++t) task(t);
      return;
    }
    std::lock_guard<std::mutex> run_lock(run_mu_);  // one parallel region at a time
    // Each region gets its own job record, so a worker that wakes late for an
    // old region finds its counter exhausted and can never run a newer one's task.
    auto job = std::make_shared<Job>();
    job->task = &task;
    job->ntasks = ntasks;
    {
      std::lock_guard<std::mutex> lk(mu_);
      job_ = job;
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    t_in_worker = true;
    work(*job);
    t_in_worker = false;
    // Wait for the stragglers: spin a little, then sleep.
    for (int spin = 0; job->done.load(std::memory_order_acquire) < ntasks; ++spin) {
      if (spin < 20000) {
        std::this_thread::yield();
      } else {
        std::unique_lock<std::mutex> lk(mu_);
        done_cv_.wait(lk, [&] { return job->done.load(std::memory_order_acquire) >= ntasks; });
      }
    }
    std::lock_guard<std::mutex> lk(mu_);
    job_.reset();
  }

 private:
  struct Job {
    const std::function<void(int)>* task = nullptr;
    int ntasks = 0;
    std::atomic<int> next{0};
    std::atomic<int> done{0};
  };

  void work(Job& job) {
    for (;;) {
      int t = job.next.fetch_add(1, std::memory_order_relaxed);
      if (t >= job.ntasks) break;
      (*job.task)(t);
      if (job.done.fetch_add(1, std::memory_order_acq_rel) + 1 == job.ntasks) {
        std::lock_guard<std::mutex> lk(mu_);
        done_cv_.notify_all();
      }
    }
  }

  void worker_loop() {
    t_in_worker = true;
    uint64_t seen = generation_.load(std::memory_order_acquire);
    for (;;) {
      // Spin for a short while on the generation counter, then block.
      bool got = false;
      for (int spin = 0; spin < 4000; ++spin) {
        if (generation_.load(std::memory_order_acquire) != seen || quit_.load()) {
          got = true;
          break;
        }
        std::this_thread::yield();
      }
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lk(mu_);
        if (!got) {
          cv_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen || quit_.load(); });
        }
        if (quit_.load()) return;
        seen = generation_.load(std::memory_order_acquire);
        job = job_;
      }
      if (job) work(*job);
    }
  }

  void start(int n) {
    size_ = std::max(1, n);
    quit_.store(false);
    for (int i = 1; i < size_; ++i) workers_.emplace_back([this] { worker_loop(); });
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      quit_.store(true);
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  int size_ = 1;
  std::vector<std::thread> workers_;
  std::mutex run_mu_;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> quit_{false};
  std::shared_ptr<Job> job_;
};

Pool& pool() {
  static Pool p(default_threads());
  return p;
}

}  // namespace

int num_threads() { return pool().size(); }

void set_num_threads(int n) { pool().resize(std::max(1, n)); }

void parallel_for(int64_t n, int64_t grain,
                  const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  int threads = num_threads();
  int64_t max_chunks = (n + grain - 1) / grain;
  int chunks = static_cast<int>(std::min<int64_t>(max_chunks, threads));
  if (chunks <= 1 || t_in_worker) {
    fn(0, n, 0);
    return;
  }
  pool().run(chunks, [&](int t) {
    int64_t begin = n * t / chunks;
    int64_t end = n * (t + 1) / chunks;
    if (begin < end) fn(begin, end, t);
  });
}

void parallel_run(int nthreads, const std::function<void(int, int)>& fn) {
  nthreads = std::max(1, std::min(nthreads, num_threads()));
  if (nthreads == 1 || t_in_worker) {
    fn(0, 1);
    return;
  }
  pool().run(nthreads, [&](int t) { fn(t, nthreads); });
}

}  // namespace vp
