"""PyTorch's own bfloat16 error on a tiny Llama / Qwen2 folder: the forward of
test/pretrained_reference.py run as transformers runs a model cast with
.to(torch.bfloat16) (modeling_llama.py, eager attention): weights and hidden
states in bfloat16, RMSNorm and softmax computed in float32 and cast back,
residual adds in bfloat16. Debian's PyTorch 1.13 on the CPU.

stdin: {"dir", "sequences"}; stdout: {"logits": [per sequence, flattened T x vocab]} (float32 values).
"""
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pretrained_reference import inv_freq, read_folder  # noqa: E402

BF = torch.bfloat16


def rms_norm(x, w, eps):
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return w * h.to(BF)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def linear(x, w, name):
    y = x @ w[name + ".weight"].t()
    if name + ".bias" in w:
        y = y + w[name + ".bias"]
    return y


def forward(cfg, w, ids):
    H, D_model = cfg["num_attention_heads"], cfg["hidden_size"]
    Hkv = cfg.get("num_key_value_heads", H)
    hd = cfg.get("head_dim") or D_model // H
    eps = cfg.get("rms_norm_eps", 1e-6)
    T = len(ids)
    x = w["model.embed_tokens.weight"][torch.tensor(ids)]
    inv = torch.tensor(inv_freq(cfg, hd), dtype=torch.float32)
    freqs = torch.arange(T, dtype=torch.float32)[:, None] * inv[None, :]
    emb = torch.cat([freqs, freqs], dim=-1)
    cos, sin = emb.cos().to(BF)[:, None, :], emb.sin().to(BF)[:, None, :]
    mask = torch.triu(torch.full((T, T), float("-inf")), 1)
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        a = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = linear(a, w, p + "self_attn.q_proj").reshape(T, H, hd)
        k = linear(a, w, p + "self_attn.k_proj").reshape(T, Hkv, hd)
        v = linear(a, w, p + "self_attn.v_proj").reshape(T, Hkv, hd)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = H // Hkv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        s = torch.einsum("thd,uhd->htu", q, k) / math.sqrt(hd) + mask[None].to(BF)
        pr = torch.softmax(s, dim=-1, dtype=torch.float32).to(BF)
        o = torch.einsum("htu,uhd->thd", pr, v).reshape(T, H * hd)
        x = x + linear(o, w, p + "self_attn.o_proj")
        m = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        g = linear(m, w, p + "mlp.gate_proj")
        x = x + linear(torch.nn.functional.silu(g) * linear(m, w, p + "mlp.up_proj"), w, p + "mlp.down_proj")
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    return (x @ head.t()).float()


def main():
    spec = json.load(sys.stdin)
    cfg, w = read_folder(spec["dir"])
    wt = {k: torch.from_numpy(v.astype("float32")).to(BF) for k, v in w.items()}
    with torch.no_grad():
        print(json.dumps({"logits": [forward(cfg, wt, ids).ravel().tolist() for ids in spec["sequences"]]}))


if __name__ == "__main__":
    main()
