#!/usr/bin/env node
// Builds the native addon with cmake-js into build-native/ (and, when doctest is
// installed, the native tests in the same tree, so `npm test` reuses the core).
//   VP_CUDA=auto|on|off   (default auto: on when nvcc is found)
//   VP_BUILD_TYPE=Release|Debug
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpus } from 'node:os';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cuda = (process.env.VP_CUDA ?? 'auto').toLowerCase();
if (!['auto', 'on', 'off'].includes(cuda)) {
  console.error(`VP_CUDA must be auto, on or off (got '${process.env.VP_CUDA}')`);
  process.exit(2);
}
const cmakeJs = join(root, 'node_modules', 'cmake-js', 'bin', 'cmake-js');
if (!existsSync(cmakeJs)) {
  console.error('cmake-js is not installed: run `npm install` in the package checkout first');
  process.exit(2);
}
const args = [
  cmakeJs, 'build', '--out', 'build-native', '--parallel', String(Math.max(1, cpus().length)),
  `--CDVP_CUDA=${cuda}`, `--config`, process.env.VP_BUILD_TYPE ?? 'Release',
];
if (process.env.VP_CMAKE_GENERATOR) args.push('-G', process.env.VP_CMAKE_GENERATOR);
else if (spawnSync('ninja', ['--version']).status === 0) args.push('-G', 'Ninja');
console.log(`[videoperceiver] building the native addon (VP_CUDA=${cuda})`);
const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
