// One binary, three SIMD paths: VP_ISA=generic|avx2|avx512 must give the same
// results within float32 tolerance. Each path runs in its own process (the ISA
// is chosen at load), on the same inputs, and reports what it ran.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as vp from '../lib/index.js';
import { relError } from './helpers.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

const script = `
  import * as vp from './lib/index.ts';
  import { randomFloats } from './test/helpers.ts';
  const a = vp.tensor(randomFloats(97 * 131, 1), [97, 131]);
  const b = vp.tensor(randomFloats(131 * 203, 2), [131, 203]);
  const c = vp.matmul(a, b, {});
  const ct = vp.matmul(b, a, { transA: true, transB: true });
  console.log(JSON.stringify({ isa: vp.backendInfo().cpu.isa, c: Array.from(c.data), ct: Array.from(ct.data) }));
`;

function runWith(isa: string): { isa: string; c: number[]; ct: number[] } {
  const r = spawnSync(process.execPath, ['--import=tsx', '--input-type=module', '-e', script], {
    cwd: root, encoding: 'utf8', env: { ...process.env, VP_ISA: isa }, maxBuffer: 1 << 26,
  });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

test('VP_ISA=generic|avx2|avx512 give the same results within tolerance', (t) => {
  const best = vp.backendInfo().cpu.bestIsa;
  const isas = best === 'avx512' ? ['generic', 'avx2', 'avx512'] : best === 'avx2' ? ['generic', 'avx2'] : ['generic'];
  const results = isas.map(runWith);
  results.forEach((r, i) => t.is(r.isa, isas[i], `VP_ISA=${isas[i]} runs that path`));
  for (const r of results.slice(1)) {
    t.true(relError(r.c, results[0].c) <= 1e-6, `${r.isa} vs generic (matmul)`);
    t.true(relError(r.ct, results[0].ct) <= 1e-6, `${r.isa} vs generic (transposed matmul)`);
  }
});

test('VP_ISA asking for an unknown or unsupported path falls back and says why', (t) => {
  const r = spawnSync(process.execPath, ['--import=tsx', '--input-type=module', '-e',
    `import * as vp from './lib/index.ts'; console.log(JSON.stringify(vp.backendInfo().cpu));`], {
    cwd: root, encoding: 'utf8', env: { ...process.env, VP_ISA: 'sse9' },
  });
  t.is(r.status, 0, r.stderr);
  const cpu = JSON.parse(r.stdout.trim());
  t.is(cpu.isa, cpu.bestIsa);
  t.regex(cpu.isaReason, /VP_ISA=sse9 is not one of/);
});
