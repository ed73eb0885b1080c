"""The report of bench/gpu.sh: joins our native drivers' lines with the PyTorch
peers' lines (same bench, case and dtype) and prints one table plus one JSON
line per case; with --json FILE, writes the whole run (machine, build, tests,
cases, what was skipped or missing) as one JSON document.

ratio = primary peer time / our time (> 1: we are faster). A case whose peer
is missing shows why; nothing is left out silently. Train-step cases also show
tokens per second, and the first-step numbers of both sides (loss0; lp0, the
mean response log-prob, for rl), which must agree to 1e-3 (relative): the same
parameters must give the same model. Exit status 1 when a driver reported an
error, a peer is missing or failed, or the train-step numbers disagree.
Needs only the standard library (any python3).

  python3 bench/gpu_report.py RAW.jsonl [--json OUT.json]
"""
import argparse
import json
import sys


def fmt(x, w, p=3):
    return f"{x:>{w}.{p}f}" if isinstance(x, (int, float)) else f"{'n/a':>{w}}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("raw")
    ap.add_argument("--json", help="write the joined run here")
    args = ap.parse_args()
    meta, ours, skipped, errors, peer_status = {}, [], [], [], []
    peers = {}  # (bench, case, dtype) -> [peer lines], primary first
    with open(args.raw) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if "meta" in r:
                meta.update(r["meta"])
            elif "peerStatus" in r:
                peer_status.append(r)
            elif "peer" in r:
                peers.setdefault((r.get("bench"), r.get("case"), r.get("dtype")), []).append(r)
            elif "skipped" in r:
                skipped.append(r)
            elif "error" in r:
                errors.append(r)
            elif "ms" in r:
                ours.append(r)

    rows = []
    for r in ours:
        ps = peers.get((r["bench"], r["case"], r["dtype"]), [])
        timed = [p for p in ps if isinstance(p.get("ms"), (int, float))]
        primary = next((p for p in timed if p.get("primary")), timed[0] if timed else None)
        missing = "; ".join(p["missing"] for p in ps if "missing" in p) or (None if ps else "no peer line for this case")
        row = {k: v for k, v in r.items()}
        mismatch = None
        if r.get("bench") == "train_step" and primary:
            key = "lp0" if r.get("mode") == "rl" else "loss0"
            a, b = r.get(key), primary.get(key)
            if isinstance(a, (int, float)) and isinstance(b, (int, float)):
                if abs(a - b) > 1e-3 * max(abs(b), 1e-6):
                    mismatch = f"{key}: ours {a:.6g}, peer {b:.6g}"
            else:
                mismatch = f"{key} missing on one side"
        row.update({
            "mismatch": mismatch,
            "oursMs": r["ms"],
            "peer": primary["peer"] if primary else None,
            "peerMs": primary["ms"] if primary else None,
            "ratio": primary["ms"] / r["ms"] if primary and r["ms"] > 0 else None,
            "peerPeakMB": primary.get("peakMB") if primary else None,
            "otherPeers": [{"peer": p["peer"], "ms": p["ms"], "ratio": p["ms"] / r["ms"] if r["ms"] > 0 else None}
                           for p in timed if p is not primary],
            "peerMissing": None if primary else missing,
        })
        rows.append(row)

    gpu = meta.get("gpu") or next((r.get("gpu") for r in ours if r.get("gpu")), None)
    st = next((s for s in peer_status if s.get("peerStatus") == "ok"), peer_status[0] if peer_status else None)
    print(f"GPU: {gpu}   device: {meta.get('device')}   PyTorch: "
          f"{(st or {}).get('torch') or (st or {}).get('peerStatus') or 'no peer status line'}")
    print("ratio = peer time / our time (> 1: we are faster); times are medians, ms")
    if meta.get("device") == "cpu":
        print("--cpu: a check of the pipeline on small CPU shapes, not benchmark numbers (npm run bench has those)")
    print(f"{'bench':<9} {'case':<48} {'dtype':<8} {'ours':>10} {'peer':<26} {'peer ms':>10} {'ratio':>7}  also")
    for r in rows:
        also = ", ".join(f"{o['peer']} {o['ratio']:.2f}x" for o in r["otherPeers"] if o["ratio"])
        if r["peerMissing"]:
            also = f"peer missing: {r['peerMissing'][:120]}"
        elif r.get("tflops"):
            also = (also + ", " if also else "") + f"ours {r['tflops']:.1f} TFLOP/s"
        elif r.get("gbps"):
            also = (also + ", " if also else "") + f"ours {r['gbps']:.0f} GB/s"
        elif r.get("tokens") and not r["peerMissing"]:
            peer_tps = r["tokens"] / (r["peerMs"] / 1e3) if r.get("peerMs") else None
            also = f"tok/s ours {r['tokens'] / (r['oursMs'] / 1e3):.0f}" + (f" peer {peer_tps:.0f}" if peer_tps else "")
            also += f"; {r['mismatch']} MISMATCH" if r["mismatch"] else "; first-step numbers agree"
        print(f"{r['bench']:<9} {r['case'][:48]:<48} {r['dtype']:<8} {fmt(r['oursMs'], 10)} {(r['peer'] or '-')[:26]:<26} "
              f"{fmt(r['peerMs'], 10)} {fmt(r['ratio'], 7, 2)}  {also}")
    for r in rows:
        keys = ("bench", "case", "dtype", "device", "oursMs", "peer", "peerMs", "ratio", "peerMissing", "otherPeers",
                "tflops", "gbps", "gpu", "tokens", "tokPerS", "loss0", "lp0", "mismatch")
        print(json.dumps({k: r[k] for k in keys if k in r}))

    with_peer = sum(1 for r in rows if r["ratio"] is not None)
    missing = [r for r in rows if r["peerMissing"]]
    mismatched = [r for r in rows if r.get("mismatch")]
    print(f"\nsummary: {len(rows)} cases timed, {with_peer} with a peer ratio, {len(rows) - with_peer} with the peer missing; "
          f"{len(skipped)} driver runs skipped; {len(errors)} errors")
    for s in skipped:
        print(f"  skipped: {s.get('bench')} {s.get('device')} {s.get('dtype')}: {s['skipped']}")
    for e in errors:
        print(f"  ERROR: {e.get('bench')} {e.get('case', '')} {e.get('dtype', '')}: {e['error']}")
    for s in peer_status:
        if s.get("peerStatus") != "ok":
            print(f"  peers: {s['peerStatus']}")
    for r in missing:
        print(f"  PEER MISSING: {r['bench']} {r['case']} {r['dtype']}: {r['peerMissing']}")
    for r in mismatched:
        print(f"  MISMATCH: {r['bench']} {r['case']}: {r['mismatch']}")
    if meta.get("nativeTests"):
        rc = meta["nativeTests"].get("exitCode")
        print(f"  native tests: {'not run' if rc is None else ('passed' if rc == 0 else f'FAILED (exit code {rc})')}")
    if args.json:
        doc = {"meta": meta, "peerStatus": peer_status, "cases": rows, "skipped": skipped, "errors": errors}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        print(f"  wrote {args.json}")
    return 1 if errors or missing or mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
