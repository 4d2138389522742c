/**
 * SHA-256 of executables, cached by file identity. Hashing a 100 MB binary
 * takes about 200 ms, and every process of the same program hashes the same,
 * so the digest is computed once per (device, inode, size, mtime) and shared.
 */
import { createHash } from 'node:crypto';
import fs, { type Stats } from 'node:fs';
import { promisify } from 'node:util';

/** Digests remembered; the oldest is evicted past this (each entry is ~150 bytes). */
const MAX_ENTRIES = 1024;
/** Read size while hashing, in bytes. */
const CHUNK_BYTES = 1 << 20;

const read = promisify(fs.read);
const digests = new Map<string, string>();
const inflight = new Map<string, Promise<string>>();

/** The cache key: a rewritten or replaced file changes at least one of these. */
export function fileIdentity(st: Pick<Stats, 'dev' | 'ino' | 'size' | 'mtimeMs'>): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
}

/**
 * The lower-case hex SHA-256 of the file at `file`. Opening `/proc/<pid>/exe`
 * reaches the process's actual executable even when its path was since
 * replaced, and the identity is taken from the open descriptor so that the
 * bytes hashed are the bytes the key describes.
 *
 * The open and fstat are synchronous on purpose: on procfs they take
 * microseconds, and a cache hit then costs no trip through libuv's thread pool.
 */
export async function fileSha256(file: string): Promise<string> {
  const fd = fs.openSync(file, 'r');
  try {
    const key = fileIdentity(fs.fstatSync(fd));
    const known = digests.get(key);
    if (known !== undefined) return known;
    let pending = inflight.get(key);
    if (!pending) {
      pending = hashFd(fd).finally(() => inflight.delete(key));
      inflight.set(key, pending);
    }
    const digest = await pending;
    remember(key, digest);
    return digest;
  } finally {
    fs.closeSync(fd);
  }
}

/** Number of cached digests (for tests and metrics). */
export function digestCacheSize(): number {
  return digests.size;
}

async function hashFd(fd: number): Promise<string> {
  const hash = createHash('sha256');
  const buf = Buffer.allocUnsafe(CHUNK_BYTES);
  let position = 0;
  for (;;) {
    const { bytesRead } = await read(fd, buf, 0, CHUNK_BYTES, position);
    if (bytesRead === 0) break;
    hash.update(buf.subarray(0, bytesRead));
    position += bytesRead;
  }
  return hash.digest('hex');
}

function remember(key: string, digest: string): void {
  if (digests.has(key)) return;
  if (digests.size >= MAX_ENTRIES) {
    const oldest = digests.keys().next().value;
    if (oldest !== undefined) digests.delete(oldest);
  }
  digests.set(key, digest);
}
