"""Shared by the PyTorch peers: read the JSON spec from stdin, load the inputs
the TypeScript side wrote, time a function (warm-up, median), report peak RSS."""
import json
import resource
import sys
import time

import numpy as np
import torch


def read_spec():
    spec = json.loads(sys.stdin.read())
    torch.set_num_threads(int(spec.get("threads", 1)))
    return spec


def load(spec, name):
    s = spec["inputs"][name]
    arr = np.fromfile(s["path"], dtype=np.float32 if s["dtype"] == "float32" else np.int32)
    return torch.from_numpy(arr.reshape(s["shape"]))


def time_it(fn, warmup=2, reps=5, min_ms=200.0):
    for _ in range(warmup):
        fn()
    samples = []
    start = time.perf_counter()
    while len(samples) < reps or ((time.perf_counter() - start) * 1e3 < min_ms and len(samples) < 200):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    samples.sort()
    return {"medianMs": samples[len(samples) // 2], "minMs": samples[0], "reps": len(samples)}


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _status_kb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return None


def status_mb(key):
    """A /proc/self/status field ("VmRSS:", "VmHWM:") in MB."""
    return _status_kb(key) / 1024.0


def call_peak_mb(fn):
    """Runs fn() once and returns (its result, the peak resident memory while it
    ran above what was resident before, in MB; None where /proc cannot tell)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # the peak (VmHWM) restarts from the current resident size
        base = _status_kb("VmRSS:")
    except OSError:
        return fn(), None
    out = fn()
    peak = _status_kb("VmHWM:")
    return out, (peak - base) / 1024.0 if peak is not None and base is not None else None


def emit(obj):
    print(json.dumps(obj), flush=True)


def emit_train_steps(step, reps, trainable):
    """The pretrained-model peers' measurement, as their TypeScript side takes it: the resident
    memory with the weights loaded, the peak (VmHWM) restarted from there, one warm-up call of
    step() (which returns the loss: the first one is compared with ours), `reps` timed calls
    (their median wall time, and the process's CPU time per call)."""
    weights_mb = status_mb("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    loss0 = step()
    c0 = time.process_time()
    r = time_it(step, warmup=0, reps=reps, min_ms=0)
    # CPU time of every thread per step: less sensitive than wall time to a shared machine's load.
    cpu_ms = (time.process_time() - c0) * 1e3 / r["reps"]
    r.update(loss0=loss0, weightsMB=weights_mb, peakMB=status_mb("VmHWM:"), trainable=trainable, cpuMs=cpu_ms)
    emit(r)
