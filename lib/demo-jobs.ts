// `videoperceiver demo --jobs N`: the demo's seeds split over N child processes
// that share one output folder, each with its own share of the cores
// (VP_NUM_THREADS = cores / N unless the caller set it). Each child is the same
// `demo` command with its seeds; it writes every finished (seed, arm) into the
// shared folder (runs/seed-N/<arm>/result.json) as a single run would, so
// afterwards one in-process run over all the seeds reads them back and writes
// the combined table, results.json and report.html (the caller does that).
// On a small model, one thread per process on separate seeds uses the cores
// better than two threads on one model; a run is deterministic for its thread
// count, so the same --jobs on the same machine gives the same numbers.
// The children run in their own process groups: Ctrl-C (SIGINT) or SIGTERM
// reaches this process, which passes it on once to each child; each stops at
// its next step with a checkpoint, and the same command resumes every seed.
// Each child holds a pipe from this process on its stdin (VP_DEMO_JOB=1 tells
// it to watch): if this process dies without passing a signal on (SIGKILL, a
// crash), the pipe closes and the child stops itself the same way (SIGTERM).
// Their stderr (progress lines, a few seconds apart off a terminal) comes out
// prefixed with their seeds; their stdout (each its own partial table) is dropped.
// Cost: N processes, each loading the addon and its datasets (the dataset is
// generated once: lib/data/synth-cache.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import { availableParallelism } from 'node:os';

/** Set in a child's environment: it stops (SIGTERM to itself) when its stdin, the parent's pipe, closes. */
export const DEMO_JOB_ENV = 'VP_DEMO_JOB';

/** In a child started by runDemoJobs: stop with a checkpoint when the parent is gone (its pipe closed). */
export function watchDemoParent(): void {
  if (process.env[DEMO_JOB_ENV] !== '1') return;
  // With the parent gone, stderr (its pipe) has no reader: a write would fail with EPIPE and,
  // unhandled, end the process before the checkpoint. Such errors are dropped.
  process.stderr.on('error', () => {});
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    process.kill(process.pid, 'SIGTERM');
  };
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
  process.stdin.resume();
  (process.stdin as unknown as { unref?: () => void }).unref?.();
}

/** The seeds dealt round-robin to `jobs` groups (no empty group). */
export function splitSeeds(seeds: readonly number[], jobs: number): number[][] {
  const n = Math.max(1, Math.min(jobs, seeds.length));
  const groups: number[][] = Array.from({ length: n }, () => []);
  seeds.forEach((s, i) => groups[i % n]!.push(s));
  return groups;
}

/** Threads per child: VP_NUM_THREADS when set, else the available cores shared out (at least 1). */
export function threadsPerJob(jobs: number, env: NodeJS.ProcessEnv = process.env): number {
  const set = Number(env.VP_NUM_THREADS);
  if (Number.isInteger(set) && set >= 1) return set;
  return Math.max(1, Math.floor(availableParallelism() / jobs));
}

export interface DemoJobsOptions {
  /** The `demo` flags to pass on to every child (without --seed, --seeds and --jobs). */
  args: readonly string[];
  seeds: readonly number[];
  jobs: number;
  /** Where the prefixed child lines go (default stderr). */
  log?: (line: string) => void;
}

export interface DemoJobsResult {
  /** 0 when every child finished; 130 / 143 when stopped by SIGINT / SIGTERM; else the first failure's code. */
  code: number;
  /** What went wrong, naming the seeds (empty when code is 0). */
  message: string;
}

/** Runs the children and waits for all of them. */
export async function runDemoJobs(opts: DemoJobsOptions): Promise<DemoJobsResult> {
  const log = opts.log ?? ((s: string) => process.stderr.write(s + '\n'));
  const groups = splitSeeds(opts.seeds, opts.jobs);
  const threads = threadsPerJob(groups.length);
  const script = process.argv[1];
  if (!script) return { code: 1, message: 'demo --jobs: cannot find the command line script to start the child processes' };
  log(`demo --jobs ${groups.length}: seeds ${groups.map((g) => g.join(',')).join(' | ')}, one process each, ${threads} thread${threads > 1 ? 's' : ''} per process`);
  let stopping: NodeJS.Signals | undefined;
  const children: ChildProcess[] = [];
  const forward = (sig: NodeJS.Signals) => {
    if (stopping) return;
    stopping = sig;
    log(`demo --jobs: ${sig}: stopping every process at its next step (each keeps a checkpoint)`);
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill(sig);
  };
  const onInt = () => forward('SIGINT');
  const onTerm = () => forward('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  try {
    const ends = groups.map((seeds) => new Promise<{ seeds: number[]; code: number | null; signal: NodeJS.Signals | null; tail: string[] }>((done) => {
      const tag = `[seeds ${seeds.join(',')}]`;
      const child = spawn(process.execPath, [...process.execArgv, script, 'demo', ...opts.args, '--seeds', seeds.join(',')], {
        env: { ...process.env, VP_NUM_THREADS: String(threads), [DEMO_JOB_ENV]: '1' },
        stdio: ['pipe', 'ignore', 'pipe'],
        detached: true,
      });
      children.push(child);
      child.stdin!.on('error', () => {}); // a child that ended closes its end first
      if (child.pid !== undefined) log(`${tag} started (pid ${child.pid})`);
      const tail: string[] = [];
      let partial = '';
      child.stderr!.setEncoding('utf8');
      child.stderr!.on('data', (chunk: string) => {
        const lines = (partial + chunk).split(/\r?\n|\r/);
        partial = lines.pop() ?? '';
        for (const l of lines) {
          if (!l.trim()) continue;
          log(`${tag} ${l}`);
          tail.push(l);
          if (tail.length > 20) tail.shift();
        }
      });
      child.on('error', (e) => {
        tail.push(String(e));
        done({ seeds, code: 1, signal: null, tail });
      });
      child.on('close', (code, signal) => {
        if (partial.trim()) log(`${tag} ${partial}`);
        done({ seeds, code, signal, tail });
      });
    }));
    const ended = await Promise.all(ends);
    const failed = ended.filter((e) => e.code !== 0);
    if (failed.length === 0) return { code: 0, message: '' };
    if (stopping || failed.every((e) => e.code === 130 || e.code === 143)) {
      const code = (stopping ?? (failed[0]!.code === 143 ? 'SIGTERM' : 'SIGINT')) === 'SIGTERM' ? 143 : 130;
      return { code, message: `demo --jobs: stopped (seeds ${failed.map((e) => e.seeds.join(',')).join(' | ')} unfinished); run the same command again (same --out) to resume` };
    }
    const f = failed.find((e) => e.code !== 130 && e.code !== 143) ?? failed[0]!;
    return {
      code: f.code ?? 1,
      message: `demo --jobs: the process of seeds ${f.seeds.join(',')} failed (${f.signal ? `signal ${f.signal}` : `exit ${f.code}`}); its last lines:\n${f.tail.join('\n')}`,
    };
  } finally {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
  }
}
