// vp.backendInfo(): what runs where — the CPU ISA path and threads, the CUDA
// device (or null, with the reason), and which native binary was loaded.
import { loadAddon, native } from './native.js';

export interface BackendInfo {
  cpu: { isa: 'avx512' | 'avx2' | 'generic'; threads: number; bestIsa: string; isaReason: string };
  cuda: null | { device: string; computeCapability: string; memoryBytes: number };
  /** Why `cuda` is null (empty when CUDA is in use). */
  cudaReason: string;
  /** Whether the loaded binary contains the CUDA backend. */
  cudaCompiled: boolean;
  /** The loaded addon: its path and where it came from. */
  binary: { path: string; kind: string };
}

export function backendInfo(): BackendInfo {
  const addon = loadAddon();
  const raw = native().backendInfo();
  return {
    cpu: { isa: raw.cpu.isa, threads: raw.cpu.threads, bestIsa: raw.cpu.bestIsa, isaReason: raw.cpu.isaReason },
    cuda: raw.cuda.available
      ? { device: raw.cuda.device, computeCapability: raw.cuda.computeCapability, memoryBytes: raw.cuda.memoryBytes }
      : null,
    cudaReason: raw.cuda.available ? '' : raw.cuda.reason,
    cudaCompiled: raw.cuda.compiled,
    binary: { path: addon.path, kind: addon.kind },
  };
}

/** Sets the size of the core's CPU thread pool (default: VP_NUM_THREADS or the available cores). */
export function setNumThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`setNumThreads: n must be an integer >= 1, got ${n}`);
  native().setNumThreads(n);
}
