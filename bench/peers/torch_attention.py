"""PyTorch CPU peer of bench/attention.ts: the composite attention a PyTorch user
writes (matmul -> softmax -> matmul, autograd for the backward), on the same
float32 inputs, in PyTorch's natural [H, T, D] layout (the transpose from the
shared [T, H, D] files is done once, outside the timing).

Spec (stdin JSON): inputs {q, k, v, dout} as [T, H, D] float32 files, causal,
reps, threads. Prints one JSON line: fwdMs, fwdbwdMs (medians), medianMs (= fwdMs).
With "memory": one forward+backward instead: ms, peakMB (peak RSS growth) and
extraMB (that less the outputs).
"""
import json
import math
import sys
import time

import numpy as np
import torch


def time_it(fn, warmup=2, reps=5, min_ms=300.0):
    for _ in range(warmup):
        fn()
    samples = []
    start = time.perf_counter()
    while len(samples) < reps or ((time.perf_counter() - start) * 1e3 < min_ms and len(samples) < 100):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    samples.sort()
    return samples[len(samples) // 2], samples[0], len(samples)


def main():
    spec = json.loads(sys.stdin.read())
    torch.set_num_threads(int(spec.get("threads", 1)))

    def load(name):
        s = spec["inputs"][name]
        arr = np.fromfile(s["path"], dtype=np.float32).reshape(s["shape"])
        return torch.from_numpy(arr).transpose(0, 1).contiguous()  # [H, T, D]

    q, k, v, dout = load("q"), load("k"), load("v"), load("dout")
    causal = bool(spec.get("causal", False))
    reps = int(spec.get("reps", 5))
    T, D = q.shape[1], q.shape[2]
    scale = 1.0 / math.sqrt(D)
    mask = torch.ones(T, T, dtype=torch.bool).triu(1) if causal else None

    def attn(q_, k_, v_):
        s = torch.matmul(q_, k_.transpose(-1, -2)) * scale
        if mask is not None:
            s = s.masked_fill(mask, float("-inf"))
        return torch.matmul(torch.softmax(s, dim=-1), v_)

    def fwd():
        with torch.no_grad():
            return attn(q, k, v)

    qg, kg, vg = (t.clone().requires_grad_(True) for t in (q, k, v))

    def fwdbwd():
        for t in (qg, kg, vg):
            t.grad = None
        out = attn(qg, kg, vg)
        out.backward(dout)

    if spec.get("memory"):
        # One forward+backward at full size, timed, with the peak resident memory above
        # what was there before it, less its outputs (out, dq, dk, dv): what the T×T
        # scores and autograd's buffers cost. Warm-up on a small slice only.
        from common import call_peak_mb
        small = [t[:, :64].contiguous() for t in (q, k, v, dout)]
        sg = [t.clone().requires_grad_(True) for t in small[:3]]
        attn(*sg).backward(small[3])

        def once():
            out = attn(qg, kg, vg)
            out.backward(dout)
            return out

        t0 = time.perf_counter()
        out, peak = call_peak_mb(once)
        ms = (time.perf_counter() - t0) * 1e3
        outputs_mb = (out.numel() + qg.grad.numel() + kg.grad.numel() + vg.grad.numel()) * 4 / 2**20
        print(json.dumps({"medianMs": ms, "ms": ms, "peakMB": peak, "outputsMB": outputs_mb,
                          "extraMB": None if peak is None else peak - outputs_mb, "torch": torch.__version__}), flush=True)
        return

    f_med, f_min, f_n = time_it(fwd, reps=reps)
    b_med, b_min, b_n = time_it(fwdbwd, reps=reps)
    print(json.dumps({"medianMs": f_med, "fwdMs": f_med, "fwdMinMs": f_min, "fwdbwdMs": b_med,
                      "fwdbwdMinMs": b_min, "reps": f_n, "torch": torch.__version__}), flush=True)


main()
