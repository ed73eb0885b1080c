// "Did you mean …?" for unknown flags and option keys: the valid name nearest to
// a typo by Damerau–Levenshtein distance (insertions, deletions, substitutions
// and swaps of adjacent characters, each costing 1), accepted only when the
// distance is small for the name's length. O(len(a)·len(b)) per candidate.

/** Optimal-string-alignment distance between a and b (case-insensitive). */
export function editDistance(a: string, b: string): number {
  a = a.toLowerCase();
  b = b.toLowerCase();
  const n = a.length, m = b.length;
  let prev2 = new Array<number>(m + 1).fill(0);
  let prev = Array.from({ length: m + 1 }, (_, j) => j);
  for (let i = 1; i <= n; i++) {
    const cur = new Array<number>(m + 1);
    cur[0] = i;
    for (let j = 1; j <= m; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) cur[j] = Math.min(cur[j], prev2[j - 2] + 1);
    }
    prev2 = prev;
    prev = cur;
  }
  return prev[m];
}

/** The candidate nearest to `name` (ties: the first listed), or undefined when none is close. */
export function nearest(name: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(name, c);
    if (d < bestD) {
      best = c;
      bestD = d;
    }
  }
  // A third of the length (at least 1, at most 3) edits: "widht" → "width", "stpes" → "steps",
  // while a word that shares nothing gets no suggestion.
  const limit = Math.min(3, Math.max(1, Math.floor(name.length / 3)));
  if (best !== undefined && bestD <= limit) return best;
  // A prefix of a longer name ("--batch" for "--batch-size") is a near miss too.
  for (const c of candidates) if (name.length >= 3 && c.toLowerCase().startsWith(name.toLowerCase())) return c;
  return undefined;
}

/** " (did you mean X?)" or "" — for the end of an error message. */
export function didYouMean(name: string, candidates: Iterable<string>, format: (s: string) => string = (s) => s): string {
  const n = nearest(name, candidates);
  return n === undefined ? '' : `; did you mean ${format(n)}?`;
}
