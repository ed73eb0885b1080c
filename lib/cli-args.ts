// Command-line flags of `videoperceiver <command>`: each command declares its
// flags (kind, range, choices), and parseArgs turns argv into checked values or
// throws a UsageError that names the flag: an unknown flag (with the nearest
// valid one suggested), a flag with no value, a value that is not a number, out
// of range or not one of the choices, a flag given twice, a stray argument.
// One pass over argv; O(flags · names) for suggestions.
import { didYouMean } from './suggest.js';

/** A bad command line: the CLI prints the message and exits with status 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export type FlagSpec =
  | { kind: 'bool' }
  | { kind: 'string'; choices?: readonly string[] }
  | { kind: 'int'; min: number; max: number }
  | { kind: 'number'; min?: number; max?: number; gt?: number }
  | { kind: 'int-list'; min: number; max: number };

export type FlagSpecs = Record<string, FlagSpec>;

export type FlagValue = string | number | boolean | number[];

/** The checked flags of one command line. */
export class ParsedArgs {
  readonly #values: Map<string, FlagValue>;
  /** Arguments that are not flags (only for commands that take them). */
  readonly positional: string[];

  constructor(values: Map<string, FlagValue>, positional: string[]) {
    this.#values = values;
    this.positional = positional;
  }

  has(name: string): boolean {
    return this.#values.has(name);
  }

  flag(name: string): boolean {
    return this.#values.get(name) === true;
  }

  str(name: string): string | undefined {
    const v = this.#values.get(name);
    return v === undefined ? undefined : String(v);
  }

  num(name: string): number | undefined;
  num(name: string, dflt: number): number;
  num(name: string, dflt?: number): number | undefined {
    const v = this.#values.get(name);
    return v === undefined ? dflt : (v as number);
  }

  list(name: string): number[] | undefined {
    return this.#values.get(name) as number[] | undefined;
  }

  /** The value of a required flag; a UsageError naming it when absent. */
  required(name: string, cmd: string, meta = 'VALUE'): string {
    const v = this.str(name);
    if (v === undefined || v === '') throw new UsageError(`${cmd}: --${name} ${meta} is required (see videoperceiver ${cmd} --help)`);
    return v;
  }

  /** The flags given, as { name: value } (for the saved run arguments). */
  entries(): Record<string, FlagValue> {
    return Object.fromEntries(this.#values);
  }
}

function describeKind(s: FlagSpec): string {
  switch (s.kind) {
    case 'int':
      return `an integer in [${s.min}, ${s.max}]`;
    case 'int-list':
      return `a comma-separated list of integers in [${s.min}, ${s.max}]`;
    case 'number': {
      const lo = s.gt !== undefined ? `> ${s.gt}` : s.min !== undefined ? `>= ${s.min}` : '';
      const hi = s.max !== undefined ? `<= ${s.max}` : '';
      return `a number${lo || hi ? ' ' + [lo, hi].filter(Boolean).join(' and ') : ''}`;
    }
    case 'string':
      return s.choices ? `one of ${s.choices.join(', ')}` : 'a value';
    default:
      return 'no value';
  }
}

/** Converts and checks one flag's text value. */
function convert(cmd: string, name: string, s: FlagSpec, text: string): FlagValue {
  const bad = () => new UsageError(`${cmd}: --${name} must be ${describeKind(s)}, got ${JSON.stringify(text)}`);
  // Number('') is 0 and Number(' 1') is 1: only plain decimal or exponent notation counts.
  const numeric = (t: string) => (/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(t.trim()) ? Number(t) : NaN);
  switch (s.kind) {
    case 'int': {
      const n = numeric(text);
      if (!Number.isSafeInteger(n) || n < s.min || n > s.max) throw bad();
      return n;
    }
    case 'int-list': {
      const parts = text.split(',');
      const ns = parts.map(numeric);
      if (!parts.length || ns.some((n) => !Number.isSafeInteger(n) || n < s.min || n > s.max)) throw bad();
      return ns;
    }
    case 'number': {
      const n = numeric(text);
      if (!Number.isFinite(n) || (s.min !== undefined && n < s.min) || (s.max !== undefined && n > s.max) || (s.gt !== undefined && !(n > s.gt))) throw bad();
      return n;
    }
    case 'string':
      if (s.choices && !s.choices.includes(text)) throw new UsageError(`${cmd}: --${name} must be one of ${s.choices.join(', ')}, got ${JSON.stringify(text)}${didYouMean(text, s.choices)}`);
      return text;
    default:
      return true;
  }
}

/**
 * Parses `argv` (the arguments after the command name) against `specs`.
 * `--name value` and `--name=value`; booleans take no value. With
 * `positional: true` arguments that do not start with `--` are collected.
 */
export function parseArgs(cmd: string, argv: readonly string[], specs: FlagSpecs, opts: { positional?: boolean } = {}): ParsedArgs {
  const values = new Map<string, FlagValue>();
  const positional: string[] = [];
  const names = Object.keys(specs);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--') || a === '--') {
      if (opts.positional && a !== '--') {
        positional.push(a);
        continue;
      }
      throw new UsageError(`${cmd}: unexpected argument ${JSON.stringify(a)} (flags start with --; see videoperceiver ${cmd} --help)`);
    }
    const eq = a.indexOf('=');
    const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
    const spec = specs[name];
    if (!spec) throw new UsageError(`${cmd}: unknown flag --${name}${didYouMean(name, names, (n) => `--${n}`)} (see videoperceiver ${cmd} --help)`);
    if (values.has(name)) throw new UsageError(`${cmd}: --${name} is given twice`);
    if (spec.kind === 'bool') {
      if (eq >= 0) throw new UsageError(`${cmd}: --${name} takes no value, got ${JSON.stringify(a.slice(eq + 1))}`);
      values.set(name, true);
      continue;
    }
    let text: string;
    if (eq >= 0) text = a.slice(eq + 1);
    else {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) throw new UsageError(`${cmd}: --${name} needs a value (${describeKind(spec)})`);
      text = next;
      i++;
    }
    if (text === '') throw new UsageError(`${cmd}: --${name} needs a value (${describeKind(spec)}), got an empty string`);
    values.set(name, convert(cmd, name, spec, text));
  }
  return new ParsedArgs(values, positional);
}

/** The `--flag` names a usage line mentions (to check it against the specs in tests). */
export function usageFlags(usage: string): string[] {
  return [...new Set([...usage.matchAll(/--([a-z][a-z0-9-]*)/g)].map((m) => m[1]))];
}
