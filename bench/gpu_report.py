"""Joins our native benchmark lines with the PyTorch peer lines (same bench,
case and dtype) and prints a table plus one JSON line per case with the ratio
(peer time / our time; > 1 means we are faster)."""
import json
import sys

ours, peers = [], {}
with open(sys.argv[1]) as f:
    for line in f:
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        if "error" in r:
            print(f"ERROR {r}")
        elif r.get("peer"):
            peers[(r["bench"], r["case"], r["dtype"])] = r
        else:
            ours.append(r)

print(f"{'bench':<10} {'case':<34} {'dtype':<9} {'ours ms':>10} {'torch ms':>10} {'ratio':>7}")
for r in ours:
    p = peers.get((r["bench"], r["case"], r["dtype"]))
    peer_ms = p.get("ms") if p else None
    ratio = peer_ms / r["ms"] if peer_ms else None
    note = "" if p and "ms" in p else f"  peer missing: {p.get('missing') if p else 'no peer'}"
    print(f"{r['bench']:<10} {r['case']:<34} {r['dtype']:<9} {r['ms']:>10.4f} {peer_ms if peer_ms else float('nan'):>10.4f} "
          f"{ratio if ratio else float('nan'):>7.2f}{note}")
for r in ours:
    p = peers.get((r["bench"], r["case"], r["dtype"]))
    peer_ms = p.get("ms") if p else None
    print(json.dumps({**r, "peerMs": peer_ms, "ratio": (peer_ms / r["ms"]) if peer_ms else None,
                      "peerMissing": None if peer_ms else (p.get("missing") if p else "no peer")}))
