// onnxruntime-node as a bench peer: a one-node ONNX model built in memory (a
// minimal protobuf writer for the few ModelProto fields such a model needs), run
// by an InferenceSession on the CPU execution provider with the bench's threads.
//
// Protobuf: each field is a varint key (field number << 3 | wire type), then a
// varint (type 0) or a length-prefixed payload (type 2: bytes, strings, nested
// messages). Field numbers from onnx.proto (ModelProto, GraphProto, NodeProto,
// AttributeProto, ValueInfoProto, TypeProto, TensorShapeProto, OperatorSetIdProto).
// Cost: building a model is microseconds; creating a session, milliseconds.
//
// onnxruntime-node is a devDependency (bench only) loaded lazily: without it,
// loadOrt() says why and the rows report the peer missing.
import { createRequire } from 'node:module';

type Bytes = number[];

function varint(out: Bytes, v: number): void {
  let x = BigInt(v);
  if (x < 0n) x += 1n << 64n;
  while (x >= 0x80n) {
    out.push(Number(x & 0x7fn) | 0x80);
    x >>= 7n;
  }
  out.push(Number(x));
}
function fieldVarint(out: Bytes, field: number, v: number): void {
  varint(out, field << 3);
  varint(out, v);
}
function fieldBytes(out: Bytes, field: number, payload: Bytes | Uint8Array): void {
  varint(out, (field << 3) | 2);
  varint(out, payload.length);
  for (const b of payload) out.push(b);
}
function fieldString(out: Bytes, field: number, s: string): void {
  fieldBytes(out, field, [...new TextEncoder().encode(s)]);
}
function fieldFloat(out: Bytes, field: number, f: number): void {
  varint(out, (field << 3) | 5);
  const b = new Uint8Array(new Float32Array([f]).buffer);
  for (const x of b) out.push(x);
}

export interface OnnxNode {
  op: string;
  domain?: string;  // '' (ai.onnx) or 'com.microsoft'
  inputs: string[];  // '' for an optional input left out
  outputs: string[];
  attrs?: Record<string, number | { float: number }>;  // ints, or floats
}
export interface OnnxValue {
  name: string;
  shape: number[];
  elemType?: number;  // 1 float32 (default), 6 int32, 7 int64
}

function valueInfo(v: OnnxValue): Bytes {
  const dims: Bytes = [];
  for (const d of v.shape) {
    const dim: Bytes = [];
    fieldVarint(dim, 1, d);
    fieldBytes(dims, 1, dim);
  }
  const tensor: Bytes = [];
  fieldVarint(tensor, 1, v.elemType ?? 1);
  fieldBytes(tensor, 2, dims);
  const type: Bytes = [];
  fieldBytes(type, 1, tensor);
  const out: Bytes = [];
  fieldString(out, 1, v.name);
  fieldBytes(out, 2, type);
  return out;
}

/** A serialized ModelProto holding one graph of `nodes`. */
export function onnxModel(nodes: OnnxNode[], inputs: OnnxValue[], outputs: OnnxValue[], opset = 21): Uint8Array {
  const graph: Bytes = [];
  for (const n of nodes) {
    const node: Bytes = [];
    for (const i of n.inputs) fieldString(node, 1, i);
    for (const o of n.outputs) fieldString(node, 2, o);
    fieldString(node, 4, n.op);
    for (const [name, val] of Object.entries(n.attrs ?? {})) {
      const a: Bytes = [];
      fieldString(a, 1, name);
      if (typeof val === 'number') {
        fieldVarint(a, 3, val);
        fieldVarint(a, 20, 2);  // AttributeType INT
      } else {
        fieldFloat(a, 2, val.float);
        fieldVarint(a, 20, 1);  // FLOAT
      }
      fieldBytes(node, 5, a);
    }
    if (n.domain) fieldString(node, 7, n.domain);
    fieldBytes(graph, 1, node);
  }
  fieldString(graph, 2, 'vp_bench');
  for (const v of inputs) fieldBytes(graph, 11, valueInfo(v));
  for (const v of outputs) fieldBytes(graph, 12, valueInfo(v));
  const model: Bytes = [];
  fieldVarint(model, 1, 8);  // ir_version 8
  for (const [domain, version] of [['', opset], ['com.microsoft', 1]] as const) {
    const os: Bytes = [];
    if (domain) fieldString(os, 1, domain);
    fieldVarint(os, 2, version);
    fieldBytes(model, 8, os);
  }
  fieldString(model, 2, 'videoperceiver-bench');
  fieldBytes(model, 7, graph);
  return Uint8Array.from(model);
}

// The parts of onnxruntime-node's API the bench uses.
export interface OrtTensor { data: Float32Array }
export interface OrtSession {
  run(feeds: Record<string, unknown>): Promise<Record<string, OrtTensor>>;
  release?(): Promise<void>;
}
export interface Ort {
  InferenceSession: { create(model: Uint8Array, opts: Record<string, unknown>): Promise<OrtSession> };
  Tensor: new (type: string, data: Float32Array | Int32Array, dims: number[]) => unknown;
  env: { versions: { node?: string; common?: string } };
}

let cached: { ort?: Ort; missing?: string } | undefined;

/** onnxruntime-node, or why it cannot be loaded. */
export function loadOrt(): { ort?: Ort; missing?: string } {
  if (cached) return cached;
  try {
    const ort = createRequire(import.meta.url)('onnxruntime-node') as Ort;
    cached = { ort };
  } catch (e) {
    cached = { missing: `onnxruntime-node could not be loaded (npm install in a checkout installs it; ${(e as Error).message.split('\n')[0]})` };
  }
  return cached;
}

/** A CPU session for `model` with `threads` intra-op threads (sequential execution, all optimizations). */
export async function ortSession(ort: Ort, model: Uint8Array, threads: number): Promise<OrtSession> {
  return ort.InferenceSession.create(model, {
    executionProviders: ['cpu'], intraOpNumThreads: threads, interOpNumThreads: 1,
    graphOptimizationLevel: 'all', executionMode: 'sequential',
  });
}
