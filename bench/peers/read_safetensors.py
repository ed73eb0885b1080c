"""Independent safetensors reader (json + numpy only): prints {name: {dtype, shape, values}} as JSON;
read_arrays() gives NumPy arrays (the PyTorch peers and the pretrained-model reference use it)."""
import json, struct, sys
import numpy as np

DT = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "I32": "<i4", "U8": "u1", "I64": "<i8", "F64": "<f8"}

def read_arrays(path, dtype=np.float64):
    """{name: NumPy array of `dtype`} of a file's floating-point tensors (BF16 widened exactly;
    the peers ask for float32, which skips a float64 copy of every weight)."""
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    header.pop("__metadata__", None)
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        dt = np.dtype(DT[e["dtype"]])
        a = np.frombuffer(buf, dtype=dt, count=(end - b) // dt.itemsize, offset=8 + n + b)
        if e["dtype"] == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        out[name] = a.astype(dtype).reshape(e["shape"])
    return out


def read(path):
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    meta, out = header.pop("__metadata__", {}), {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        a = np.frombuffer(buf[8 + n + b:8 + n + end], dtype=DT[e["dtype"]]).reshape(e["shape"])
        if e["dtype"] == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        out[name] = {"dtype": e["dtype"], "shape": list(a.shape), "values": a.astype(np.float64).ravel().tolist()}
    return meta, out

if __name__ == "__main__":
    meta, tensors = read(sys.argv[1])
    print(json.dumps({"metadata": meta, "tensors": tensors}))
