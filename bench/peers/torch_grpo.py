"""PyTorch CPU peer of bench/grpo.ts, on the same inputs (raw .bin files).

What a PyTorch user writes for these steps, with autograd:
  lp:   logits = hidden @ weight.T -> log_softmax -> gather; backward(dlogp)
  grpo: the same, then TRL's GRPO loss (token-level ratio, asymmetric clip,
        k3 KL, 'dapo' aggregation: sum over tokens / tokens); backward()

Protocol: the first stdin line is a JSON spec {inputs, threads, epsLow, epsHigh,
beta}; then one JSON command per line, each answered by one JSON line:
  {"op": "time", "case": "lp"|"grpo"}   -> {"ms": wall milliseconds of one call}
  {"op": "check", "case": ..., "out": dir} -> writes dHidden.bin/dWeight.bin/logp.bin, {"loss": ...}
  {"op": "memory", "case": ...}          -> {"peakMB": peak RSS growth of one call, "outputMB": ..., "ms": its time}
  {"op": "quit"}
"""
import json
import os
import resource
import sys
import time

import numpy as np
import torch


def load(spec, name):
    s = spec["inputs"][name]
    arr = np.fromfile(s["path"], dtype=np.float32 if s["dtype"] == "float32" else np.int32)
    return torch.from_numpy(arr.reshape(s["shape"]))


def main():
    spec = json.loads(sys.stdin.readline())
    torch.set_num_threads(int(spec.get("threads", 1)))
    hidden, weight = load(spec, "hidden"), load(spec, "weight")
    targets = load(spec, "targets").long()
    dlogp = load(spec, "dlogp")
    old, adv = load(spec, "old"), load(spec, "advantages")
    ref = load(spec, "ref") if "ref" in spec["inputs"] else None
    eps_low, eps_high, beta = spec["epsLow"], spec["epsHigh"], spec["beta"]

    def step(case):
        h = hidden.clone().requires_grad_(True)
        w = weight.clone().requires_grad_(True)
        logits = h @ w.T
        lp = torch.log_softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1)
        if case == "lp":
            lp.backward(dlogp)
            return None, h.grad, w.grad, lp.detach()
        coef_1 = torch.exp(lp - old)
        coef_2 = torch.clamp(coef_1, 1 - eps_low, 1 + eps_high)
        per_token = -torch.min(coef_1 * adv, coef_2 * adv)
        if beta != 0.0:
            d = ref - lp
            per_token = per_token + beta * (torch.exp(d) - d - 1)
        loss = per_token.sum() / max(per_token.numel(), 1)
        loss.backward()
        return float(loss), h.grad, w.grad, lp.detach()

    def status_mb(field):
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1]) / 1024.0
        except OSError:
            pass
        return None

    def reset_peak():
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd.get("op")
        if op == "quit":
            break
        if op == "time":
            t0 = time.perf_counter()
            step(cmd["case"])
            out = {"ms": (time.perf_counter() - t0) * 1e3}
        elif op == "check":
            loss, gh, gw, lp = step(cmd["case"])
            gh.numpy().tofile(os.path.join(cmd["out"], "dHidden.bin"))
            gw.numpy().tofile(os.path.join(cmd["out"], "dWeight.bin"))
            lp.numpy().tofile(os.path.join(cmd["out"], "logp.bin"))
            out = {"loss": loss}
        elif op == "memory":
            exact = reset_peak()
            base = status_mb("VmRSS") or 0.0
            t0 = time.perf_counter()
            _, gh, gw, _ = step(cmd["case"])
            ms = (time.perf_counter() - t0) * 1e3
            peak = (status_mb("VmHWM") if exact else None) or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
            out = {"peakMB": peak - base, "outputMB": (gh.numel() + gw.numel()) * 4 / 2**20, "ms": ms}
        else:
            out = {"error": f"unknown op {op}"}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
