// vp.openConversations(file): a LLaVA / ShareGPT / ms-swift conversation file
// (lib/data/sharegpt.ts reads it) as a Dataset the trainer consumes. Each record
// becomes one annotation: the video (a video file decoded with ffmpeg, or an
// .npy clip), the caption task's prompt = the last user turn before the last
// assistant turn (its "<video>" tag taken out: the trainer puts the video at the
// start of the user turn), the caption = that assistant turn (the SFT target),
// and the keywords = the answer's event keywords (vp.extractEventKeywords: the
// contrastive query, the RL reward's and the evaluation's ground truth).
// Earlier turns and system turns are not used. Every record's video is checked
// when the file opens (as openDataset checks clips), and a problem is a
// DataFormatError naming the file, the record's line and index, and the path.
// Cost: O(file size) plus each video's first bytes (an .npy's header).
import { dirname } from 'node:path';
import { extractEventKeywords } from '../kim/keywords.js';
import { inputFile } from '../paths.js';
import { clipProblem, Dataset, type Annotation, type OpenDatasetOptions } from './dataset.js';
import { DataFormatError, readConversations, type ConversationRecord } from './sharegpt.js';

export type OpenConversationsOptions = Omit<OpenDatasetOptions, 'annotations'>;

const VIDEO_TAG = /<video>/g;

/**
 * The annotation a conversation record trains as (see the file comment); `index`
 * is the record's place in the file. A record whose last assistant turn has no
 * user turn before it, or that names more than one "<video>", is a DataFormatError.
 */
export function conversationAnnotation(file: string, r: ConversationRecord, index: number): Annotation {
  const bad = (detail: string): never => {
    throw new DataFormatError(file, r.line, `record ${index}: ${detail}`);
  };
  let last = -1;
  r.turns.forEach((t, j) => t.role === 'assistant' && (last = j));
  let user = -1;
  for (let j = last - 1; j >= 0 && user < 0; j--) if (r.turns[j].role === 'user') user = j;
  if (user < 0) bad('the last assistant turn has no user turn before it (nothing to answer)');
  const tags = r.turns.reduce((n, t) => n + (t.content.match(VIDEO_TAG)?.length ?? 0), 0);
  if (tags > 1) bad(`the conversation holds ${tags} "<video>" tags; a record has one video`);
  const caption = r.turns[last].content.trim();
  if (!caption) bad(`turn ${last}: the assistant's answer is empty`);
  const prompt = r.turns[user].content.replace(/\s*<video>\s*/g, ' ').trim();
  return { id: r.id, video: r.video, caption, prompt, keywords: extractEventKeywords(caption) };
}

/**
 * Opens a conversation file (.json array or .jsonl) as a Dataset: every record
 * mapped by conversationAnnotation and, unless `checkClips: false`, every video
 * checked (it exists; an .npy holds uint8 [F, H, W, 3]; a video file starts
 * with its container's header). Decode options as openDataset's.
 */
export function openConversations(file: string, opts: OpenConversationsOptions = {}): Dataset {
  if (typeof file !== 'string' || !file) throw new TypeError(`openConversations: file must be a .json or .jsonl path, got ${JSON.stringify(file)}`);
  inputFile('openConversations: file', file, 'a conversation file (.json or .jsonl)');
  const records = readConversations(file);
  const anns = records.map((r, i) => conversationAnnotation(file, r, i));
  if (opts.checkClips ?? true) {
    const problems: { line: number; text: string }[] = [];
    anns.forEach((a, i) => {
      const p = clipProblem(a, a.video);
      if (p) problems.push({ line: records[i].line, text: `record ${i} (id ${JSON.stringify(a.id)}): ${p.replace(/^clip /, 'video ')}` });
    });
    if (problems.length > 0) {
      const more = problems.slice(1, 5).map((p) => `\n  ${file}:${p.line}: ${p.text}`).join('');
      const rest = problems.length > 5 ? `\n  … and ${problems.length - 5} more` : '';
      throw new DataFormatError(file, problems[0].line, `${problems[0].text}${problems.length > 1 ? ` (${problems.length} of ${anns.length} videos cannot be read)` : ''}${more}${rest}`);
    }
  }
  return new Dataset(dirname(file), anns, opts, file);
}
