"""PyTorch CPU peer of bench/pretrained.ts: one forward+backward of a Hugging Face
LlamaForCausalLM read from the same folder (the formulas of transformers'
modeling_llama.py, written as a PyTorch user would: F.embedding, an RMSNorm
module's arithmetic, F.linear, rotate-half RoPE, repeat_kv + softmax(QK^T)V with
a causal mask (PyTorch 1.13 has no fused attention on CPU), SiLU-gated MLP,
tied head, F.cross_entropy), eager mode, float32. 'full': every parameter
trains; 'lora': the base is frozen and rank-r adapters (PEFT's formula
x@W^T + s*(x@A^T)@B^T) on q/k/v/o train. Reports the median time, the first
loss, the resident memory with the weights loaded and its peak over the steps."""
import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from common import emit, read_spec, time_it
from read_safetensors import read_arrays

spec = read_spec()
d = spec["dir"]
cfg = json.load(open(os.path.join(d, "config.json")))


W = {k: torch.from_numpy(v.astype(np.float32)) for k, v in read_arrays(os.path.join(d, "model.safetensors")).items()}
H, Dm = cfg["num_attention_heads"], cfg["hidden_size"]
Hkv = cfg["num_key_value_heads"]
hd = cfg.get("head_dim") or Dm // H
eps = cfg["rms_norm_eps"]
L = cfg["num_hidden_layers"]
B, T = spec["B"], spec["T"]
ids = torch.tensor(spec["ids"], dtype=torch.long).view(B, T)
targets = torch.cat([ids[:, 1:], torch.full((B, 1), -100, dtype=torch.long)], 1)

lora = spec["case"] == "lora"
params = {k: torch.nn.Parameter(v, requires_grad=not lora) for k, v in W.items()}
adapters = {}
if lora:
    r, alpha = spec["rank"], spec["alpha"]
    scale = alpha / r
    g = torch.Generator().manual_seed(0)
    for l in range(L):
        for m in ("q_proj", "k_proj", "v_proj", "o_proj"):
            name = "model.layers.%d.self_attn.%s" % (l, m)
            out_f, in_f = W[name + ".weight"].shape
            bound = 1 / math.sqrt(in_f)
            adapters[name] = (torch.nn.Parameter((torch.rand(r, in_f, generator=g) * 2 - 1) * bound),
                              torch.nn.Parameter(torch.zeros(out_f, r)))

pos = torch.arange(T, dtype=torch.float64)
inv = 1.0 / (cfg.get("rope_theta", 10000.0) ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
ang = pos[:, None] * inv[None, :]
cos = torch.cat([ang.cos(), ang.cos()], -1).float()[None, None]
sin = torch.cat([ang.sin(), ang.sin()], -1).float()[None, None]
mask = torch.full((T, T), float("-inf")).triu(1)


def rms(x, w):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rope(x):
    h = hd // 2
    return x * cos + torch.cat([-x[..., h:], x[..., :h]], -1) * sin


def lin(x, name):
    y = F.linear(x, params[name + ".weight"])
    if name in adapters:
        a, b = adapters[name]
        y = y + scale * F.linear(F.linear(x, a), b)
    return y


def forward():
    x = F.embedding(ids, params["model.embed_tokens.weight"])
    for l in range(L):
        p = "model.layers.%d." % l
        h = rms(x, params[p + "input_layernorm.weight"])
        q = rope(lin(h, p + "self_attn.q_proj").view(B, T, H, hd).transpose(1, 2))
        k = rope(lin(h, p + "self_attn.k_proj").view(B, T, Hkv, hd).transpose(1, 2))
        v = lin(h, p + "self_attn.v_proj").view(B, T, Hkv, hd).transpose(1, 2)
        k = k.repeat_interleave(H // Hkv, 1)
        v = v.repeat_interleave(H // Hkv, 1)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + mask, -1) @ v
        x = x + lin(att.transpose(1, 2).reshape(B, T, H * hd), p + "self_attn.o_proj")
        h = rms(x, params[p + "post_attention_layernorm.weight"])
        x = x + lin(F.silu(lin(h, p + "mlp.gate_proj")) * lin(h, p + "mlp.up_proj"), p + "mlp.down_proj")
    x = rms(x, params["model.norm.weight"])
    head = params["lm_head.weight"] if "lm_head.weight" in params else params["model.embed_tokens.weight"]
    return F.cross_entropy((x @ head.t()).view(B * T, -1), targets.view(B * T), ignore_index=-100)


def status_mb(key):
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith(key)) / 1024.0


state = {"loss0": None}


def step():
    for p in list(params.values()) + [t for ab in adapters.values() for t in ab]:
        p.grad = None
    loss = forward()
    loss.backward()
    if state["loss0"] is None:
        state["loss0"] = loss.item()


weights_mb = status_mb("VmRSS:")  # the process with its weights, before any step
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak (VmHWM) restarts from here
step()  # warm-up (and the first loss, compared with ours)
r = time_it(step, warmup=0, reps=spec.get("reps", 3), min_ms=0)
r["loss0"] = state["loss0"]
r["weightsMB"] = weights_mb
r["peakMB"] = status_mb("VmHWM:")
r["trainable"] = sum(p.numel() for p in params.values() if p.requires_grad) + sum(t.numel() for ab in adapters.values() for t in ab)
emit(r)
