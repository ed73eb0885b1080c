"""PyTorch peers for bench/gpu.sh.

Reads the JSON lines our native drivers printed (native/bench/bench_*.cpp, one
per case: bench, case, dtype and the shape fields), times the PyTorch
equivalent of each on the same device, dtype and shape, and prints one JSON
line per peer and case:

  {"bench", "case", "dtype", "device", "peer": <name>, "primary": bool,
   "ms", "minMs", "reps", "peakMB"?}

The first peer of a case is its primary peer (the ratio in the report); later
ones are shown beside it. A peer that cannot run prints
{"bench", "case", "dtype", "peer", "missing": why}: never skipped silently.
The first line is a status line {"peerStatus": "ok" | why not, "torch", ...}.

The PyTorch forms, per family:
  gemm       a @ b
  attention  torch.nn.functional.scaled_dot_product_attention on [B, H, T, D]
             (enable_gqa for grouped-query attention; on a PyTorch without
             SDPA, the composite softmax(q·kᵀ·scale)·v); backward by autograd
  infonce    F.normalize → q̂·k̂ᵀ (float32 logits) / τ → F.cross_entropy; autograd
  grpo       TRL's forms: logits (= h·wᵀ) → float32 → gather − logsumexp
             (selective log-softmax); the GRPO loss written out (ratio,
             asymmetric clip, k3 KL, 'dapo'); autograd
  pack       a device copy moving as many bytes (primary: the bandwidth peer),
             then torch.index_select / index_add_ on the same source map
  train_step the VideoLM in eager PyTorch (bench/peers/videolm_torch.py) from
             the parameters and batch the driver wrote (--io): sft = loss,
             backward, clip_grad_norm_, AdamW; rl = the reference model's
             log-probs (no_grad), the policy's, the GRPO loss ('dapo', k3 KL),
             backward, clip, AdamW. Its first-step loss is reported (loss0)
             beside ours: the same parameters must give the same loss.

  python3 bench/peers/gpu_torch.py --device cuda|cpu --cases RAW.jsonl
Timing: CUDA events (warm-up, then at least `reps` calls, fewer for long
calls, the median), or the host clock on the CPU.
"""
import argparse
import json
import math
import os
import sys
import time


def emit(obj):
    print(json.dumps(obj), flush=True)


class Timer:
    def __init__(self, torch, device, quick):
        self.torch = torch
        self.cuda = device == "cuda"
        self.reps = 10 if quick else 20
        self.min_ms = 50.0 if quick else 100.0

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def __call__(self, fn, warmup=3):
        torch = self.torch
        for _ in range(warmup):
            fn()
        self.sync()
        samples = []
        total = 0.0

        def enough():
            if not samples:
                return False
            want = max(5, min(self.reps, int(2000.0 / max(samples[0], 1e-3))))
            return len(samples) >= want and (total >= self.min_ms or len(samples) >= 1000)

        while not enough():
            if self.cuda:
                a = torch.cuda.Event(enable_timing=True)
                b = torch.cuda.Event(enable_timing=True)
                a.record()
                fn()
                b.record()
                b.synchronize()
                ms = a.elapsed_time(b)
            else:
                t0 = time.perf_counter()
                fn()
                ms = (time.perf_counter() - t0) * 1e3
            samples.append(ms)
            total += ms
        samples.sort()
        return {"ms": samples[len(samples) // 2], "minMs": samples[0], "reps": len(samples)}

    def peak_mb(self, fn):
        """Device memory allocated during one call, above what was allocated before (CUDA only)."""
        if not self.cuda:
            return None
        torch = self.torch
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20


def result(timer, name, fn, memory=True):
    r = {"peer": name, **timer(fn)}
    if memory:
        r["peakMB"] = timer.peak_mb(fn)
    return r


# ---- the families ---------------------------------------------------------------------


def peer_gemm(torch, timer, c, dev, dt):
    g = torch.Generator(device=dev).manual_seed(1)
    a = torch.randn(c["m"], c["k"], device=dev, dtype=dt, generator=g)
    b = torch.randn(c["k"], c["n"], device=dev, dtype=dt, generator=g)
    return [result(timer, "torch matmul", lambda: a @ b, memory=False)]


def peer_attention(torch, timer, c, dev, dt):
    F = torch.nn.functional
    B, T, H, Hkv, D, causal = c["B"], c["T"], c["H"], c["Hkv"], c["D"], c["causal"]
    g = torch.Generator(device=dev).manual_seed(2)
    q = torch.randn(B, H, T, D, device=dev, dtype=dt, generator=g)
    k = torch.randn(B, Hkv, T, D, device=dev, dtype=dt, generator=g)
    v = torch.randn(B, Hkv, T, D, device=dev, dtype=dt, generator=g)
    do = torch.randn(B, H, T, D, device=dev, dtype=dt, generator=g)
    sdpa = getattr(F, "scaled_dot_product_attention", None)
    name = "torch sdpa"
    if sdpa is not None and Hkv != H:
        try:
            sdpa(q[:, :, :8], k[:, :, :8], v[:, :, :8], is_causal=causal, enable_gqa=True)

            def attn(q, k, v):
                return sdpa(q, k, v, is_causal=causal, enable_gqa=True)
        except TypeError:  # PyTorch < 2.5: no enable_gqa; expand the KV heads (inside the timing)
            name = "torch sdpa (KV heads repeated)"

            def attn(q, k, v):
                rep = H // Hkv
                return sdpa(q, k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1), is_causal=causal)
    elif sdpa is not None:
        def attn(q, k, v):
            return sdpa(q, k, v, is_causal=causal)
    else:  # PyTorch < 2.0 (e.g. Debian's 1.13 CPU)
        name = "torch composite (no sdpa)"

        def attn(q, k, v):
            if Hkv != H:
                k = k.repeat_interleave(H // Hkv, dim=1)
                v = v.repeat_interleave(H // Hkv, dim=1)
            s = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(D))
            if causal:
                s = s.masked_fill(torch.ones(T, T, dtype=torch.bool, device=dev).triu(1), float("-inf"))
            return torch.softmax(s, dim=-1) @ v

    if c["dir"] == "fwd":
        def fn():
            with torch.no_grad():
                attn(q, k, v)
    else:
        qg, kg, vg = (x.clone().requires_grad_(True) for x in (q, k, v))

        def fn():
            for x in (qg, kg, vg):
                x.grad = None
            attn(qg, kg, vg).backward(do)
    return [result(timer, name, fn)]


def peer_infonce(torch, timer, c, dev, dt):
    F = torch.nn.functional
    N, M, D, tau = c["N"], c["M"], c["D"], c["temperature"]
    g = torch.Generator(device=dev).manual_seed(3)
    q = torch.randn(N, D, device=dev, dtype=dt, generator=g)
    k = torch.randn(M, D, device=dev, dtype=dt, generator=g)
    pos = torch.arange(N, device=dev) % M

    def loss_of(q, k):
        logits = (F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).T).float() / tau
        return F.cross_entropy(logits, pos)

    if c["variant"] == "fwd":
        def fn():
            with torch.no_grad():
                loss_of(q, k)
    else:  # withGrad and separate: the same composite forward + backward
        qg, kg = q.clone().requires_grad_(True), k.clone().requires_grad_(True)

        def fn():
            qg.grad = kg.grad = None
            loss_of(qg, kg).backward()
    return [result(timer, "torch composite", fn)]


def _targets(torch, n, v, dev):
    return ((torch.arange(n, device=dev, dtype=torch.int64) * 7919 + 13) % v)


def _selective_logprobs(torch, logits, targets):
    x = logits.float()
    return x.gather(-1, targets[:, None]).squeeze(-1) - torch.logsumexp(x, dim=-1)


def _grpo_loss(torch, lp, old, ref, adv, eps_low=0.2, eps_high=0.28, beta=0.04):
    coef_1 = torch.exp(lp - old)
    coef_2 = torch.clamp(coef_1, 1 - eps_low, 1 + eps_high)
    per_token = -torch.min(coef_1 * adv, coef_2 * adv)
    d = ref - lp
    per_token = per_token + beta * (torch.exp(d) - d - 1)
    return per_token.sum() / per_token.numel()  # 'dapo': the sum over tokens / tokens


def _advantages(torch, n, seq_len, dev, g):
    b = (n + seq_len - 1) // seq_len
    per_seq = torch.rand(b, device=dev, generator=g) * 2 - 1
    return per_seq.repeat_interleave(seq_len)[:n].contiguous()


def peer_grpo(torch, timer, c, dev, dt):
    variant, n, d, v, seq_len = c["variant"], c["N"], c["d"], c["V"], c["seqLen"]
    g = torch.Generator(device=dev).manual_seed(4)
    f32 = torch.float32
    if variant.startswith("tokenLogprobs"):
        logits = torch.randn(n, v, device=dev, dtype=dt, generator=g) * 2
        t = _targets(torch, n, v, dev)
        dlogp = torch.rand(n, device=dev, generator=g) * 2 - 1
        if variant.endswith("fwd"):
            def fn():
                with torch.no_grad():
                    _selective_logprobs(torch, logits, t)
        else:
            lg = logits.clone().requires_grad_(True)

            def fn():
                lg.grad = None
                _selective_logprobs(torch, lg, t).backward(dlogp)
        return [result(timer, "torch composite", fn)]
    if variant == "grpoLoss":
        lp = torch.rand(n, device=dev, generator=g) * -4
        old = lp + (torch.rand(n, device=dev, generator=g) * 0.6 - 0.3)
        ref = lp + (torch.rand(n, device=dev, generator=g) * 0.6 - 0.3)
        adv = _advantages(torch, n, seq_len, dev, g)
        lpg = lp.clone().requires_grad_(True)

        def fn():
            lpg.grad = None
            _grpo_loss(torch, lpg, old, ref, adv).backward()
        return [result(timer, "torch composite", fn)]
    # linearTokenLogprobs fwd / fwd+bwd, linearGrpoLoss
    h = torch.randn(n, d, device=dev, dtype=dt, generator=g)
    w = torch.randn(v, d, device=dev, dtype=dt, generator=g) * (1.0 / math.sqrt(d))
    t = _targets(torch, n, v, dev)
    hg, wg = h.clone().requires_grad_(True), w.clone().requires_grad_(True)
    if variant == "linearTokenLogprobs fwd":
        def fn():
            with torch.no_grad():
                _selective_logprobs(torch, h @ w.T, t)
    elif variant == "linearTokenLogprobs fwd+bwd":
        dlogp = torch.rand(n, device=dev, generator=g) * 2 - 1

        def fn():
            hg.grad = wg.grad = None
            _selective_logprobs(torch, hg @ wg.T, t).backward(dlogp)
    elif variant == "linearGrpoLoss":
        with torch.no_grad():
            lp = _selective_logprobs(torch, h @ w.T, t).to(f32)
        old = lp + (torch.rand(n, device=dev, generator=g) * 0.6 - 0.3)
        ref = lp + (torch.rand(n, device=dev, generator=g) * 0.6 - 0.3)
        adv = _advantages(torch, n, seq_len, dev, g)

        def fn():
            hg.grad = wg.grad = None
            _grpo_loss(torch, _selective_logprobs(torch, hg @ wg.T, t), old, ref, adv).backward()
    else:
        raise ValueError(f"unknown grpo variant {variant!r}")
    return [result(timer, "torch composite", fn)]


def _pack_source(videos, frames, p, text_per_video):
    """The packed rows' source rows, as native/bench/bench_pack.cpp builds them."""
    video_rows = videos * frames * p
    src = []
    for v in range(videos):
        for f in range(frames):
            src.extend(range((v * frames + f) * p, (v * frames + f + 1) * p))
        src.extend(range(video_rows + v * text_per_video, video_rows + (v + 1) * text_per_video))
        key = {(3 + 5 * v) % frames, (7 + 11 * v) % frames}
        for f in range(frames):
            s = f
            if f in key:
                for dist in range(1, frames):
                    if f - dist >= 0 and f - dist not in key:
                        s = f - dist
                        break
                    if f + dist < frames and f + dist not in key:
                        s = f + dist
                        break
            src.extend(range((v * frames + s) * p, (v * frames + s + 1) * p))
    return src


def peer_pack(torch, timer, c, dev, dt):
    videos, frames, p, d, tpv = c["videos"], c["frames"], c["P"], c["D"], c["textPerVideo"]
    idx = torch.tensor(_pack_source(videos, frames, p, tpv), dtype=torch.int64, device=dev)
    n = idx.numel()
    if n != c["rows"]:
        raise ValueError(f"source map has {n} rows, ours {c['rows']}")
    rows = videos * frames * p + videos * tpv
    g = torch.Generator(device=dev).manual_seed(5)
    sources = torch.randn(rows, d, device=dev, dtype=dt, generator=g)  # [video flattened; text]
    if c["dir"] == "forward":
        src = torch.randn(n, d, device=dev, dtype=dt, generator=g)
        out = torch.empty(n, d, device=dev, dtype=dt)
        return [
            result(timer, "device copy (same bytes)", lambda: out.copy_(src), memory=False),
            result(timer, "torch index_select", lambda: torch.index_select(sources, 0, idx, out=out), memory=False),
        ]
    dtok = torch.randn(n, d, device=dev, dtype=dt, generator=g)
    dsrc = torch.empty(rows, d, device=dev, dtype=dt)
    half = (n + rows) // 2  # read + written: n rows read, `rows` rows written
    a = torch.randn(half, d, device=dev, dtype=dt, generator=g)
    b = torch.empty(half, d, device=dev, dtype=dt)

    def scatter():
        dsrc.zero_()
        dsrc.index_add_(0, idx, dtok)
    return [
        result(timer, "device copy (same bytes)", lambda: b.copy_(a), memory=False),
        result(timer, "torch index_add_", scatter, memory=False),
    ]


def peer_train_step(torch, timer, c, dev, dt):
    import numpy as np
    from videolm_torch import VideoLMTorch

    io = c.get("io")
    if not io:
        raise ValueError("the driver wrote no inputs (run vp_bench_train_step with --io DIR)")
    with open(os.path.join(io, "meta.json")) as f:
        meta = json.load(f)
    cfg, B, T, R, o, go = meta["config"], meta["B"], meta["T"], meta["R"], meta["opt"], meta["grpo"]
    flat = torch.from_numpy(np.fromfile(os.path.join(io, "params.f32"), dtype=np.float32))
    params = {p["name"]: flat[p["offset"]:p["offset"] + p["numel"]].reshape(p["shape"]) for p in meta["params"]}
    decay = {p["name"] for p in meta["params"] if p["decay"]}
    frames = torch.from_numpy(np.fromfile(os.path.join(io, "videos.u8"), dtype=np.uint8))
    frames = frames.reshape(B, cfg["frames"], cfg["imageSize"], cfg["imageSize"], 3)
    text = torch.from_numpy(np.fromfile(os.path.join(io, "text.i32"), dtype=np.int32)).long().reshape(B, T).to(dev)
    targets = torch.from_numpy(np.fromfile(os.path.join(io, "targets.i32"), dtype=np.int32)).long().reshape(B, T).to(dev)
    model = VideoLMTorch(torch, cfg, params, decay, B, T, dev)
    opt = model.optimizer(o)
    patches = model.patches(frames)
    state = {"loss0": None}
    if meta["mode"] == "sft":
        def step():
            loss = model.sft_step(opt, patches, text, targets, o["maxGradNorm"])
            if state["loss0"] is None:
                state["loss0"] = loss.item()
    else:
        ref = VideoLMTorch(torch, cfg, params, decay, B, T, dev)
        for p in ref.parameters():
            p.requires_grad_(False)
        adv = torch.from_numpy(np.fromfile(os.path.join(io, "advantages.f32"), dtype=np.float32))  # one per response
        adv = adv.to(dev).repeat_interleave(R)

        def step():
            opt.zero_grad(set_to_none=True)
            with torch.no_grad():
                ref_lp = ref.logprobs(patches, text, targets)
            lp = model.logprobs(patches, text, targets)
            if state["loss0"] is None:
                state["lp0"] = lp.mean().item()
            loss = _grpo_loss(torch, lp, lp.detach(), ref_lp, adv, eps_low=go["epsLow"], eps_high=go["epsHigh"],
                              beta=go["beta"])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), o["maxGradNorm"])
            opt.step()
            if state["loss0"] is None:
                state["loss0"] = loss.item()
    step()  # the first step from the shared parameters (its loss is compared)
    r = result(timer, "torch eager", step, memory=False)
    r["loss0"] = state["loss0"]
    if "lp0" in state:
        r["lp0"] = state["lp0"]
    return [r]


PEERS = {"gemm": peer_gemm, "attention": peer_attention, "infonce": peer_infonce, "grpo": peer_grpo,
         "pack": peer_pack, "train_step": peer_train_step}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--cases", required=True, help="the JSON lines of our native drivers")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--full", action="store_true", help="accepted for symmetry with the drivers (the cases come from --cases)")
    args = ap.parse_args()
    with open(args.cases) as f:
        lines = []
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    lines.append(json.loads(line))
                except ValueError:
                    pass
    cases = [c for c in lines if "ms" in c and "peer" not in c and "case" in c]

    def all_missing(why):
        emit({"peerStatus": why})
        for c in cases:
            emit({"bench": c["bench"], "case": c["case"], "dtype": c["dtype"], "peer": "torch", "missing": why})

    try:
        import torch
    except Exception as e:  # noqa: BLE001 - any import failure means: no peer here
        all_missing(f"PyTorch is not importable by {sys.executable}: {type(e).__name__}: {e}")
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        all_missing(f"torch.cuda unavailable (torch {torch.__version__}, built for CUDA {torch.version.cuda}): "
                    "no GPU visible to PyTorch")
        return 0
    if args.device == "cpu":  # as many threads as our pool (VP_NUM_THREADS, default: the cores)
        torch.set_num_threads(int(os.environ.get("VP_NUM_THREADS") or os.cpu_count() or 1))
    # CUDA: PyTorch's defaults (no TF32 in float32 matmuls), stated in the status line.
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    emit({"peerStatus": "ok", "torch": torch.__version__, "cudaVersion": torch.version.cuda, "device": args.device,
          "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
          "tf32Matmul": bool(torch.backends.cuda.matmul.allow_tf32) if args.device == "cuda" else None,
          "threads": torch.get_num_threads()})
    timer = Timer(torch, args.device, args.quick)
    for c in cases:
        key = {"bench": c["bench"], "case": c["case"], "dtype": c["dtype"], "device": args.device}
        fn = PEERS.get(c["bench"])
        if fn is None:
            emit({**key, "peer": "torch", "missing": f"no PyTorch peer is written for bench {c['bench']!r}"})
            continue
        try:
            results = fn(torch, timer, c, args.device, dtypes[c["dtype"]])
            for i, r in enumerate(results):
                emit({**key, **r, "primary": i == 0})
        except Exception as e:  # noqa: BLE001 - a peer that fails is reported, never skipped silently
            emit({**key, "peer": "torch", "missing": f"{type(e).__name__}: {str(e)[:300]}"})
        finally:
            if args.device == "cuda":
                torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
