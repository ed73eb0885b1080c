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
// `[{ type: 'text', text }]`. Cost: one parse per folder, one render (linear in
// the conversation) per call, two when that retry happens.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { describe, typeError } from '../errors.js';
import { CheckpointError } from '../model/safetensors.js';
import { checkBoolean, checkOptions } from '../validate.js';

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
    const addGenerationPrompt = checkBoolean(fn, 'opts.addGenerationPrompt', o.addGenerationPrompt, false);
    if (o.variables !== undefined && (o.variables === null || typeof o.variables !== 'object')) throw typeError(fn, 'opts.variables', 'an object', describe(o.variables));
    const render = (msgs: readonly ChatMessage[]) => this.#template.render({
      ...this.#specials,
      ...(o.variables as Record<string, unknown> | undefined),
      messages: msgs,
      add_generation_prompt: addGenerationPrompt,
    });
    try {
      return render(messages);
    } catch (e) {
      // A template for message parts, given string contents: retry with each as one text part.
      if (messages.some((m) => typeof m.content === 'string')) {
        try {
          return render(messages.map((m) => (typeof m.content === 'string' ? { ...m, content: [{ type: 'text', text: m.content }] } : m)));
        } catch { /* report the first failure */ }
      }
      throw new Error(`${fn}: the chat template failed: ${(e as Error).message}`);
    }
  }
}
