/**
 * User and group names from /etc/passwd and /etc/group, parsed directly (no
 * NSS: users that only exist in LDAP or similar get no name selector). Each
 * file is re-read at most once per TTL, so a burst of calls costs one read.
 */
import fsp from 'node:fs/promises';
import type { Clock } from '../../spiffe/clock.js';

/** How long a parsed file is trusted before it is read again, in milliseconds. */
export const NAME_CACHE_TTL_MS = 10_000;

interface Loaded {
  loadedAtMs: number;
  names: Map<number, string>;
}

const cache = new Map<string, Loaded>();
const inflight = new Map<string, Promise<Map<number, string>>>();

/**
 * Parses passwd(5) or group(5) text into id -> name. Both formats keep the
 * name in field 1 and the numeric id in field 3. Comments, NIS `+`/`-` lines
 * and malformed lines are skipped; for a duplicated id the first line wins,
 * as getpwuid(3) does.
 */
export function parseIdFile(text: string): Map<number, string> {
  const names = new Map<number, string>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#') || line.startsWith('+') || line.startsWith('-')) continue;
    const fields = line.split(':');
    if (fields.length < 4) continue;
    const name = fields[0]!;
    const idText = fields[2]!;
    if (name === '' || !/^\d+$/.test(idText)) continue;
    const id = Number(idText);
    if (!names.has(id)) names.set(id, name);
  }
  return names;
}

/**
 * The id -> name table of `file` (a passwd or group file), cached for
 * NAME_CACHE_TTL_MS by `clock` (a hit returns synchronously). Rejects when
 * the file cannot be read.
 */
export function idNames(file: string, clock: Clock): Map<number, string> | Promise<Map<number, string>> {
  const nowMs = clock.now().getTime();
  const hit = cache.get(file);
  if (hit && nowMs - hit.loadedAtMs < NAME_CACHE_TTL_MS && nowMs >= hit.loadedAtMs) return hit.names;
  let pending = inflight.get(file);
  if (!pending) {
    pending = fsp
      .readFile(file, 'utf8')
      .then((text) => {
        const names = parseIdFile(text);
        cache.set(file, { loadedAtMs: nowMs, names });
        return names;
      })
      .finally(() => inflight.delete(file));
    inflight.set(file, pending);
  }
  return pending;
}
