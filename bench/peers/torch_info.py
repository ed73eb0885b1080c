"""Prints the PyTorch version and the BLAS library it runs on (from the process's mappings)."""
import json

import torch

torch.ones(4, 4) @ torch.ones(4, 4)
blas = "unknown"
with open("/proc/self/maps") as f:
    for line in f:
        if "openblas" in line:
            blas = "openblas"
            break
        if "libmkl" in line:
            blas = "mkl"
            break
        if "/blas/libblas" in line:
            blas = "reference-blas"
print(json.dumps({"torch": torch.__version__, "blas": blas, "threads": torch.get_num_threads()}))
