// Chat templates of a Hugging Face folder, rendered with @huggingface/jinja
// (the Jinja subset that chat templates use, in JavaScript).
//
// Where the template comes from, first found wins (as transformers loads it):
// chat_template.jinja, then chat_template.json ({"chat_template": ...}), then
// tokenizer_config.json's "chat_template" (a string, or a list of
// {name, template} whose "default" entry is used). The render context is
// transformers' apply_chat_template context: messages, add_generation_prompt,
// the special tokens by name (bos_token, eos_token, ...), and any extra
// variables the caller passes (tools, documents, ...). A template written for
// message parts (SmolVLM's and Idefics3's iterate `message['content']` and read
// each part's 'type') cannot take a string content: when it fails on one, the
// render is retried with every string content as one text part,
// `[{ type: 'text', text }]`. The other way round, a template written for
// string contents (most text models') would print a list of parts literally
// (as JSON): a conversation with parts is first rendered with a marker key
// added to every part object, and when the marker shows in the output (the
// part was printed whole), or the render fails and every part is text, the
// template does not read parts, so each list of text parts is joined into one
// string (as the parts-reading templates concatenate them) and any other part
// (an image, a video) is refused, naming messages[i].content[j]; what the probe
// finds is kept per template and per set of roles that carry parts. Cost: one
// parse per folder, one render (linear in the conversation) per call, two when
// that retry happens, one more the first time a kind of conversation with parts
// is rendered.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { describe, typeError } from '../errors.js';
import { CheckpointError } from '../model/safetensors.js';
import { checkBoolean, checkKnownKeys, checkOptions } from '../validate.js';

/** One message as Hugging Face chat templates take it. */
export interface ChatMessage {
  role: string;
  /** A string, or parts such as `[{ type: 'text', text: '...' }]`. */
  content: string | readonly Record<string, unknown>[];
  [key: string]: unknown;
}

export interface ChatTemplateOptions {
  /** Append the assistant turn's opening (what generation continues from). Default false. */
  addGenerationPrompt?: boolean;
  /** Extra template variables (tools, documents, ...). */
  variables?: Record<string, unknown>;
}

/** A parsed chat template with the folder's special tokens. */
export class ChatTemplate {
  readonly source: string;
  readonly #template: Template;
  readonly #specials: Record<string, unknown>;
  /**
   * What the parts probe found (a property of the template), by the roles whose
   * contents are parts: a training loop renders the same kind of conversation
   * every step, so the probe runs once per kind, not once per render.
   */
  readonly #partsUse = new Map<string, 'reads' | 'prints'>();

  constructor(source: string, specials: Record<string, unknown> = {}, where = 'chat template') {
    this.source = source;
    try {
      this.#template = new Template(source);
    } catch (e) {
      throw new CheckpointError(`${where}: the chat template does not parse (${(e as Error).message})`);
    }
    this.#specials = specials;
  }

  /**
   * Finds the folder's template (see the file comment); undefined when it has none.
   * `specials` are the special tokens (bos_token, eos_token, ...) given to the template.
   */
  static load(dir: string, tokenizerConfig: Readonly<Record<string, unknown>>, specials: Record<string, unknown>): ChatTemplate | undefined {
    const jinja = join(dir, 'chat_template.jinja');
    if (existsSync(jinja)) return new ChatTemplate(readFileSync(jinja, 'utf8'), specials, jinja);
    const json = join(dir, 'chat_template.json');
    if (existsSync(json)) {
      let v: unknown;
      try {
        v = JSON.parse(readFileSync(json, 'utf8'));
      } catch (e) {
        throw new CheckpointError(`${json}: not valid JSON (${(e as Error).message})`);
      }
      const t = (v as { chat_template?: unknown } | null)?.chat_template;
      if (typeof t !== 'string') throw new CheckpointError(`${json}: "chat_template" must be a string, got ${describe(t)}`);
      return new ChatTemplate(t, specials, json);
    }
    const t = tokenizerConfig.chat_template;
    const where = join(dir, 'tokenizer_config.json');
    if (t === undefined || t === null) return undefined;
    if (typeof t === 'string') return new ChatTemplate(t, specials, where);
    if (Array.isArray(t)) {
      const named = t.find((x) => (x as { name?: unknown })?.name === 'default') as { template?: unknown } | undefined;
      if (named && typeof named.template === 'string') return new ChatTemplate(named.template, specials, where);
      throw new CheckpointError(`${where}: "chat_template" is a list without a {"name": "default", "template": ...} entry`);
    }
    throw new CheckpointError(`${where}: "chat_template" must be a string or a list of {name, template}, got ${describe(t)}`);
  }

  /** Renders a conversation to the prompt string (tokenize it with addSpecialTokens: false). */
  render(messages: readonly ChatMessage[], opts: ChatTemplateOptions = {}): string {
    const fn = 'applyChatTemplate';
    if (!Array.isArray(messages)) throw typeError(fn, 'messages', 'an array of { role, content }', describe(messages));
    messages.forEach((m, i) => {
      if (m === null || typeof m !== 'object') throw typeError(fn, `messages[${i}]`, 'an object { role, content }', describe(m));
      if (typeof m.role !== 'string') throw typeError(fn, `messages[${i}].role`, 'a string', describe(m.role));
      if (typeof m.content !== 'string' && !Array.isArray(m.content) && m.content !== null && m.content !== undefined)
        throw typeError(fn, `messages[${i}].content`, 'a string or an array of parts', describe(m.content));
    });
    const o = checkOptions(fn, opts);
    checkKnownKeys(fn, 'opts', o, ['addGenerationPrompt', 'variables']);
    const addGenerationPrompt = checkBoolean(fn, 'opts.addGenerationPrompt', o.addGenerationPrompt, false);
    if (o.variables !== undefined && (o.variables === null || typeof o.variables !== 'object')) throw typeError(fn, 'opts.variables', 'an object', describe(o.variables));
    const render = (msgs: readonly ChatMessage[]) => this.#template.render({
      ...this.#specials,
      ...(o.variables as Record<string, unknown> | undefined),
      messages: msgs,
      add_generation_prompt: addGenerationPrompt,
    });
    const renderAny = (msgs: readonly ChatMessage[]): string => {
      try {
        return render(msgs);
      } catch (e) {
        // A template for message parts, given string contents: retry with each as one text part.
        if (msgs.some((m) => typeof m.content === 'string')) {
          try {
            return render(msgs.map((m) => (typeof m.content === 'string' ? { ...m, content: [{ type: 'text', text: m.content }] } : m)));
          } catch { /* report the first failure */ }
        }
        throw new Error(`${fn}: the chat template failed: ${(e as Error).message}`);
      }
    };
    if (!messages.some((m) => Array.isArray(m.content))) return renderAny(messages);
    const kind = [...new Set(messages.filter((m) => Array.isArray(m.content)).map((m) => m.role))].sort().join('\n');
    const probe = this.#partsUse.get(kind) ?? partsProbe(messages, renderAny);
    if (probe !== 'fails') this.#partsUse.set(kind, probe); // 'fails' may depend on the parts given: not kept
    if (probe === 'reads') return renderAny(messages);
    // 'prints': a template for string contents. 'fails': the same when the parts are all text
    // (joined, they may render); with an image or video part, the template's own error.
    if (probe === 'prints' || allTextParts(messages)) return renderAny(joinTextParts(fn, messages));
    return renderAny(messages);
  }
}

/**
 * How a template takes message parts (see the file comment): 'reads' them, 'prints'
 * them whole (a template for string contents), or 'fails' on them.
 */
function partsProbe(messages: readonly ChatMessage[], render: (msgs: readonly ChatMessage[]) => string): 'reads' | 'prints' | 'fails' {
  const marked = messages.map((m) => (Array.isArray(m.content)
    ? { ...m, content: m.content.map((p) => (p !== null && typeof p === 'object' && !Array.isArray(p) ? { ...p, [PART_MARK]: PART_MARK } : p)) }
    : m));
  try {
    return render(marked).includes(PART_MARK) ? 'prints' : 'reads';
  } catch {
    return 'fails';
  }
}

function allTextParts(messages: readonly ChatMessage[]): boolean {
  return messages.every((m) => !Array.isArray(m.content) || m.content.every((p) => (p as { type?: unknown } | null)?.type === 'text'));
}

/** The key the parts probe adds to every part object. */
const PART_MARK = '__videoperceiver_part__';

/** Messages whose lists of text parts are joined into one string each; any other part is refused by name. */
function joinTextParts(fn: string, messages: readonly ChatMessage[]): ChatMessage[] {
  return messages.map((m, i) => {
    if (!Array.isArray(m.content)) return m;
    const text = m.content.map((p, j) => {
      const at = `messages[${i}].content[${j}]`;
      if (p === null || typeof p !== 'object' || Array.isArray(p)) throw typeError(fn, at, "a part { type: 'text', text }", describe(p));
      const part = p as Record<string, unknown>;
      if (part.type !== 'text')
        throw typeError(fn, at, "a text part { type: 'text', text }: this chat template renders text only (a text-only model; images and videos go to a vision-language model)", `a part of type ${describe(part.type)}`);
      if (typeof part.text !== 'string') throw typeError(fn, `${at}.text`, 'a string', describe(part.text));
      return part.text;
    });
    return { ...m, content: text.join('') };
  });
}
