// The npm package as a user gets it: pack the tarball (prebuilt binaries, no
// sources of tests or benches), install it into a fresh project with npm's
// default settings and no compilers on PATH, then use it from plain
// JavaScript (matmul, attention, InfoNCE, a tiny model's training steps) and
// from TypeScript, and ask `videoperceiver doctor` what loaded.
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const COMPILERS = new Set(['cc', 'c++', 'gcc', 'g++', 'clang', 'clang++', 'cmake', 'nvcc', 'make', 'ninja', 'ld']);

/** A PATH of symlinks to every program on the current PATH except compilers and build tools. */
function compilerFreePath(dir: string): string {
  mkdirSync(dir, { recursive: true });
  for (const p of (process.env.PATH ?? '').split(':')) {
    if (!p || !existsSync(p)) continue;
    for (const name of readdirSync(p)) {
      if (COMPILERS.has(name) || /^(g\+\+|gcc|clang|cc|c\+\+)(-|$)/.test(name) || /-g(cc|\+\+)(-\d+)?$/.test(name)) continue;
      const dest = join(dir, name);
      if (!existsSync(dest)) {
        try {
          symlinkSync(join(p, name), dest);
        } catch { /* races between duplicate names are harmless */ }
      }
    }
  }
  return dir;
}

test('the packed tarball installs without a compiler and works from JS, TS and the CLI', (t) => {
  const work = mkdtempSync(join(tmpdir(), 'vp-pack-'));
  try {
    // 1. Fresh prebuilt binaries and JS, then the tarball (scripts already ran).
    execFileSync(process.execPath, [join(root, 'scripts', 'prebuild.mjs')], { cwd: root, stdio: 'pipe' });
    execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: root });
    const packJson = execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: root, encoding: 'utf8' });
    const pack = JSON.parse(packJson)[0] as { filename: string; size: number; files: { path: string }[] };
    const tarball = join(work, pack.filename);
    t.true(statSync(tarball).size < 40 * 2 ** 20, `tarball is ${statSync(tarball).size} bytes`);
    const allowed = [/^dist\/.*\.(js|d\.ts)$/, /^prebuilds\/linux-x64\/(videoperceiver(-cuda)?\.node|manifest\.json)$/,
      /^native\/(include|core|ops|model|addon)\//, /^cuda\/[^/]+\.(cu|cuh|h)$/, /^(CMakeLists\.txt|binding\.gyp|package\.json|README\.md|LICENSE)$/,
      /^scripts\/(build-native|build-gyp|gyp-sources|prebuild)\.mjs$/];
    const unexpected = pack.files.map((f) => f.path).filter((p) => !allowed.some((re) => re.test(p)));
    t.deepEqual(unexpected, [], 'only what a user needs is packed');
    t.true(pack.files.some((f) => f.path === 'prebuilds/linux-x64/videoperceiver.node'));
    t.false(pack.files.some((f) => /(^|\/)(test|bench|build|build-[a-z]+)\//.test(f.path)));

    // 2. A fresh project, default npm settings, no compilers on PATH.
    const proj = join(work, 'app');
    mkdirSync(proj);
    writeFileSync(join(proj, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', type: 'module', private: true }));
    const env = { ...process.env, PATH: compilerFreePath(join(work, 'bin')), npm_config_ignore_scripts: undefined } as NodeJS.ProcessEnv;
    for (const k of Object.keys(env)) if (k.startsWith('npm_') || k === 'INIT_CWD') delete env[k];
    t.not(spawnSync('g++', ['--version'], { env }).status, 0, 'g++ is off PATH');
    const install = spawnSync('npm', ['install', '--no-audit', '--no-fund', tarball], { cwd: proj, env, encoding: 'utf8' });
    t.is(install.status, 0, install.stderr);

    // 3. Plain JavaScript.
    writeFileSync(join(proj, 'use.mjs'), `
      import * as vp from 'videoperceiver';
      const a = vp.tensor([1, 2, 3, 4, 5, 6], [2, 3]);
      const b = vp.tensor([1, 0, 0, 1, 1, 1], [3, 2]);
      const c = vp.matmul(a, b);
      let err = '';
      try { vp.matmul(a, a); } catch (e) { err = e.constructor.name; }
      // Fused attention: one query row that sees one key returns that key's value.
      const q = vp.tensor(new Float32Array(4).fill(1), [1, 1, 4]);
      const kv = vp.tensor([1, 2, 3, 4], [1, 1, 4]);
      const att = vp.attention(q, kv, kv);
      // Fused InfoNCE: two queries, each identical to its own key.
      const nce = vp.infoNce(vp.tensor([1, 0, 0, 1], [2, 2]), vp.tensor([1, 0, 0, 1], [2, 2]), { positive: Int32Array.from([0, 1]), temperature: 0.1 });
      // A tiny model's training step, off the main thread.
      const model = await vp.VideoLM.create({ imageSize: 8, patchSize: 4, frames: 2, width: 16, layers: 1, heads: 2, kvHeads: 1, vocab: 20, maxSeq: 32, seed: 1 });
      const batch = { videos: new Uint8Array(2 * 8 * 8 * 3).fill(100), text: Int32Array.from([1, 7, 8, 9]), sequences: [[{ video: 0 }, { text: [0, 4] }]] };
      const l0 = (await model.trainStep(batch, { lr: 1e-2 })).loss;
      let l = l0;
      for (let i = 0; i < 20; i++) l = (await model.trainStep(batch, { lr: 1e-2 })).loss;
      model.dispose();
      console.log(JSON.stringify({ c: Array.from(c.data), err, binary: vp.backendInfo().binary.kind,
        att: Array.from(att.out.data), nce: nce.loss, l0, l }));
    `);
    const js = spawnSync(process.execPath, ['use.mjs'], { cwd: proj, env, encoding: 'utf8' });
    t.is(js.status, 0, js.stderr);
    const out = JSON.parse(js.stdout.trim());
    t.deepEqual(out.c, [4, 5, 10, 11]);
    t.is(out.err, 'RangeError');
    t.is(out.binary, 'prebuild-cpu');
    t.deepEqual(out.att, [1, 2, 3, 4]);
    t.true(Math.abs(out.nce - Math.log1p(Math.exp(-10))) < 1e-5, `InfoNCE loss ${out.nce}`);
    t.true(out.l < out.l0, `a tiny model's loss falls (${out.l0} -> ${out.l})`);

    // 4. TypeScript: type-checks against the shipped .d.ts and runs.
    writeFileSync(join(proj, 'use.ts'), `
      import * as vp from 'videoperceiver';
      import * as ops from 'videoperceiver/ops';
      import { planSubstitution } from 'videoperceiver/kim';
      import { EVENTS, encodePng } from 'videoperceiver/data';
      import { VideoLM } from 'videoperceiver/model';
      import { Trainer, ContrastiveHead } from 'videoperceiver/train';
      import { lineChart } from 'videoperceiver/report';
      const a: vp.Tensor = vp.tensor(new Float32Array([1, 2, 3, 4]), [2, 2]);
      const info: vp.BackendInfo = vp.backendInfo();
      const c = vp.matmul(a, a, { transB: true });
      const subpaths = [ops.matmul === vp.matmul, planSubstitution === vp.planSubstitution, EVENTS.length > 0, encodePng(new Uint8Array(3), 1, 1).length > 0,
        VideoLM === vp.VideoLM, Trainer === vp.Trainer, typeof ContrastiveHead === 'function', typeof lineChart === 'function'];
      console.log(JSON.stringify({ c: Array.from(c.data), isa: info.cpu.isa, subpaths }));
    `);
    writeFileSync(join(proj, 'tsconfig.json'), JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', strict: true, noEmit: true, skipLibCheck: false, types: [] }, files: ['use.ts'] }));
    const tsc = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: proj, env, encoding: 'utf8' });
    t.is(tsc.status, 0, tsc.stdout + tsc.stderr);
    const ts = spawnSync(process.execPath, ['--import', join(root, 'node_modules', 'tsx', 'dist', 'esm', 'index.mjs'), 'use.ts'], { cwd: proj, env, encoding: 'utf8' });
    t.is(ts.status, 0, ts.stderr);
    t.deepEqual(JSON.parse(ts.stdout.trim()).c, [5, 11, 11, 25]);
    t.deepEqual(JSON.parse(ts.stdout.trim()).subpaths, [true, true, true, true, true, true, true, true], 'every sub-path export resolves');

    // 5. The CLI: which binary and ISA path, and why CUDA was skipped.
    const doc = spawnSync('npx', ['videoperceiver', 'doctor'], { cwd: proj, env, encoding: 'utf8' });
    t.is(doc.status, 0, doc.stderr);
    t.regex(doc.stdout, /prebuilds\/linux-x64\/videoperceiver\.node \[prebuild-cpu\]/);
    t.regex(doc.stdout, /ISA path (avx512|avx2|generic)/);
    if (pack.files.some((f) => f.path.endsWith('videoperceiver-cuda.node')) && !existsSync('/usr/lib/x86_64-linux-gnu/libcuda.so.1')) {
      t.regex(doc.stdout, /videoperceiver-cuda\.node: skipped: no CUDA driver library/);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
