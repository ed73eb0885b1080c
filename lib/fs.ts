// File-system helpers shared by everything that writes user data. A failed
// write says which file and why (no space, no permission, file size limit).
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { reason } from './paths.js';

/**
 * Writes `path` atomically: the bytes go to a temporary file in the same
 * directory, which is fsynced and renamed over `path`; then the directory is
 * fsynced so the rename itself is durable. A crash leaves either the old file
 * or the new one, never a torn one; on failure the temporary file is removed.
 * `data` is a string (UTF-8), bytes, or a list of byte chunks written in order.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array | readonly Uint8Array[]): void {
  const chunks: readonly Uint8Array[] = typeof data === 'string' ? [Buffer.from(data, 'utf8')] : data instanceof Uint8Array ? [data] : data;
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  let fd = -1;
  try {
    fd = openSync(tmp, 'wx', 0o644);
    for (const c of chunks) {
      let off = 0;
      while (off < c.byteLength) off += writeSync(fd, c, off, c.byteLength - off);
    }
    fsyncSync(fd);
    closeSync(fd);
    fd = -1;
    renameSync(tmp, path);
  } catch (e) {
    if (fd >= 0) closeSync(fd);
    rmSync(tmp, { force: true });
    // Name the file: a bare "ENOSPC: no space left on device, write" does not say which.
    const err = new Error(`cannot write ${path}: ${reason(e)}`) as NodeJS.ErrnoException;
    err.code = (e as NodeJS.ErrnoException).code;
    throw err;
  }
  try {
    const dfd = openSync(dir, 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch {
    // Some platforms (Windows) cannot fsync a directory; the rename is still atomic there.
  }
}

/** A byte count for messages: "512 B", "3.2 MiB", "1.5 GiB". */
export function bytesText(n: number): string {
  if (!Number.isFinite(n)) return `${n} B`;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let u = 0;
  while (n >= 1024 && u < units.length - 1) {
    n /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${n.toFixed(1)} ${units[u]}`;
}
