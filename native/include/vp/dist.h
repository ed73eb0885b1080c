// vp/dist.h — data-parallel collectives on the engines clusters already run:
// MPI (Open MPI's libmpi.so.40) for process launch, rank/size and CPU buffers,
// NCCL (libnccl.so.2) for CUDA buffers.
//
// Neither library is linked: both are found at run time with dlopen, so the
// binary loads on a machine that has neither, and probe_mpi()/probe_nccl() say
// which library was looked for and why it was not usable. One process is one
// rank; after init() every collective is called by every rank in the same order.
//
// Cost: an all-reduce of n floats moves about 2·n·(size−1)/size floats per rank
// (ring/recursive-halving inside the engine); broadcast n bytes from the root.
// Every collective is watched: one that has not returned after the timeout
// (a rank died or hung) prints why and aborts every rank.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "vp/status.h"

namespace vp::dist {

enum class Backend { kNone = 0, kMpi = 1, kNccl = 2 };
// Element types of a reduction (sum).
enum class Elem { kFloat32 = 0, kFloat64 = 1, kInt32 = 2 };

const char* backend_name(Backend b);
size_t elem_size(Elem e);

// Whether a library can be loaded (dlopen + its entry points), without
// initializing it. `library` is the name or path looked for (VP_MPI_LIBRARY /
// VP_NCCL_LIBRARY override the defaults); `reason` is empty when found.
struct Probe {
  bool found = false;
  std::string library;
  std::string version;
  std::string reason;
};
Probe probe_mpi();
Probe probe_nccl();

struct InitOptions {
  // How the processes were started: "mpi" (mpirun / srun with PMI: MPI tells
  // rank and size) or "env" (torchrun-style RANK / WORLD_SIZE / MASTER_ADDR /
  // MASTER_PORT; NCCL only, its unique id exchanged over TCP).
  std::string launcher = "mpi";
  // "auto": NCCL for CUDA buffers when CUDA and libnccl are usable, MPI for the
  // rest; "mpi": never NCCL; "nccl": NCCL required.
  std::string want = "auto";
  // From the environment (launcher "env"); under MPI they are checked against MPI's.
  int rank = 0;
  int size = 1;
  int local_rank = 0;
  std::string master_addr;
  int master_port = 0;
  // Seconds a collective may take before the watchdog aborts every rank (<= 0: never).
  double timeout_s = 600;
};

struct Info {
  bool initialized = false;
  int rank = 0;
  int size = 1;
  int local_rank = 0;
  Backend backend = Backend::kNone;
  // Why NCCL is not used (empty when it is, or when it was not asked for).
  std::string nccl_reason;
  std::string mpi_version;
  int nccl_version = 0;
};

// Brings up the engines (once; later calls return the first result).
Status init(const InitOptions& o, Info* out);
Info info();

// In-place sum over all ranks of n elements at `data` (host memory, or device
// memory when `on_device`). Every rank ends with the same values.
Status allreduce_sum(void* data, int64_t n, Elem e, bool on_device);
// `bytes` bytes from rank `root` to every rank, in place.
Status broadcast(void* data, int64_t bytes, int root, bool on_device);
Status barrier();
// Ends every rank of the job now with exit code `code` (MPI_Abort; with NCCL
// alone, the communicator is aborted and this process exits). `why` goes to stderr.
[[noreturn]] void abort_all(int code, const std::string& why);
// Orderly shutdown (MPI_Finalize, ncclCommDestroy). Collective.
Status finalize();
// Changes the watchdog's timeout (seconds, <= 0: off).
void set_timeout(double seconds);

// The NCCL unique-id exchange of a torchrun-style launch (exposed for tests):
// rank 0 listens on addr:port and sends `bytes` bytes of `id` to each of the
// size−1 other ranks, which connect (retrying until `timeout_s`) and receive it.
Status exchange_id(const std::string& addr, int port, int rank, int size, double timeout_s,
                   void* id, size_t bytes);

}  // namespace vp::dist
