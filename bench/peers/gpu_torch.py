"""PyTorch peers for bench/gpu.sh: for every case our native benchmarks printed,
time the PyTorch equivalent on the same device and dtype, print one JSON line
each with "peer": "torch". Each kernel family registers a function below."""
import argparse
import json
import time

import torch


def timed(fn, device, warmup=2, reps=7, min_ms=200.0):
    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        fn()
    sync()
    samples = []
    start = time.perf_counter()
    while len(samples) < reps or ((time.perf_counter() - start) * 1e3 < min_ms and len(samples) < 200):
        t0 = time.perf_counter()
        fn()
        sync()
        samples.append((time.perf_counter() - t0) * 1e3)
    samples.sort()
    return samples[len(samples) // 2]


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def peer_gemm(case, device, dtype):
    m, n, k = case["m"], case["n"], case["k"]
    a = torch.randn(m, k, device=device, dtype=dtype)
    b = torch.randn(k, n, device=device, dtype=dtype)
    return timed(lambda: a @ b, device)


PEERS = {"gemm": peer_gemm}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--cases", required=True)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    seen = set()
    with open(args.cases) as f:
        cases = [json.loads(l) for l in f if l.strip().startswith("{")]
    for c in cases:
        if "error" in c or c.get("peer") or c["bench"] not in PEERS:
            continue
        key = (c["bench"], c["case"], c["dtype"])
        if key in seen:
            continue
        seen.add(key)
        try:
            ms = PEERS[c["bench"]](c, args.device, DTYPES[c["dtype"]])
            print(json.dumps({"bench": c["bench"], "case": c["case"], "dtype": c["dtype"], "device": args.device,
                              "peer": "torch", "ms": ms}), flush=True)
        except Exception as e:  # a missing peer is reported, never skipped silently
            print(json.dumps({"bench": c["bench"], "case": c["case"], "dtype": c["dtype"], "peer": "torch",
                              "missing": f"{type(e).__name__}: {e}"}), flush=True)


if __name__ == "__main__":
    main()
