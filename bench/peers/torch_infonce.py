"""PyTorch CPU peer of bench/infonce.ts: normalize -> matmul -> cross_entropy,
forward and backward with autograd, on the same inputs. Reports the times of
its repetitions (the bench runs it in rounds between its own) and the loss (so
the bench can check that both sides computed the same thing); with
"memoryOnly", the peak memory of one step above what was resident before it
(and its time; "warmSmall": warm up on 64 rows instead of a full step)
instead (the bench runs that with glibc's mmap threshold pinned, so freed
blocks leave the resident set, as it does for its own side)."""
import time

import torch
import torch.nn.functional as F

from common import call_peak_mb, emit, load, read_spec

spec = read_spec()
q, k = load(spec, "q"), load(spec, "k")
positive = load(spec, "positive").long()
tau = float(spec["temperature"])


def step(q=q, k=k, positive=positive):
    qq = q.detach().requires_grad_(True)
    kk = k.detach().requires_grad_(True)
    logits = F.normalize(qq, dim=1) @ F.normalize(kk, dim=1).t() / tau
    loss = F.cross_entropy(logits, positive)
    loss.backward()
    return float(loss), qq.grad, kk.grad


if spec.get("memoryOnly"):
    if spec.get("warmSmall"):  # a large problem: warm up on 64 rows, then one full step
        step(q[:64], k[:64], positive[:64] % 64)
    else:
        step()
    t0 = time.perf_counter()
    (loss, dq, dk), peak = call_peak_mb(step)
    emit({"peakMB": peak, "loss": loss, "ms": (time.perf_counter() - t0) * 1e3})
else:
    for _ in range(spec.get("warmup", 1)):
        step()
    samples = []
    for _ in range(spec.get("reps", 5)):
        t0 = time.perf_counter()
        loss, dq, dk = step()
        samples.append((time.perf_counter() - t0) * 1e3)
    s = sorted(samples)
    emit({"medianMs": s[len(s) // 2], "minMs": s[0], "reps": len(s), "samples": samples,
          "loss": loss, "threads": torch.get_num_threads()})
