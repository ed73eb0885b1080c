"""The Llama decoder of transformers' modeling_llama.py written as a PyTorch user
would (eager, float32), shared by the pretrained-model peers
(torch_pretrained.py, torch_pretrained_vlm.py): an RMSNorm module's
arithmetic, F.linear, rotate-half RoPE, repeat_kv + softmax(QK^T)V with a causal
mask (PyTorch 1.13 has no fused attention on CPU), the SiLU-gated MLP, and
optional rank-r LoRA on q/k/v/o (PEFT's formula x@W^T + s*(x@A^T)@B^T, A drawn
uniform(+-1/sqrt(in)) from a seeded generator, B zero). Cost per layer and
sequence of T tokens: the linears' 2*T*params multiply-adds plus 2*T^2*d for
attention, and a T x T score matrix per head."""
import math

import torch
import torch.nn.functional as F


class LlamaTorch:
    def __init__(self, cfg, params, T, prefix="model."):
        """params: {HF name: tensor} (the text model's under `prefix`); T: the sequence length."""
        self.params, self.prefix = params, prefix
        self.H, self.Dm = cfg["num_attention_heads"], cfg["hidden_size"]
        self.Hkv = cfg["num_key_value_heads"]
        self.hd = cfg.get("head_dim") or self.Dm // self.H
        self.eps = cfg["rms_norm_eps"]
        self.L = cfg["num_hidden_layers"]
        self.T = T
        self.adapters = {}
        hd = self.hd
        pos = torch.arange(T, dtype=torch.float64)
        inv = 1.0 / (cfg.get("rope_theta", 10000.0) ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        ang = pos[:, None] * inv[None, :]
        self.cos = torch.cat([ang.cos(), ang.cos()], -1).float()[None, None]
        self.sin = torch.cat([ang.sin(), ang.sin()], -1).float()[None, None]
        self.mask = torch.full((T, T), float("-inf")).triu(1)

    def add_lora(self, r, alpha, seed=0):
        """Rank-r adapters on q/k/v/o of every layer; returns their parameters."""
        self.scale = alpha / r
        g = torch.Generator().manual_seed(seed)
        for l in range(self.L):
            for m in ("q_proj", "k_proj", "v_proj", "o_proj"):
                name = "%slayers.%d.self_attn.%s" % (self.prefix, l, m)
                out_f, in_f = self.params[name + ".weight"].shape
                bound = 1 / math.sqrt(in_f)
                self.adapters[name] = (torch.nn.Parameter((torch.rand(r, in_f, generator=g) * 2 - 1) * bound),
                                       torch.nn.Parameter(torch.zeros(out_f, r)))
        return [t for ab in self.adapters.values() for t in ab]

    def rms(self, x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))

    def rope(self, x):
        h = self.hd // 2
        return x * self.cos + torch.cat([-x[..., h:], x[..., :h]], -1) * self.sin

    def lin(self, x, name):
        w = self.params[name + ".weight"]
        y = F.linear(x.to(w.dtype), w).float()  # a bf16 weight: bf16 product, float32 result (no-ops in float32)
        if name in self.adapters:
            a, b = self.adapters[name]
            y = y + self.scale * F.linear(F.linear(x, a), b)
        return y

    def embed(self, ids):
        return F.embedding(ids, self.params[self.prefix + "embed_tokens.weight"]).float()

    def decode(self, x):
        """The decoder layers and the final norm over input embeddings x [B, T, d]."""
        B, T, H, Hkv, hd, P = x.shape[0], self.T, self.H, self.Hkv, self.hd, self.params
        for l in range(self.L):
            p = "%slayers.%d." % (self.prefix, l)
            h = self.rms(x, P[p + "input_layernorm.weight"])
            q = self.rope(self.lin(h, p + "self_attn.q_proj").view(B, T, H, hd).transpose(1, 2))
            k = self.rope(self.lin(h, p + "self_attn.k_proj").view(B, T, Hkv, hd).transpose(1, 2))
            v = self.lin(h, p + "self_attn.v_proj").view(B, T, Hkv, hd).transpose(1, 2)
            k = k.repeat_interleave(H // Hkv, 1)
            v = v.repeat_interleave(H // Hkv, 1)
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + self.mask, -1) @ v
            x = x + self.lin(att.transpose(1, 2).reshape(B, T, H * hd), p + "self_attn.o_proj")
            h = self.rms(x, P[p + "post_attention_layernorm.weight"])
            x = x + self.lin(F.silu(self.lin(h, p + "mlp.gate_proj")) * self.lin(h, p + "mlp.up_proj"), p + "mlp.down_proj")
        return self.rms(x, P[self.prefix + "norm.weight"])
