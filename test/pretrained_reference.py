"""Float64 reference of Hugging Face's LlamaForCausalLM / Qwen2ForCausalLM
(the formulas of transformers' modeling_llama.py and modeling_qwen2.py), in
NumPy only, reading a model folder with its own safetensors reader.

stdin: a JSON spec (test/pretrained-fixtures.ts, ReferenceSpec):
  mode "logits":    {"logits": [per sequence, flattened T x vocab]}
  mode "objective": J = gradLoss * mean(-log p(target)) + sum(w * log p(target))
                        + sum(coef * hidden after `tap.layer` layers at tap.rows);
                    with "directions": central finite differences of J along each
                    direction (float64, h), {"objective": J, "fd": [...]}.
A PEFT adapter folder ("adapter") is applied as W + s * B @ A; finite-difference
directions may cover its lora_A / lora_B tensors too.
"""
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench", "peers"))
from read_safetensors import read_arrays as read_safetensors  # noqa: E402  (json + NumPy, independent of the package)


def read_folder(d):
    cfg = json.load(open(os.path.join(d, "config.json")))
    idx = os.path.join(d, "model.safetensors.index.json")
    w = {}
    if os.path.exists(idx):
        for f in sorted(set(json.load(open(idx))["weight_map"].values())):
            w.update(read_safetensors(os.path.join(d, f)))
    else:
        w.update(read_safetensors(os.path.join(d, "model.safetensors")))
    return cfg, w


def read_adapter(d):
    """PEFT adapter: ({module.lora_A.weight: A, module.lora_B.weight: B}, scale)."""
    ac = json.load(open(os.path.join(d, "adapter_config.json")))
    t = read_safetensors(os.path.join(d, "adapter_model.safetensors"))
    r, alpha = ac["r"], ac["lora_alpha"]
    s = alpha / math.sqrt(r) if ac.get("use_rslora") else alpha / r
    return {name[len("base_model.model."):]: v for name, v in t.items()}, s


def merged(w, lora):
    """W + s * B @ A for every adapter."""
    if lora is None:
        return w
    t, s = lora
    w = dict(w)
    for name in t:
        if name.endswith(".lora_A.weight"):
            mod = name[:-len(".lora_A.weight")]
            w[mod + ".weight"] = w[mod + ".weight"] + s * (t[mod + ".lora_B.weight"] @ t[name])
    return w


def inv_freq(cfg, head_dim):
    rs = cfg.get("rope_scaling") or {}
    base = cfg.get("rope_theta", 10000.0)
    inv = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    kind = rs.get("rope_type", rs.get("type", "default"))
    if kind == "linear":
        inv = inv / rs["factor"]
    elif kind == "llama3":
        factor, lo, hi, old = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
        low_wl, high_wl = old / lo, old / hi
        wl = 2 * math.pi / inv
        scaled = np.where(wl > low_wl, inv / factor, inv)
        smooth = (old / wl - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wl >= high_wl) & (wl <= low_wl)
        inv = np.where(medium, smoothed, scaled)
    return inv


def rms_norm(x, w, eps):
    return w * (x / np.sqrt((x * x).mean(-1, keepdims=True) + eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def linear(x, w, name):
    y = x @ w[name + ".weight"].T
    if name + ".bias" in w:
        y = y + w[name + ".bias"]
    return y


def forward(cfg, w, ids, tap_layer=None):
    """Logits [T, V] of one sequence, and the hidden states after tap_layer layers."""
    H, D_model = cfg["num_attention_heads"], cfg["hidden_size"]
    Hkv = cfg.get("num_key_value_heads", H)
    hd = cfg.get("head_dim") or D_model // H
    eps = cfg.get("rms_norm_eps", 1e-6)
    T = len(ids)
    x = w["model.embed_tokens.weight"][np.array(ids)]
    inv = inv_freq(cfg, hd)
    freqs = np.arange(T, dtype=np.float64)[:, None] * inv[None, :]
    emb = np.concatenate([freqs, freqs], axis=-1)
    cos, sin = np.cos(emb)[:, None, :], np.sin(emb)[:, None, :]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    tap = None
    for l in range(cfg["num_hidden_layers"]):
        if tap_layer == l:
            tap = x.copy()
        p = "model.layers.%d." % l
        a = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = linear(a, w, p + "self_attn.q_proj").reshape(T, H, hd)
        k = linear(a, w, p + "self_attn.k_proj").reshape(T, Hkv, hd)
        v = linear(a, w, p + "self_attn.v_proj").reshape(T, Hkv, hd)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = H // Hkv
        k = np.repeat(k, rep, axis=1)  # repeat_kv: head h reads kv head h // rep
        v = np.repeat(v, rep, axis=1)
        s = np.einsum("thd,uhd->htu", q, k) / math.sqrt(hd) + mask[None]
        s = s - s.max(-1, keepdims=True)
        pr = np.exp(s)
        pr = pr / pr.sum(-1, keepdims=True)
        o = np.einsum("htu,uhd->thd", pr, v).reshape(T, H * hd)
        x = x + linear(o, w, p + "self_attn.o_proj")
        m = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        g = linear(m, w, p + "mlp.gate_proj")
        act = g / (1 + np.exp(-g))
        x = x + linear(act * linear(m, w, p + "mlp.up_proj"), w, p + "mlp.down_proj")
    if tap_layer == cfg["num_hidden_layers"]:
        tap = x.copy()
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    return x @ head.T, tap


def log_softmax(z):
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def objective(cfg, w, spec):
    tap = spec.get("tap")
    total, count, weighted, tapterm = 0.0, 0, 0.0, 0.0
    for si, ids in enumerate(spec["sequences"]):
        logits, hidden = forward(cfg, w, ids, tap["layer"] if tap else None)
        lp = log_softmax(logits)
        for t, tgt in enumerate(spec["targets"][si]):
            if tgt >= 0:
                total += -lp[t, tgt]
                count += 1
                if spec.get("weights"):
                    weighted += spec["weights"][si][t] * lp[t, tgt]
        if tap:
            for k, (s, r) in enumerate(tap["rows"]):
                if s == si:
                    tapterm += float(np.dot(np.array(tap["coef"][k * hidden.shape[1]:(k + 1) * hidden.shape[1]]), hidden[r]))
    return spec.get("gradLoss", 1.0) * (total / max(count, 1)) + weighted + tapterm


def main():
    spec = json.load(sys.stdin)
    cfg, w = read_folder(spec["dir"])
    lora = read_adapter(spec["adapter"]) if spec.get("adapter") else None
    if spec["mode"] == "logits":
        m = merged(w, lora)
        print(json.dumps({"logits": [forward(cfg, m, ids)[0].ravel().tolist() for ids in spec["sequences"]]}))
        return
    out = {"objective": objective(cfg, merged(w, lora), spec)}
    dirs = spec.get("directions")
    if dirs:
        total = sum(n for _, _, n in dirs["layout"])
        u = np.fromfile(dirs["file"], dtype="<f8").reshape(dirs["count"], total)
        h = dirs["h"]
        fd = []
        for k in range(dirs["count"]):
            vals = []
            for sign in (1, -1):
                w2 = dict(w)
                l2 = (dict(lora[0]), lora[1]) if lora else None
                for name, off, n in dirs["layout"]:
                    target = l2[0] if l2 and name in l2[0] else w2
                    target[name] = target[name] + sign * h * u[k, off:off + n].reshape(target[name].shape)
                vals.append(objective(cfg, merged(w2, l2), spec))
            fd.append((vals[0] - vals[1]) / (2 * h))
        out["fd"] = fd
    print(json.dumps(out))


if __name__ == "__main__":
    main()
