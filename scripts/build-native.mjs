#!/usr/bin/env node
// Builds the native addon with cmake-js into build-native/ (and, when doctest is
// installed, the native tests in the same tree, so `npm test` reuses the core).
//   VP_CUDA=auto|on|off   (default auto: on when nvcc is found)
//   VP_BUILD_TYPE=Release|Debug
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpus } from 'node:os';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cuda = (process.env.VP_CUDA ?? 'auto').toLowerCase();
if (!['auto', 'on', 'off'].includes(cuda)) {
  console.error(`VP_CUDA must be auto, on or off (got '${process.env.VP_CUDA}')`);
  process.exit(2);
}
// In a checkout cmake-js is a devDependency; in an installed package (a user
// building from source: `npx videoperceiver build`) it is fetched by npx.
const localCmakeJs = join(root, 'node_modules', 'cmake-js', 'bin', 'cmake-js');
const [cmd, pre] = existsSync(localCmakeJs)
  ? [process.execPath, [localCmakeJs]]
  : ['npx', ['--yes', 'cmake-js@8']];
const args = [
  ...pre, 'build', '--out', 'build-native', '--parallel', String(Math.max(1, cpus().length)),
  `--CDVP_CUDA=${cuda}`, `--config`, process.env.VP_BUILD_TYPE ?? 'Release',
];
if (process.env.VP_CMAKE_GENERATOR) args.push('-G', process.env.VP_CMAKE_GENERATOR);
else if (spawnSync('ninja', ['--version']).status === 0) args.push('-G', 'Ninja');
// A configure that failed earlier leaves a cache but no build files, and cmake-js
// would then skip configuring: start such a tree afresh.
const out = join(root, 'build-native');
if (existsSync(join(out, 'CMakeCache.txt')) && !existsSync(join(out, 'build.ninja')) && !existsSync(join(out, 'Makefile'))) {
  rmSync(out, { recursive: true, force: true });
}
console.log(`[videoperceiver] building the native addon (VP_CUDA=${cuda})`);
const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
