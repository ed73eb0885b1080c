"""Prints the PyTorch version, the BLAS its CPU matmuls run on and that library's
path (from the process's mappings after one matmul: Debian's torch links the
generic libblas.so.3, which update-alternatives points at the reference BLAS,
OpenBLAS or another), and the BLAS_INFO of torch.__config__.show()."""
import json
import re

import torch

torch.ones(64, 64) @ torch.ones(64, 64)
blas, path = "unknown", None
with open("/proc/self/maps") as f:
    libs = sorted({line.split()[-1] for line in f if ".so" in line and "/" in line})
for lib in libs:
    name = lib.lower()
    if "openblas" in name:
        blas, path = "openblas", lib
        break
    if "libmkl" in name:
        blas, path = "mkl", lib
        break
    if "blis" in name:
        blas, path = "blis", lib
        break
    if "/blas/libblas" in name or name.endswith("/libblas.so.3"):
        blas, path = "reference-blas", lib
m = re.search(r"BLAS_INFO=([^,\s]+)", torch.__config__.show())
print(json.dumps({"torch": torch.__version__, "blas": blas, "blasPath": path,
                  "blasInfo": m.group(1) if m else None, "threads": torch.get_num_threads()}))
