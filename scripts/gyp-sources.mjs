// Prints the C++ sources of the CPU-only build, one per line, for binding.gyp.
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// Every C++ source of the core and the addon, CPU only (the *_no_cuda.cpp stand-ins
// for cuda/ included); CMakeLists.txt globs the same folders.
const dirs = ['native/core', 'native/ops', 'native/model', 'native/addon'];
const walk = (d) => readdirSync(join(root, d), { withFileTypes: true }).flatMap((e) =>
  e.isDirectory() ? walk(`${d}/${e.name}`) : e.name.endsWith('.cpp') ? [`${d}/${e.name}`] : []);
const files = dirs.flatMap((d) => walk(d).sort());
console.log(files.join('\n'));
