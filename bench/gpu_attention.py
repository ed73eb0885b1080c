#!/usr/bin/env python3
"""GPU check of the fused attention, for a machine with an NVIDIA GPU, nvcc, CMake
and PyTorch (CUDA) but no Node.js:

  1. builds the core with CUDA (plain CMake; the GPU's own architecture only),
  2. runs the native attention tests (CPU and CUDA),
  3. accuracy: ours vs PyTorch in the same precision (bf16, f16) against a
     float64 reference computed from the same rounded inputs; the issue's bar is
     ours <= 2x PyTorch's error,
  4. speed: our CUDA kernels (vp_bench_attention --device cuda) against
     torch.nn.functional.scaled_dot_product_attention, bf16, D in {64, 128},
     T in {1024, 4096, 8192}, causal and not, forward and forward+backward,
and prints a table plus one JSON line per case; with --save the whole run goes
to <--out, default bench/results>/gpu-attention-<date>-<gpu>.json. Exit status 1
when an accuracy case is BAD (ours above 2x PyTorch's error) or failed to run,
or the native tests failed.

  python3 bench/gpu_attention.py [--build-dir build-gpu] [--skip-build]
                                 [--skip-tests] [--quick] [--save] [--out DIR] [--accuracy-only]
--quick: bfloat16 accuracy cases only, T in {1024, 4096} for speed, fewer repetitions.
(bench/gpu.sh runs it with --skip-build --skip-tests --accuracy-only.)
"""
import argparse
import datetime
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(msg):
    print(msg, flush=True)


def run(cmd, **kw):
    log("$ " + " ".join(cmd))
    return subprocess.run(cmd, cwd=ROOT, text=True, **kw)


def build(build_dir, arch):
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    t0 = time.time()
    r = run(["cmake", "-S", ".", "-B", build_dir, *gen, "-DVP_CUDA=on", "-DCMAKE_BUILD_TYPE=Release",
             f"-DCMAKE_CUDA_ARCHITECTURES={arch}"])
    if r.returncode != 0:
        sys.exit("cmake configure failed")
    jobs = str(os.cpu_count() or 4)
    r = run(["cmake", "--build", build_dir, "-j", jobs, "--target", "vp_bench_attention"])
    if r.returncode != 0:
        sys.exit("build failed")
    # the native tests need doctest (apt-get install doctest-dev); without it CMake has no vp_tests target
    r = run(["cmake", "--build", build_dir, "-j", jobs, "--target", "vp_tests"])
    if r.returncode != 0:
        log("vp_tests could not be built (doctest missing?): the native tests will be skipped")
    log(f"build: {time.time() - t0:.0f} s")


def native_tests(build_dir):
    exe = os.path.join(ROOT, build_dir, "vp_tests")
    if not os.path.exists(exe):
        log("native tests: vp_tests was not built (doctest missing?): skipped")
        return None
    r = run([exe, "-tc=*attention*,cuda*"], capture_output=True)
    out = r.stdout + r.stderr
    for line in out.splitlines():
        if "MESSAGE" in line or "ERROR" in line or "test cases" in line or "assertions" in line or \
                re.search(r"(float32|bfloat16|float16) lq=", line):
            log("  " + line.strip())
    return r.returncode == 0


def bench_bin(build_dir):
    return os.path.join(ROOT, build_dir, "vp_bench_attention")


def ours_timing(build_dir, dtype, T, H, D, causal, reps):
    r = subprocess.run([bench_bin(build_dir), "--device", "cuda", "--dtype", dtype, "--T", str(T), "--H", str(H),
                        "--D", str(D), "--causal", str(int(causal)), "--reps", str(reps), "--json"],
                       cwd=ROOT, text=True, capture_output=True)
    if r.returncode != 0:
        return {"error": (r.stderr or r.stdout).strip()[-300:]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def torch_timing(torch, dtype, T, H, D, causal, reps):
    F = torch.nn.functional
    dt = getattr(torch, dtype)
    q, k, v, do = (torch.randn(1, H, T, D, device="cuda", dtype=dt) for _ in range(4))
    qg, kg, vg = (x.clone().requires_grad_(True) for x in (q, k, v))

    def fwd():
        with torch.no_grad():
            F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    def fwdbwd():
        for x in (qg, kg, vg):
            x.grad = None
        F.scaled_dot_product_attention(qg, kg, vg, is_causal=causal).backward(do)

    def timed(fn):
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        ts = []
        for _ in range(reps):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            ts.append(a.elapsed_time(b))
        ts.sort()
        return ts[len(ts) // 2]

    f = timed(fwd)
    fb = timed(fwdbwd)
    return {"fwd_ms": f, "fwdbwd_ms": fb}


def accuracy(torch, build_dir, dtype, T, H, Hkv, D, causal, device="cuda"):
    """Relative errors (vs float64) of ours and of PyTorch SDPA in `dtype`, same rounded inputs."""
    dt = getattr(torch, dtype)
    g = torch.Generator().manual_seed(T * 7 + D + int(causal))
    x = {n: torch.randn(T, H if n in ("q", "dout") else Hkv, D, generator=g) for n in ("q", "k", "v", "dout")}
    x = {n: t.to(dt).float() for n, t in x.items()}  # the values both implementations see
    with tempfile.TemporaryDirectory() as d:
        for n, t in x.items():
            t.numpy().tofile(os.path.join(d, n + ".bin"))
        r = subprocess.run([bench_bin(build_dir), "--device", device, "--dtype", dtype, "--T", str(T), "--H", str(H),
                            "--Hkv", str(Hkv), "--D", str(D), "--causal", str(int(causal)), "--io", d],
                           cwd=ROOT, text=True, capture_output=True)
        if r.returncode != 0:
            return {"error": (r.stderr or r.stdout).strip()[-300:]}
        import numpy as np
        ours = {n: torch.from_numpy(np.fromfile(os.path.join(d, n + ".bin"), dtype=np.float32))
                for n in ("out", "lse", "dq", "dk", "dv")}
    G = H // Hkv

    def ref_and_torch(prec):
        dev = device
        q = x["q"].to(dev, prec).permute(1, 0, 2).unsqueeze(0).requires_grad_(True)  # [1, H, T, D]
        k = x["k"].to(dev, prec).repeat_interleave(G, dim=1).permute(1, 0, 2).unsqueeze(0).requires_grad_(True)
        v = x["v"].to(dev, prec).repeat_interleave(G, dim=1).permute(1, 0, 2).unsqueeze(0).requires_grad_(True)
        do = x["dout"].to(dev, prec).permute(1, 0, 2).unsqueeze(0)
        sdpa = getattr(torch.nn.functional, "scaled_dot_product_attention", None)
        if prec == torch.float64 or sdpa is None:
            s = (q @ k.transpose(-1, -2)) / math.sqrt(D)
            if causal:
                s = s.masked_fill(torch.ones(T, T, dtype=torch.bool, device=dev).triu(1), float("-inf"))
            lse = torch.logsumexp(s, dim=-1)
            o = torch.softmax(s, dim=-1) @ v
        else:
            o = sdpa(q, k, v, is_causal=causal)
            lse = None
        o.backward(do)
        # back to our layouts: out/dq [T, H, D], dk/dv [T, Hkv, D] (summed over each group)
        out = o[0].permute(1, 0, 2).double()
        dq = q.grad[0].permute(1, 0, 2).double()
        dk = k.grad[0].permute(1, 0, 2).double().reshape(T, Hkv, G, D).sum(2)
        dv = v.grad[0].permute(1, 0, 2).double().reshape(T, Hkv, G, D).sum(2)
        res = {"out": out.flatten().cpu(), "dq": dq.flatten().cpu(), "dk": dk.flatten().cpu(), "dv": dv.flatten().cpu()}
        if lse is not None:
            res["lse"] = lse[0].double().flatten().cpu()
        return res

    ref = ref_and_torch(torch.float64)
    tch = ref_and_torch(dt)

    def rel(a, b):
        return float(torch.linalg.vector_norm(a.double() - b) / torch.linalg.vector_norm(b))

    res = {}
    for n in ("out", "dq", "dk", "dv"):
        res[n] = {"ours": rel(ours[n], ref[n]), "torch": rel(tch[n], ref[n])}
    res["lse"] = {"ours": rel(ours["lse"], ref["lse"]), "torch": None}
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default="build-gpu")
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--skip-tests", action="store_true")
    ap.add_argument("--quick", action="store_true",
                    help="bfloat16 accuracy only; T in {1024, 4096} only, fewer repetitions")
    ap.add_argument("--save", action="store_true", help="write <out>/gpu-attention-<date>-<gpu>.json")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"), help="where --save writes")
    ap.add_argument("--accuracy-only", action="store_true",
                    help="no speed section (bench/gpu.sh times every kernel itself)")
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        sys.exit("PyTorch is not installed for this python3")
    if not torch.cuda.is_available():
        sys.exit("no CUDA device visible to PyTorch: this script needs a GPU machine")
    cap = torch.cuda.get_device_capability()
    arch = f"{cap[0]}{cap[1]}"
    gpu = torch.cuda.get_device_name()
    log(f"GPU: {gpu} (sm_{arch}), torch {torch.__version__}, CUDA {torch.version.cuda}")
    record = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(), "gpu": gpu, "arch": arch,
              "torch": torch.__version__, "accuracy": [], "timing": []}
    if not args.skip_build:
        build(args.build_dir, arch)
    failed = []
    if not args.skip_tests:
        record["native_tests_passed"] = native_tests(args.build_dir)
        if record["native_tests_passed"] is False:
            failed.append("native tests")

    log("\naccuracy: relative error vs float64 (same rounded inputs); bar: ours <= 2x torch")
    for dtype in ("bfloat16",) if args.quick else ("bfloat16", "float16"):
        for (T, H, Hkv, D, causal) in ((1024, 8, 2, 64, False), (1024, 8, 2, 64, True), (777, 4, 4, 128, True)):
            a = accuracy(torch, args.build_dir, dtype, T, H, Hkv, D, causal)
            case = f"{dtype} T={T} H={H} Hkv={Hkv} D={D}{' causal' if causal else ''}"
            if "error" in a:
                log(f"  {case}: FAILED {a['error']}")
                record["accuracy"].append({"case": case, "error": a["error"]})
                failed.append(case)
                continue
            parts = []
            ok = True
            for n, e in a.items():
                if e["torch"] is None:
                    parts.append(f"{n} {e['ours']:.2e}")
                else:
                    r = e["ours"] / e["torch"] if e["torch"] > 0 else float("inf")
                    ok &= r <= 2.0
                    parts.append(f"{n} {e['ours']:.2e} (torch {e['torch']:.2e}, {r:.2f}x)")
            log(f"  {case}: {'ok ' if ok else 'BAD'} " + "  ".join(parts))
            if not ok:
                failed.append(case)
            record["accuracy"].append({"case": case, "ok": ok, **a})

    lengths = ()
    if not args.accuracy_only:
        log("\nspeed: bf16, ratio = torch SDPA time / ours (> 1: we are faster)")
        lengths = (1024, 4096) if args.quick else (1024, 4096, 8192)
    for D in (64, 128):
        H = 2048 // D
        for T in lengths:
            for causal in (False, True):
                reps = 5 if args.quick else 10
                ours = ours_timing(args.build_dir, "bfloat16", T, H, D, causal, reps)
                theirs = torch_timing(torch, "bfloat16", T, H, D, causal, reps)
                case = f"bf16 T={T} H={H} D={D}{' causal' if causal else ''}"
                if "error" in ours:
                    log(f"  {case}: ours FAILED {ours['error']}")
                    record["timing"].append({"case": case, "error": ours["error"]})
                    failed.append(case)
                    continue
                fl = 4.0 * T * T * H * D * (0.5 if causal else 1.0)
                of, ofb = ours["fwd_ms"], ours["fwd_ms"] + ours["bwd_ms"]
                tf, tfb = theirs["fwd_ms"], theirs["fwdbwd_ms"]
                row = {"case": case, "T": T, "H": H, "D": D, "causal": causal, "ours_fwd_ms": of,
                       "ours_fwdbwd_ms": ofb, "torch_fwd_ms": tf, "torch_fwdbwd_ms": tfb,
                       "fwd_ratio": tf / of, "fwdbwd_ratio": tfb / ofb,
                       "ours_fwd_tflops": fl / of / 1e9, "torch_fwd_tflops": fl / tf / 1e9,
                       "ours_fwdbwd_tflops": 3.5 * fl / ofb / 1e9, "torch_fwdbwd_tflops": 3.5 * fl / tfb / 1e9}
                log(f"  {case:30s} fwd ours {of:8.3f} ms torch {tf:8.3f} ms ratio {tf / of:5.2f}x | "
                    f"fwd+bwd ours {ofb:8.3f} ms torch {tfb:8.3f} ms ratio {tfb / ofb:5.2f}x | "
                    f"TFLOP/s fwd {fl / of / 1e9:.0f} vs {fl / tf / 1e9:.0f}")
                print(json.dumps({"bench": "gpu_attention", "gpu": gpu, **row}), flush=True)
                record["timing"].append(row)
    record["failed"] = failed
    if args.save:
        os.makedirs(args.out, exist_ok=True)
        slug = re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-")[:40]
        path = os.path.join(args.out, f"gpu-attention-{datetime.date.today().isoformat()}-{slug}.json")
        with open(path, "w") as f:
            json.dump(record, f, indent=1)
        log(f"saved {path}")
    if failed:
        log(f"FAILED: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
