// Finds MPI and NCCL at run time: dlopen of the library (a name searched on the
// loader's path, or the path in VP_MPI_LIBRARY / VP_NCCL_LIBRARY), then dlsym
// of each entry point. Loading costs one dlopen; the result is cached for the
// process and name (a library that failed to load is tried again on the next call).
#include <dlfcn.h>

#include <cstdlib>
#include <map>
#include <mutex>

#include "engines.h"
#include "vp/dist.h"

namespace vp::dist::detail {
namespace {

std::string env_or(const char* var, const char* dflt) {
  const char* v = std::getenv(var);
  return v && *v ? std::string(v) : std::string(dflt);
}

// Resolves `name` into the function pointer `*out`; false (and `missing` set) when absent.
template <typename F>
bool resolve(void* lib, const char* name, F* out, std::string* missing) {
  void* p = dlsym(lib, name);
  if (!p) {
    if (missing->empty()) *missing = name;
    return false;
  }
  *out = reinterpret_cast<F>(p);
  return true;
}

std::mutex g_mu;
// The libraries that loaded, by the name they were asked for (std::map: stable addresses).
std::map<std::string, MpiApi> g_mpi;
std::map<std::string, NcclApi> g_nccl;

}  // namespace

const MpiApi* load_mpi(std::string* library, std::string* reason) {
  std::lock_guard<std::mutex> lock(g_mu);
  *library = env_or("VP_MPI_LIBRARY", "libmpi.so.40");
  reason->clear();
  if (auto it = g_mpi.find(*library); it != g_mpi.end()) return &it->second;
  // RTLD_GLOBAL: Open MPI's components (mca_*.so) resolve libmpi's symbols globally.
  void* lib = dlopen(library->c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (!lib) {
    const char* e = dlerror();
    *reason = std::string("cannot load ") + *library + " (" + (e ? e : "unknown error") +
              "); install Open MPI (Debian/Ubuntu: apt-get install openmpi-bin) or set VP_MPI_LIBRARY to its libmpi.so";
    return nullptr;
  }
  MpiApi a;
  std::string missing;
  // Open MPI's predefined handles are exported objects; MPICH has none of these
  // (its handles are integers), so their absence also tells the two apart.
  a.comm_world = dlsym(lib, "ompi_mpi_comm_world");
  a.t_float = dlsym(lib, "ompi_mpi_float");
  a.t_double = dlsym(lib, "ompi_mpi_double");
  a.t_int = dlsym(lib, "ompi_mpi_int");
  a.t_byte = dlsym(lib, "ompi_mpi_byte");
  a.op_sum = dlsym(lib, "ompi_mpi_op_sum");
  if (!a.comm_world || !a.t_float || !a.t_double || !a.t_int || !a.t_byte || !a.op_sum) {
    *reason = *library + " is not Open MPI (no ompi_mpi_comm_world): only Open MPI's ABI (libmpi.so.40) is supported";
    return nullptr;  // left loaded: unloading an MPI library is not safe
  }
  bool ok = resolve(lib, "MPI_Init_thread", &a.init_thread, &missing) &
            resolve(lib, "MPI_Initialized", &a.initialized, &missing) &
            resolve(lib, "MPI_Finalized", &a.finalized, &missing) &
            resolve(lib, "MPI_Comm_rank", &a.comm_rank, &missing) &
            resolve(lib, "MPI_Comm_size", &a.comm_size, &missing) &
            resolve(lib, "MPI_Allreduce", &a.allreduce, &missing) &
            resolve(lib, "MPI_Bcast", &a.bcast, &missing) &
            resolve(lib, "MPI_Barrier", &a.barrier, &missing) &
            resolve(lib, "MPI_Abort", &a.abort, &missing) &
            resolve(lib, "MPI_Finalize", &a.finalize, &missing) &
            resolve(lib, "MPI_Get_library_version", &a.library_version, &missing);
  if (!ok) {
    *reason = *library + " lacks " + missing + " (an MPI older than MPI-3?)";
    return nullptr;
  }
  char buf[1024] = {0};  // MPI_MAX_LIBRARY_VERSION_STRING is 256 in Open MPI
  int len = 0;
  if (a.library_version(buf, &len) == 0) {
    std::string v(buf, static_cast<size_t>(len > 0 && len < 1024 ? len : 0));
    const size_t nl = v.find_first_of(",\n");  // "Open MPI v4.1.4, package: ..." → "Open MPI v4.1.4"
    a.version = nl == std::string::npos ? v : v.substr(0, nl);
  }
  return &(g_mpi[*library] = a);
}

const NcclApi* load_nccl(std::string* library, std::string* reason) {
  std::lock_guard<std::mutex> lock(g_mu);
  *library = env_or("VP_NCCL_LIBRARY", "libnccl.so.2");
  reason->clear();
  if (auto it = g_nccl.find(*library); it != g_nccl.end()) return &it->second;
  void* lib = dlopen(library->c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* e = dlerror();
    *reason = std::string("cannot load ") + *library + " (" + (e ? e : "unknown error") +
              "); install NCCL (NVIDIA's libnccl2 package, or the nvidia-nccl wheel's lib/ folder on "
              "LD_LIBRARY_PATH) or set VP_NCCL_LIBRARY to its path";
    return nullptr;
  }
  NcclApi a;
  std::string missing;
  bool ok = resolve(lib, "ncclGetVersion", &a.get_version, &missing) &
            resolve(lib, "ncclGetUniqueId", &a.get_unique_id, &missing) &
            resolve(lib, "ncclCommInitRank", &a.comm_init_rank, &missing) &
            resolve(lib, "ncclAllReduce", &a.all_reduce, &missing) &
            resolve(lib, "ncclBroadcast", &a.broadcast, &missing) &
            resolve(lib, "ncclCommDestroy", &a.comm_destroy, &missing) &
            resolve(lib, "ncclCommAbort", &a.comm_abort, &missing) &
            resolve(lib, "ncclCommGetAsyncError", &a.comm_get_async_error, &missing) &
            resolve(lib, "ncclGetErrorString", &a.error_string, &missing);
  if (!ok) {
    *reason = *library + " lacks " + missing + " (NCCL 2.4 or newer is needed)";
    dlclose(lib);
    return nullptr;
  }
  a.get_version(&a.version);
  return &(g_nccl[*library] = a);
}

}  // namespace vp::dist::detail

namespace vp::dist {

Probe probe_mpi() {
  Probe p;
  const detail::MpiApi* a = detail::load_mpi(&p.library, &p.reason);
  p.found = a != nullptr;
  if (a) p.version = a->version;
  return p;
}

Probe probe_nccl() {
  Probe p;
  const detail::NcclApi* a = detail::load_nccl(&p.library, &p.reason);
  p.found = a != nullptr;
  if (a) {
    // NCCL encodes x.y.z as x*10000 + y*100 + z since 2.9 (x*1000 + y*100 + z before).
    const int v = a->version;
    const int major = v >= 10000 ? v / 10000 : v / 1000;
    const int minor = v >= 10000 ? (v / 100) % 100 : (v / 100) % 10;
    p.version = "NCCL " + std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(v % 100);
  }
  return p;
}

}  // namespace vp::dist
