// How this process was started: by mpirun (Open MPI sets OMPI_COMM_WORLD_*),
// by srun with PMIx (SLURM_* and PMIX_RANK), by a torchrun-style launcher
// (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), or by none. Pure
// environment reading, no native code: lib/native.ts calls pinLocalGpu()
// before the addon loads (the core uses CUDA device 0, so each local rank must
// see its own GPU as device 0), lib/distributed.ts the rest.
import { readdirSync } from 'node:fs';

export interface Launch {
  /** 'mpi': MPI tells rank and size; 'env': torchrun-style variables (NCCL only); null: no launcher. */
  launcher: 'mpi' | 'env' | null;
  rank: number;
  size: number;
  localRank: number;
  /** Processes of this job on this machine (when the launcher says). */
  localSize?: number;
  masterAddr?: string;
  masterPort?: number;
  /** Which variables decided it, for messages. */
  source: string;
}

type Env = Record<string, string | undefined>;

function int(env: Env, name: string, min: number): number | undefined {
  const v = env[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min) throw new RangeError(`distributed launch: ${name} must be an integer >= ${min}, got ${JSON.stringify(v)}`);
  return n;
}

/** Reads the launcher's variables; throws a RangeError naming the variable when one is malformed. */
export function detectLaunch(env: Env = process.env): Launch {
  const ompiSize = int(env, 'OMPI_COMM_WORLD_SIZE', 1);
  if (ompiSize !== undefined) {
    const rank = int(env, 'OMPI_COMM_WORLD_RANK', 0) ?? 0;
    if (rank >= ompiSize) throw new RangeError(`distributed launch: OMPI_COMM_WORLD_RANK must be < OMPI_COMM_WORLD_SIZE=${ompiSize}, got ${rank}`);
    return {
      launcher: 'mpi', rank, size: ompiSize,
      localRank: int(env, 'OMPI_COMM_WORLD_LOCAL_RANK', 0) ?? 0, localSize: int(env, 'OMPI_COMM_WORLD_LOCAL_SIZE', 1),
      source: `mpirun (OMPI_COMM_WORLD_SIZE=${ompiSize})`,
    };
  }
  const slurmSize = int(env, 'SLURM_NTASKS', 1);
  if (slurmSize !== undefined && env.PMIX_RANK !== undefined) {
    const rank = int(env, 'SLURM_PROCID', 0) ?? 0;
    if (rank >= slurmSize) throw new RangeError(`distributed launch: SLURM_PROCID must be < SLURM_NTASKS=${slurmSize}, got ${rank}`);
    return {
      launcher: 'mpi', rank, size: slurmSize, localRank: int(env, 'SLURM_LOCALID', 0) ?? 0,
      source: `srun with PMIx (SLURM_NTASKS=${slurmSize})`,
    };
  }
  const worldSize = int(env, 'WORLD_SIZE', 1);
  if (worldSize !== undefined) {
    const rank = int(env, 'RANK', 0);
    if (rank === undefined) throw new RangeError('distributed launch: WORLD_SIZE is set but RANK is not');
    if (rank >= worldSize) throw new RangeError(`distributed launch: RANK must be < WORLD_SIZE=${worldSize}, got ${rank}`);
    let masterPort = int(env, 'MASTER_PORT', 1);
    const masterAddr = env.MASTER_ADDR;
    if (worldSize > 1 && (!masterAddr || masterPort === undefined))
      throw new RangeError(`distributed launch: WORLD_SIZE=${worldSize} needs MASTER_ADDR and MASTER_PORT (where rank 0 hands out the NCCL id)`);
    // Under torchrun the agent's own store listens on MASTER_PORT: the id goes over the next port.
    if (masterPort !== undefined && env.TORCHELASTIC_USE_AGENT_STORE === 'True') masterPort += 1;
    if (masterPort !== undefined && masterPort > 65535) throw new RangeError(`distributed launch: MASTER_PORT must be <= 65535 (65534 under torchrun), got ${env.MASTER_PORT}`);
    return {
      launcher: 'env', rank, size: worldSize, localRank: int(env, 'LOCAL_RANK', 0) ?? rank,
      localSize: int(env, 'LOCAL_WORLD_SIZE', 1), masterAddr, masterPort,
      source: `torchrun-style variables (WORLD_SIZE=${worldSize})`,
    };
  }
  return { launcher: null, rank: 0, size: 1, localRank: 0, source: 'no OMPI_COMM_WORLD_SIZE (mpirun), SLURM_NTASKS with PMIx (srun) or WORLD_SIZE (torchrun) in the environment' };
}

/**
 * One GPU per local rank: narrows CUDA_VISIBLE_DEVICES to the local rank's
 * device (entry localRank mod the listed devices, or of /dev/nvidiaN when
 * unset) before CUDA starts. Nothing changes outside a launch, with one local
 * process, or with VP_DIST_GPU=all. Returns the value set, if any.
 */
export function pinLocalGpu(env: Env = process.env): string | undefined {
  if (env.VP_DIST_GPU === 'all') return undefined;
  let l: Launch;
  try {
    l = detectLaunch(env);
  } catch {
    return undefined; // reported by distributedInfo()
  }
  if (l.launcher === null || l.localSize === 1) return undefined;
  let devices: string[];
  const listed = env.CUDA_VISIBLE_DEVICES;
  if (listed !== undefined) devices = listed.split(',').map((s) => s.trim()).filter(Boolean);
  else {
    try {
      devices = readdirSync('/dev').filter((f) => /^nvidia\d+$/.test(f)).map((f) => f.slice(6)).sort((a, b) => Number(a) - Number(b));
    } catch {
      devices = [];
    }
  }
  if (devices.length <= 1) return undefined;
  const pick = devices[l.localRank % devices.length];
  env.CUDA_VISIBLE_DEVICES = pick;
  return pick;
}
