// One rank (or the one process) of test/distributed.test.ts's training runs:
//   node --import=tsx test/mpi/train.ts <data dir> <run dir | -> <out> <mode> [steps] [batchSize] [checkpointEvery]
// modes: 'sft' trains; 'resume' resumes from the run dir, then trains; 'throw'
// makes rank 1 throw in its step callback at step 3; 'kill' makes rank 1
// SIGKILL itself at step 3; 'rl' runs RL steps; 'eval' evaluates. Each rank
// writes <out>.<rank>.pid at start, <out>.<rank>.exit (its exit code, when it
// exits by itself) and <out>.<rank>.json: its launch, a checksum of its
// parameters, the events and the result.
import { writeFileSync } from 'node:fs';
import * as vp from '../../lib/index.js';

const [dataDir, runDir, out, mode = 'sft', stepsArg = '20', batchArg = '4', everyArg = '1'] = process.argv.slice(2);
const rankEnv = process.env.OMPI_COMM_WORLD_RANK ?? '0';
writeFileSync(`${out}.${rankEnv}.pid`, String(process.pid));
// Registered before distributedInfo(), so it runs before the engine's own exit hook.
process.on('exit', (code) => writeFileSync(`${out}.${rankEnv}.exit`, String(code)));
const info = vp.distributedInfo();
const ds = vp.openDataset(dataDir);
const MODEL = { imageSize: 16, patchSize: 8, frames: 8, width: 48, layers: 2, heads: 4, kvHeads: 2, mlpRatio: 2, maxSeq: 256, tied: true };
const model = await vp.VideoLM.create({ ...MODEL, tokenizer: vp.tokenizerForDataset(ds.annotations), seed: 1 });
const events: vp.MetricEvent[] = [];
const trainer = new vp.Trainer(model, {
  seed: 3,
  ...(runDir !== '-' ? { runDir, checkpointEvery: Number(everyArg) } : {}),
  onStep: (e) => {
    events.push(e);
    if (e.type === 'step' && e.step === 3 && info.rank === 1) {
      if (mode === 'throw') throw new Error('injected failure on rank 1 at step 3');
      if (mode === 'kill') process.kill(process.pid, 'SIGKILL');
    }
    if (e.type === 'step') console.log(`rank ${info.rank} step ${e.step}`);
  },
});
const steps = Number(stepsArg);
const batchSize = Number(batchArg);
let result: unknown;
if (mode === 'rl') result = await trainer.rl(ds, { steps, promptsPerStep: batchSize, groupSize: 4, maxTokens: 8 });
else if (mode === 'eval') result = await trainer.evaluate(vp.openDataset(dataDir), { maxTokens: 6 });
else {
  if (mode === 'resume') await trainer.resume(runDir);
  result = await trainer.sft(ds, { steps, batchSize, lr: 3e-3 });
}
const params = model.getBuffer('params');
let sum = 0;
for (let i = 0; i < params.length; i++) sum += params[i] * ((i % 7) + 1);
writeFileSync(`${out}.${info.rank}.json`, JSON.stringify({ info, checksum: sum, events, result }));
