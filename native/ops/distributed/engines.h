// The two collective engines as tables of entry points found with dlopen/dlsym
// (internal to native/ops/distributed). No MPI or NCCL header is needed to build: the
// few types and constants used are declared here from the libraries' stable
// ABIs (Open MPI's handles are addresses of exported globals; NCCL's enums are
// fixed numbers), so the binary builds and loads where neither is installed.
#pragma once

#include <cstddef>
#include <string>

namespace vp::dist::detail {

// Open MPI (libmpi.so.40). Handles (MPI_Comm, MPI_Datatype, MPI_Op) are
// pointers to the library's predefined objects.
struct MpiApi {
  using Handle = void*;
  int (*init_thread)(int*, char***, int, int*) = nullptr;
  int (*initialized)(int*) = nullptr;
  int (*finalized)(int*) = nullptr;
  int (*comm_rank)(Handle, int*) = nullptr;
  int (*comm_size)(Handle, int*) = nullptr;
  int (*allreduce)(const void*, void*, int, Handle, Handle, Handle) = nullptr;
  int (*bcast)(void*, int, Handle, int, Handle) = nullptr;
  int (*barrier)(Handle) = nullptr;
  int (*abort)(Handle, int) = nullptr;
  int (*finalize)() = nullptr;
  int (*library_version)(char*, int*) = nullptr;
  Handle comm_world = nullptr, t_float = nullptr, t_double = nullptr, t_int = nullptr,
         t_byte = nullptr, op_sum = nullptr;
  std::string version;
};
// MPI_IN_PLACE and the thread levels of Open MPI's mpi.h.
inline void* const kMpiInPlace = reinterpret_cast<void*>(1);
constexpr int kMpiThreadSerialized = 2;
constexpr int kMpiThreadMultiple = 3;

// Loads the MPI library (VP_MPI_LIBRARY or libmpi.so.40) with RTLD_GLOBAL, as
// Open MPI's plugins need. Null with `reason` when it cannot be used. Cached.
const MpiApi* load_mpi(std::string* library, std::string* reason);

// NCCL (libnccl.so.2).
struct NcclUniqueId {
  char internal[128];
};
struct NcclApi {
  using Comm = void*;
  int (*get_version)(int*) = nullptr;
  int (*get_unique_id)(NcclUniqueId*) = nullptr;
  int (*comm_init_rank)(Comm*, int, NcclUniqueId, int) = nullptr;
  int (*all_reduce)(const void*, void*, size_t, int, int, Comm, void*) = nullptr;
  int (*broadcast)(const void*, void*, size_t, int, int, Comm, void*) = nullptr;
  int (*comm_destroy)(Comm) = nullptr;
  int (*comm_abort)(Comm) = nullptr;
  int (*comm_get_async_error)(Comm, int*) = nullptr;
  const char* (*error_string)(int) = nullptr;
  int version = 0;
};
// ncclDataType_t and ncclRedOp_t values used here.
constexpr int kNcclUint8 = 1, kNcclInt32 = 2, kNcclFloat32 = 7, kNcclFloat64 = 8;
constexpr int kNcclSum = 0;

// Loads NCCL (VP_NCCL_LIBRARY or libnccl.so.2). Null with `reason` when it cannot be used. Cached.
const NcclApi* load_nccl(std::string* library, std::string* reason);

}  // namespace vp::dist::detail
