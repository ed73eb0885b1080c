"""PyTorch CPU peer of bench/layers.ts: the same layer, forward + backward with autograd
(gradients reset to None each call, so every call allocates its outputs as ours does)."""
import torch
import torch.nn.functional as F
from common import emit, load, read_spec, time_it

spec = read_spec()
case = spec["case"]
L = lambda n: load(spec, n)

if case == "rmsnorm":
    x, g, dy = L("x").requires_grad_(), L("g").requires_grad_(), L("dy")
    def fn():
        x.grad = g.grad = None
        y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * g
        y.backward(dy)
elif case == "swiglu":
    a, b, dh = L("gate").requires_grad_(), L("up").requires_grad_(), L("dh")
    def fn():
        a.grad = b.grad = None
        (F.silu(a) * b).backward(dh)
elif case == "rope":
    x, pos = L("x"), L("pos").long()
    d = x.shape[-1]
    def rot(v, cos, sin):
        h = d // 2
        return v * cos + torch.cat([-v[..., h:], v[..., :h]], -1) * sin
    def fn():
        inv = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
        ang = (pos.double()[:, None] * inv[None, :])
        cos = torch.cat([ang.cos(), ang.cos()], -1).float()[:, None, :]
        sin = torch.cat([ang.sin(), ang.sin()], -1).float()[:, None, :]
        y = rot(x, cos, sin)
        rot(y, cos, -sin)
elif case == "cross_entropy":
    l, t = L("logits").requires_grad_(), L("targets").long()
    def fn():
        l.grad = None
        F.cross_entropy(l, t, ignore_index=-1).backward()
elif case == "embedding":
    table, ids, dout = L("table").requires_grad_(), L("ids").long(), L("dout")
    def fn():
        table.grad = None
        F.embedding(ids, table).backward(dout)
elif case == "adamw":
    p = L("p").clone().requires_grad_()
    p.grad = L("g")
    opt = torch.optim.AdamW([p], lr=1e-3, weight_decay=0.1)
    def fn():
        opt.step()
else:
    raise SystemExit(f"unknown case {case}")

with torch.no_grad() if case == "adamw" else torch.enable_grad():
    emit(time_it(fn, reps=spec.get("reps", 5)))
