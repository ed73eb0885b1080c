// Prints the C++ sources of the CPU-only build, one per line, for binding.gyp.
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dirs = ['native/core', 'native/cpu', 'native/addon'];
const files = dirs.flatMap((d) =>
  readdirSync(join(root, d)).filter((f) => f.endsWith('.cpp')).sort().map((f) => `${d}/${f}`),
);
console.log(files.join('\n'));
