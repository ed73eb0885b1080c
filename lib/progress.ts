// A progress bar for long CLI work: count, rate and ETA on one redrawn line on
// a TTY; a line every few seconds otherwise (logs stay readable in CI).
export class ProgressBar {
  readonly #label: string;
  readonly #total: number;
  readonly #start = Date.now();
  readonly #stream: NodeJS.WriteStream;
  #lastDraw = 0;
  #done = 0;

  constructor(label: string, total: number, stream: NodeJS.WriteStream = process.stderr) {
    this.#label = label;
    this.#total = total;
    this.#stream = stream;
  }

  update(done: number, extra = ''): void {
    this.#done = done;
    const now = Date.now();
    const finished = done >= this.#total;
    const interval = this.#stream.isTTY ? 100 : 5000;
    if (!finished && now - this.#lastDraw < interval) return;
    this.#lastDraw = now;
    const secs = (now - this.#start) / 1000;
    const rate = done / Math.max(secs, 1e-9);
    const eta = rate > 0 ? (this.#total - done) / rate : Infinity;
    const frac = this.#total ? done / this.#total : 1;
    const width = 24;
    const bar = '█'.repeat(Math.round(frac * width)).padEnd(width, '·');
    const line = `${this.#label} ${bar} ${done}/${this.#total} ${rate.toFixed(1)}/s ` +
      (finished ? `${secs.toFixed(1)}s` : `ETA ${Number.isFinite(eta) ? eta.toFixed(0) + 's' : '?'}`) + (extra ? ` ${extra}` : '');
    if (this.#stream.isTTY) this.#stream.write(`\r${line}\x1b[K${finished ? '\n' : ''}`);
    else this.#stream.write(line + '\n');
  }

  get done(): number {
    return this.#done;
  }
}
