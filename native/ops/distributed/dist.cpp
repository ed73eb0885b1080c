// Data-parallel collectives (vp/dist.h): bring-up of MPI and NCCL, in-place
// sum all-reduce, broadcast, barrier, abort, and the watchdog.
//
// Routing: host buffers go through MPI when the job was started by mpirun,
// device buffers through NCCL when it is up. The other two cases are staged:
// a device buffer under MPI alone is copied to host memory and back; a host
// buffer under NCCL alone (torchrun-style launch) is copied to device memory
// and back. One mutex keeps a single collective in flight per process, so the
// engines are called from any thread but never from two at once (MPI thread
// level SERIALIZED is enough; MULTIPLE is asked for, so that the watchdog may
// call MPI_Abort while another thread waits in a collective).
//
// The watchdog: a thread that wakes every 250 ms and, when a collective has
// been waiting longer than the timeout (a rank died, hung, or took another
// code path), prints which and aborts every rank.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "engines.h"
#include "vp/cuda.h"
#include "vp/dist.h"

namespace vp::dist {
namespace {

using Clock = std::chrono::steady_clock;

std::mutex g_mu;  // one collective at a time; guards what follows
bool g_tried = false;
Status g_status;
Info g_info;
const detail::MpiApi* g_mpi = nullptr;
int g_mpi_level = 0;
bool g_mpi_ours = false;  // MPI_Init was called here (so MPI_Finalize is ours too)
const detail::NcclApi* g_nccl = nullptr;
void* g_comm = nullptr;
std::vector<char> g_host_scratch;
void* g_dev_scratch = nullptr;
size_t g_dev_cap = 0;

std::atomic<int64_t> g_op_since{0};  // steady-clock ns when the running collective began; 0: none
std::atomic<const char*> g_op{""};
std::atomic<double> g_timeout{600};
std::atomic<bool> g_aborting{false};
std::atomic<int> g_rank{0};

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

struct Watch {
  explicit Watch(const char* op) {
    g_op.store(op);
    g_op_since.store(now_ns());
  }
  ~Watch() { g_op_since.store(0); }
};

void watchdog_loop() {
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    const int64_t since = g_op_since.load();
    const double limit = g_timeout.load();
    if (since == 0 || limit <= 0) continue;
    const double waited = static_cast<double>(now_ns() - since) / 1e9;
    if (waited <= limit) continue;
    char msg[512];
    std::snprintf(msg, sizeof msg,
                  "%s has waited %.0f s (limit %g s, VP_DIST_TIMEOUT): another rank died, hung, or stopped "
                  "calling collectives; aborting every rank",
                  g_op.load(), waited, limit);
    abort_all(1, msg);
  }
}

Status mpi_ok(int rc, const char* what) {
  if (rc == 0) return Status::Ok();
  return Status::Internal(std::string("MPI: ") + what + " failed (error " + std::to_string(rc) + ")");
}

Status nccl_ok(int rc, const char* what) {
  if (rc == 0) return Status::Ok();
  return Status::Internal(std::string("NCCL: ") + what + " failed: " + g_nccl->error_string(rc));
}

void* mpi_type(Elem e) {
  return e == Elem::kFloat32 ? g_mpi->t_float : e == Elem::kFloat64 ? g_mpi->t_double : g_mpi->t_int;
}

int nccl_type(Elem e) {
  return e == Elem::kFloat32 ? detail::kNcclFloat32 : e == Elem::kFloat64 ? detail::kNcclFloat64 : detail::kNcclInt32;
}

Status mpi_allreduce(void* data, int64_t n, Elem e) {
  constexpr int64_t kChunk = int64_t{1} << 28;  // MPI counts are int
  char* p = static_cast<char*>(data);
  for (int64_t at = 0; at < n; at += kChunk) {
    const int c = static_cast<int>(std::min(kChunk, n - at));
    VP_RETURN_IF_ERROR(mpi_ok(g_mpi->allreduce(detail::kMpiInPlace, p + at * elem_size(e), c, mpi_type(e),
                                               g_mpi->op_sum, g_mpi->comm_world),
                              "MPI_Allreduce"));
  }
  return Status::Ok();
}

Status mpi_bcast(void* data, int64_t bytes, int root) {
  constexpr int64_t kChunk = int64_t{1} << 30;
  char* p = static_cast<char*>(data);
  for (int64_t at = 0; at < bytes; at += kChunk) {
    const int c = static_cast<int>(std::min(kChunk, bytes - at));
    VP_RETURN_IF_ERROR(mpi_ok(g_mpi->bcast(p + at, c, g_mpi->t_byte, root, g_mpi->comm_world), "MPI_Bcast"));
  }
  return Status::Ok();
}

// Waits for the NCCL work queued on the default stream; reports NCCL's own error if one occurred.
Status nccl_wait() {
  Status s = cuda::synchronize();
  int async = 0;
  if (g_nccl->comm_get_async_error(g_comm, &async) == 0 && async != 0)
    return Status::Internal(std::string("NCCL: ") + g_nccl->error_string(async));
  return s;
}

Status nccl_allreduce(void* dev, int64_t n, Elem e) {
  VP_RETURN_IF_ERROR(cuda::synchronize());  // the gradients are complete before NCCL reads them
  VP_RETURN_IF_ERROR(nccl_ok(g_nccl->all_reduce(dev, dev, static_cast<size_t>(n), nccl_type(e), detail::kNcclSum,
                                                g_comm, nullptr),
                             "ncclAllReduce"));
  return nccl_wait();
}

Status nccl_bcast(void* dev, int64_t bytes, int root) {
  VP_RETURN_IF_ERROR(cuda::synchronize());
  VP_RETURN_IF_ERROR(nccl_ok(g_nccl->broadcast(dev, dev, static_cast<size_t>(bytes), detail::kNcclUint8, root,
                                               g_comm, nullptr),
                             "ncclBroadcast"));
  return nccl_wait();
}

Status device_scratch(size_t bytes) {
  if (bytes <= g_dev_cap) return Status::Ok();
  cuda::free_device(g_dev_scratch);
  g_dev_scratch = nullptr;
  g_dev_cap = 0;
  VP_RETURN_IF_ERROR(cuda::malloc_device(&g_dev_scratch, bytes));
  g_dev_cap = bytes;
  return Status::Ok();
}

// Runs a collective where an engine can reach the buffer: NCCL on device
// memory, MPI on host memory; otherwise through a staging copy (a device
// buffer under MPI alone goes through host memory, a host buffer under NCCL
// alone through device memory). `bytes`: the buffer's size.
template <typename MpiOp, typename NcclOp>
Status routed(void* data, size_t bytes, bool on_device, MpiOp mpi_op, NcclOp nccl_op) {
  if (on_device) {
    if (g_comm) return nccl_op(data);
    g_host_scratch.resize(bytes);
    VP_RETURN_IF_ERROR(cuda::copy_to_host(g_host_scratch.data(), data, bytes));
    VP_RETURN_IF_ERROR(mpi_op(g_host_scratch.data()));
    return cuda::copy_to_device(data, g_host_scratch.data(), bytes);
  }
  if (g_mpi) return mpi_op(data);
  VP_RETURN_IF_ERROR(device_scratch(bytes));
  VP_RETURN_IF_ERROR(cuda::copy_to_device(g_dev_scratch, data, bytes));
  VP_RETURN_IF_ERROR(nccl_op(g_dev_scratch));
  return cuda::copy_to_host(data, g_dev_scratch, bytes);
}

// The NCCL communicator: each rank checks that CUDA and libnccl are usable,
// the ranks agree (all or none), rank 0 makes the id, MPI or the TCP
// rendezvous hands it out, ncclCommInitRank joins.
Status init_nccl(const InitOptions& o) {
  std::string local;
  const detail::NcclApi* api = nullptr;
  if (!cuda::available()) {
    local = "CUDA is unavailable: " + cuda::unavailable_reason();
  } else {
    std::string lib;
    api = detail::load_nccl(&lib, &local);
  }
  const int rank = g_info.rank, size = g_info.size;
  if (g_mpi) {
    int ok = api ? 1 : 0;
    VP_RETURN_IF_ERROR(mpi_ok(g_mpi->allreduce(detail::kMpiInPlace, &ok, 1, g_mpi->t_int, g_mpi->op_sum,
                                               g_mpi->comm_world),
                              "MPI_Allreduce"));
    if (ok != size) {
      return Status::Unavailable(local.empty() ? "NCCL is not usable on " + std::to_string(size - ok) + " of the " +
                                                     std::to_string(size) + " ranks"
                                               : local);
    }
  } else if (!api) {
    return Status::Unavailable(local);
  }
  g_nccl = api;
  // Byte 0: whether rank 0 made an id; then the id.
  unsigned char msg[1 + sizeof(detail::NcclUniqueId)] = {0};
  detail::NcclUniqueId id{};
  int made = 0;
  if (rank == 0) {
    made = api->get_unique_id(&id);
    msg[0] = made == 0 ? 1 : 0;
    std::memcpy(msg + 1, &id, sizeof id);
  }
  if (g_mpi) {
    VP_RETURN_IF_ERROR(mpi_bcast(msg, sizeof msg, 0));
  } else {
    VP_RETURN_IF_ERROR(exchange_id(o.master_addr, o.master_port, rank, size, g_timeout.load(), msg, sizeof msg));
  }
  if (!msg[0])
    return Status::Internal(rank == 0 ? std::string("NCCL: ncclGetUniqueId failed: ") + api->error_string(made)
                                      : "NCCL: rank 0 could not create the communicator's id");
  std::memcpy(&id, msg + 1, sizeof id);
  Watch w("NCCL communicator setup (ncclCommInitRank)");
  return nccl_ok(api->comm_init_rank(&g_comm, size, id, rank), "ncclCommInitRank");
}

Status init_locked(const InitOptions& o) {
  if (o.launcher != "mpi" && o.launcher != "env")
    return Status::Invalid("dist.init: launcher must be 'mpi' or 'env', got '" + o.launcher + "'");
  if (o.want != "auto" && o.want != "mpi" && o.want != "nccl")
    return Status::Invalid("dist.init: backend must be 'auto', 'mpi' or 'nccl', got '" + o.want + "'");
  if (o.size < 1 || o.rank < 0 || o.rank >= o.size)
    return Status::OutOfRange("dist.init: rank must be in [0, worldSize), got rank " + std::to_string(o.rank) +
                              " of " + std::to_string(o.size));
  if (o.launcher == "env" && o.want == "mpi")
    return Status::Invalid("dist.init: a torchrun-style launch (RANK/WORLD_SIZE) has no MPI; start with mpirun");
  g_timeout.store(o.timeout_s);
  g_info.local_rank = o.local_rank;
  if (o.launcher == "mpi") {
    std::string lib, why;
    const detail::MpiApi* m = detail::load_mpi(&lib, &why);
    if (!m) return Status::Unavailable("MPI: " + why);
    int inited = 0, provided = 0;
    VP_RETURN_IF_ERROR(mpi_ok(m->initialized(&inited), "MPI_Initialized"));
    if (!inited) {
      VP_RETURN_IF_ERROR(mpi_ok(m->init_thread(nullptr, nullptr, detail::kMpiThreadMultiple, &provided), "MPI_Init_thread"));
      g_mpi_ours = true;
    } else {
      provided = detail::kMpiThreadSerialized;  // initialized by someone else: assume the level we need
    }
    g_mpi = m;
    g_mpi_level = provided;
    if (provided < detail::kMpiThreadSerialized)
      return Status::Unavailable("MPI: the library gives thread level " + std::to_string(provided) +
                                 "; videoperceiver calls MPI from worker threads, one at a time (MPI_THREAD_SERIALIZED)");
    VP_RETURN_IF_ERROR(mpi_ok(m->comm_rank(m->comm_world, &g_info.rank), "MPI_Comm_rank"));
    VP_RETURN_IF_ERROR(mpi_ok(m->comm_size(m->comm_world, &g_info.size), "MPI_Comm_size"));
    if (o.size > 1 && g_info.size != o.size)
      return Status::Unavailable("MPI: " + lib + " sees " + std::to_string(g_info.size) +
                                 " process(es) but the launcher started " + std::to_string(o.size) +
                                 " (was the job started by a different MPI's mpirun than " + m->version + "'s?)");
    g_info.mpi_version = m->version;
    g_info.backend = Backend::kMpi;
  } else {
    g_info.rank = o.rank;
    g_info.size = o.size;
  }
  g_rank.store(g_info.rank);
  std::thread(watchdog_loop).detach();
  if (o.want != "mpi") {
    Status s = init_nccl(o);
    if (!s.ok()) {
      if (o.want == "nccl" || o.launcher == "env") return s;
      g_info.nccl_reason = s.message();
      g_nccl = nullptr;
      g_comm = nullptr;
    } else {
      g_info.backend = Backend::kNccl;
      g_info.nccl_version = g_nccl->version;
    }
  }
  g_info.initialized = true;
  return Status::Ok();
}

}  // namespace

const char* backend_name(Backend b) {
  return b == Backend::kMpi ? "mpi" : b == Backend::kNccl ? "nccl" : "none";
}

size_t elem_size(Elem e) { return e == Elem::kFloat64 ? 8 : 4; }

Status init(const InitOptions& o, Info* out) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_tried) {
    g_tried = true;
    g_status = init_locked(o);
  }
  if (out) *out = g_info;
  return g_status;
}

Info info() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_info;
}

void set_timeout(double seconds) { g_timeout.store(seconds); }

Status allreduce_sum(void* data, int64_t n, Elem e, bool on_device) {
  if (n < 0) return Status::OutOfRange("dist.allreduce: the length must be >= 0, got " + std::to_string(n));
  if (n > 0 && !data) return Status::Invalid("dist.allreduce: null buffer");
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_info.initialized) return Status::Unavailable("dist.allreduce: no distributed launch is initialized");
  if (n == 0) return Status::Ok();
  Watch w("an all-reduce");
  return routed(data, static_cast<size_t>(n) * elem_size(e), on_device,
                [&](void* p) { return mpi_allreduce(p, n, e); }, [&](void* p) { return nccl_allreduce(p, n, e); });
}

Status broadcast(void* data, int64_t bytes, int root, bool on_device) {
  if (bytes < 0) return Status::OutOfRange("dist.broadcast: the size must be >= 0, got " + std::to_string(bytes));
  if (bytes > 0 && !data) return Status::Invalid("dist.broadcast: null buffer");
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_info.initialized) return Status::Unavailable("dist.broadcast: no distributed launch is initialized");
  if (root < 0 || root >= g_info.size)
    return Status::OutOfRange("dist.broadcast: root must be in [0, " + std::to_string(g_info.size) + "), got " +
                              std::to_string(root));
  if (bytes == 0) return Status::Ok();
  Watch w("a broadcast");
  return routed(data, static_cast<size_t>(bytes), on_device, [&](void* p) { return mpi_bcast(p, bytes, root); },
                [&](void* p) { return nccl_bcast(p, bytes, root); });
}

Status barrier() {
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_info.initialized) return Status::Unavailable("dist.barrier: no distributed launch is initialized");
  Watch w("a barrier");
  if (g_mpi) return mpi_ok(g_mpi->barrier(g_mpi->comm_world), "MPI_Barrier");
  VP_RETURN_IF_ERROR(device_scratch(sizeof(int32_t)));
  return nccl_allreduce(g_dev_scratch, 1, Elem::kInt32);
}

void abort_all(int code, const std::string& why) {
  if (g_aborting.exchange(true)) _exit(code);  // a second caller (watchdog and JS at once)
  std::fprintf(stderr, "videoperceiver: rank %d: %s\n", g_rank.load(), why.c_str());
  std::fflush(stderr);
  if (g_comm && g_nccl) g_nccl->comm_abort(g_comm);
  if (g_mpi) {
    int fin = 0;
    g_mpi->finalized(&fin);
    // From a thread other than the one waiting in MPI, MPI_Abort needs MPI_THREAD_MULTIPLE;
    // otherwise exiting non-zero without MPI_Finalize makes mpirun end the job.
    if (!fin && g_mpi_level >= detail::kMpiThreadMultiple) g_mpi->abort(g_mpi->comm_world, code);
  }
  _exit(code);
}

Status finalize() {
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_info.initialized) return Status::Ok();
  Watch w("shutdown (MPI_Finalize / ncclCommDestroy)");
  if (g_comm) {
    g_nccl->comm_destroy(g_comm);
    g_comm = nullptr;
  }
  cuda::free_device(g_dev_scratch);
  g_dev_scratch = nullptr;
  g_dev_cap = 0;
  g_info.initialized = false;
  if (g_mpi && g_mpi_ours) {
    int fin = 0;
    g_mpi->finalized(&fin);
    if (!fin) return mpi_ok(g_mpi->finalize(), "MPI_Finalize");
  }
  return Status::Ok();
}

}  // namespace vp::dist
