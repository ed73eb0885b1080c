#!/usr/bin/env node
// The `videoperceiver` command line. Commands grow with the package; each has --help.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as vp from './index.js';
import { cudaDriverPresent, loadAddon, packageRoot } from './native.js';
import { ProgressBar } from './progress.js';

interface Command {
  summary: string;
  usage: string;
  run(args: string[]): Promise<number> | number;
}

function flag(args: string[], name: string): boolean {
  return args.includes(`--${name}`);
}

/** The value of --name VALUE or --name=VALUE. */
function option(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  if (i >= 0) return args[i + 1];
  const eq = args.find((a) => a.startsWith(`--${name}=`));
  return eq?.slice(name.length + 3);
}

function intOption(args: string[], name: string, dflt: number, min = 1): number {
  const v = option(args, name);
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new RangeError(`--${name} must be an integer >= ${min}, got ${v}`);
  return n;
}

function doctor(args: string[]): number {
  let info: vp.BackendInfo;
  try {
    info = vp.backendInfo();
  } catch (e) {
    console.error((e as Error).message);
    return 1;
  }
  const addon = loadAddon();
  const driver = cudaDriverPresent();
  if (flag(args, 'json')) {
    console.log(JSON.stringify({ ...info, attempts: addon.attempts, cudaDriver: driver }));
    return 0;
  }
  console.log('videoperceiver doctor');
  console.log(`  node        ${process.version} (${process.platform}-${process.arch})`);
  console.log(`  binary      ${info.binary.path} [${info.binary.kind}]`);
  for (const a of addon.attempts.filter((x) => !x.ok)) console.log(`              tried ${a.path}: ${a.reason}`);
  console.log(`  cpu         ISA path ${info.cpu.isa} (${info.cpu.isaReason}), ${info.cpu.threads} threads`);
  console.log(`  cuda        ${info.cudaCompiled ? 'compiled in' : 'not compiled in'}; ` +
    (info.cuda ? `using ${info.cuda.device} (sm_${info.cuda.computeCapability.replace('.', '')}, ${(info.cuda.memoryBytes / 2 ** 30).toFixed(1)} GiB)` : `not used: ${info.cudaReason}`));
  console.log(`  driver      ${driver.reason}`);
  return 0;
}

async function quickBench(): Promise<void> {
  console.log('\nSGEMM (vp.matmul, float32, CPU):');
  for (const n of [256, 512, 1024]) {
    const a = vp.tensor(new Float32Array(n * n).map((_, i) => ((i * 7919) % 1000) / 1000 - 0.5), [n, n]);
    vp.matmul(a, a);
    const reps = n === 1024 ? 5 : 20;
    const times: number[] = [];
    for (let r = 0; r < reps; r++) {
      const t0 = performance.now();
      vp.matmul(a, a);
      times.push(performance.now() - t0);
    }
    times.sort((x, y) => x - y);
    const ms = times[reps >> 1];
    console.log(`  ${String(n).padStart(5)}³  ${ms.toFixed(2).padStart(8)} ms  ${((2 * n ** 3) / (ms * 1e6)).toFixed(1).padStart(7)} GFLOP/s`);
  }
}

const commands: Record<string, Command> = {
  doctor: {
    summary: 'show which native binary loaded, the CPU ISA path, and whether CUDA is used (and why not)',
    usage: 'videoperceiver doctor [--json]',
    run: doctor,
  },
  start: {
    summary: 'what `npm start` runs: doctor and a short benchmark',
    usage: 'videoperceiver start',
    async run() {
      const rc = doctor([]);
      if (rc !== 0) return rc;
      await quickBench();
      return 0;
    },
  },
  synth: {
    summary: 'generate a dataset of fine-grained action clips (annotations.jsonl + .npy clips, deterministic from a seed)',
    usage: 'videoperceiver synth --out DIR [--count 200] [--seed 0] [--frames 16] [--size 32] [--fps 8] [--event-rate 0.8] [--mp4] [--json]',
    run(args) {
      const out = option(args, 'out');
      if (!out) throw new TypeError('synth: --out DIR is required');
      const count = intOption(args, 'count', 200);
      const seed = intOption(args, 'seed', 0, 0);
      const eventRate = Number(option(args, 'event-rate') ?? 0.8);
      if (!(eventRate >= 0 && eventRate <= 1)) throw new RangeError(`--event-rate must be in [0, 1], got ${option(args, 'event-rate')}`);
      const bar = flag(args, 'json') ? undefined : new ProgressBar('synth', count);
      const anns = vp.synthDataset(out, {
        count, seed, frames: intOption(args, 'frames', 16, 4), size: intOption(args, 'size', 32, 16),
        fps: Number(option(args, 'fps') ?? 8), eventRate, mp4: flag(args, 'mp4'),
        onProgress: (d) => bar?.update(d),
      });
      const events = anns.filter((a) => a.events?.length).length;
      if (flag(args, 'json')) console.log(JSON.stringify({ out, count, seed, withEvent: events }));
      else console.log(`wrote ${count} clips (${events} with a transient event) to ${out}`);
      return 0;
    },
  },
  bench: {
    summary: 'run the benchmarks against PyTorch (in a checkout: bench/run.ts; args passed through)',
    usage: 'videoperceiver bench [filter...] [--quick] [--json]',
    run(args) {
      const runner = join(packageRoot, 'bench', 'run.ts');
      if (!existsSync(runner)) {
        console.error('The benchmark suite ships with the source checkout, not the npm package; running the built-in quick benchmark.');
        return quickBench().then(() => 0);
      }
      const r = spawnSync(process.execPath, ['--import=tsx', runner, ...args], { stdio: 'inherit', cwd: packageRoot });
      return r.status ?? 1;
    },
  },
  build: {
    summary: 'build the native addon from source (cmake-js, or node-gyp when CMake is absent)',
    usage: 'videoperceiver build [--gyp]',
    run(args) {
      const hasCmake = spawnSync('cmake', ['--version']).status === 0;
      const script = flag(args, 'gyp') || !hasCmake ? 'build-gyp.mjs' : 'build-native.mjs';
      const path = join(packageRoot, 'scripts', script);
      if (!existsSync(path)) {
        console.error(`missing ${path}`);
        return 1;
      }
      return spawnSync(process.execPath, [path], { stdio: 'inherit', cwd: packageRoot }).status ?? 1;
    },
  },
};

function help(): void {
  console.log('usage: videoperceiver <command> [options]\n\ncommands:');
  for (const [name, c] of Object.entries(commands)) console.log(`  ${name.padEnd(10)} ${c.summary}`);
  console.log('\nvideoperceiver <command> --help for details');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    help();
    return name ? 0 : 1;
  }
  const cmd = commands[name];
  if (!cmd) {
    console.error(`unknown command '${name}'`);
    help();
    return 2;
  }
  if (flag(rest, 'help') || rest.includes('-h')) {
    console.log(`${cmd.usage}\n\n${cmd.summary}`);
    return 0;
  }
  return cmd.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  },
);
