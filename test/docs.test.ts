// docs/architecture.md is the map of the code: every file or folder path it
// names (in backticks) exists in the checkout.
import test from 'ava';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

test('every path that docs/architecture.md names exists', (t) => {
  const text = readFileSync(join(root, 'docs', 'architecture.md'), 'utf8');
  const paths = new Set<string>();
  for (const m of text.matchAll(/`([^`\s]+)`/g)) {
    const p = m[1].replace(/[),.:;]+$/, '');
    // Paths of the repository: a top-level folder followed by a name; globs and placeholders are skipped.
    if (!/^(lib|native|cuda|bench|test|docs|scripts|examples)\//.test(p) || /[<>*]/.test(p)) continue;
    paths.add(p);
  }
  t.true(paths.size > 40, `found ${paths.size} paths`);
  const missing = [...paths].filter((p) => !existsSync(join(root, p)));
  t.deepEqual(missing, []);
});
