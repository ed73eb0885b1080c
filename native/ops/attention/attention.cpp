// vp::attention / vp::attention_backward: validation and dispatch to the CPU or
// CUDA kernels. Everything a kernel's memory safety depends on is checked here:
// ranks, shapes, dtypes, devices, and the cumulative sequence lengths (start at
// 0, never decrease, end at the row counts).
#include <cmath>
#include <string>

#include "vp/attention.h"
#include "vp/cuda.h"

namespace vp {
namespace {

std::string str(int64_t x) { return std::to_string(x); }

Status check_cu(const char* fn, const char* name, const int32_t* cu, int64_t batch, int64_t total) {
  if (cu[0] != 0) return Status::OutOfRange(std::string(fn) + ": " + name + "[0] must be 0, got " + str(cu[0]));
  for (int64_t b = 1; b <= batch; ++b)
    if (cu[b] < cu[b - 1])
      return Status::OutOfRange(std::string(fn) + ": " + name + "[" + str(b) + "] must be >= " + name + "[" +
                                str(b - 1) + "] (" + str(cu[b - 1]) + "), got " + str(cu[b]));
  if (cu[batch] != total)
    return Status::OutOfRange(std::string(fn) + ": " + name + "[" + str(batch) + "] must equal the total row count " +
                              str(total) + ", got " + str(cu[batch]));
  return Status::Ok();
}

Status check_shape(const char* fn, const char* name, const TensorView& t, std::initializer_list<int64_t> dims,
                   const char* what) {
  bool ok = t.ndim == static_cast<int>(dims.size());
  int i = 0;
  for (int64_t d : dims) {
    if (ok && t.shape[i] != d) ok = false;
    ++i;
  }
  if (!ok) {
    std::string want = "[";
    i = 0;
    for (int64_t d : dims) want += (i++ ? ", " : "") + str(d);
    want += "]";
    return Status::Invalid(std::string(fn) + ": " + name + " must be " + what + " " + want + ", got " +
                           t.shape_string());
  }
  return Status::Ok();
}

// Validates q/k/v and the options; fills the problem (cu arrays point into `own`
// when the caller gave none).
Status make_problem(const char* fn, const TensorView& q, const TensorView& k, const TensorView& v,
                    const AttentionOptions& o, int32_t own_q[2], int32_t own_k[2], AttentionProblem* p) {
  if (q.ndim != 3) return Status::Invalid(std::string(fn) + ": q must be 3-D [totalQ, H, D], got " + q.shape_string());
  if (k.ndim != 3) return Status::Invalid(std::string(fn) + ": k must be 3-D [totalK, Hkv, D], got " + k.shape_string());
  if (v.ndim != 3) return Status::Invalid(std::string(fn) + ": v must be 3-D [totalK, Hkv, D], got " + v.shape_string());
  const int64_t tq = q.shape[0], H = q.shape[1], D = q.shape[2];
  const int64_t tk = k.shape[0], Hkv = k.shape[1];
  if (H < 1) return Status::Invalid(std::string(fn) + ": q must have at least one head, got " + q.shape_string());
  if (Hkv < 1) return Status::Invalid(std::string(fn) + ": k must have at least one head, got " + k.shape_string());
  if (D < 1 || D > kAttentionMaxHeadDim)
    return Status::Invalid(std::string(fn) + ": the head dim D must be in [1, " + str(kAttentionMaxHeadDim) +
                           "], got q shape " + q.shape_string());
  if (k.shape[2] != D)
    return Status::Invalid(std::string(fn) + ": k must have head dim " + str(D) + " like q, got " + k.shape_string());
  if (H % Hkv != 0)
    return Status::Invalid(std::string(fn) + ": the query heads H=" + str(H) + " must be a multiple of the KV heads Hkv=" +
                           str(Hkv));
  VP_RETURN_IF_ERROR(check_shape(fn, "v", v, {tk, Hkv, D}, "shaped like k"));
  if (q.device != k.device || q.device != v.device)
    return Status::Invalid(std::string(fn) + ": q, k, v must be on one device (q: " + device_name(q.device) +
                           ", k: " + device_name(k.device) + ", v: " + device_name(v.device) + ")");
  if (q.dtype != k.dtype || q.dtype != v.dtype)
    return Status::Invalid(std::string(fn) + ": q, k, v must share a dtype (q: " + dtype_name(q.dtype) +
                           ", k: " + dtype_name(k.dtype) + ", v: " + dtype_name(v.dtype) + ")");
  if (q.device == Device::kCPU && q.dtype != DType::kFloat32)
    return Status::Invalid(std::string(fn) + ": CPU attention computes in float32, got " + dtype_name(q.dtype));
  if (q.dtype == DType::kInt32) return Status::Invalid(std::string(fn) + ": q must be a floating dtype, got int32");
  if (tq > INT32_MAX || tk > INT32_MAX)
    return Status::Invalid(std::string(fn) + ": at most 2^31-1 rows per tensor");

  p->total_q = tq;
  p->total_k = tk;
  p->heads = H;
  p->kv_heads = Hkv;
  p->head_dim = D;
  p->causal = o.causal;
  p->threads = o.threads;
  const float scale = o.scale.has_value() ? *o.scale : 1.0f / std::sqrt(static_cast<float>(D));
  if (!std::isfinite(scale))
    return Status::Invalid(std::string(fn) + ": scale must be finite, got " + std::to_string(scale));
  p->scale = scale;

  if (o.cu_seqlens_k && !o.cu_seqlens_q)
    return Status::Invalid(std::string(fn) + ": cuSeqlensK needs cuSeqlensQ");
  if (o.cu_seqlens_q) {
    if (o.batch < 1) return Status::OutOfRange(std::string(fn) + ": cuSeqlensQ must hold B+1 >= 2 entries");
    p->batch = o.batch;
    p->cu_q = o.cu_seqlens_q;
    VP_RETURN_IF_ERROR(check_cu(fn, "cuSeqlensQ", p->cu_q, p->batch, tq));
    if (o.cu_seqlens_k) {
      p->cu_k = o.cu_seqlens_k;
      VP_RETURN_IF_ERROR(check_cu(fn, "cuSeqlensK", p->cu_k, p->batch, tk));
    } else {
      if (tk != tq)
        return Status::Invalid(std::string(fn) + ": without cuSeqlensK, k must have totalQ=" + str(tq) +
                               " rows like q (K uses cuSeqlensQ), got " + str(tk));
      p->cu_k = p->cu_q;
    }
  } else {
    own_q[0] = 0;
    own_q[1] = static_cast<int32_t>(tq);
    own_k[0] = 0;
    own_k[1] = static_cast<int32_t>(tk);
    p->batch = 1;
    p->cu_q = own_q;
    p->cu_k = own_k;
  }
  return Status::Ok();
}

Status check_like(const char* fn, const char* name, const TensorView& t, const TensorView& like,
                  const char* like_name) {
  bool same = t.ndim == like.ndim;
  for (int i = 0; same && i < t.ndim; ++i) same = t.shape[i] == like.shape[i];
  if (!same)
    return Status::Invalid(std::string(fn) + ": " + name + " must have shape " + like.shape_string() + " like " +
                           like_name + ", got " + t.shape_string());
  if (t.device != like.device)
    return Status::Invalid(std::string(fn) + ": " + name + " must be on " + device_name(like.device) + " like " +
                           like_name + ", got " + device_name(t.device));
  if (t.dtype != like.dtype)
    return Status::Invalid(std::string(fn) + ": " + name + " must be " + dtype_name(like.dtype) + " like " +
                           like_name + ", got " + dtype_name(t.dtype));
  return Status::Ok();
}

Status check_lse(const char* fn, const TensorView& lse, const AttentionProblem& p, Device dev) {
  VP_RETURN_IF_ERROR(check_shape(fn, "lse", lse, {p.heads, p.total_q}, "[H, totalQ]"));
  if (lse.dtype != DType::kFloat32)
    return Status::Invalid(std::string(fn) + ": lse must be float32, got " + dtype_name(lse.dtype));
  if (lse.device != dev)
    return Status::Invalid(std::string(fn) + ": lse must be on " + device_name(dev) + " like q, got " +
                           device_name(lse.device));
  return Status::Ok();
}

bool any_null(std::initializer_list<const TensorView*> ts) {
  for (const TensorView* t : ts)
    if (!t->data && t->numel() > 0) return true;
  return false;
}

}  // namespace

Status attention(const TensorView& q, const TensorView& k, const TensorView& v, const AttentionOptions& opts,
                 const TensorView& out, const TensorView& lse) {
  const char* fn = "attention";
  AttentionProblem p;
  int32_t own_q[2], own_k[2];
  VP_RETURN_IF_ERROR(make_problem(fn, q, k, v, opts, own_q, own_k, &p));
  VP_RETURN_IF_ERROR(check_like(fn, "out", out, q, "q"));
  VP_RETURN_IF_ERROR(check_lse(fn, lse, p, q.device));
  if (any_null({&q, &k, &v, &out, &lse})) return Status::Invalid(std::string(fn) + ": a tensor has no data");
  if (q.device == Device::kCUDA)
    return cuda::attention_forward(p, q.dtype, q.data, k.data, v.data, out.data, lse.as<float>());
  return cpu::attention_forward(p, q.as<float>(), k.as<float>(), v.as<float>(), out.as<float>(), lse.as<float>());
}

Status attention_backward(const TensorView& dout, const TensorView& q, const TensorView& k, const TensorView& v,
                          const TensorView& out, const TensorView& lse, const AttentionOptions& opts,
                          const TensorView& dq, const TensorView& dk, const TensorView& dv) {
  const char* fn = "attentionBackward";
  AttentionProblem p;
  int32_t own_q[2], own_k[2];
  VP_RETURN_IF_ERROR(make_problem(fn, q, k, v, opts, own_q, own_k, &p));
  VP_RETURN_IF_ERROR(check_like(fn, "dout", dout, q, "q"));
  VP_RETURN_IF_ERROR(check_like(fn, "out", out, q, "q"));
  VP_RETURN_IF_ERROR(check_lse(fn, lse, p, q.device));
  VP_RETURN_IF_ERROR(check_like(fn, "dq", dq, q, "q"));
  VP_RETURN_IF_ERROR(check_like(fn, "dk", dk, k, "k"));
  VP_RETURN_IF_ERROR(check_like(fn, "dv", dv, k, "k"));
  if (any_null({&dout, &q, &k, &v, &out, &lse, &dq, &dk, &dv}))
    return Status::Invalid(std::string(fn) + ": a tensor has no data");
  if (q.device == Device::kCUDA)
    return cuda::attention_backward(p, q.dtype, dout.data, q.data, k.data, v.data, out.data, lse.as<float>(),
                                    dq.data, dk.data, dv.data);
  return cpu::attention_backward(p, dout.as<float>(), q.as<float>(), k.as<float>(), v.as<float>(),
                                 out.as<float>(), lse.as<float>(), dq.as<float>(), dk.as<float>(),
                                 dv.as<float>());
}

}  // namespace vp
