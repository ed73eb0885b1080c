// Counts the positional arguments of every function and class method that the
// Node-API addon exports, by reading the binding sources (native/addon/*.cpp and
// native/**/*_binding.cpp).
//
// Algorithm: collect the registrations (`exports.Set("name", Napi::Function::New(env, Fn))`,
// `InstanceMethod("name", &Class::Fn)`, and each ObjectWrap class's constructor), find the
// body of each C++ callback by matching braces, and take 1 + the largest `info[N]` it reads
// (`ArgsObject(info, "fn", N)`, the object of named arguments, reads info[N], N = 0 by
// default). A callback that hands `info` itself to any other helper is marked `indirect`
// (the helper may read more). Cost: one pass over a few thousand lines.
//
//   node scripts/native-arity.mjs          prints "name args" per export, most arguments first
//   node scripts/native-arity.mjs --max 6  also exits 1 when any export takes more than 6
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function bindingFiles() {
  const walk = (d) => readdirSync(join(root, d), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(`${d}/${e.name}`) : [`${d}/${e.name}`]);
  return [
    ...walk('native/addon').filter((f) => f.endsWith('.cpp')),
    ...walk('native').filter((f) => f.endsWith('_binding.cpp')),
  ].sort();
}

/** The text between the brace that opens at or after `from` and its match. */
function bodyAt(src, from) {
  const open = src.indexOf('{', from);
  let depth = 0;
  for (let i = open; i < src.length; i++) {
    if (src[i] === '{') depth++;
    else if (src[i] === '}' && --depth === 0) return src.slice(open, i + 1);
  }
  return src.slice(open);
}

/** [{ name, file, args, indirect }] for every exported function, constructor and method. */
export function nativeArity() {
  const out = [];
  for (const file of bindingFiles()) {
    const src = readFileSync(join(root, file), 'utf8');
    const bodies = new Map();
    for (const m of src.matchAll(/(?:explicit\s+|Napi::\w+\s+)(\w+)\(const Napi::CallbackInfo& info\)[^{;]*\{/g))
      bodies.set(m[1], bodyAt(src, m.index));
    const measure = (name, fn) => {
      const body = bodies.get(fn);
      if (body === undefined) throw new Error(`${file}: no body found for ${fn} (exported as ${name})`);
      const reads = [
        ...[...body.matchAll(/info\[(\d+)\]/g)].map((r) => Number(r[1])),
        ...[...body.matchAll(/ArgsObject\(info,\s*"\w+"(?:,\s*(\d+))?\)/g)].map((r) => Number(r[1] ?? 0)),
      ];
      // Start (the VideoLM binding's async runner) takes only the receiver and the Env from info.
      const indirect = [...body.matchAll(/(\w+)\(\s*info\s*,/g)].some((c) => c[1] !== 'ArgsObject' && c[1] !== 'Start');
      out.push({ name, file, args: reads.length ? Math.max(...reads) + 1 : 0, indirect });
    };
    for (const m of src.matchAll(/exports\.Set\("(\w+)",\s*Napi::Function::New\(env,\s*(\w+)\)\)/g)) measure(m[1], m[2]);
    for (const m of src.matchAll(/DefineClass\(env,\s*"(\w+)"/g)) measure(`new ${m[1]}`, m[1]);
    for (const m of src.matchAll(/InstanceMethod\("(\w+)",\s*&(\w+)::(\w+)\)/g)) measure(`${m[2]}.${m[1]}`, m[3]);
  }
  return out.sort((a, b) => b.args - a.args || a.name.localeCompare(b.name));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const rows = nativeArity();
  for (const r of rows) console.log(`${r.name.padEnd(40)} ${String(r.args).padStart(2)}${r.indirect ? '  (indirect reads too)' : ''}`);
  const i = process.argv.indexOf('--max');
  const max = i > 0 ? Number(process.argv[i + 1]) : Infinity;
  const over = rows.filter((r) => r.args > max);
  console.log(`${rows.length} exports, ${over.length} with more than ${max} positional arguments`);
  if (over.length) process.exitCode = 1;
}
