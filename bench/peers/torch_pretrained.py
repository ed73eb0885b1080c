"""PyTorch CPU peer of bench/pretrained.ts: one forward+backward of a Hugging Face
LlamaForCausalLM read from the same folder (the formulas of transformers'
modeling_llama.py, written as a PyTorch user would: llama_torch.py's decoder,
tied head, F.cross_entropy), eager mode, float32. 'full': every parameter
trains; 'lora': the base is frozen and rank-r adapters on q/k/v/o train.
dtype 'bfloat16' (LoRA): the frozen matrices are held as torch.bfloat16 and each
product casts its activation to bf16 and the bf16 result back to float32
(PyTorch 1.13's CPU bf16 matmul); norms, softmax, residuals, loss and adapters
stay float32. computeDtype 'bfloat16' ('full'): the step runs under
torch.autocast('cpu', dtype=torch.bfloat16) (float32 weights, bf16 products).
Reports the median time, the first loss, the resident memory with the weights
loaded and its peak over the steps."""
import json
import os

import numpy as np
import torch
import torch.nn.functional as F
from common import emit_train_steps, read_spec
from llama_torch import LlamaTorch
from read_safetensors import read_arrays

spec = read_spec()
d = spec["dir"]
cfg = json.load(open(os.path.join(d, "config.json")))


W = {k: torch.from_numpy(v) for k, v in read_arrays(os.path.join(d, "model.safetensors"), np.float32).items()}
B, T = spec["B"], spec["T"]
ids = torch.tensor(spec["ids"], dtype=torch.long).view(B, T)
targets = torch.cat([ids[:, 1:], torch.full((B, 1), -100, dtype=torch.long)], 1)

lora = spec["case"] == "lora"
bf16 = lora and spec.get("dtype") == "bfloat16"
params = {k: torch.nn.Parameter(v.to(torch.bfloat16) if bf16 and v.dim() == 2 else v, requires_grad=not lora) for k, v in W.items()}
del W  # the float32 copies of bf16 weights
model = LlamaTorch(cfg, params, T)
adapters = model.add_lora(spec["rank"], spec["alpha"]) if lora else []


def forward():
    x = model.decode(model.embed(ids))
    head = params["lm_head.weight"] if "lm_head.weight" in params else params["model.embed_tokens.weight"]
    return F.cross_entropy((x.to(head.dtype) @ head.t()).float().view(B * T, -1), targets.view(B * T), ignore_index=-100)


autocast = spec.get("computeDtype") == "bfloat16"


def step():
    for p in list(params.values()) + adapters:
        p.grad = None
    if autocast:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = forward()
    else:
        loss = forward()
    loss.backward()
    return loss.item()


emit_train_steps(step, spec.get("reps", 3),
                 sum(p.numel() for p in params.values() if p.requires_grad) + sum(t.numel() for t in adapters))
