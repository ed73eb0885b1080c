"""The built-in VideoLM (docs/model.md) written in eager PyTorch the way a PyTorch
user would (nn.Parameters, autograd, torch.optim.AdamW, clip_grad_norm_), for two
peers: bench/peers/torch_train_step.py (CPU, under bench/train-step.ts) and the
train_step family of bench/peers/gpu_torch.py (CUDA, under bench/gpu.sh).

The batch: B sequences of equal length S = frames·patches + T, each the video's
patch tokens followed by T caption tokens; causal attention over the whole
sequence, RoPE positions 0..S-1. Attention: scaled_dot_product_attention with
is_causal where PyTorch has it (2.0 and later), else softmax(QKᵀ/√D + mask)·V.
Cost per step: the model's FLOPs, eager (one kernel per op, no fusion)."""
import math


class VideoLMTorch:
    """params: name -> tensor (copied into nn.Parameters on `device`);
    decay: the names that get weight decay."""

    def __init__(self, torch, cfg, params, decay, B, T, device):
        self.torch, self.cfg, self.B, self.T, self.device = torch, cfg, B, T, device
        self.F = torch.nn.functional
        self.d, self.L, self.H, self.Hkv = cfg["width"], cfg["layers"], cfg["heads"], cfg["kvHeads"]
        self.D, self.V = self.d // self.H, cfg["vocab"]
        self.Fh = cfg["ffn"]
        self.p, self.img, self.fr = cfg["patchSize"], cfg["imageSize"], cfg["frames"]
        self.P = (self.img // self.p) ** 2
        self.eps = cfg.get("normEps", 1e-5)
        theta = cfg.get("ropeTheta", 10000.0)
        self.W = {n: torch.nn.Parameter(t.detach().to(device=device, dtype=torch.float32).clone())
                  for n, t in params.items()}
        self.decay = [self.W[n] for n in self.W if n in decay]
        self.no_decay = [self.W[n] for n in self.W if n not in decay]
        self.S = self.fr * self.P + T
        pos = torch.arange(self.S, dtype=torch.float64)
        inv = theta ** (-torch.arange(0, self.D, 2, dtype=torch.float64) / self.D)
        ang = pos[:, None] * inv[None, :]
        self.cos = torch.cat([ang.cos(), ang.cos()], -1).float()[None, :, None, :].to(device)
        self.sin = torch.cat([ang.sin(), ang.sin()], -1).float()[None, :, None, :].to(device)
        self.mask = torch.full((self.S, self.S), float("-inf"), device=device).triu(1)
        self.frame_idx = torch.arange(self.fr, device=device).repeat_interleave(self.P)
        self.patch_idx = torch.arange(self.P, device=device).repeat(self.fr)
        self.sdpa = getattr(self.F, "scaled_dot_product_attention", None)

    def parameters(self):
        return list(self.W.values())

    def optimizer(self, o):
        return self.torch.optim.AdamW(
            [{"params": self.decay, "weight_decay": o["weightDecay"]}, {"params": self.no_decay, "weight_decay": 0.0}],
            lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"])

    def patches(self, videos_u8):
        """uint8 or float [B, F, H, W, 3] (0..255) -> [B, F*P, p*p*3] in (dy, dx, c) order."""
        B, fr, img, p = videos_u8.shape[0], self.fr, self.img, self.p
        v = videos_u8.to(self.device, self.torch.float32) / 127.5 - 1.0
        v = v.reshape(B, fr, img // p, p, img // p, p, 3).permute(0, 1, 2, 4, 3, 5, 6)
        return v.reshape(B, fr * self.P, p * p * 3)

    def _rms(self, x, g):
        return x * self.torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * g

    def _rope(self, x):
        h = self.D // 2
        return x * self.cos + self.torch.cat([-x[..., h:], x[..., :h]], -1) * self.sin

    def _attention(self, q, k, v):  # [B, H, S, D], [B, Hkv, S, D]
        if self.Hkv != self.H:
            k = k.repeat_interleave(self.H // self.Hkv, 1)
            v = v.repeat_interleave(self.H // self.Hkv, 1)
        if self.sdpa is not None:
            return self.sdpa(q, k, v, is_causal=True)
        return self.torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.D) + self.mask, -1) @ v

    def text_hidden(self, patches, text):
        """The final-normed hidden states of the text rows, [B, T, d]."""
        torch, F, W = self.torch, self.F, self.W
        B, S, d, H, Hkv, D, Fh = self.B, self.S, self.d, self.H, self.Hkv, self.D, self.Fh
        vis = patches @ W["vision.patch_embed.weight"].t() + W["vision.patch_embed.bias"]
        vis = vis + W["vision.frame_pos"][self.frame_idx] + W["vision.patch_pos"][self.patch_idx]
        x = torch.cat([vis, F.embedding(text, W["tok_embed"])], 1)  # [B, S, d]
        for layer in range(self.L):
            pre = f"layers.{layer}."
            h = self._rms(x, W[pre + "attn_norm"])
            q = self._rope((h @ W[pre + "wq"].t()).view(B, S, H, D))
            k = self._rope((h @ W[pre + "wk"].t()).view(B, S, Hkv, D))
            v = (h @ W[pre + "wv"].t()).view(B, S, Hkv, D)
            att = self._attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
            x = x + att.transpose(1, 2).reshape(B, S, d) @ W[pre + "wo"].t()
            h = self._rms(x, W[pre + "mlp_norm"])
            gu = h @ W[pre + "w_gate_up"].t()
            x = x + (F.silu(gu[..., :Fh]) * gu[..., Fh:]) @ W[pre + "w_down"].t()
        return x[:, self.fr * self.P:, :]

    def _head(self):
        return self.W["lm_head"] if "lm_head" in self.W else self.W["tok_embed"]

    def loss(self, patches, text, targets):
        """Mean cross-entropy over the text rows whose target (targets [B, T]) is >= 0."""
        xt = self.text_hidden(patches, text).reshape(-1, self.d)
        tg = targets.reshape(-1)
        keep = tg >= 0
        hn = self._rms(xt[keep], self.W["final_norm"])
        return self.F.cross_entropy(hn @ self._head().t(), tg[keep])

    def logprobs(self, patches, text, targets):
        """log p(target | prefix) of the rows whose target is >= 0, in row order (selective log-softmax)."""
        xt = self.text_hidden(patches, text).reshape(-1, self.d)
        tg = targets.reshape(-1)
        keep = tg >= 0
        logits = (self._rms(xt[keep], self.W["final_norm"]) @ self._head().t()).float()
        return logits.gather(-1, tg[keep][:, None]).squeeze(-1) - self.torch.logsumexp(logits, -1)

    def sft_step(self, opt, patches, text, targets, max_grad_norm, ctx=None):
        """One SFT step: zero_grad, the loss (inside `ctx`, e.g. an autocast region), backward,
        clip_grad_norm_, the optimizer; returns the loss."""
        opt.zero_grad(set_to_none=True)
        if ctx is None:
            loss = self.loss(patches, text, targets)
        else:
            with ctx:
                loss = self.loss(patches, text, targets)
        loss.backward()
        self.torch.nn.utils.clip_grad_norm_(self.parameters(), max_grad_norm)
        opt.step()
        return loss
