// The CUDA InfoNCE of a CPU-only build (see cuda_unavailable.cpp).
#include "vp/cuda.h"
#include "vp/infonce.h"

namespace vp::cuda {

Status info_nce(const InfoNceArgs& args, InfoNceResult*) {
  return Status::Unavailable(std::string(args.fn) + ": CUDA is unavailable: " + unavailable_reason());
}

}  // namespace vp::cuda
