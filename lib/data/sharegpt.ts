// Conversation datasets in the formats LLaVA, LLaMA-Factory and ms-swift read:
// a JSON array or JSON Lines of records with a video and a conversation,
//
//   { "id"?, "video": "clip.mp4" | ["clip.mp4"], "conversations": [{ "from": "human"|"gpt"|"system", "value": "<video>\n..." }, ...] }
//   { "id"?, "videos": ["clip.mp4"], "messages": [{ "role": "user"|"assistant"|"system", "content": "<video>..." }, ...] }
//
// read into { id, video, turns, line }, the video path resolved against the
// file's folder (not opened here). A malformed record is a DataFormatError
// naming the file and the line where the record starts. Cost: O(file size).
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';

/** A malformed conversation file or record: the message names the file and line. */
export class DataFormatError extends Error {
  override name = 'DataFormatError';
  constructor(readonly file: string, readonly line: number, detail: string) {
    super(`${file}:${line}: ${detail}`);
  }
}

export interface ConversationTurn {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface ConversationRecord {
  id: string;
  /** The video's path, resolved against the data file's folder. */
  video: string;
  turns: ConversationTurn[];
  /** Where the record starts in the file (1-based). */
  line: number;
}

const ROLES: Record<string, ConversationTurn['role']> = {
  human: 'user', user: 'user', gpt: 'assistant', assistant: 'assistant', system: 'system', bot: 'assistant', model: 'assistant',
};

/** Line numbers (1-based) where each top-level element of a JSON array starts. */
function arrayElementLines(text: string): number[] {
  const out: number[] = [];
  let depth = 0, line = 1, inStr = false, esc = false, expect = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '\n') line++;
    if (inStr) {
      if (esc) esc = false;
      else if (c === '\\') esc = true;
      else if (c === '"') inStr = false;
      continue;
    }
    if (depth === 1 && expect && !/\s/.test(c) && c !== ']') {
      out.push(line);
      expect = false;
    }
    if (c === '"') inStr = true;
    else if (c === '[' || c === '{') {
      depth++;
      if (depth === 1) expect = true;
    } else if (c === ']' || c === '}') depth--;
    else if (c === ',' && depth === 1) expect = true;
  }
  return out;
}

function parseRecord(file: string, line: number, index: number, r: unknown): ConversationRecord {
  const bad = (detail: string): never => {
    throw new DataFormatError(file, line, `record ${index}: ${detail}`);
  };
  if (r === null || typeof r !== 'object' || Array.isArray(r)) bad('must be an object with a video and a conversation');
  const o = r as Record<string, unknown>;
  if (o.conversations === undefined && o.messages === undefined && typeof o.caption === 'string')
    bad('has a "caption" and no conversation: a line of a dataset folder\'s annotations.jsonl (give the folder, vp.openDataset / --data DIR), not a conversation file');
  let video = o.video ?? o.videos;
  if (Array.isArray(video)) {
    if (video.length !== 1) bad(`must name exactly one video (got ${video.length}); several videos per record are not supported`);
    video = video[0];
  }
  if (typeof video !== 'string' || !video) bad('"video" (or "videos") must be a file path');
  const conv = o.conversations ?? o.messages;
  if (!Array.isArray(conv) || conv.length < 2) bad('"conversations" (or "messages") must list at least a user turn and an assistant turn');
  const turns = (conv as unknown[]).map((t, j) => {
    if (t === null || typeof t !== 'object') return bad(`turn ${j} must be an object`);
    const x = t as Record<string, unknown>;
    const role = ROLES[String(x.from ?? x.role)];
    if (!role) return bad(`turn ${j}: "from"/"role" ${JSON.stringify(x.from ?? x.role)} is not one of human, gpt, system, user, assistant`);
    const content = x.value ?? x.content;
    if (typeof content !== 'string') return bad(`turn ${j}: "value"/"content" must be a string`);
    return { role, content };
  });
  if (!turns.some((t) => t.role === 'user') || !turns.some((t) => t.role === 'assistant')) bad('needs a user turn and an assistant turn');
  const id = typeof o.id === 'string' || typeof o.id === 'number' ? String(o.id) : `${index}`;
  const v = video as string;
  return { id, video: isAbsolute(v) ? v : resolve(dirname(file), v), turns, line };
}

/** Reads a ShareGPT / LLaVA-style conversation file (.json array or .jsonl). */
export function readConversations(file: string): ConversationRecord[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new DataFormatError(file, 0, `cannot read (${(e as Error).message})`);
  }
  const trimmed = text.trimStart();
  if (trimmed.startsWith('[')) {
    let arr: unknown;
    try {
      arr = JSON.parse(text);
    } catch (e) {
      const m = /position (\d+)/.exec((e as Error).message);
      const line = m ? text.slice(0, Number(m[1])).split('\n').length : 1;
      throw new DataFormatError(file, line, `not valid JSON (${(e as Error).message})`);
    }
    const lines = arrayElementLines(text);
    return (arr as unknown[]).map((r, i) => parseRecord(file, lines[i] ?? 1, i, r));
  }
  const out: ConversationRecord[] = [];
  text.split('\n').forEach((raw, i) => {
    if (!raw.trim()) return;
    let r: unknown;
    try {
      r = JSON.parse(raw);
    } catch (e) {
      throw new DataFormatError(file, i + 1, `not valid JSON (${(e as Error).message})`);
    }
    out.push(parseRecord(file, i + 1, out.length, r));
  });
  if (out.length === 0) throw new DataFormatError(file, 1, 'no records');
  return out;
}
