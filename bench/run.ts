// npm run bench [-- <filter>...] [--quick] [--json] [--save]: runs bench/<name>.ts for
// every name that matches a filter (all when none), each against its peer in
// the same run.
import { existsSync, readdirSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { benchDir, machineInfo, makeContext, PYTHON } from './harness.js';
import { saveRun } from './report.js';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const json = args.includes('--json');
// --save: write bench/results/<date>-<machine>.json and regenerate docs/benchmarks.md
const save = args.includes('--save');
// Filters: positional names or --filter <name> (repeatable); substring match.
const filters: string[] = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--filter') filters.push(args[++i] ?? '');
  else if (args[i].startsWith('--filter=')) filters.push(args[i].slice('--filter='.length));
  else if (!args[i].startsWith('--') && args[i - 1] !== '--filter') filters.push(args[i]);
}
const all = readdirSync(benchDir)
  .filter((f) => f.endsWith('.ts') && !['harness.ts', 'run.ts'].includes(f))
  .map((f) => f.replace(/\.ts$/, ''))
  .sort();
const selected = filters.length ? all.filter((n) => filters.some((f) => n.includes(f))) : all;
if (!selected.length) {
  console.error(`no benchmark matches ${filters.join(', ')}; available: ${all.join(', ')}`);
  process.exit(2);
}
const loadAtStart = loadavg();
// PyTorch on the reference BLAS (a fresh Debian machine without libopenblas0-pthread:
// update-alternatives then points libblas.so.3 at it) is several times slower than
// it need be, and every ratio against it would be inflated: refuse to run.
const mi = machineInfo();
if (mi.blas === 'reference-blas') {
  console.error(`PyTorch (${PYTHON}) runs its matmuls on the reference BLAS (${String(mi.blasPath)}), ` +
    'which no user would benchmark against: install OpenBLAS (apt-get install libopenblas0-pthread; ' +
    'update-alternatives then selects it) and run the bench again.');
  process.exit(3);
}
const ctx = makeContext({ quick, json });
if (!json) {
  console.log(`machine: ${JSON.stringify(mi)}`);
  const c = ctx.ceilings();
  console.log(c.missing
    ? `ceilings: not measured (${c.missing}); memory-bound rows fall back to one JS thread's copy`
    : `ceilings (every core, ${c.threads} threads, ${c.isa}): FMA peak ${c.fmaGflops} GFLOP/s, ` +
      `bandwidth ${c.bandwidthGBs} GB/s (copy ${c.copyGBs}, triad ${c.triadGBs})`);
}
for (const name of selected) {
  const path = join(benchDir, `${name}.ts`);
  if (!existsSync(path)) continue;
  const mod = (await import(path)) as { run?: (c: typeof ctx) => Promise<void> };
  if (typeof mod.run !== 'function') continue;
  const t0 = performance.now();
  await mod.run(ctx);
  if (!json) console.log(`${name}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}
// A peer that could not run is reported, never skipped silently: list them last.
const missing = ctx.results.filter((r) => r.ratio === null);
if (!json) {
  console.log(`${ctx.results.length} cases, ${ctx.results.length - missing.length} with a peer ratio` +
    (missing.length ? `; peer missing in ${missing.length}:` : ''));
  for (const r of missing) console.log(`  ${r.bench} / ${r.case}: ${r.peerMissing ?? 'no reason given'}`);
}
if (save) {
  const path = saveRun({
    date: new Date().toISOString(),
    command: `npm run bench -- ${args.join(' ')}`.trim(),
    machine: machineInfo(),
    ceilings: { sgemmGflops: await ctx.sgemmGflops(), copyGBs: await ctx.copyGBs(), ...ctx.ceilings() },
    results: ctx.results,
    // The 1/5/15-minute load averages: a shared machine's load shows in every number.
    loadAverage: { start: loadAtStart.map((x) => +x.toFixed(2)), end: loadavg().map((x) => +x.toFixed(2)) },
    ...(filters.length ? { partial: selected } : {}),
  });
  console.log(`saved ${path} and docs/benchmarks.md`);
}
