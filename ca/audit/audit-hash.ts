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

function encodeField(v: Field): Buffer {
  if (v === null) return Buffer.from([0, 0, 0, 0, 0]);
  const isInt = typeof v === 'number';
  if (isInt && !Number.isSafeInteger(v)) throw new TypeError(`audit field is not a safe integer: ${v}`);
  const bytes = Buffer.from(isInt ? v.toString(10) : v, isInt ? 'ascii' : 'utf8');
  const head = Buffer.alloc(5);
  head[0] = isInt ? 1 : 2;
  head.writeUInt32BE(bytes.length, 1);
  return Buffer.concat([head, bytes]);
}

/** The canonical bytes of a record at position `seq` following `prevHash`. */
export function canonicalAuditBytes(seq: number, r: AuditRecord, prevHash: string): Buffer {
  const fields: Field[] = [seq, r.timeMs, r.caller, r.action, r.spiffeId, r.serial, r.notAfter, r.outcome, r.detail, prevHash];
  return Buffer.concat([VERSION_TAG, ...fields.map(encodeField)]);
}

/** SHA-256 (hex) of the record's canonical encoding. */
export function auditRecordHash(seq: number, r: AuditRecord, prevHash: string): string {
  return createHash('sha256').update(canonicalAuditBytes(seq, r, prevHash)).digest('hex');
}
