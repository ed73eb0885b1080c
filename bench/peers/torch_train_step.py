"""PyTorch CPU peer of bench/train-step.ts: the VideoLM architecture (docs/model.md)
written the way a PyTorch user would (nn.Parameters, autograd, torch.optim.AdamW,
clip_grad_norm_), from the same initial parameters and on the same batch.
Attention: per-sequence batched softmax(QK^T)V with a causal mask (PyTorch 1.13
has no fused/varlen attention on CPU); all sequences have the same length."""
import math

import torch
import torch.nn.functional as F
from common import emit, load, read_spec, time_it

spec = read_spec()
cfg, B, T = spec["config"], spec["B"], spec["T"]
d, Lc, H, Hkv = cfg["width"], cfg["layers"], cfg["heads"], cfg["kvHeads"]
D, Fh, V = d // H, cfg["ffn"], cfg["vocab"]
p, img, fr = cfg["patchSize"], cfg["imageSize"], cfg["frames"]
P = (img // p) ** 2
eps_n = cfg.get("normEps", 1e-5)
theta = cfg.get("ropeTheta", 10000.0)

params = {q["name"]: torch.nn.Parameter(load(spec, "p." + q["name"]).clone()) for q in spec["params"]}
decay = [params[q["name"]] for q in spec["params"] if q["decay"]]
no_decay = [params[q["name"]] for q in spec["params"] if not q["decay"]]
o = spec["opt"]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": o["weightDecay"]}, {"params": no_decay, "weight_decay": 0.0}],
                        lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"])

videos = load(spec, "videos") / 127.5 - 1.0  # [B, F, H, W, 3]
text = load(spec, "text").long()            # [B, T]
# patches [B, F*P, p*p*3] in (dy, dx, c) order, patch index py*(W/p)+px
patches = videos.reshape(B, fr, img // p, p, img // p, p, 3).permute(0, 1, 2, 4, 3, 5, 6).reshape(B, fr * P, p * p * 3)
targets = torch.cat([text[:, 1:], torch.full((B, 1), -1, dtype=torch.long)], 1)  # next token inside the caption
S = fr * P + T
pos = torch.arange(S, dtype=torch.float64)
inv = theta ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
ang = pos[:, None] * inv[None, :]
cos = torch.cat([ang.cos(), ang.cos()], -1).float()[None, :, None, :]
sin = torch.cat([ang.sin(), ang.sin()], -1).float()[None, :, None, :]
mask = torch.full((S, S), float("-inf")).triu(1)
frame_idx = torch.arange(fr).repeat_interleave(P)
patch_idx = torch.arange(P).repeat(fr)


def rms(x, g):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps_n) * g


def rope(x):
    h = D // 2
    return x * cos + torch.cat([-x[..., h:], x[..., :h]], -1) * sin


def forward():
    W = params
    vis = patches @ W["vision.patch_embed.weight"].t() + W["vision.patch_embed.bias"]
    vis = vis + W["vision.frame_pos"][frame_idx] + W["vision.patch_pos"][patch_idx]
    x = torch.cat([vis, F.embedding(text, W["tok_embed"])], 1)  # [B, S, d]
    for l in range(Lc):
        pre = f"layers.{l}."
        h = rms(x, W[pre + "attn_norm"])
        q = rope((h @ W[pre + "wq"].t()).view(B, S, H, D))
        k = rope((h @ W[pre + "wk"].t()).view(B, S, Hkv, D))
        v = (h @ W[pre + "wv"].t()).view(B, S, Hkv, D)
        k = k.repeat_interleave(H // Hkv, 2)
        v = v.repeat_interleave(H // Hkv, 2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D) + mask, -1) @ v
        x = x + att.transpose(1, 2).reshape(B, S, d) @ W[pre + "wo"].t()
        h = rms(x, W[pre + "mlp_norm"])
        gu = h @ W[pre + "w_gate_up"].t()
        x = x + (F.silu(gu[..., :Fh]) * gu[..., Fh:]) @ W[pre + "w_down"].t()
    xt = x[:, fr * P:, :].reshape(B * T, d)
    tg = targets.reshape(B * T)
    keep = tg >= 0
    hn = rms(xt[keep], W["final_norm"])
    head = W["lm_head"] if "lm_head" in W else W["tok_embed"]
    return F.cross_entropy(hn @ head.t(), tg[keep])


state = {"loss0": None}


def step():
    opt.zero_grad(set_to_none=True)
    loss = forward()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(list(params.values()), o["maxGradNorm"])
    opt.step()
    if state["loss0"] is None:
        state["loss0"] = loss.item()


step()  # the first step from the shared parameters (its loss is compared)
r = time_it(step, warmup=0, reps=spec.get("reps", 3), min_ms=0)
r["loss0"] = state["loss0"]
emit(r)
