#!/usr/bin/env node
// The fallback build: node-gyp, CPU only, offline (--nodedir points at the
// running Node's own headers so node-gyp downloads nothing).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpus } from 'node:os';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const nodedir = process.env.VP_NODEDIR ?? resolve(dirname(process.execPath), '..');
if (!existsSync(join(nodedir, 'include', 'node', 'node_api.h'))) {
  console.error(`node-gyp needs Node's headers under ${nodedir}/include/node; set VP_NODEDIR to a Node install prefix that has them`);
  process.exit(2);
}
const gyp = join(root, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
const r = spawnSync(process.execPath, [gyp, 'rebuild', `--nodedir=${nodedir}`, '-j', String(cpus().length)], {
  cwd: root, stdio: 'inherit',
});
process.exit(r.status ?? 1);
