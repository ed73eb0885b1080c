"""PyTorch CPU peer of bench/train-step.ts: the VideoLM architecture in eager PyTorch
(bench/peers/videolm_torch.py: nn.Parameters, autograd, torch.optim.AdamW,
clip_grad_norm_), from the same initial parameters and on the same batch.
Attention: PyTorch 1.13 has no fused/varlen attention on CPU, so per-sequence
batched softmax(QK^T)V with a causal mask; all sequences have the same length.
With "autocast": true in the spec, the forward runs under
torch.autocast("cpu", dtype=torch.bfloat16) (PyTorch's CPU mixed precision: its
matrix products in bf16, float32 master weights), the peer of our
setComputeDtype('bfloat16')."""
import contextlib

import torch
from common import emit, load, read_spec, time_it
from videolm_torch import VideoLMTorch

spec = read_spec()
cfg, B, T = spec["config"], spec["B"], spec["T"]
params = {q["name"]: load(spec, "p." + q["name"]) for q in spec["params"]}
decay = {q["name"] for q in spec["params"] if q["decay"]}
model = VideoLMTorch(torch, cfg, params, decay, B, T, "cpu")
o = spec["opt"]
opt = model.optimizer(o)

patches = model.patches(load(spec, "videos"))  # [B, F*P, p*p*3]
text = load(spec, "text").long()               # [B, T]
targets = torch.cat([text[:, 1:], torch.full((B, 1), -1, dtype=torch.long)], 1)  # next token inside the caption

state = {"loss0": None}


autocast = spec.get("autocast", False)


def step():
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    loss = model.sft_step(opt, patches, text, targets, o["maxGradNorm"], ctx)
    if state["loss0"] is None:
        state["loss0"] = loss.item()


step()  # the first step from the shared parameters (its loss is compared)
r = time_it(step, warmup=0, reps=spec.get("reps", 3), min_ms=0)
r["loss0"] = state["loss0"]
emit(r)
