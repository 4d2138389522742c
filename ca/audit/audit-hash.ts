/**
 * The audit trail's hash chain: every record carries the hash of the record
 * before it, and its own hash covers all of its fields plus that previous
 * hash. Editing, deleting, inserting or reordering any record therefore
 * breaks the chain from that point on (see verify-chain.ts).
 *
 * The canonical encoding is fixed forever (a change needs a new version
 * tag): the tag, then each field in a fixed order as one type byte
 * (0 null, 1 integer, 2 text), a 4-byte big-endian length and the bytes
 * (integers in decimal ASCII, text in UTF-8). Lengths make the encoding
 * unambiguous: no two different records encode to the same bytes.
 */
import { createHash } from 'node:crypto';
import type { AuditRecord } from '../store/store.js';

/** The `prev_hash` of the first record: 32 zero bytes, hex. */
export const GENESIS_HASH = '0'.repeat(64);

/** The last record of a chain: the next record is seq + 1, chained to hash. */
export interface ChainHead {
  seq: number;
  hash: string;
}

const VERSION_TAG = Buffer.from('brevis-audit-v1', 'ascii');

/** An audit record as stored in the chain: its sequence number and both hashes are known. */
export interface ChainedAuditRecord extends AuditRecord {
  seq: number;
  /** Hash of the previous record (GENESIS_HASH for the first), lower-case hex. */
  prevHash: string;
  /** SHA-256 of the canonical encoding of this record, lower-case hex. */
  hash: string;
}

type Field = number | string | null;

/**
 * The canonical bytes, written into one buffer sized up front: every mint
 * hashes a record, and encoding field by field (three buffers per field,
 * then a concatenation) made this one of the CA's largest sources of
 * garbage per call (heap sampling, README "Performance"). The golden
 * vectors in test/audit-chain.test.ts hold the bytes fixed.
 */
export function canonicalAuditBytes(seq: number, r: AuditRecord, prevHash: string): Buffer {
  const fields: Field[] = [seq, r.timeMs, r.caller, r.action, r.spiffeId, r.serial, r.notAfter, r.outcome, r.detail, prevHash];
  const texts: (string | null)[] = new Array(fields.length);
  let size = VERSION_TAG.length;
  for (let i = 0; i < fields.length; i++) {
    const v = fields[i]!;
    size += 5;
    if (v === null) {
      texts[i] = null;
      continue;
    }
    if (typeof v === 'number' && !Number.isSafeInteger(v)) throw new TypeError(`audit field is not a safe integer: ${v}`);
    const text = typeof v === 'number' ? v.toString(10) : v;
    texts[i] = text;
    size += Buffer.byteLength(text, 'utf8'); // decimal digits are ASCII: the same bytes in UTF-8
  }
  const out = Buffer.allocUnsafe(size);
  let at = VERSION_TAG.copy(out, 0);
  for (let i = 0; i < fields.length; i++) {
    const text = texts[i] ?? null;
    out[at] = text === null ? 0 : typeof fields[i] === 'number' ? 1 : 2;
    const length = text === null ? 0 : out.write(text, at + 5, 'utf8');
    out.writeUInt32BE(length, at + 1);
    at += 5 + length;
  }
  return out;
}

/** SHA-256 (hex) of the record's canonical encoding. */
export function auditRecordHash(seq: number, r: AuditRecord, prevHash: string): string {
  return createHash('sha256').update(canonicalAuditBytes(seq, r, prevHash)).digest('hex');
}
