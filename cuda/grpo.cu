// CUDA GRPO pieces (vp/grpo.h): comparative rewards and group advantages
// (one thread per group, statistics in double), the clipped surrogate loss
// (one thread per token; loss, KL and clip count reduced in double), and the
// linear GRPO loss on the chunked log-prob engine of cuda/logprobs.cu.
#include <math_constants.h>

#include <cmath>
#include <vector>

#include "logprobs_common.cuh"
#include "vp/grpo.h"

namespace vp::cuda {
namespace {

using detail::cuda_status;
using detail::DeviceScratch;

unsigned grid_for(int64_t n, int threads) {
  const int64_t g = (n + threads - 1) / threads;
  return static_cast<unsigned>(g < 1 ? 1 : (g > 65535 ? 65535 : g));
}

// Mean and Bessel-corrected std of the non-NaN values (NaN when undefined).
__device__ void moments(const float* x, int64_t n, double* mean, double* std, int64_t* count) {
  double sum = 0.0;
  int64_t c = 0;
  for (int64_t i = 0; i < n; ++i)
    if (!isnan(x[i])) {
      sum += x[i];
      ++c;
    }
  *count = c;
  *mean = c ? sum / static_cast<double>(c) : CUDART_NAN;
  *std = CUDART_NAN;
  if (c < 2) return;
  double ss = 0.0;
  for (int64_t i = 0; i < n; ++i)
    if (!isnan(x[i])) {
      const double dv = x[i] - *mean;
      ss += dv * dv;
    }
  *std = sqrt(ss / static_cast<double>(c - 1));
}

// One block: the batch's (NaN-skipping) Bessel std into out[0].
__global__ void batch_std_kernel(const float* x, int64_t n, double* out) {
  __shared__ double s1[256], s2[256];
  __shared__ long long c1[256];
  double sum = 0.0;
  long long c = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    if (!isnan(x[i])) {
      sum += x[i];
      ++c;
    }
  s1[threadIdx.x] = sum;
  c1[threadIdx.x] = c;
  __syncthreads();
  for (int o = blockDim.x / 2; o > 0; o >>= 1) {
    if (threadIdx.x < o) {
      s1[threadIdx.x] += s1[threadIdx.x + o];
      c1[threadIdx.x] += c1[threadIdx.x + o];
    }
    __syncthreads();
  }
  const long long count = c1[0];
  const double mean = count ? s1[0] / static_cast<double>(count) : 0.0;
  double ss = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    if (!isnan(x[i])) ss += (x[i] - mean) * (x[i] - mean);
  s2[threadIdx.x] = ss;
  __syncthreads();
  for (int o = blockDim.x / 2; o > 0; o >>= 1) {
    if (threadIdx.x < o) s2[threadIdx.x] += s2[threadIdx.x + o];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[0] = count >= 2 ? sqrt(s2[0] / static_cast<double>(count - 1)) : CUDART_NAN;
}

__global__ void advantages_kernel(const float* r, int64_t groups, int64_t g, int scale, double eps,
                                  const double* batch_std, float* out) {
  for (int64_t gi = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; gi < groups;
       gi += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double mean, std;
    int64_t count;
    moments(r + gi * g, g, &mean, &std, &count);
    const double denom = scale == 2 ? 1.0 : (scale == 1 ? batch_std[0] : std) + eps;
    for (int64_t i = 0; i < g; ++i) {
      const double a = (static_cast<double>(r[gi * g + i]) - mean) / denom;
      out[gi * g + i] = isnan(a) ? 0.0f : static_cast<float>(a);
    }
  }
}

__global__ void comparative_kernel(const float* c, const float* d, int64_t groups, int64_t g, int64_t m, int mode,
                                   double bonus, double ratio, float min_reward, float* out) {
  for (int64_t gi = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; gi < groups;
       gi += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float* cg = c + gi * g;
    const float* dg = d + gi * m;
    float* o = out + gi * g;
    if (mode == 0) {
      int64_t valid = 0;
      for (int64_t j = 0; j < m; ++j) valid += !isnan(dg[j]);
      for (int64_t i = 0; i < g; ++i) {
        if (isnan(cg[i]) || valid == 0) {
          o[i] = cg[i];
          continue;
        }
        int64_t below = 0;
        for (int64_t j = 0; j < m; ++j) below += dg[j] < cg[i];
        o[i] = static_cast<float>(static_cast<double>(cg[i]) + bonus * (static_cast<double>(below) / valid));
      }
    } else {
      double mc, sc, md, sd;
      int64_t nc, nd;
      moments(cg, g, &mc, &sc, &nc);
      moments(dg, m, &md, &sd, &nd);
      const bool pass = nc > 0 && nd > 0 && mc >= ratio * md;
      for (int64_t i = 0; i < g; ++i)
        o[i] = (pass && cg[i] > min_reward) ? static_cast<float>(static_cast<double>(cg[i]) + bonus) : cg[i];
    }
  }
}

// Per-token GRPO: dlogp and the double sums {loss, kl, clipped}.
__global__ void grpo_token_kernel(const float* lp, const float* old, const float* ref, const float* adv, bool per_seq,
                                  const int32_t* cu, int64_t b, int64_t total, double eps_low, double eps_high,
                                  double beta, int loss_type, int64_t max_len, float* dlogp, double* sums) {
  __shared__ double sl[256], sk[256], sc[256];
  double loss = 0.0, kl = 0.0, clipped = 0.0;
  const double lo = 1.0 - eps_low, hi = 1.0 + eps_high;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    // the sequence of token t: the last s with cu[s] <= t (skipping empty sequences)
    int64_t l = 0, h = b - 1;
    while (l < h) {
      const int64_t mid = (l + h + 1) / 2;
      if (cu[mid] <= t) l = mid;
      else h = mid - 1;
    }
    const int64_t s = l;
    double w;
    if (loss_type == 0) {
      const int64_t len = cu[s + 1] - cu[s];
      w = 1.0 / (static_cast<double>(b) * static_cast<double>(len > 1 ? len : 1));
    } else if (loss_type == 3) {
      w = 1.0 / (static_cast<double>(b) * static_cast<double>(max_len));
    } else {
      w = 1.0 / static_cast<double>(total);
    }
    const double x = lp[t];
    const double a = adv[per_seq ? s : t];
    const double rho = exp(x - static_cast<double>(old[t]));
    const double cl = fmin(fmax(rho, lo), hi);
    const bool clip = (rho > hi && a > 0.0) || (rho < lo && a < 0.0);
    double ell = -fmin(rho * a, cl * a);
    double g = clip ? 0.0 : -a * rho;
    if (ref) {
      const double diff = static_cast<double>(ref[t]) - x;
      const double e = exp(diff);
      const double k3 = e - diff - 1.0;
      kl += k3;
      ell += beta * k3;
      g += beta * (1.0 - e);
    }
    clipped += clip ? 1.0 : 0.0;
    loss += w * ell;
    dlogp[t] = static_cast<float>(w * g);
  }
  sl[threadIdx.x] = loss;
  sk[threadIdx.x] = kl;
  sc[threadIdx.x] = clipped;
  __syncthreads();
  for (int o = blockDim.x / 2; o > 0; o >>= 1) {
    if (threadIdx.x < o) {
      sl[threadIdx.x] += sl[threadIdx.x + o];
      sk[threadIdx.x] += sk[threadIdx.x + o];
      sc[threadIdx.x] += sc[threadIdx.x + o];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    atomicAdd(&sums[0], sl[0]);
    atomicAdd(&sums[1], sk[0]);
    atomicAdd(&sums[2], sc[0]);
  }
}

int loss_type_code(GrpoLossType t) {
  switch (t) {
    case GrpoLossType::kGrpo: return 0;
    case GrpoLossType::kBnpo: return 1;
    case GrpoLossType::kDapo: return 2;
    case GrpoLossType::kDrGrpo: return 3;
  }
  return 2;
}

// The per-token loss on device vectors; dlogp on the device, stats on the host.
Status token_loss(const float* lp, const GrpoInputs& in, int64_t total, const GrpoOptions& o, float* dlogp,
                  GrpoStats* stats) {
  const int64_t b = in.cu_seqlens.shape[0] - 1;
  const bool per_seq = in.advantages.shape[0] != total;
  DeviceScratch sums;
  VP_RETURN_IF_ERROR(sums.alloc(3 * sizeof(double)));
  VP_RETURN_IF_ERROR(cuda_status(cudaMemset(sums.as<void>(), 0, 3 * sizeof(double)), "cudaMemset"));
  if (total > 0) {
    grpo_token_kernel<<<grid_for(total, 256), 256>>>(
        lp, in.old_logprobs.as<float>(), in.ref_logprobs.data ? in.ref_logprobs.as<float>() : nullptr,
        in.advantages.as<float>(), per_seq, in.cu_seqlens.as<int32_t>(), b, total, o.eps_low, o.eps_high, o.beta,
        loss_type_code(o.loss_type), o.max_completion_length, dlogp, sums.as<double>());
    VP_RETURN_IF_ERROR(cuda_status(cudaGetLastError(), "grpoLoss"));
  }
  double h[3];
  VP_RETURN_IF_ERROR(cuda_status(cudaMemcpy(h, sums.as<void>(), sizeof h, cudaMemcpyDeviceToHost), "grpoLoss"));
  stats->loss = h[0];
  stats->kl = total && in.ref_logprobs.data ? h[1] / static_cast<double>(total) : 0.0;
  stats->clip_fraction = total ? h[2] / static_cast<double>(total) : 0.0;
  return Status::Ok();
}

}  // namespace

Status comparative_rewards(const TensorView& complete, const TensorView& degraded, int64_t group_size,
                           const ComparativeOptions& opts, const TensorView& out) {
  const int64_t groups = complete.shape[0] / group_size;
  if (groups == 0) return Status::Ok();
  const int64_t m = degraded.shape[0] / groups;
  comparative_kernel<<<grid_for(groups, 128), 128>>>(complete.as<float>(), degraded.as<float>(), groups, group_size, m,
                                                    opts.mode == ComparativeMode::kPairwise ? 0 : 1, opts.bonus,
                                                    opts.ratio, static_cast<float>(opts.min_reward), out.as<float>());
  VP_RETURN_IF_ERROR(cuda_status(cudaGetLastError(), "comparativeRewards"));
  return cuda_status(cudaDeviceSynchronize(), "comparativeRewards");
}

Status group_advantages(const TensorView& rewards, int64_t group_size, AdvantageScale scale, double eps,
                        const TensorView& out) {
  const int64_t n = rewards.shape[0];
  if (n == 0) return Status::Ok();
  DeviceScratch bstd;
  VP_RETURN_IF_ERROR(bstd.alloc(sizeof(double)));
  if (scale == AdvantageScale::kBatch) batch_std_kernel<<<1, 256>>>(rewards.as<float>(), n, bstd.as<double>());
  const int code = scale == AdvantageScale::kGroup ? 0 : scale == AdvantageScale::kBatch ? 1 : 2;
  const int64_t groups = n / group_size;
  advantages_kernel<<<grid_for(groups, 128), 128>>>(rewards.as<float>(), groups, group_size, code, eps,
                                                   bstd.as<double>(), out.as<float>());
  VP_RETURN_IF_ERROR(cuda_status(cudaGetLastError(), "groupAdvantages"));
  return cuda_status(cudaDeviceSynchronize(), "groupAdvantages");
}

Status grpo_loss(const GrpoInputs& in, const GrpoOptions& opts, const TensorView& dlogprobs, GrpoStats* stats) {
  return token_loss(in.logprobs.as<float>(), in, in.logprobs.shape[0], opts, dlogprobs.as<float>(), stats);
}

Status linear_grpo_loss(const LinearGrpoInputs& in, const GrpoOptions& opts, const TensorView& dhidden,
                        const TensorView& dweight, const TensorView& logprobs_out, GrpoStats* stats) {
  detail::LinearProblem p;
  p.dtype = in.hidden.dtype;
  p.hidden = in.hidden.data;
  p.weight = in.weight.data;
  p.targets = in.targets.as<int32_t>();
  p.n = in.hidden.shape[0];
  p.d = in.hidden.shape[1];
  p.v = in.weight.shape[0];
  p.inv_temperature = 1.0f / opts.temperature;
  p.fn = "linearGrpoLoss";
  DeviceScratch buf;  // logp, lse, dlogp
  VP_RETURN_IF_ERROR(buf.alloc(static_cast<size_t>(3 * p.n) * sizeof(float)));
  float *lp = buf.as<float>(), *lse = lp + p.n, *dlp = lse + p.n;
  VP_RETURN_IF_ERROR(detail::linear_forward(p, lp, lse));
  GrpoInputs gi;
  gi.old_logprobs = in.old_logprobs;
  gi.ref_logprobs = in.ref_logprobs;
  gi.advantages = in.advantages;
  gi.cu_seqlens = in.cu_seqlens;
  VP_RETURN_IF_ERROR(token_loss(lp, gi, p.n, opts, dlp, stats));
  if (logprobs_out.data && p.n > 0)
    VP_RETURN_IF_ERROR(cuda_status(cudaMemcpy(logprobs_out.data, lp, p.n * sizeof(float), cudaMemcpyDeviceToDevice),
                                   "linearGrpoLoss"));
  return detail::linear_backward(p, dlp, lse, dhidden.data, dweight.data);
}

}  // namespace vp::cuda
