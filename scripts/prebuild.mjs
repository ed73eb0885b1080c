#!/usr/bin/env node
// npm run build:prebuilds: the binaries that ship in the npm package (run by `npm pack`;
// not named "prebuild", which npm would run before every `npm run build`).
//
//   prebuilds/<platform>-<arch>/videoperceiver.node       CPU backend (every x86-64)
//   prebuilds/<platform>-<arch>/videoperceiver-cuda.node  + CUDA (sm_80, sm_90, sm_90 PTX;
//                                                          runtime linked statically)
//   prebuilds/<platform>-<arch>/manifest.json             version, ISA paths, CUDA, flags, sha256
//
// Both are linked with VP_PORTABLE=ON (static libstdc++, glibc >= 2.28) and
// stripped; the script fails if a binary imports a glibc symbol newer than 2.28
// or any libstdc++ symbol. VP_PREBUILD_CUDA=off skips the CUDA binary.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpus } from 'node:os';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const target = `${process.platform}-${process.arch}`;
const outDir = join(root, 'prebuilds', target);
const GLIBC_MAX = [2, 28];

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: root, encoding: 'utf8', maxBuffer: 1 << 28, ...opts });
  if (r.error) throw r.error;
  return r;
}

function build(name, cuda) {
  const out = join(root, 'build-prebuild', name);
  const args = [join(root, 'node_modules', 'cmake-js', 'bin', 'cmake-js'), 'build', '--out', out,
    '--parallel', String(cpus().length), `--CDVP_CUDA=${cuda ? 'on' : 'off'}`, '--CDVP_PORTABLE=ON',
    '--CDVP_BUILD_TESTS=OFF', '--CDVP_BUILD_BENCH=OFF'];
  if (sh('ninja', ['--version']).status === 0) args.push('-G', 'Ninja');
  console.log(`[prebuild] ${name}: cmake-js (VP_CUDA=${cuda ? 'on' : 'off'}, VP_PORTABLE=ON)`);
  const r = sh(process.execPath, args, { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`[prebuild] ${name}: build failed`);
  return join(out, 'Release', 'videoperceiver.node');
}

/** The versioned imports of a binary, checked against the portability promise. */
function checkImports(file) {
  const r = sh('objdump', ['-T', file]);
  if (r.status !== 0) throw new Error(`objdump failed on ${file}: ${r.stderr}`);
  const bad = [];
  let glibcMax = '0';
  for (const line of r.stdout.split('\n')) {
    if (!line.includes('*UND*')) continue;
    const m = /\((GLIBC|GLIBCXX|CXXABI)_([0-9.]+)\)\s+(\S+)/.exec(line);
    if (!m) continue;
    if (m[1] !== 'GLIBC') {
      bad.push(`${m[3]}@${m[1]}_${m[2]}`);
      continue;
    }
    const v = m[2].split('.').map(Number);
    if (v[0] > GLIBC_MAX[0] || (v[0] === GLIBC_MAX[0] && (v[1] ?? 0) > GLIBC_MAX[1])) bad.push(`${m[3]}@GLIBC_${m[2]}`);
    if (m[2].localeCompare(glibcMax, undefined, { numeric: true }) > 0) glibcMax = m[2];
  }
  if (bad.length) {
    throw new Error(`[prebuild] ${file} imports symbols newer than glibc ${GLIBC_MAX.join('.')} or from libstdc++:\n  ${bad.join('\n  ')}\n` +
      'add them to native/addon/portable/glibc_symbols.txt with their old version');
  }
  return glibcMax;
}

function cudaVersion() {
  const r = sh('nvcc', ['--version']);
  if (r.status !== 0) return null;
  const m = /release ([0-9.]+)/.exec(r.stdout);
  return m ? m[1] : 'unknown';
}

mkdirSync(outDir, { recursive: true });
const wantCuda = (process.env.VP_PREBUILD_CUDA ?? 'auto') !== 'off';
const cudaVer = wantCuda ? cudaVersion() : null;
if (process.env.VP_PREBUILD_CUDA === 'on' && !cudaVer) throw new Error('VP_PREBUILD_CUDA=on but nvcc was not found');
const builds = [{ name: 'cpu', cuda: false, file: 'videoperceiver.node' }];
if (cudaVer) builds.push({ name: 'cuda', cuda: true, file: 'videoperceiver-cuda.node' });
else console.log('[prebuild] nvcc not found (or VP_PREBUILD_CUDA=off): CPU binary only');

const manifest = {
  name: pkg.name, version: pkg.version, target, napiVersion: 8, builtAt: new Date().toISOString(),
  glibcMin: GLIBC_MAX.join('.'), isaPaths: ['avx512', 'avx2', 'generic'], binaries: [],
};
for (const b of builds) {
  const built = build(b.name, b.cuda);
  const dest = join(outDir, b.file);
  copyFileSync(built, dest);
  const s = sh('strip', ['--strip-unneeded', dest]);
  if (s.status !== 0) throw new Error(`strip failed: ${s.stderr}`);
  const glibc = checkImports(dest);
  const bytes = readFileSync(dest);
  manifest.binaries.push({
    file: b.file, cuda: b.cuda, cudaVersion: b.cuda ? cudaVer : null,
    cudaArchitectures: b.cuda ? ['sm_80', 'sm_90', 'compute_90 (PTX)'] : [],
    flags: ['-O3', 'VP_PORTABLE=ON (static libstdc++)', b.cuda ? 'cudart_static' : 'cpu only'],
    glibcRequired: glibc, size: statSync(dest).size, sha256: createHash('sha256').update(bytes).digest('hex'),
  });
  console.log(`[prebuild] ${dest}: ${(statSync(dest).size / 2 ** 20).toFixed(1)} MiB, needs glibc ${glibc}`);
}
writeFileSync(join(outDir, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
console.log(`[prebuild] wrote ${join(outDir, 'manifest.json')}`);
