"""PyTorch CPU peer of bench/gemm.ts: C = A @ B on the same inputs."""
from common import emit, load, read_spec, time_it

spec = read_spec()
a, b = load(spec, "a"), load(spec, "b")
t = time_it(lambda: a @ b, warmup=spec.get("warmup", 2), reps=spec.get("reps", 5))
emit(t)
