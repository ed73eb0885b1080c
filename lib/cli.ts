#!/usr/bin/env node
// The `videoperceiver` command line. Commands grow with the package; each has --help.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as vp from './index.js';
import { formatDemoTable, runDemo } from './demo.js';
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

function numOption(args: string[], name: string): number | undefined {
  const v = option(args, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new RangeError(`--${name} must be a number, got ${v}`);
  return n;
}

function required(args: string[], name: string, cmd: string): string {
  const v = option(args, name);
  if (!v || v.startsWith('--')) throw new TypeError(`${cmd}: --${name} is required (see videoperceiver ${cmd} --help)`);
  return v;
}

/** A JSON config file: { model?: {...}, sft?: {...}, rl?: {...} }. */
function readConfig(path: string | undefined): { model?: Record<string, unknown>; sft?: Record<string, unknown>; rl?: Record<string, unknown> } {
  if (!path) return {};
  if (!existsSync(path)) throw new Error(`--config: ${path} not found`);
  try {
    const c = JSON.parse(readFileSync(path, 'utf8'));
    if (c === null || typeof c !== 'object' || Array.isArray(c)) throw new Error('must be a JSON object');
    return c;
  } catch (e) {
    throw new Error(`--config: ${path}: ${(e as Error).message}`);
  }
}

/** --device cpu|cuda (default cpu). */
function deviceOption(args: string[]): 'cpu' | 'cuda' {
  const d = option(args, 'device') ?? 'cpu';
  if (d !== 'cpu' && d !== 'cuda') throw new RangeError(`--device must be cpu or cuda, got ${d}`);
  return d;
}

function defined<T extends Record<string, unknown>>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** A model folder: a saved VideoLM (config.json format videoperceiver.VideoLM) or a Hugging Face folder. */
async function loadModelDir(dir: string, device: 'cpu' | 'cuda'): Promise<vp.VideoLM | vp.PretrainedModel> {
  const cfgPath = join(dir, 'config.json');
  if (!existsSync(cfgPath)) throw new Error(`--model: ${cfgPath} not found (a saved VideoLM or a Hugging Face model folder)`);
  let format: unknown;
  try {
    format = (JSON.parse(readFileSync(cfgPath, 'utf8')) as { format?: unknown }).format;
  } catch (e) {
    throw new Error(`--model: ${cfgPath}: ${(e as Error).message}`);
  }
  return format === 'videoperceiver.VideoLM' ? vp.VideoLM.load(dir, { device }) : vp.loadPretrained(dir, { device });
}

/** --lora-rank N [--lora-alpha A] [--lora-targets q_proj,v_proj|all-linear] [--lora-dropout P]: LoRA options, or undefined. */
function loraOptions(args: string[]): vp.LoraOptions | undefined {
  const rank = option(args, 'lora-rank');
  if (rank === undefined) {
    for (const k of ['lora-alpha', 'lora-targets', 'lora-dropout']) if (option(args, k) !== undefined) throw new TypeError(`--${k} needs --lora-rank`);
    return undefined;
  }
  const targets = option(args, 'lora-targets');
  return {
    rank: intOption(args, 'lora-rank', 8, 1),
    ...defined({ alpha: numOption(args, 'lora-alpha'), dropout: numOption(args, 'lora-dropout') }),
    ...(targets ? { targets: targets === 'all-linear' ? 'all-linear' : (targets.split(',') as vp.LoraOptions['targets']) } : {}),
  };
}

async function train(args: string[]): Promise<number> {
  const data = vp.openDataset(required(args, 'data', 'train'));
  const out = required(args, 'out', 'train');
  const cfg = readConfig(option(args, 'config'));
  const stage = option(args, 'stage') ?? 'both';
  if (!['sft', 'rl', 'both'].includes(stage)) throw new RangeError(`--stage must be sft, rl or both, got ${stage}`);
  const json = flag(args, 'json');
  const seed = intOption(args, 'seed', 0, 0);
  let model: vp.VideoLM | vp.PretrainedModel;
  const from = option(args, 'model');
  const device = deviceOption(args);
  const lora = loraOptions(args);
  if (from) {
    model = await loadModelDir(from, device);
    if (lora) {
      if (!(model instanceof vp.PretrainedModel)) throw new TypeError('--lora-rank: LoRA applies to a Hugging Face model folder (--model DIR), not to a VideoLM');
      const r = model.addLora({ ...lora, seed });
      if (!json) process.stderr.write(`LoRA rank ${lora.rank} on ${r.targets.length} layers: ${r.trainableParams} trained parameters of ${model.numParams}\n`);
    }
  } else {
    if (lora) throw new TypeError('--lora-rank needs --model DIR (a Hugging Face model folder)');
    const preset = (option(args, 'preset') ?? 'tiny') as vp.VideoLMPreset;
    const tokenizer = vp.tokenizerForDataset(data.annotations);
    model = await vp.VideoLM.create({ preset, ...(cfg.model ?? {}), tokenizer, seed, device } as vp.VideoLMCreateOptions);
  }
  let bar: ProgressBar | undefined;
  const trainer = new vp.Trainer(model, {
    runDir: out, seed, checkpointEvery: intOption(args, 'checkpoint-every', 0, 0),
    onStep: (e) => {
      if (json) console.log(JSON.stringify(e));
      else if (e.type === 'step') bar?.update(e.step, e.stage === 'sft' ? `loss ${e.loss.toFixed(3)}` : `reward ${e.reward.toFixed(3)}`);
      else if (e.type === 'checkpoint') process.stderr.write(`checkpoint ${e.path}\n`);
    },
  });
  if (flag(args, 'resume')) {
    const r = await trainer.resume(out);
    process.stderr.write(`resumed ${r.path} (${r.stage} step ${r.step})\n`);
  }
  const sftOpts: vp.SftOptions = {
    ...(cfg.sft ?? {}),
    ...defined({ steps: numOption(args, 'steps'), epochs: numOption(args, 'epochs'), batchSize: numOption(args, 'batch-size'), lr: numOption(args, 'lr'), lambda: numOption(args, 'lambda') }),
    ...(flag(args, 'no-kim') ? { kim: false } : {}),
    ...(flag(args, 'no-contrastive') ? { contrastive: false } : {}),
  };
  const rlOpts: vp.RlOptions = {
    ...(cfg.rl ?? {}),
    ...defined({ steps: numOption(args, 'rl-steps'), lr: numOption(args, 'rl-lr'), groupSize: numOption(args, 'group-size') }),
    ...(option(args, 'comparative') ? { comparative: option(args, 'comparative') as vp.RlOptions['comparative'] } : {}),
  };
  const count = (o: { steps?: number; epochs?: number }, per: number) => o.steps ?? Math.max(1, Math.ceil(((o.epochs ?? 1) * data.length) / per));
  if (stage !== 'rl') {
    bar = json ? undefined : new ProgressBar('sft', count(sftOpts, (sftOpts.batchSize ?? 8) * (sftOpts.gradAccum ?? 1)));
    const r = await trainer.sft(data, sftOpts);
    if (r.status !== 'done') return 130;
  }
  if (stage !== 'sft') {
    bar = json ? undefined : new ProgressBar('rl', count(rlOpts, rlOpts.promptsPerStep ?? 4));
    const r = await trainer.rl(data, rlOpts);
    if (r.status !== 'done') return 130;
  }
  await model.save(join(out, 'model'));
  if (!json) console.log(`saved the trained model to ${join(out, 'model')}`);
  if (model instanceof vp.PretrainedModel && model.lora) {
    await model.saveAdapter(join(out, 'adapter'));
    if (!json) console.log(`saved the LoRA adapter (PEFT layout) to ${join(out, 'adapter')}`);
  }
  trainer.dispose();
  model.dispose();
  return 0;
}

async function evalCommand(args: string[]): Promise<number> {
  const model = await loadModelDir(required(args, 'model', 'eval'), deviceOption(args));
  const data = vp.openDataset(required(args, 'data', 'eval'));
  const json = flag(args, 'json');
  const bar = json ? undefined : new ProgressBar('eval', data.length * 2);
  let base = 0;
  const trainer = new vp.Trainer(model);
  const r = await trainer.evaluate(data, {
    maxTokens: intOption(args, 'max-tokens', 32),
    onProgress: (d, n) => {
      bar?.update(base + d);
      if (d === n) base += n;
    },
  });
  if (json) console.log(JSON.stringify({ summary: r.summary, questions: r.questions, captions: r.captions }));
  else for (const [k, v] of Object.entries(r.summary)) console.log(`${k.padEnd(18)} ${Number.isInteger(v) ? v : v.toFixed(4)}`);
  model.dispose();
  return 0;
}

async function generate(args: string[]): Promise<number> {
  const model = await loadModelDir(required(args, 'model', 'generate'), deviceOption(args));
  const gen = {
    maxTokens: intOption(args, 'max-tokens', 32), temperature: numOption(args, 'temperature') ?? 0, topP: numOption(args, 'top-p') ?? 1, seed: intOption(args, 'seed', 0, 0),
  };
  if (model instanceof vp.PretrainedModel) {
    // A text model: the prompt as a user turn through the chat template when the folder has one.
    if (option(args, 'video') !== undefined) throw new TypeError(`generate: --video: ${model.architecture} is a text-only model`);
    const prompt = required(args, 'prompt', 'generate');
    const text = await model.generate(null, model.chatTemplate !== undefined ? [{ role: 'user', content: prompt }] : prompt, gen);
    if (flag(args, 'json')) console.log(JSON.stringify({ prompt, text }));
    else console.log(text);
    model.dispose();
    return 0;
  }
  const video = required(args, 'video', 'generate');
  if (!existsSync(video)) throw new Error(`generate: --video ${video}: no such file`);
  const c = model.config;
  let sample: { frames: Uint8Array; shape: [number, number, number, 3]; frameTimes: number[]; id: string };
  if (video.toLowerCase().endsWith('.npy')) {
    const a = vp.readNpy(video);
    if (a.dtype !== 'uint8' || a.shape.length !== 4 || a.shape[3] !== 3) throw new TypeError(`--video: ${video} must hold uint8 [F, H, W, 3], got ${a.dtype} [${a.shape.join(', ')}]`);
    sample = { frames: a.data as Uint8Array, shape: a.shape as [number, number, number, 3], frameTimes: a.shape.map((_, i) => i), id: video };
  } else {
    const d = vp.decodeVideo(video, { frames: c.frames, size: [c.imageSize, c.imageSize] });
    sample = { frames: d.frames, shape: d.shape, frameTimes: d.frameTimes, id: video };
  }
  const fitted = vp.fitClip(sample, c.frames, c.imageSize);
  const prompt = option(args, 'prompt') ?? vp.CAPTION_PROMPT;
  const text = await model.generate(fitted.frames, prompt, gen);
  if (flag(args, 'json')) console.log(JSON.stringify({ video, prompt, text }));
  else console.log(text);
  model.dispose();
  return 0;
}

async function demo(args: string[]): Promise<number> {
  const seedsArg = option(args, 'seeds');
  const seeds = seedsArg ? seedsArg.split(',').map((x) => {
    const n = Number(x);
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`--seeds must be a comma-separated list of non-negative integers, got ${seedsArg}`);
    return n;
  }) : [intOption(args, 'seed', 0, 0)];
  const json = flag(args, 'json');
  const r = await runDemo({
    quick: flag(args, 'quick'), seeds, out: option(args, 'out'), progress: !json,
    plan: defined({ sftSteps: numOption(args, 'sft-steps'), rlSteps: numOption(args, 'rl-steps'), trainClips: numOption(args, 'train-clips'), testClips: numOption(args, 'test-clips') }),
    log: json ? () => {} : undefined,
  });
  if (json) {
    console.log(JSON.stringify({ table: r.table, runs: r.runs, report: r.report, seconds: r.seconds, seeds: r.seeds }));
    return 0;
  }
  console.log(`\nheld-out results (${r.plan.testClips} clips; seeds ${r.seeds.join(', ')}${r.seeds.length > 1 ? '; mean ± std' : ''}):\n`);
  console.log(formatDemoTable(r.table));
  const get = (i: number, m: string) => r.table[i].metrics[m]?.mean ?? NaN;
  const ev = 'event MC accuracy';
  const d = (i: number) => `${get(i, ev) >= get(0, ev) ? '+' : ''}${((get(i, ev) - get(0, ev)) * 100).toFixed(1)} points`;
  console.log(`\nevent accuracy vs (a): (b) ${d(1)}, (c) ${d(2)}`);
  console.log(`report: ${r.report}  (${r.seconds.toFixed(0)} s)`);
  return 0;
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
    summary: 'what `npm start` runs: doctor, then the demo',
    usage: 'videoperceiver start [demo options]',
    async run(args) {
      const rc = doctor([]);
      if (rc !== 0) return rc;
      console.log('');
      return demo(args);
    },
  },
  demo: {
    summary: 'the method end to end: (a) plain SFT, (b) SFT + KIM + contrastive, (c) (b) + comparative GRPO, evaluated on held-out clips; writes report.html',
    usage: 'videoperceiver demo [--quick] [--seed 0 | --seeds 0,1,2] [--out ./videoperceiver-demo] [--sft-steps N] [--rl-steps N] [--train-clips N] [--test-clips N] [--json]',
    run: demo,
  },
  train: {
    summary: 'train a VideoLM on a dataset folder: stage 1 (SFT with KIM + contrastive), stage 2 (comparative GRPO), or both',
    usage: 'videoperceiver train --data DIR --out RUN_DIR [--stage sft|rl|both] [--config FILE.json] [--model DIR [--lora-rank R] [--lora-alpha A] [--lora-targets q_proj,v_proj|all-linear] [--lora-dropout P] | --preset tiny|small] [--steps N] [--epochs N] [--batch-size 8] [--lr 1e-3] [--lambda 0.5] [--no-kim] [--no-contrastive] [--rl-steps N] [--rl-lr 1e-4] [--group-size 4] [--comparative baseline|pairwise|threshold|none] [--seed 0] [--checkpoint-every N] [--resume] [--device cpu|cuda] [--json]\n\nconfig file: { "model": { VideoLM config }, "sft": { SftOptions }, "rl": { RlOptions } }; flags override it. The trained model is saved to RUN_DIR/model; checkpoints to RUN_DIR/checkpoints; metrics to RUN_DIR/metrics.jsonl. Ctrl-C writes a checkpoint; --resume continues from it. --model DIR takes a saved VideoLM or a Hugging Face folder (LlamaForCausalLM, Qwen2ForCausalLM; text side only: prompt + response without video, docs/pretrained.md); with --lora-rank only LoRA adapters train, and RUN_DIR/adapter gets them in PEFT layout.',
    run: train,
  },
  eval: {
    summary: 'evaluate a saved model on a dataset: multiple-choice accuracy by option likelihood, keyword recall of generated captions',
    usage: 'videoperceiver eval --model DIR --data DIR [--max-tokens 32] [--device cpu|cuda] [--json]',
    run: evalCommand,
  },
  generate: {
    summary: 'generate text for a video (.npy uint8 [F, H, W, 3] or a video file decoded by ffmpeg) with a saved model',
    usage: 'videoperceiver generate --model DIR (--video FILE | a Hugging Face text model) [--prompt "describe the clip :"] [--max-tokens 32] [--temperature 0] [--top-p 1] [--seed 0] [--device cpu|cuda] [--json]',
    run: generate,
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
    usage: 'videoperceiver bench [name...] [--filter NAME] [--quick] [--json] [--save]',
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
