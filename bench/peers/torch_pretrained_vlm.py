"""PyTorch CPU peer of bench/vlm.ts: one SFT step (forward, backward,
gradient clipping, AdamW) of a Hugging Face SmolVLMForConditionalGeneration read
from the same folder, on the same pixel values, token ids and targets (files the
TypeScript side wrote), eager mode, float32. No `transformers` here: the
composite of its modeling_smolvlm.py formulas, written as a PyTorch user would:

  vision  SmolVLMVisionEmbeddings: F.conv2d patch embedding (stride = patch),
          position ids bucketed from the patch grid (torch.arange / bucketize, as
          transformers computes them), F.embedding; per encoder layer
          F.layer_norm, q/k/v/out_proj with biases, softmax(QK^T/sqrt(d))V over
          the image's patches (no mask), F.layer_norm, fc1, GELU (tanh), fc2;
          post_layernorm
  connector  SmolVLMConnector.pixel_shuffle (its view / permute / reshape
          sequence) and modality_projection (no bias)
  merge   the image-token rows of the text embeddings replaced by the visual
          features in order (masked_scatter)
  text    llama_torch.py's decoder, the untied lm_head over every row, and
          F.cross_entropy over the answer tokens (targets -1 ignored)

'full' trains what the TypeScript API trains in full mode (the text model, its
embeddings and head, the connector; the vision tower frozen, so autograd records
nothing there, unless spec "vision" is true: then the tower trains too, as
setVisionTrainable(true) does); 'lora' freezes everything and trains rank-r adapters on q/k/v/o of
the text model. The optimizer is ours: AdamW (betas 0.9 / 0.95, eps 1e-8, weight
decay 0.1 on the matrices but the token embedding) after clipping the global
gradient norm to 1. Reports the median step time, the first loss, the resident
memory with the weights loaded and its peak over the steps."""
import json
import os

import numpy as np
import torch
import torch.nn.functional as F
from common import emit_train_steps, load, read_spec
from llama_torch import LlamaTorch
from read_safetensors import read_arrays

spec = read_spec()
d = spec["dir"]
cfg = json.load(open(os.path.join(d, "config.json")))
tc, vc = cfg["text_config"], cfg["vision_config"]

W = {k: torch.from_numpy(v) for k, v in read_arrays(os.path.join(d, "model.safetensors"), np.float32).items()}
pixels = load(spec, "pixels")
ids = load(spec, "ids").long()
targets = load(spec, "targets").long()
targets[targets < 0] = -100
T = ids.shape[0]

VP = "model.vision_model."
TP = "model.text_model."
lora = spec["case"] == "lora"
train_vision = bool(spec.get("vision", False))
params = {k: torch.nn.Parameter(v, requires_grad=not lora and (train_vision or not k.startswith(VP))) for k, v in W.items()}
text = LlamaTorch(tc, params, T, prefix=TP)
adapters = text.add_lora(spec["rank"], spec["alpha"]) if lora else []

D = vc["hidden_size"]
heads = vc["num_attention_heads"]
hdv = D // heads
patch = vc["patch_size"]
eps_v = vc.get("layer_norm_eps", 1e-6)
Lv = vc["num_hidden_layers"]
sf = cfg["scale_factor"]


def position_ids(H, Wd):
    nb = vc["image_size"] // patch  # patches per side of the tower
    boundaries = torch.arange(1 / nb, 1.0, 1 / nb)
    fh = torch.arange(0, 1 - 1e-6, 1 / (H // patch))
    fw = torch.arange(0, 1 - 1e-6, 1 / (Wd // patch))
    bh = torch.bucketize(fh, boundaries, right=True)
    bw = torch.bucketize(fw, boundaries, right=True)
    return (bh[:, None] * nb + bw).flatten()


def vision(px):
    n, _, H, Wd = px.shape
    P = params
    x = F.conv2d(px, P[VP + "embeddings.patch_embedding.weight"], P[VP + "embeddings.patch_embedding.bias"], stride=patch)
    x = x.flatten(2).transpose(1, 2)  # [n, S, D]
    x = x + F.embedding(position_ids(H, Wd), P[VP + "embeddings.position_embedding.weight"])
    n, S, _ = x.shape
    for l in range(Lv):
        q = VP + "encoder.layers.%d." % l

        def lin(h, name):
            return F.linear(h, P[q + name + ".weight"], P[q + name + ".bias"])

        h = F.layer_norm(x, (D,), P[q + "layer_norm1.weight"], P[q + "layer_norm1.bias"], eps_v)
        Q = lin(h, "self_attn.q_proj").view(n, S, heads, hdv).transpose(1, 2)
        K = lin(h, "self_attn.k_proj").view(n, S, heads, hdv).transpose(1, 2)
        V = lin(h, "self_attn.v_proj").view(n, S, heads, hdv).transpose(1, 2)
        att = torch.softmax((Q @ K.transpose(-1, -2)) * hdv ** -0.5, -1) @ V
        x = x + lin(att.transpose(1, 2).reshape(n, S, D), "self_attn.out_proj")
        h = F.layer_norm(x, (D,), P[q + "layer_norm2.weight"], P[q + "layer_norm2.bias"], eps_v)
        x = x + lin(F.gelu(lin(h, "mlp.fc1"), approximate="tanh"), "mlp.fc2")
    return F.layer_norm(x, (D,), P[VP + "post_layernorm.weight"], P[VP + "post_layernorm.bias"], eps_v)


def pixel_shuffle(x, s):
    bsz, seq, embed_dim = x.size()
    height = width = int(seq ** 0.5)
    x = x.view(bsz, height, width, embed_dim)
    x = x.view(bsz, height, int(width / s), embed_dim * s)
    x = x.permute(0, 2, 1, 3)
    x = x.reshape(bsz, int(width / s), int(height / s), embed_dim * (s ** 2))
    x = x.permute(0, 2, 1, 3)
    return x.reshape(bsz, int(seq / (s ** 2)), embed_dim * (s ** 2))


def forward():
    feats = F.linear(pixel_shuffle(vision(pixels), sf), params["model.connector.modality_projection.proj.weight"])
    emb = text.embed(ids[None])
    # (.to: under autocast the features are bfloat16, the embedding rows float32, as transformers casts them)
    x = emb.masked_scatter((ids == cfg["image_token_id"])[None, :, None], feats.reshape(-1, feats.shape[-1]).to(emb.dtype))
    logits = F.linear(text.decode(x), params["lm_head.weight"])
    return F.cross_entropy(logits.view(T, -1), targets, ignore_index=-100)


embed_name = TP + "embed_tokens.weight"
trained = [(k, p) for k, p in params.items() if p.requires_grad] + [("lora", t) for t in adapters]
decay = [p for k, p in trained if p.dim() == 2 and k != embed_name]
no_decay = [p for k, p in trained if not (p.dim() == 2 and k != embed_name)]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                        lr=spec["lr"], betas=(0.9, 0.95), eps=1e-8)


autocast = spec.get("computeDtype") == "bfloat16"  # bench/vlm.ts 'full bf16 compute'


def step():
    opt.zero_grad(set_to_none=True)
    if autocast:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = forward()
    else:
        loss = forward()
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for _, p in trained], 1.0)
    opt.step()
    return loss.item()


emit_train_steps(step, spec.get("reps", 3), sum(p.numel() for _, p in trained))
