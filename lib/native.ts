// Finds and loads the native addon.
//
// Order: VP_ADDON_PATH (explicit), a local build (build-native/ from cmake-js,
// build/ from node-gyp: contributors), then prebuilds/<platform>-<arch>/: the
// CUDA binary when a CUDA driver library is present and the binary loads, else
// the CPU binary. A binary whose abiVersion is not ADDON_ABI_VERSION (built from
// other sources) is skipped with that reason. When nothing loads, the error lists
// every path tried and why. What the addon exports is typed in lib/addon-types.ts.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Addon, AddonLimits } from './addon-types.js';
import { pinLocalGpu } from './launch.js';

const require = createRequire(import.meta.url);

/** The package root (this file is lib/native.ts or dist/native.js). */
export const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export interface LoadAttempt {
  path: string;
  kind: 'env' | 'local' | 'prebuild-cuda' | 'prebuild-cpu';
  ok: boolean;
  reason?: string;
}

/** The seam version this TypeScript expects (native/addon/module.cpp sets the addon's). */
export const ADDON_ABI_VERSION = 2;

export interface LoadedAddon {
  /** The addon's functions, constants and classes. */
  binding: Addon;
  path: string;
  kind: LoadAttempt['kind'];
  attempts: LoadAttempt[];
}

/** Whether a CUDA driver library can be found (what a CUDA binary needs at run time). */
export function cudaDriverPresent(): { present: boolean; reason: string } {
  const dirs = [
    '/usr/lib/x86_64-linux-gnu', '/usr/lib64', '/usr/lib', '/usr/local/nvidia/lib64',
    '/usr/local/cuda/compat', '/usr/lib/wsl/lib',
    ...(process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean),
  ];
  for (const d of dirs) {
    if (existsSync(join(d, 'libcuda.so.1'))) return { present: true, reason: `found ${join(d, 'libcuda.so.1')}` };
  }
  return { present: false, reason: 'no CUDA driver library (libcuda.so.1) was found' };
}

let loaded: LoadedAddon | undefined;

export function loadAddon(): LoadedAddon {
  if (loaded) return loaded;
  pinLocalGpu(); // before CUDA starts: one GPU per local rank of a distributed launch
  const attempts: LoadAttempt[] = [];
  const tryLoad = (path: string, kind: LoadAttempt['kind']): Addon | undefined => {
    if (!existsSync(path)) {
      attempts.push({ path, kind, ok: false, reason: 'not found' });
      return undefined;
    }
    try {
      const b = require(path) as Addon;
      if (b.abiVersion !== ADDON_ABI_VERSION) {
        attempts.push({ path, kind, ok: false, reason: `abiVersion ${String(b.abiVersion)}, expected ${ADDON_ABI_VERSION} (a binary built from other sources; rebuild it)` });
        return undefined;
      }
      attempts.push({ path, kind, ok: true });
      return b;
    } catch (e) {
      attempts.push({ path, kind, ok: false, reason: (e as Error).message.split('\n')[0] });
      return undefined;
    }
  };
  const candidates: Array<[string, LoadAttempt['kind']]> = [];
  if (process.env.VP_ADDON_PATH) candidates.push([resolve(process.env.VP_ADDON_PATH), 'env']);
  candidates.push([join(packageRoot, 'build-native', 'Release', 'videoperceiver.node'), 'local']);
  candidates.push([join(packageRoot, 'build', 'Release', 'videoperceiver.node'), 'local']);
  const pre = join(packageRoot, 'prebuilds', `${process.platform}-${process.arch}`);
  const driver = cudaDriverPresent();
  if (driver.present) {
    candidates.push([join(pre, 'videoperceiver-cuda.node'), 'prebuild-cuda']);
  } else if (existsSync(join(pre, 'videoperceiver-cuda.node'))) {
    attempts.push({ path: join(pre, 'videoperceiver-cuda.node'), kind: 'prebuild-cuda', ok: false, reason: `skipped: ${driver.reason}` });
  }
  candidates.push([join(pre, 'videoperceiver.node'), 'prebuild-cpu']);
  for (const [path, kind] of candidates) {
    const b = tryLoad(path, kind);
    if (b) {
      loaded = { binding: b, path, kind, attempts };
      return loaded;
    }
  }
  const lines = attempts.map((a) => `  - ${a.path} (${a.kind}): ${a.reason}`).join('\n');
  throw new Error(
    `videoperceiver: could not load the native addon. Tried:\n${lines}\n` +
      `Build it from source with \`npx videoperceiver build\` (needs CMake and a C++20 compiler), ` +
      `or in a checkout: \`npm run build:native\` (or \`npm run build:gyp\` for the CPU-only node-gyp build).`,
  );
}

/** The loaded addon's functions (loads on first use). */
export function native(): Addon {
  return loadAddon().binding;
}

/** The core's limits (loads the addon on first use): what the TypeScript validation checks against. */
export function limits(): AddonLimits {
  return loadAddon().binding.limits;
}
