#!/usr/bin/env node
// The `videoperceiver` command line: each command declares its flags
// (lib/cli-args.ts), so an unknown flag, a missing value or a value out of range
// stops the command with status 2 and a message naming the flag; file and folder
// arguments are checked before any work (lib/paths.ts). Each command has --help.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, UsageError, type FlagSpec, type FlagSpecs, type ParsedArgs } from './cli-args.js';
import { flagError, missingFolders, removeEmptyFolders, resumedVideoLM, unseenWordsNote } from './cli-train.js';
import * as vp from './index.js';
import { runDemoJobs, watchDemoParent } from './demo-jobs.js';
import { DEMO_PLANS, DemoInterrupted, demoArms, formatDemoComparisons, formatDemoTable, runDemo, type DemoArm, type DemoResult } from './demo.js';
import { distributedSummary } from './distributed.js';
import { cudaDriverPresent, loadAddon, packageRoot } from './native.js';
import { refuseNonEmpty } from './data/dataset-dir.js';
import { inputDir, inputFile, outputDir } from './paths.js';
import { ProgressBar } from './progress.js';
import { didYouMean } from './suggest.js';
import { readTrainingArgs } from './train/checkpoints.js';
import { CONFIG_FILE_KEYS, MAX_STEPS } from './train/options.js';
import { fitClip } from './train/tasks.js';

interface Command {
  summary: string;
  usage: string;
  /** The flags the command takes (anything else is refused). */
  flags: FlagSpecs;
  /** Arguments that are not flags are passed through (bench). */
  positional?: boolean;
  run(args: ParsedArgs, raw: string[]): Promise<number> | number;
}

const SEED: FlagSpec = { kind: 'int', min: 0, max: 2 ** 32 - 1 };
const STEPS: FlagSpec = { kind: 'int', min: 1, max: MAX_STEPS };
const DEVICE: FlagSpec = { kind: 'string', choices: ['cpu', 'cuda'] };
const JSON_FLAG: FlagSpec = { kind: 'bool' };
const PATH: FlagSpec = { kind: 'string' };
const DTYPE: FlagSpec = { kind: 'string', choices: ['float32', 'bfloat16', 'auto'] };
const COMPUTE_DTYPE: FlagSpec = { kind: 'string', choices: ['float32', 'bfloat16'] };

/** A JSON config file: { model?: {...}, sft?: {...}, rl?: {...} }, every key checked. */
function readConfig(path: string | undefined): { model?: Record<string, unknown>; sft?: Record<string, unknown>; rl?: Record<string, unknown> } {
  if (!path) return {};
  inputFile('--config', path, 'a JSON config file');
  let c: unknown;
  try {
    c = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new UsageError(`--config: ${path}: ${e instanceof SyntaxError ? `not valid JSON (${e.message})` : (e as Error).message}`);
  }
  if (c === null || typeof c !== 'object' || Array.isArray(c)) throw new UsageError(`--config: ${path}: must be a JSON object { "model": {...}, "sft": {...}, "rl": {...} }`);
  const sections = Object.keys(CONFIG_FILE_KEYS) as (keyof typeof CONFIG_FILE_KEYS)[];
  for (const [k, v] of Object.entries(c)) {
    const known = CONFIG_FILE_KEYS[k as keyof typeof CONFIG_FILE_KEYS] as readonly string[] | undefined;
    if (!known) throw new UsageError(`--config: ${path}: unknown section "${k}"${didYouMean(k, sections, (x) => `"${x}"`)} (sections: ${sections.join(', ')})`);
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new UsageError(`--config: ${path}: "${k}" must be an object`);
    for (const key of Object.keys(v)) {
      if (!known.includes(key))
        throw new UsageError(`--config: ${path}: unknown key "${k}.${key}"${didYouMean(key, known, (x) => `"${k}.${x}"`)} (docs/training.md lists every key)`);
    }
  }
  return c as ReturnType<typeof readConfig>;
}

function defined<T extends Record<string, unknown>>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** The exit status of a stage stopped by a signal (128 + its number, as the shell reports it). */
function stopped(r: vp.StageResult): number {
  return r.signal === 'SIGTERM' ? 143 : 130;
}

/** True when --model DIR holds a saved VideoLM (config.json format videoperceiver.VideoLM), false for a Hugging Face folder. */
function isVideoLMDir(dir: string): boolean {
  inputDir('--model', dir, 'a saved VideoLM or a Hugging Face model folder');
  const cfgPath = join(dir, 'config.json');
  if (!existsSync(cfgPath)) throw new Error(`--model: ${cfgPath} not found (a saved VideoLM or a Hugging Face model folder)`);
  try {
    return (JSON.parse(readFileSync(cfgPath, 'utf8')) as { format?: unknown }).format === 'videoperceiver.VideoLM';
  } catch (e) {
    throw new Error(`--model: ${cfgPath}: ${(e as Error).message}`);
  }
}

type ComputeDtype = 'float32' | 'bfloat16';

/**
 * A model folder: a saved VideoLM or a Hugging Face folder (held in `dtype`, --dtype's value),
 * computing in `computeDtype` (--compute-dtype: bf16 products with float32 weights, either kind).
 */
async function loadModelDir(dir: string, device: 'cpu' | 'cuda', dtype?: string, computeDtype?: ComputeDtype): Promise<vp.VideoLM | vp.PretrainedModel> {
  const compute = computeDtype ? { computeDtype } : {};
  if (!isVideoLMDir(dir)) return vp.loadPretrained(dir, { device, ...(dtype ? { dtype: dtype as vp.LoadPretrainedOptions['dtype'] } : {}), ...compute });
  if (dtype) throw new UsageError(`--dtype: applies to a Hugging Face model folder; ${dir} is a saved VideoLM, whose weights are float32 (leave --dtype out; for bf16 products give --compute-dtype bfloat16, docs/model.md)`);
  return vp.VideoLM.load(dir, { device, ...compute });
}

/**
 * --compute-dtype for `train`: the flag's value, or on --resume the compute dtype the run recorded
 * (training_args.json); undefined leaves the model's own (float32, or a config file's
 * model.computeDtype). A value that differs from the run's is refused by the trainer unless --override.
 */
function trainComputeDtype(a: ParsedArgs, resumed: ResumedRun | undefined): ComputeDtype | undefined {
  const given = a.str('compute-dtype') as ComputeDtype | undefined;
  if (given || !resumed) return given;
  const args = resumed.args;
  const saved = args?.rl?.computeDtype ?? args?.sft?.computeDtype;
  return saved === 'bfloat16' ? 'bfloat16' : undefined;
}

/** The checkpoint `--resume` would continue from (undefined: none yet; trainer.resume says so). */
function resumedCheckpoint(runDir: string): string | undefined {
  try {
    return vp.Trainer.checkpointPath(runDir);
  } catch {
    return undefined;
  }
}

/** The run `--resume` continues: its latest checkpoint and that checkpoint's training_args.json. */
type ResumedRun = { checkpoint: string; file: string; args: ReturnType<typeof readTrainingArgs> };

/** The run `--resume` would continue from `runDir` (undefined: no checkpoint yet; trainer.resume says so), read once per command. */
function resumedRun(runDir: string): ResumedRun | undefined {
  const checkpoint = resumedCheckpoint(runDir);
  if (!checkpoint) return undefined;
  const file = join(checkpoint, 'training_args.json');
  return { checkpoint, file, args: readTrainingArgs(file) };
}

/**
 * --dtype for `train`: the flag's value, or on --resume the dtype the run was
 * trained with (its latest checkpoint's training_args.json); a --dtype that
 * differs from the run's is refused unless --override.
 */
function trainDtype(a: ParsedArgs, resumed: ResumedRun | undefined, hfModel: boolean): string | undefined {
  const given = a.str('dtype');
  if (given && !hfModel) throw new UsageError('train: --dtype applies to a Hugging Face model folder (--model DIR); the built-in VideoLM keeps float32 weights (leave --dtype out; for its bf16 compute put "model": { "computeDtype": "bfloat16" } in --config, docs/model.md)');
  if (!resumed || !hfModel) return given;
  const { file } = resumed;
  const saved = resumed.args?.dtype;
  if (!saved) return given;
  // The model's dtype: 'auto' is float32 on the CPU (on CUDA it keeps BF16-stored frozen matrices in bf16).
  const norm = given === 'auto' && a.str('device') !== 'cuda' ? 'float32' : given;
  if (given && norm !== saved && !a.flag('override'))
    throw new UsageError(`train: --dtype ${given}: the run being resumed was trained with --dtype ${saved} (${file}); changing it breaks its trajectory: ` +
      `leave --dtype out (the run's is used) or add --override to go on in ${norm}`);
  return given ?? saved;
}

/** --lora-rank N [--lora-alpha A] [--lora-targets q_proj,v_proj|all-linear] [--lora-dropout P]: LoRA options, or undefined. */
function loraOptions(a: ParsedArgs): vp.LoraOptions | undefined {
  if (!a.has('lora-rank')) {
    for (const k of ['lora-alpha', 'lora-targets', 'lora-dropout']) if (a.has(k)) throw new UsageError(`train: --${k} needs --lora-rank`);
    return undefined;
  }
  const targets = a.str('lora-targets');
  return {
    rank: a.num('lora-rank', 8),
    ...defined({ alpha: a.num('lora-alpha'), dropout: a.num('lora-dropout') }),
    ...(targets ? { targets: targets === 'all-linear' ? 'all-linear' : (targets.split(',') as vp.LoraOptions['targets']) } : {}),
  };
}

/**
 * --data: a dataset folder (annotations.jsonl and its clips) or a LLaVA / ShareGPT
 * conversation file (.json or .jsonl: vp.openConversations), checked before any work.
 */
function dataArg(a: ParsedArgs, command: string): { path: string; open: () => vp.Dataset } {
  const path = a.required('data', command, 'DIR|FILE');
  let isFile = false;
  try {
    isFile = statSync(path).isFile();
  } catch {
    // missing or unreadable: inputDir below says which
  }
  if (!isFile) {
    inputDir('--data', path, 'a dataset folder, or a conversation file (.json or .jsonl)');
    return { path, open: () => vp.openDataset(path) };
  }
  inputFile('--data', path, 'a conversation file (.json or .jsonl)');
  if (!/\.jsonl?$/i.test(path)) throw new UsageError(`--data: ${path}: a file must be a LLaVA / ShareGPT conversation file ending in .json or .jsonl (or give a dataset folder)`);
  return { path, open: () => vp.openConversations(path) };
}

/**
 * `train`: a Trainer option error is restated with its flag, and a run folder this invocation
 * created is removed again when the command fails before writing anything into it.
 */
async function train(a: ParsedArgs): Promise<number> {
  const dataArgs = dataArg(a, 'train');
  const outPath = a.required('out', 'train', 'RUN_DIR');
  const cfg = readConfig(a.str('config'));
  const created = missingFolders(outPath);
  try {
    return await trainRun(a, dataArgs, outPath, cfg);
  } catch (e) {
    if (vp.distributedInfo().rank === 0) removeEmptyFolders(created);
    throw flagError(e, a, { path: a.str('config'), sft: cfg.sft, rl: cfg.rl });
  }
}

async function trainRun(a: ParsedArgs, dataArgs: ReturnType<typeof dataArg>, outPath: string, cfg: ReturnType<typeof readConfig>): Promise<number> {
  const from = a.str('model');
  if (from) inputDir('--model', from, 'a saved model folder');
  if (from && a.has('preset')) throw new UsageError('train: give --model DIR or --preset NAME, not both');
  if (a.flag('override') && !a.flag('resume')) throw new UsageError('train: --override only applies with --resume');
  const lora = loraOptions(a);
  if (lora && !from) throw new UsageError('train: --lora-rank needs --model DIR (a Hugging Face model folder)');
  const run = a.flag('resume') ? resumedRun(outPath) : undefined;
  const dtype = trainDtype(a, run, from !== undefined && !isVideoLMDir(from));
  const computeDtype = trainComputeDtype(a, run);
  const data = dataArgs.open();
  // --resume continues the run's own model (config and tokenizer from its checkpoint), whatever --data holds now.
  const resumeFrom = from ? undefined : run?.checkpoint;
  const out = outputDir('--out', outPath);
  const stage = a.str('stage') ?? 'both';
  const json = a.flag('json');
  // --resume without --seed continues with the run's own seed (training_args.json), which the trainer requires.
  const seed = a.has('seed') || !run ? a.num('seed', 0) : run.args?.seed ?? 0;
  const device = (a.str('device') ?? 'cpu') as vp.VideoLMDevice;
  // Under mpirun / torchrun every rank runs this; rank 0 alone prints and saves (the trainer writes on rank 0 only).
  const main = vp.distributedInfo().rank === 0;
  const note = (line: string) => main && process.stderr.write(line);
  let model: vp.VideoLM | vp.PretrainedModel;
  if (from) {
    model = await loadModelDir(from, device, dtype, computeDtype);
    if (lora) {
      if (!(model instanceof vp.PretrainedModel)) throw new UsageError('train: --lora-rank: LoRA applies to a Hugging Face model folder (--model DIR), not to a VideoLM');
      const r = model.addLora({ ...lora, seed });
      if (!json) note(`LoRA rank ${lora.rank} on ${r.targets.length} layers: ${r.trainableParams} trained parameters of ${model.numParams}\n`);
    }
    if (model instanceof vp.VideoLM && model.tokenizer) note(unseenWordsNote(`the vocabulary of --model ${from}`, model.tokenizer, data.annotations, dataArgs.path));
  } else if (resumeFrom) {
    model = await resumedVideoLM(a, resumeFrom, cfg.model, { device, ...(computeDtype ? { computeDtype } : {}) });
    note(unseenWordsNote(`the run's vocabulary (${join(resumeFrom, 'tokenizer.json')}, saved when it started)`, model.tokenizer!, data.annotations, dataArgs.path));
  } else {
    const preset = (a.str('preset') ?? 'tiny') as vp.VideoLMPreset;
    const tokenizer = vp.tokenizerForDataset(data.annotations);
    model = await vp.VideoLM.create({ preset, ...(cfg.model ?? {}), tokenizer, seed, device, ...(computeDtype ? { computeDtype } : {}) } as vp.VideoLMCreateOptions);
  }
  let bar: ProgressBar | undefined;
  const trainer = new vp.Trainer(model, {
    runDir: out, seed, checkpointEvery: a.num('checkpoint-every', 0), saveTotalLimit: a.num('save-total-limit'),
    onStep: (e) => {
      if (!main) return;
      if (json) console.log(JSON.stringify(e));
      else if (e.type === 'step') bar?.update(e.step, e.stage === 'sft' ? `loss ${e.loss.toFixed(3)}` : `reward ${e.reward.toFixed(3)}`);
      else if (e.type === 'checkpoint') process.stderr.write(`checkpoint ${e.path}\n`);
    },
  });
  let resumed: Awaited<ReturnType<vp.Trainer['resume']>> | undefined;
  if (a.flag('resume')) {
    const r = (resumed = await trainer.resume(out, { override: a.flag('override') }));
    if (main) process.stderr.write(`resumed ${r.path} (${r.stage} step ${r.step}${model instanceof vp.PretrainedModel ? `, dtype ${model.dtype}` : ''}${model.computeDtype === 'bfloat16' ? ', bf16 compute' : ''})\n`);
  }
  const sftOpts: vp.SftOptions = {
    ...(cfg.sft ?? {}),
    ...defined({ steps: a.num('steps'), epochs: a.num('epochs'), batchSize: a.num('batch-size'), lr: a.num('lr'), lambda: a.num('lambda') }),
    ...(a.flag('no-kim') ? { kim: false } : {}),
    ...(a.flag('no-contrastive') ? { contrastive: false } : {}),
  };
  const rlOpts: vp.RlOptions = {
    ...(cfg.rl ?? {}),
    ...defined({ steps: a.num('rl-steps'), lr: a.num('rl-lr'), groupSize: a.num('group-size') }),
    ...(a.has('comparative') ? { comparative: a.str('comparative') as vp.RlOptions['comparative'] } : {}),
  };
  const count = (o: { steps?: number; epochs?: number }, per: number) => o.steps ?? Math.max(1, Math.ceil(((o.epochs ?? 1) * data.length) / per));
  // Whether this call trained a step (a resumed run that was already finished has none to do).
  let trained = false;
  if (stage !== 'rl') {
    bar = json || !main ? undefined : new ProgressBar('sft', count(sftOpts, (sftOpts.batchSize ?? 8) * (sftOpts.gradAccum ?? 1)));
    const r = await trainer.sft(data, sftOpts);
    if (r.status !== 'done') return stopped(r);
    trained ||= r.last !== undefined;
  }
  if (stage !== 'sft') {
    bar = json || !main ? undefined : new ProgressBar('rl', count(rlOpts, rlOpts.promptsPerStep ?? 4));
    const r = await trainer.rl(data, rlOpts);
    if (r.status !== 'done') return stopped(r);
    trained ||= r.last !== undefined;
  }
  // A finished run resumed: said, and its saved model left as it is (written again only when missing).
  const finished = !trained && resumed !== undefined;
  const keep = finished && existsSync(join(out, 'model', 'config.json'));
  if (resumed && finished && main) {
    const line = `run already finished at step ${resumed.step} (${resumed.stage}): nothing to train${keep ? `; ${join(out, 'model')} is unchanged` : ''}`;
    (json ? process.stderr : process.stdout).write(line + '\n');
  }
  if (main && !keep) {
    await model.save(join(out, 'model'));
    if (!json) console.log(`saved the trained model to ${join(out, 'model')}`);
  }
  if (main && !keep && model instanceof vp.PretrainedModel && model.lora) {
    await model.saveAdapter(join(out, 'adapter'));
    if (!json) console.log(`saved the LoRA adapter (PEFT layout) to ${join(out, 'adapter')}`);
  }
  trainer.dispose();
  model.dispose();
  return 0;
}

async function evalCommand(a: ParsedArgs): Promise<number> {
  const modelDir = a.required('model', 'eval', 'DIR');
  const data = dataArg(a, 'eval').open();
  const model = await loadModelDir(modelDir, (a.str('device') ?? 'cpu') as vp.VideoLMDevice, a.str('dtype'), a.str('compute-dtype') as ComputeDtype | undefined);
  const json = a.flag('json');
  const bar = json ? undefined : new ProgressBar('eval', data.length * 2);
  let base = 0;
  const trainer = new vp.Trainer(model);
  const r = await trainer.evaluate(data, {
    maxTokens: a.num('max-tokens', 32),
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

async function generate(a: ParsedArgs): Promise<number> {
  const modelDir = inputDir('--model', a.required('model', 'generate', 'DIR'), 'a saved model folder');
  // --video is checked before the model loads (a text model refuses it below).
  const videoArg = a.str('video');
  if (videoArg !== undefined) inputFile('--video', videoArg, 'a clip (.npy or a video file)');
  const model = await loadModelDir(modelDir, (a.str('device') ?? 'cpu') as vp.VideoLMDevice, a.str('dtype'), a.str('compute-dtype') as ComputeDtype | undefined);
  const gen = { maxTokens: a.num('max-tokens', 32), temperature: a.num('temperature', 0), topP: a.num('top-p', 1), seed: a.num('seed', 0) };
  if (model instanceof vp.PretrainedModel && model.vlm) {
    // A vision-language model: the clip decoded as its processor samples it, the prompt as a user turn.
    const video = inputFile('--video', a.required('video', 'generate', 'FILE'), 'a clip (.npy or a video file)');
    const prompt = a.str('prompt') ?? 'Describe this video.';
    let clip: { data: Uint8Array; shape: number[] } | vp.DecodedVideo;
    let fps: number | undefined;
    if (video.toLowerCase().endsWith('.npy')) {
      const arr = vp.readNpy(video);
      if (arr.dtype !== 'uint8' || arr.shape.length !== 4 || arr.shape[3] !== 3) throw new TypeError(`--video: ${video} must hold uint8 [F, H, W, 3], got ${arr.dtype} [${arr.shape.join(', ')}]`);
      clip = { data: arr.data as Uint8Array, shape: arr.shape };
      fps = a.num('fps', 1);
    } else {
      const vs = (model.preprocessor?.video_sampling ?? {}) as { fps?: number; max_frames?: number };
      fps = model.vlm.family === 'idefics3' ? a.num('fps', vs.fps ?? 1) : undefined;
      clip = fps !== undefined ? vp.decodeVideo(video, { fps, maxFrames: a.num('frames', vs.max_frames ?? 64) }) : vp.decodeVideo(video, { frames: a.num('frames', 8) });
    }
    const text = await model.generate(clip, model.chatTemplate !== undefined ? [{ role: 'user', content: prompt }] : prompt, { ...gen, ...(fps !== undefined ? { fps } : {}) });
    if (a.flag('json')) console.log(JSON.stringify({ video, prompt, text }));
    else console.log(text);
    model.dispose();
    return 0;
  }
  if (model instanceof vp.PretrainedModel) {
    // A text model: the prompt as a user turn through the chat template when the folder has one.
    if (a.has('video')) {
      model.dispose();
      throw new UsageError(`generate: --video: ${model.architecture} is a text-only model`);
    }
    const prompt = a.required('prompt', 'generate', 'TEXT');
    const text = await model.generate(null, model.chatTemplate !== undefined ? [{ role: 'user', content: prompt }] : prompt, gen);
    if (a.flag('json')) console.log(JSON.stringify({ prompt, text }));
    else console.log(text);
    model.dispose();
    return 0;
  }
  const video = inputFile('--video', a.required('video', 'generate', 'FILE'), 'a clip (.npy or a video file)');
  const c = model.config;
  // A VideoLM reads exactly config.frames frames, sampled uniformly over the clip.
  for (const flag of ['fps', 'frames']) {
    if (a.str(flag) !== undefined) throw new RangeError(`--${flag}: applies to Hugging Face video models; this VideoLM samples its own ${c.frames} frames uniformly over the clip (leave --${flag} out)`);
  }
  let sample: { frames: Uint8Array; shape: [number, number, number, 3]; frameTimes: number[]; id: string };
  if (video.toLowerCase().endsWith('.npy')) {
    const arr = vp.readNpy(video);
    if (arr.dtype !== 'uint8' || arr.shape.length !== 4 || arr.shape[3] !== 3) throw new TypeError(`--video: ${video} must hold uint8 [F, H, W, 3], got ${arr.dtype} [${arr.shape.join(', ')}]`);
    sample = { frames: arr.data as Uint8Array, shape: arr.shape as [number, number, number, 3], frameTimes: Array.from({ length: arr.shape[0] }, (_, i) => i), id: video };
  } else {
    const d = vp.decodeVideo(video, { frames: c.frames, size: [c.imageSize, c.imageSize] });
    sample = { frames: d.frames, shape: d.shape, frameTimes: d.frameTimes, id: video };
  }
  const fitted = fitClip(sample, c.frames, c.imageSize);
  const prompt = a.str('prompt') ?? vp.CAPTION_PROMPT;
  const text = await model.generate(fitted.frames, prompt, gen);
  if (a.flag('json')) console.log(JSON.stringify({ video, prompt, text }));
  else console.log(text);
  model.dispose();
  return 0;
}

async function demo(a: ParsedArgs): Promise<number> {
  if (a.has('seed') && a.has('seeds')) throw new UsageError('demo: give --seed N or --seeds A,B,C, not both');
  const seeds = a.list('seeds') ?? (a.has('seed') ? [a.num('seed', 0)] : undefined);
  const json = a.flag('json');
  let arms: DemoArm[] | undefined;
  const armsText = a.str('arms');
  if (armsText !== undefined) {
    try {
      arms = demoArms(armsText.split(','), 'demo: --arms');
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  }
  const out = a.str('out');
  if (out !== undefined) outputDir('--out', out);
  const quick = a.flag('quick');
  const full = a.flag('full');
  if (quick && full) throw new UsageError('demo: give --quick or --full, not both');
  const keyInfo = a.str('key-info') as 'extracted' | 'annotated' | undefined;
  watchDemoParent();
  const jobs = a.num('jobs', 1);
  const allSeeds = seeds ?? DEMO_PLANS[full ? 'full' : quick ? 'quick' : 'default'].seeds;
  if (jobs > 1 && allSeeds.length > 1) {
    // The seeds' arms train in child processes; the run below then reads every one back.
    const args = Object.entries(a.entries())
      .filter(([k]) => k !== 'jobs' && k !== 'seed' && k !== 'seeds')
      .flatMap(([k, v]) => (v === true ? [`--${k}`] : v === false ? [] : [`--${k}`, Array.isArray(v) ? v.join(',') : String(v)]));
    const r = await runDemoJobs({ args, seeds: allSeeds, jobs, log: json ? () => {} : undefined });
    if (r.code !== 0) {
      console.error(r.message);
      return r.code;
    }
  }
  let r: DemoResult;
  try {
    r = await runDemo({
      quick, full, seeds, out, progress: !json, arms, keyInfo,
      contrastive: defined({ lambda: a.num('lambda'), tapLayer: a.num('tap-layer') }),
      plan: defined({ sftSteps: a.num('sft-steps'), rlSteps: a.num('rl-steps'), trainClips: a.num('train-clips'), testClips: a.num('test-clips') }),
      log: json ? () => {} : undefined,
    });
  } catch (e) {
    if (!(e instanceof DemoInterrupted)) throw e;
    console.error(e.message);
    return e.signal === 'SIGTERM' ? 143 : 130;
  }
  if (json) {
    console.log(JSON.stringify({ table: r.table, comparisons: r.comparisons, extraction: r.extraction, runs: r.runs.map(({ perClip: _p, ...x }) => x), report: r.report, seconds: r.seconds, seeds: r.seeds, arms: r.arms, keyInfo: r.keyInfo, smokeRun: quick },
      (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v)));
    return 0;
  }
  const { lambda, tapLayer } = r.plan.sft; // set in the plan only when --lambda / --tap-layer were given
  const nce = [lambda !== undefined ? `λ ${lambda}` : '', tapLayer !== undefined ? `tap layer ${tapLayer}` : ''].filter(Boolean).join(', ');
  const variant = `${armsText !== undefined ? `; arms ${r.arms.join(', ')}` : ''}${r.keyInfo === 'annotated' ? '; method arms on annotated key info' : ''}${nce ? `; contrastive term ${nce}` : ''}`;
  console.log(`\nheld-out results (${r.plan.testClips} clips; seeds ${r.seeds.join(', ')}${variant}${r.seeds.length > 1 ? '; mean ± std over seeds' : ''}):\n`);
  console.log(formatDemoTable(r.table));
  console.log(`\n${formatDemoComparisons(r.comparisons)}`);
  const x = r.extraction;
  console.log(`\nkey-information extraction (training clips, against the annotations${r.keyInfo === 'annotated' ? '; not used by this run' : ''}): keywords precision ${x.keywordPrecision.toFixed(3)} recall ${x.keywordRecall.toFixed(3)}; key frames precision ${x.keyFramePrecision.toFixed(3)} recall ${x.keyFrameRecall.toFixed(3)}`);
  if (quick)
    console.log(`smoke run (--quick: ${r.plan.sftSteps} SFT steps, ${r.plan.testClips} test clips): it checks that everything runs end to end; ` +
      'its numbers and differences are noise, not results (the default run and docs/results.md measure the method)');
  console.log(`report: ${r.report}  (${r.seconds.toFixed(0)} s)`);
  return 0;
}

function doctor(a: ParsedArgs): number {
  let info: vp.BackendInfo;
  try {
    info = vp.backendInfo();
  } catch (e) {
    console.error((e as Error).message);
    return 1;
  }
  const addon = loadAddon();
  const driver = cudaDriverPresent();
  const dist = distributedSummary();
  if (a.flag('json')) {
    console.log(JSON.stringify({ ...info, attempts: addon.attempts, cudaDriver: driver, distributed: dist }));
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
  console.log(`  distributed ${dist.line}`);
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

const DEMO_FLAGS: FlagSpecs = {
  quick: { kind: 'bool' }, full: { kind: 'bool' }, seed: SEED, seeds: { kind: 'int-list', min: 0, max: 2 ** 32 - 1 }, out: PATH,
  'sft-steps': STEPS, 'rl-steps': STEPS, arms: { kind: 'string' }, 'key-info': { kind: 'string', choices: ['extracted', 'annotated'] }, 'train-clips': { kind: 'int', min: 1, max: 10_000_000 }, 'test-clips': { kind: 'int', min: 1, max: 10_000_000 }, lambda: { kind: 'number', min: 0 }, 'tap-layer': { kind: 'int', min: 0, max: DEMO_PLANS.full.model.layers }, jobs: { kind: 'int', min: 1, max: 256 }, json: JSON_FLAG,
};

const commands: Record<string, Command> = {
  doctor: {
    summary: 'show which native binary loaded, the CPU ISA path, and whether CUDA is used (and why not)',
    usage: 'videoperceiver doctor [--json]',
    flags: { json: JSON_FLAG },
    run: doctor,
  },
  start: {
    summary: 'what `npm start` runs: doctor, then the demo',
    usage: 'videoperceiver start [demo options]',
    flags: DEMO_FLAGS,
    async run(args) {
      const rc = doctor(parseArgs('doctor', [], commands.doctor.flags));
      if (rc !== 0) return rc;
      console.log('');
      return demo(args);
    },
  },
  demo: {
    summary: 'the method end to end and its ablation: (a) plain SFT, (b) SFT + KIM + contrastive, (b0) SFT + contrastive without KIM, (c) (b) + comparative GRPO, (c0) (b) + plain GRPO, evaluated on held-out clips with paired statistics; writes report.html and results.json',
    usage: 'videoperceiver demo [--quick | --full] [--seed 0 | --seeds 0,1,2] [--out ./videoperceiver-demo] [--arms a,b,b0,c,c0] [--key-info extracted|annotated] [--lambda 0.5] [--tap-layer N] [--jobs N] [--sft-steps N] [--rl-steps N] [--train-clips N] [--test-clips N] [--json]\n\n' +
      '--quick is a smoke run (about 2 minutes): it shows that everything runs; its numbers are noise. ' +
      '--full is the powered ablation (10 seeds, 1024 held-out clips; about 55 minutes on 2 cores with --jobs 2); it resumes per seed and arm when run again with the same --out. ' +
      '--arms runs only these arms (default all five; (c) and (c0) continue (b)\'s model, so they need b); the table and the report show the arms run, and the comparisons between them. ' +
      '--key-info: where the method arms\' KIM, contrastive query and RL take key frames and keywords from: extracted (default: the caption text and the transient detector) or annotated (the annotations). ' +
      '--lambda and --tap-layer set the method arms\' contrastive term: its weight (default 0.5) and the decoder layer it taps (default half the layers, 2 of 4). ' +
      '--jobs N splits the seeds over N processes sharing --out, each with VP_NUM_THREADS = cores / N unless set (on 2 cores, --full --jobs 2 is the fastest); their lines come prefixed with their seeds, and the combined table follows. ' +
      'Results of another --arms, --key-info, --lambda or --tap-layer are not read back into a resumed run.',
    flags: DEMO_FLAGS,
    run: demo,
  },
  train: {
    summary: 'train a VideoLM or a Hugging Face model on a dataset folder or a conversation file: stage 1 (SFT with KIM + contrastive), stage 2 (comparative GRPO), or both',
    usage: 'videoperceiver train --data DIR|FILE.json|FILE.jsonl --out RUN_DIR [--stage sft|rl|both] [--config FILE.json] [--model DIR [--lora-rank R] [--lora-alpha A] [--lora-targets q_proj,v_proj|all-linear] [--lora-dropout P] [--dtype float32|bfloat16|auto] | --preset tiny|small] [--compute-dtype float32|bfloat16] [--steps N] [--epochs N] [--batch-size 8] [--lr 1e-3] [--lambda 0.5] [--no-kim] [--no-contrastive] [--rl-steps N] [--rl-lr 1e-4] [--group-size 4] [--comparative baseline|pairwise|threshold|none] [--seed 0] [--checkpoint-every N] [--save-total-limit N] [--resume [--override]] [--device cpu|cuda] [--json]\n\n' +
      '--data: a dataset folder (annotations.jsonl and its clips, docs/data.md) or a LLaVA / ShareGPT conversation file (.json array or .jsonl of { video, conversations: [{ from: human|gpt, value }] } or { videos, messages: [{ role, content }] }): ' +
      'the last user turn is the prompt, the assistant turn after it the target, the answer\'s event keywords the RL reward\'s and the evaluation\'s ground truth (docs/pretrained.md). ' +
      'config file: { "model": { VideoLM config }, "sft": { SftOptions }, "rl": { RlOptions } } (every key: docs/training.md); flags override it. ' +
      'The trained model is saved to RUN_DIR/model; checkpoints to RUN_DIR/checkpoints (--save-total-limit N keeps the N newest, and always the best and the last); ' +
      'metrics to RUN_DIR/metrics.jsonl; the resolved hyper-parameters to RUN_DIR/training_args.json. ' +
      'Ctrl-C or SIGTERM writes a checkpoint; --resume continues from it (a changed hyper-parameter is refused unless --override) with the run\'s own model, config and tokenizer (from the checkpoint, not rebuilt from --data: words of --data outside its vocabulary are named and read as <unk>); a finished run resumed says so and trains nothing. ' +
      '--model DIR takes a saved VideoLM or a Hugging Face folder (LlamaForCausalLM, Qwen2ForCausalLM: the text side, prompt + response without video; SmolVLM, Idefics3, LLaVA: the clip in the user turn, KIM at the frame level, the contrastive term over the visual tokens of the key frames at the middle decoder layer (sft.tapLayer in --config); docs/pretrained.md); with --lora-rank only LoRA adapters train, and RUN_DIR/adapter gets them in PEFT layout; ' +
      '--dtype bfloat16 holds its frozen weight matrices in bfloat16 (half the bytes; float32 is the default, auto the same), is saved in training_args.json, and --resume loads the run\'s dtype again (another --dtype is refused unless --override). ' +
      '--compute-dtype bfloat16 (CPU; a VideoLM or a Hugging Face model) multiplies the weight matrices through bfloat16 copies with float32 accumulation while training float32 weights (mixed precision, docs/training.md); it is recorded with each stage\'s hyper-parameters and --resume uses the run\'s. ' +
      'Data parallel (a VideoLM or a --model folder, LoRA included): mpirun -np N videoperceiver train ... (docs/distributed.md); --batch-size is the global batch, split across the ranks.',
    flags: {
      data: PATH, out: PATH, stage: { kind: 'string', choices: ['sft', 'rl', 'both'] }, config: PATH, model: PATH,
      preset: { kind: 'string', choices: Object.keys(vp.VIDEOLM_PRESETS) }, steps: STEPS, epochs: { kind: 'number', gt: 0, max: 1e6 },
      'batch-size': { kind: 'int', min: 1, max: 2 ** 31 - 1 }, lr: { kind: 'number', gt: 0 }, lambda: { kind: 'number', min: 0 },
      'no-kim': { kind: 'bool' }, 'no-contrastive': { kind: 'bool' }, 'rl-steps': STEPS, 'rl-lr': { kind: 'number', gt: 0 },
      'group-size': { kind: 'int', min: 2, max: 4096 }, comparative: { kind: 'string', choices: ['baseline', 'pairwise', 'threshold', 'none'] },
      seed: SEED, 'checkpoint-every': { kind: 'int', min: 0, max: MAX_STEPS }, 'save-total-limit': { kind: 'int', min: 1, max: 1_000_000 },
      resume: { kind: 'bool' }, override: { kind: 'bool' }, device: DEVICE, json: JSON_FLAG,
      'lora-rank': { kind: 'int', min: 1, max: 65536 }, 'lora-alpha': { kind: 'number', gt: 0 }, 'lora-targets': { kind: 'string' }, 'lora-dropout': { kind: 'number', min: 0, max: 1 },
      dtype: DTYPE, 'compute-dtype': COMPUTE_DTYPE,
    },
    run: train,
  },
  eval: {
    summary: 'evaluate a saved model on a dataset: multiple-choice accuracy by option likelihood, keyword recall of generated captions',
    usage: 'videoperceiver eval --model DIR --data DIR|FILE.json|FILE.jsonl [--max-tokens 32] [--dtype float32|bfloat16|auto] (Hugging Face folders) [--compute-dtype float32|bfloat16] [--device cpu|cuda] [--json]',
    flags: { model: PATH, data: PATH, 'max-tokens': { kind: 'int', min: 1, max: 1 << 24 }, dtype: DTYPE, 'compute-dtype': COMPUTE_DTYPE, device: DEVICE, json: JSON_FLAG },
    run: evalCommand,
  },
  generate: {
    summary: 'generate text for a video (.npy uint8 [F, H, W, 3] or a video file decoded by ffmpeg) with a saved model',
    usage: 'videoperceiver generate --model DIR (--video FILE | a Hugging Face text model) [--prompt "describe the clip :"] [--max-tokens 32] [--temperature 0] [--top-p 1] [--seed 0] [--fps F] [--frames N] (Hugging Face video models) [--dtype float32|bfloat16|auto] (Hugging Face folders) [--compute-dtype float32|bfloat16] [--device cpu|cuda] [--json]',
    flags: {
      model: PATH, video: PATH, prompt: PATH, 'max-tokens': { kind: 'int', min: 0, max: 1 << 24 }, temperature: { kind: 'number', min: 0, max: 1e4 },
      fps: { kind: 'number', gt: 0, max: 1000 }, frames: { kind: 'int', min: 1, max: 4096 },
      'top-p': { kind: 'number', gt: 0, max: 1 }, seed: { kind: 'int', min: 0, max: Number.MAX_SAFE_INTEGER }, dtype: DTYPE, 'compute-dtype': COMPUTE_DTYPE, device: DEVICE, json: JSON_FLAG,
    },
    run: generate,
  },
  synth: {
    summary: 'generate a dataset of fine-grained action clips (annotations.jsonl + .npy clips, deterministic from a seed)',
    usage: 'videoperceiver synth --out DIR [--count 200] [--seed 0] [--frames 16] [--size 32] [--fps 8] [--event-rate 0.8] [--mp4] [--force] [--json]\n\n' +
      'DIR must be empty or new; --force replaces the dataset in a folder that holds one (annotations.jsonl replaced last, the earlier clips/clip-*.npy|.mp4 files the new dataset does not use removed; other files kept).',
    flags: {
      out: PATH, count: { kind: 'int', min: 1, max: 10_000_000 }, seed: SEED, frames: { kind: 'int', min: 4, max: 4096 },
      size: { kind: 'int', min: 16, max: 4096 }, fps: { kind: 'number', gt: 0, max: 1e4 }, 'event-rate': { kind: 'number', min: 0, max: 1 },
      mp4: { kind: 'bool' }, force: { kind: 'bool' }, json: JSON_FLAG,
    },
    run(a) {
      const out = outputDir('--out', a.required('out', 'synth', 'DIR'));
      const force = a.flag('force');
      if (!force) refuseNonEmpty('--out', out, 'add --force to replace the dataset in it');
      const count = a.num('count', 200);
      const seed = a.num('seed', 0);
      const bar = a.flag('json') ? undefined : new ProgressBar('synth', count);
      const anns = vp.synthDataset(out, {
        count, seed, frames: a.num('frames', 16), size: a.num('size', 32), fps: a.num('fps', 8), eventRate: a.num('event-rate', 0.8), mp4: a.flag('mp4'), overwrite: force,
        onProgress: (d) => bar?.update(d),
      });
      const events = anns.filter((x) => x.events?.length).length;
      if (a.flag('json')) console.log(JSON.stringify({ out, count, seed, withEvent: events }));
      else console.log(`wrote ${count} clips (${events} with a transient event) to ${out}`);
      return 0;
    },
  },
  bench: {
    summary: 'run the benchmarks against PyTorch (in a checkout: bench/run.ts; args passed through)',
    usage: 'videoperceiver bench [name...] [--filter NAME] [--quick] [--json] [--save]',
    flags: { filter: { kind: 'string' }, quick: { kind: 'bool' }, json: JSON_FLAG, save: { kind: 'bool' } },
    positional: true,
    run(_a, raw) {
      const runner = join(packageRoot, 'bench', 'run.ts');
      if (!existsSync(runner)) {
        console.error('The benchmark suite ships with the source checkout, not the npm package; running the built-in quick benchmark.');
        return quickBench().then(() => 0);
      }
      const r = spawnSync(process.execPath, ['--import=tsx', runner, ...raw], { stdio: 'inherit', cwd: packageRoot });
      return r.status ?? 1;
    },
  },
  build: {
    summary: 'build the native addon from source (cmake-js, or node-gyp when CMake is absent)',
    usage: 'videoperceiver build [--gyp]',
    flags: { gyp: { kind: 'bool' } },
    run(a) {
      const hasCmake = spawnSync('cmake', ['--version']).status === 0;
      const script = a.flag('gyp') || !hasCmake ? 'build-gyp.mjs' : 'build-native.mjs';
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

/** The CLI's commands and their flags (for tests and docs). */
export const COMMANDS: Readonly<Record<string, Pick<Command, 'usage' | 'flags'>>> = commands;

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    help();
    return name ? 0 : 1;
  }
  const cmd = commands[name];
  if (!cmd) {
    console.error(`unknown command '${name}'${didYouMean(name, Object.keys(commands), (c) => `'${c}'`)}`);
    help();
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(`${cmd.usage}\n\n${cmd.summary}`);
    return 0;
  }
  return cmd.run(parseArgs(name, rest, cmd.flags, { positional: cmd.positional }), rest);
}

// Run only as the program (tests import COMMANDS).
if (process.argv[1] && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url))) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      console.error(e instanceof Error ? e.message : e);
      process.exit(e instanceof UsageError ? 2 : 1);
    },
  );
}
