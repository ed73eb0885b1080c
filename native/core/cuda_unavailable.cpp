// The CUDA backend of a CPU-only build: every entry point reports why CUDA
// cannot be used, so backend-neutral code needs no #ifdefs.
#include "vp/cuda.h"

namespace vp::cuda {

namespace {
const char* kReason = "this binary was built without CUDA (VP_CUDA=off, or nvcc was not found at build time)";
Status unavailable() { return Status::Unavailable(std::string("CUDA is unavailable: ") + kReason); }
}  // namespace

bool compiled() { return false; }
bool available() { return false; }
std::string unavailable_reason() { return kReason; }
DeviceInfo device_info() { return {}; }
int runtime_version() { return 0; }
Status malloc_device(void**, size_t) { return unavailable(); }
void free_device(void*) {}
Status copy_to_device(void*, const void*, size_t) { return unavailable(); }
Status copy_to_host(void*, const void*, size_t) { return unavailable(); }
Status copy_device_to_device(void*, const void*, size_t) { return unavailable(); }
Status synchronize() { return unavailable(); }
Status convert(const TensorView&, const TensorView&) { return unavailable(); }
ScratchStats scratch_stats() { return {}; }
size_t scratch_trim() { return 0; }
Status scratch_lease(size_t, void**, size_t*) { return unavailable(); }
void scratch_release(size_t) {}
Status matmul(const TensorView&, const TensorView&, bool, bool, const TensorView&) { return unavailable(); }

}  // namespace vp::cuda
