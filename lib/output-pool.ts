// The pool of recycled CPU output buffers behind overwrittenLike / emptyLike
// (lib/tensor.ts).
//
// Why: a training step allocates the same outputs step after step (a
// 135M-parameter decoder: about 2 GB of activations, their gradients and the
// weights' gradients a step). V8 frees an ArrayBuffer only at a garbage
// collection, and that much external memory itself triggers collections: about
// 220 ms a step went to the collector there, plus malloc and first-touch page
// faults for memory that was freed a moment before. Code that knows an output is
// dead (a model's backward, for the activations its forward saved) hands it back
// with recycleOutput (lib/tensor.ts); the next output of the same byte length
// takes it instead of allocating.
//
// Algorithm: free lists keyed by exact byte length (a step's shapes repeat, so
// exact sizes match); at most POOL_MAX_BYTES held; a length whose buffers are
// neither taken nor given back for RELEASE_MS is let go (checked as buffers are
// taken and given back, and by an unref'd timer that never keeps the process
// alive), so buffers that a later phase does not reuse (a video LLM's
// vision-tower sizes while its decoder runs) are not held through it, and an
// idle process returns to its own size. Fewer fresh buffers also means fewer
// collections, so garbage that is not recycled can live a little longer: the
// SmolVLM2-256M bench step peaked 0.4 GB higher (4.5 GB against 4.1) while
// running 12-15 % faster (docs/pretrained.md). Cost: O(1) a take or a
// give-back, O(sizes) a sweep every RELEASE_MS / 2 while anything is held.
//
// VP_POOL_POISON=1 fills every buffer given back with NaN: a use after recycling
// then shows as NaN in a test instead of silently reading another op's output.
// VP_POOL_MIN_BYTES sets the smallest output that is pooled (default 16 KB).
// VP_OUTPUT_POOL=off turns the pool off (every output newly allocated, as
// before it existed): a switch for comparing, and a way out should it misbehave.

/** Most bytes the free lists hold. */
const POOL_MAX_BYTES = 2 ** 30;
/** A size whose buffers have not been taken or given back for this long is let go. */
const RELEASE_MS = 1000;

/** Free buffers of one byte length, and when that length was last taken or given back. */
interface SizeClass {
  free: ArrayBuffer[];
  lastUse: number;
}
const classes = new Map<number, SizeClass>();
/** Buffers now in the free lists (a buffer given back twice is taken once). */
const pooled = new Set<ArrayBuffer>(); // every entry leaves when taken or let go: a plain Set holds nothing longer
let heldBytes = 0;
let timer: ReturnType<typeof setTimeout> | null = null;
const poison = process.env.VP_POOL_POISON === '1';
const enabled = process.env.VP_OUTPUT_POOL !== 'off';

let lastSweep = 0;

/**
 * Lets go of the sizes idle for RELEASE_MS. Runs from the timer when the process idles, and
 * from takeBuffer / giveBack every RELEASE_MS / 2 (a training step is synchronous: no timer
 * fires inside it).
 */
function sweep(now = performance.now()): void {
  lastSweep = now;
  for (const [bytes, c] of classes)
    if (now - c.lastUse >= RELEASE_MS) {
      for (const b of c.free) pooled.delete(b);
      heldBytes -= bytes * c.free.length;
      classes.delete(bytes);
    }
}

function arm(now: number): void {
  if (now - lastSweep >= RELEASE_MS / 2) sweep(now);
  if (timer || heldBytes === 0) return;
  const tick = () => {
    timer = null;
    sweep();
    arm(performance.now());
  };
  timer = setTimeout(tick, RELEASE_MS / 2);
  timer.unref(); // never keeps the process alive
}

/** A free buffer of exactly `bytes` bytes (its contents undefined), or null. */
export function takeBuffer(bytes: number): ArrayBuffer | null {
  const c = classes.get(bytes);
  const b = c?.free.pop();
  if (!b) return null;
  const now = performance.now();
  c!.lastUse = now;
  pooled.delete(b);
  heldBytes -= bytes;
  arm(now);
  return b;
}

/** Puts a buffer that nothing reads or writes any more into the free lists (dropped when full). */
export function giveBack(b: ArrayBuffer): void {
  if (!enabled || pooled.has(b) || heldBytes + b.byteLength > POOL_MAX_BYTES) return;
  if (poison) new Float32Array(b, 0, b.byteLength >> 2).fill(NaN);
  let c = classes.get(b.byteLength);
  if (!c) classes.set(b.byteLength, (c = { free: [], lastUse: 0 }));
  const now = performance.now();
  c.free.push(b);
  c.lastUse = now;
  pooled.add(b);
  heldBytes += b.byteLength;
  arm(now);
}

/** Lets go of every free buffer (the garbage collector frees them). */
export function releasePool(): void {
  for (const c of classes.values()) for (const b of c.free) pooled.delete(b);
  classes.clear();
  heldBytes = 0;
}

/** Bytes the free lists hold now. */
export function pooledBytes(): number {
  return heldBytes;
}
