// File and folder arguments: checks that say which argument (a CLI flag such as
// `--data`, or a function's argument such as `openDataset: dir`) and which path
// is wrong, and what is wrong with it (missing, a file where a folder is
// expected or the reverse, no permission, a read-only or full file system),
// instead of a bare errno ("EISDIR: illegal operation on a directory").
// Folders are created one level at a time (Node's recursive mkdir never
// returns on some pseudo file systems, e.g. under /proc). Each check is a few
// stat calls.
import { accessSync, constants, mkdirSync, statSync, type Stats } from 'node:fs';
import { dirname, resolve } from 'node:path';

/** A file or folder argument that cannot be used; `arg` names the argument, `path` the path. */
export class PathError extends Error {
  override name = 'PathError';
  readonly arg: string;
  readonly path: string;
  readonly code: string | undefined;

  constructor(arg: string, path: string, what: string, code?: string) {
    super(`${arg}: ${path}: ${what}`);
    this.arg = arg;
    this.path = path;
    this.code = code;
  }
}

const REASONS: Record<string, string> = {
  ENOENT: 'no such file or folder',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'the file system is read-only',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'the disk quota is exhausted',
  EFBIG: 'the file is larger than this process may write (ulimit -f)',
  EISDIR: 'is a folder, not a file',
  ENOTDIR: 'a part of the path is a file, not a folder',
  EEXIST: 'already exists',
  ENAMETOOLONG: 'the name is too long',
  ELOOP: 'too many symbolic links',
  EMFILE: 'too many open files',
  EIO: 'input/output error',
  ENOBUFS: 'out of buffer space',
};

/** Words for a Node file-system error: "permission denied (EACCES)". */
export function reason(e: unknown): string {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code && REASONS[code]) return `${REASONS[code]} (${code})`;
  return (e as Error)?.message ?? String(e);
}

/** Wraps a file-system error in a PathError naming the argument and the path. */
export function pathError(arg: string, path: string, e: unknown, doing?: string): PathError {
  if (e instanceof PathError) return e;
  const code = (e as NodeJS.ErrnoException)?.code;
  return new PathError(arg, path, `${doing ? `cannot ${doing}: ` : ''}${reason(e)}`, code);
}

/** The path's stats, or undefined when it does not exist (with `walk`: also when a parent is a file). */
function stat(arg: string, path: string, walk = false): Stats | undefined {
  try {
    return statSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || (walk && code === 'ENOTDIR')) return undefined;
    throw pathError(arg, path, e);
  }
}

/** An existing regular file that can be read. */
export function inputFile(arg: string, path: string, what = 'a file'): string {
  const s = stat(arg, path);
  if (!s) throw new PathError(arg, path, `no such file (expected ${what})`, 'ENOENT');
  if (s.isDirectory()) throw new PathError(arg, path, `is a folder, expected ${what}`, 'EISDIR');
  if (!s.isFile()) throw new PathError(arg, path, `is not a regular file, expected ${what}`);
  try {
    accessSync(path, constants.R_OK);
  } catch (e) {
    throw pathError(arg, path, e, 'read it');
  }
  return path;
}

/** An existing folder that can be read. */
export function inputDir(arg: string, path: string, what = 'a folder'): string {
  const s = stat(arg, path);
  if (!s) throw new PathError(arg, path, `no such folder (expected ${what})`, 'ENOENT');
  if (!s.isDirectory()) throw new PathError(arg, path, `is a file, expected ${what}`, 'ENOTDIR');
  try {
    accessSync(path, constants.R_OK | constants.X_OK);
  } catch (e) {
    throw pathError(arg, path, e, 'read it');
  }
  return path;
}

/**
 * A folder to write into: created (with its missing parents, one level at a
 * time) when absent; an error naming `arg` when the path or a parent is a file,
 * or the folder cannot be created or written.
 */
export function outputDir(arg: string, path: string): string {
  const abs = resolve(path);
  const missing: string[] = [];
  let p = abs;
  let s = stat(arg, p, true);
  while (!s) {
    missing.push(p);
    const up = dirname(p);
    if (up === p) break;
    p = up;
    s = stat(arg, p, true);
  }
  if (s && !s.isDirectory()) throw new PathError(arg, path, p === abs ? 'is a file, expected a folder' : `${p} is a file, not a folder`, 'ENOTDIR');
  for (const dir of missing.reverse()) {
    try {
      mkdirSync(dir);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' && statSync(dir).isDirectory()) continue; // created meanwhile
      // ENOENT although the parent exists: a file system that has no folders to create (e.g. /proc).
      const why = code === 'ENOENT' ? `the file system at ${dirname(dir)} does not allow creating folders (ENOENT)` : reason(e);
      throw new PathError(arg, path, `cannot create the folder: ${why}`, code);
    }
  }
  try {
    accessSync(abs, constants.W_OK | constants.X_OK);
  } catch (e) {
    throw pathError(arg, path, e, 'write into it');
  }
  return path;
}
