// vp::matmul — validation and dispatch of the tensor-level matrix multiply.
#include <string>

#include "vp/cuda.h"
#include "vp/gemm.h"
#include "vp/gemm_bf16.h"

namespace vp {

Status matmul(const TensorView& a, const TensorView& b, bool trans_a, bool trans_b,
              const TensorView& out) {
  if (a.ndim != 2) return Status::Invalid("matmul: a must be 2-D, got shape " + a.shape_string());
  if (b.ndim != 2) return Status::Invalid("matmul: b must be 2-D, got shape " + b.shape_string());
  const int64_t m = trans_a ? a.shape[1] : a.shape[0];
  const int64_t ka = trans_a ? a.shape[0] : a.shape[1];
  const int64_t kb = trans_b ? b.shape[1] : b.shape[0];
  const int64_t n = trans_b ? b.shape[0] : b.shape[1];
  if (ka != kb)
    return Status::Invalid("matmul: inner dimensions differ: a gives K=" + std::to_string(ka) +
                           ", b gives K=" + std::to_string(kb));
  if (out.ndim != 2 || out.shape[0] != m || out.shape[1] != n)
    return Status::Invalid("matmul: out must be [" + std::to_string(m) + ", " + std::to_string(n) +
                           "], got " + out.shape_string());
  if (a.device != b.device || a.device != out.device)
    return Status::Invalid(std::string("matmul: tensors are on different devices (a: ") +
                           device_name(a.device) + ", b: " + device_name(b.device) + ")");
  if (a.dtype != b.dtype || a.dtype != out.dtype)
    return Status::Invalid(std::string("matmul: dtypes differ (a: ") + dtype_name(a.dtype) +
                           ", b: " + dtype_name(b.dtype) + ", out: " + dtype_name(out.dtype) + ")");
  if (a.device == Device::kCUDA) return cuda::matmul(a, b, trans_a, trans_b, out);
  if (a.dtype != DType::kFloat32 && a.dtype != DType::kBFloat16)
    return Status::Invalid(std::string("matmul: CPU computes in float32 or bfloat16, got ") + dtype_name(a.dtype));
  // The fields the float32 and bfloat16 GEMMs share; C = out, row-major [m, n].
  auto common = [&](auto& g) {
    g.trans_a = trans_a, g.trans_b = trans_b;
    g.m = m, g.n = n, g.k = ka;
    g.lda = a.shape[1], g.ldb = b.shape[1], g.ldc = n;
  };
  if (a.dtype == DType::kBFloat16) {  // bf16 inputs and output, float32 accumulation (vp/gemm_bf16.h)
    GemmBf16Args g;
    common(g);
    g.a = static_cast<const uint16_t*>(a.data), g.b = static_cast<const uint16_t*>(b.data);
    g.c16 = static_cast<uint16_t*>(out.data);
    return gemm_bf16(g);
  }
  GemmArgs g;
  common(g);
  g.a = a.as<float>(), g.b = b.as<float>(), g.c = out.as<float>();
  return sgemm(g);
}

}  // namespace vp
