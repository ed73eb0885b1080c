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
// exact sizes match); at most POOL_MAX_BYTES held; the pool lets go of
// everything once RELEASE_MS pass without a buffer given back or taken (an
// unref'd timer: it never keeps the process alive), so an idle process returns
// to its own size. Cost: O(1) a take or a give-back.
//
// VP_POOL_POISON=1 fills every buffer given back with NaN: a use after recycling
// then shows as NaN in a test instead of silently reading another op's output.
// VP_POOL_MIN_BYTES sets the smallest output that is pooled (default 16 KB).
// VP_OUTPUT_POOL=off turns the pool off (every output newly allocated, as
// before it existed): a switch for comparing, and a way out should it misbehave.

/** Most bytes the free lists hold. */
const POOL_MAX_BYTES = 2 ** 30;
/** Idle time after which the pool lets its buffers go. */
const RELEASE_MS = 1000;

const free = new Map<number, ArrayBuffer[]>();
/** Buffers now in the free lists (a buffer given back twice is taken once). */
const pooled = new WeakSet<ArrayBuffer>();
let heldBytes = 0;
let lastUse = 0;
let timer: ReturnType<typeof setTimeout> | null = null;
const poison = process.env.VP_POOL_POISON === '1';
const enabled = process.env.VP_OUTPUT_POOL !== 'off';

function touch(): void {
  lastUse = performance.now();
  if (timer) return;
  const check = () => {
    const idle = performance.now() - lastUse;
    if (idle >= RELEASE_MS) {
      releasePool();
      timer = null;
    } else {
      timer = setTimeout(check, RELEASE_MS - idle + 1);
      timer.unref();
    }
  };
  timer = setTimeout(check, RELEASE_MS);
  timer.unref();
}

/** A free buffer of exactly `bytes` bytes (its contents undefined), or null. */
export function takeBuffer(bytes: number): ArrayBuffer | null {
  const list = free.get(bytes);
  const b = list?.pop();
  if (!b) return null;
  pooled.delete(b);
  heldBytes -= bytes;
  touch();
  return b;
}

/** Puts a buffer that nothing reads or writes any more into the free lists (dropped when full). */
export function giveBack(b: ArrayBuffer): void {
  if (!enabled || pooled.has(b) || heldBytes + b.byteLength > POOL_MAX_BYTES) return;
  if (poison) new Float32Array(b, 0, b.byteLength >> 2).fill(NaN);
  let list = free.get(b.byteLength);
  if (!list) free.set(b.byteLength, (list = []));
  list.push(b);
  pooled.add(b);
  heldBytes += b.byteLength;
  touch();
}

/** Lets go of every free buffer (the garbage collector frees them). */
export function releasePool(): void {
  for (const list of free.values()) for (const b of list) pooled.delete(b);
  free.clear();
  heldBytes = 0;
}

/** Bytes the free lists hold now. */
export function pooledBytes(): number {
  return heldBytes;
}
