// The TypeScript examples that docs/ walk through: every examples/*.ts
// type-checks under the package's compiler options (tsc --noEmit, strict), and
// examples/smolvlm-video.ts runs end to end on a tiny SmolVLM folder and a
// conversation file of three clips: LoRA SFT with KIM variants and the
// contrastive term (key frames from the transient detector), the RL stage, the
// PEFT adapter and the merged model in the Hugging Face layout.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vp from '../lib/index.js';
import { readSafetensors } from '../lib/model/safetensors.js';
import { writeTinyVlm } from './vlm-fixtures.js';

const root = join(import.meta.dirname, '..');
const work = mkdtempSync(join(tmpdir(), 'vp-examples-'));
test.after.always(() => rmSync(work, { recursive: true, force: true }));

test('every examples/*.ts type-checks (strict, NodeNext)', (t) => {
  const files = readdirSync(join(root, 'examples')).filter((f) => f.endsWith('.ts')).map((f) => join('examples', f));
  t.true(files.includes(join('examples', 'smolvlm-video.ts')));
  const r = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '--noEmit', '--strict', '--target', 'ES2022', '--module', 'NodeNext',
    '--moduleResolution', 'NodeNext', '--skipLibCheck', '--types', 'node', '--lib', 'ES2022,ESNext.Disposable', ...files], { cwd: root, encoding: 'utf8', timeout: 240_000 });
  t.is(r.status, 0, `${r.stdout}${r.stderr}`);
});

test('examples/smolvlm-video.ts trains a tiny SmolVLM with LoRA, KIM and the contrastive term, then RL, and saves both layouts', (t) => {
  writeTinyVlm(join(work, 'smol'), { kind: 'smolvlm', seed: 39 });
  const anns = vp.synthDataset(join(work, 'data'), { count: 3, seed: 4, frames: 8, fps: 4, mp4: true });
  writeFileSync(join(work, 'data', 'conv.json'), JSON.stringify(anns.map((a) => ({
    video: `clips/${a.id}.mp4`, conversations: [{ from: 'human', value: '<video>\nWhat happens?' }, { from: 'gpt', value: a.caption }],
  }))));
  // Run in `work` (the example writes into its working folder); tsx loaded by its resolved path.
  const r = spawnSync(process.execPath, [`--import=${import.meta.resolve('tsx')}`, join(root, 'examples', 'smolvlm-video.ts'), join('data', 'conv.json'), 'smol'],
    { cwd: work, encoding: 'utf8', timeout: 300_000 });
  t.is(r.status, 0, r.stderr.slice(-2000));
  const events = readFileSync(join(work, 'smolvlm-run', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { type: string; stage: string; contrastSamples?: number; kimSequences?: number });
  const sft = events.filter((e) => e.type === 'step' && e.stage === 'sft');
  t.is(sft.length, 20);
  t.is(events.filter((e) => e.type === 'step' && e.stage === 'rl').length, 5);
  t.true(sft.some((e) => (e.contrastSamples ?? 0) > 0 && (e.kimSequences ?? 0) > 0), 'KIM variants and contrastive groups');
  t.true(existsSync(join(work, 'smolvlm-lora', 'adapter_model.safetensors')));
  t.deepEqual(readSafetensors(join(work, 'smolvlm-tuned', 'model.safetensors')).order, readSafetensors(join(work, 'smol', 'model.safetensors')).order);
});
