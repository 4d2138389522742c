/**
 * A minimal DER encoder and a strict DER reader, just enough for the
 * certificates and CSRs the CA handles on every request. The general ASN.1
 * libraries (@peculiar/asn1-*) are about 10x slower on this hot path.
 * Only single-byte tags (tag number < 31) are supported, which covers X.509.
 */

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** Context-specific tag `[n]`: constructed (EXPLICIT or a constructed IMPLICIT type) or primitive. */
export function contextTag(n: number, constructed: boolean): number {
  return 0x80 | (constructed ? 0x20 : 0) | n;
}

// ---------------------------------------------------------------- encoding

/** One TLV with the given tag around the concatenation of `parts`. */
export function tlv(tag: number, ...parts: Uint8Array[]): Buffer {
  let length = 0;
  for (const p of parts) length += p.length;
  const lengthBytes = length < 0x80 ? 1 : length < 0x100 ? 2 : length < 0x10000 ? 3 : length < 0x1000000 ? 4 : 5;
  const out = Buffer.allocUnsafe(1 + lengthBytes + length);
  out[0] = tag;
  if (lengthBytes === 1) {
    out[1] = length;
  } else {
    out[1] = 0x80 | (lengthBytes - 1);
    for (let i = lengthBytes - 1, v = length; i >= 1; i--, v = Math.floor(v / 256)) out[1 + i] = v & 0xff;
  }
  let offset = 1 + lengthBytes;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

export const sequence = (...parts: Uint8Array[]): Buffer => tlv(TAG.SEQUENCE, ...parts);
export const set = (...parts: Uint8Array[]): Buffer => tlv(TAG.SET, ...parts);
export const octetString = (bytes: Uint8Array): Buffer => tlv(TAG.OCTET_STRING, bytes);
export const utf8String = (s: string): Buffer => tlv(TAG.UTF8_STRING, Buffer.from(s, 'utf8'));
export const booleanTrue = (): Buffer => Buffer.from([TAG.BOOLEAN, 1, 0xff]);

/** A BIT STRING holding `bytes` with `unusedBits` unused bits in the last byte. */
export function bitString(bytes: Uint8Array, unusedBits = 0): Buffer {
  return tlv(TAG.BIT_STRING, Buffer.from([unusedBits]), bytes);
}

/** A non-negative INTEGER from big-endian magnitude bytes, minimally encoded. */
export function unsignedInteger(magnitude: Uint8Array): Buffer {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const body = magnitude.subarray(start);
  if (body.length === 0) return Buffer.from([TAG.INTEGER, 1, 0]);
  return (body[0]! & 0x80) !== 0 ? tlv(TAG.INTEGER, Buffer.from([0]), body) : tlv(TAG.INTEGER, body);
}

/** A small non-negative INTEGER. */
export function smallInteger(n: number): Buffer {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`bad integer ${n}`);
  const bytes: number[] = [];
  do {
    bytes.unshift(n & 0xff);
    n = Math.floor(n / 256);
  } while (n > 0);
  return unsignedInteger(Buffer.from(bytes));
}

/** An OBJECT IDENTIFIER from dotted notation. */
export function oid(dotted: string): Buffer {
  // The same few OIDs are encoded for every certificate: encode each once.
  const known = OID_TLVS.get(dotted);
  if (known) return Buffer.from(known);
  const encoded = encodeOid(dotted);
  if (OID_TLVS.size < OID_CACHE_SIZE) OID_TLVS.set(dotted, encoded);
  return Buffer.from(encoded);
}

/** Encoded OIDs by dotted form, and decoded ones by content octets (latin1): bounded, since callers' input reaches both. */
const OID_CACHE_SIZE = 256;
const OID_TLVS = new Map<string, Buffer>();
const OID_STRINGS = new Map<string, string>();

function encodeOid(dotted: string): Buffer {
  const arcs = dotted.split('.').map(Number);
  if (arcs.length < 2 || arcs.some((a) => !Number.isSafeInteger(a) || a < 0)) throw new RangeError(`bad OID ${dotted}`);
  const body: number[] = [];
  const push = (v: number) => {
    const chunk = [v & 0x7f];
    for (v = Math.floor(v / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f));
    body.push(...chunk);
  };
  push(arcs[0]! * 40 + arcs[1]!);
  for (const a of arcs.slice(2)) push(a);
  return tlv(TAG.OID, Buffer.from(body));
}

/** UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 4.1.2.5); whole seconds, UTC. */
export function time(date: Date): Buffer {
  const iso = date.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const year = date.getUTCFullYear();
  const digits = iso.slice(0, 4) + iso.slice(5, 7) + iso.slice(8, 10) + iso.slice(11, 13) + iso.slice(14, 16) + iso.slice(17, 19);
  if (year >= 1950 && year < 2050) return tlv(TAG.UTC_TIME, Buffer.from(`${digits.slice(2)}Z`, 'latin1'));
  if (year < 0 || year > 9999) throw new RangeError(`date out of range: ${iso}`);
  return tlv(TAG.GENERALIZED_TIME, Buffer.from(`${digits}Z`, 'latin1'));
}

// ---------------------------------------------------------------- decoding

/** Malformed DER. Callers turn it into a CaError with context. */
export class DerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DerError';
  }
}

export interface Tlv {
  tag: number;
  /** The content octets (a view into the input). */
  content: Buffer;
  /** The whole TLV, tag and length included (a view into the input). */
  raw: Buffer;
}

/** Reads consecutive TLVs from a buffer, enforcing definite, minimal lengths. */
export class DerReader {
  #buf: Buffer;
  #pos = 0;

  constructor(buf: Uint8Array) {
    this.#buf = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  get done(): boolean {
    return this.#pos >= this.#buf.length;
  }

  peekTag(): number | undefined {
    return this.done ? undefined : this.#buf[this.#pos];
  }

  read(): Tlv {
    const buf = this.#buf;
    const start = this.#pos;
    if (start + 2 > buf.length) throw new DerError('truncated');
    const tag = buf[start]!;
    if ((tag & 0x1f) === 0x1f) throw new DerError('multi-byte tags are not supported');
    let length = buf[start + 1]!;
    let offset = start + 2;
    if (length & 0x80) {
      const n = length & 0x7f;
      if (n === 0) throw new DerError('indefinite length is not DER');
      if (n > 4) throw new DerError('length too large');
      if (offset + n > buf.length) throw new DerError('truncated');
      if (buf[offset] === 0) throw new DerError('non-minimal length');
      length = 0;
      for (let i = 0; i < n; i++) length = length * 256 + buf[offset + i]!;
      if (length < 0x80) throw new DerError('non-minimal length');
      offset += n;
    }
    const end = offset + length;
    if (end > buf.length) throw new DerError('truncated');
    this.#pos = end;
    return { tag, content: buf.subarray(offset, end), raw: buf.subarray(start, end) };
  }

  /** Reads one TLV and requires its tag; `what` names it in the error. */
  expect(tag: number, what: string): Tlv {
    if (this.peekTag() !== tag) throw new DerError(`expected ${what}`);
    return this.read();
  }

  /** Reads one TLV if the next tag is `tag`. */
  optional(tag: number): Tlv | undefined {
    return this.peekTag() === tag ? this.read() : undefined;
  }

  /** Requires that nothing is left. */
  end(what: string): void {
    if (!this.done) throw new DerError(`trailing data after ${what}`);
  }
}

/** A reader over the content of a TLV that must have the given tag. */
export function readerOf(t: Tlv, tag: number, what: string): DerReader {
  if (t.tag !== tag) throw new DerError(`expected ${what}`);
  return new DerReader(t.content);
}

/** Decodes OBJECT IDENTIFIER content octets to dotted notation. */
export function decodeOid(content: Buffer): string {
  const key = content.toString('latin1');
  const known = OID_STRINGS.get(key);
  if (known !== undefined) return known;
  const dotted = decodeOidUncached(content);
  if (OID_STRINGS.size < OID_CACHE_SIZE) OID_STRINGS.set(key, dotted);
  return dotted;
}

function decodeOidUncached(content: Buffer): string {
  if (content.length === 0) throw new DerError('empty OID');
  const arcs: number[] = [];
  let v = 0;
  let fresh = true;
  for (const b of content) {
    if (fresh && b === 0x80) throw new DerError('non-minimal OID');
    v = v * 128 + (b & 0x7f);
    if (v > Number.MAX_SAFE_INTEGER) throw new DerError('OID arc too large');
    fresh = (b & 0x80) === 0;
    if (fresh) {
      arcs.push(v);
      v = 0;
    }
  }
  if (!fresh) throw new DerError('truncated OID');
  const first = arcs[0]!;
  const head = first < 40 ? [0, first] : first < 80 ? [1, first - 40] : [2, first - 80];
  return [...head, ...arcs.slice(1)].join('.');
}

/** Decodes a BOOLEAN's content (DER: 0x00 or 0xff). */
export function decodeBoolean(content: Buffer): boolean {
  if (content.length !== 1 || (content[0] !== 0 && content[0] !== 0xff)) throw new DerError('bad BOOLEAN');
  return content[0] === 0xff;
}

/** Decodes a small non-negative INTEGER. */
export function decodeSmallInteger(content: Buffer): number {
  checkInteger(content);
  if (content[0]! & 0x80) throw new DerError('negative INTEGER');
  if (content.length > 6) throw new DerError('INTEGER too large');
  return content.readUIntBE(0, content.length);
}

/** Checks INTEGER content is non-empty and minimal. */
export function checkInteger(content: Buffer): void {
  if (content.length === 0) throw new DerError('empty INTEGER');
  if (content.length > 1 && ((content[0] === 0 && !(content[1]! & 0x80)) || (content[0] === 0xff && content[1]! & 0x80))) {
    throw new DerError('non-minimal INTEGER');
  }
}

/** Decodes a BIT STRING's content to its bytes, requiring no unused bits. */
export function decodeOctetAlignedBitString(content: Buffer): Buffer {
  if (content.length === 0 || content[0] !== 0) throw new DerError('BIT STRING is not octet-aligned');
  return content.subarray(1);
}

const UTC_TIME = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/;
const GENERALIZED_TIME = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/;

/** Decodes a UTCTime or GeneralizedTime TLV in the DER forms RFC 5280 allows. */
export function decodeTime(t: Tlv): Date {
  const s = t.content.toString('latin1');
  let m: RegExpExecArray | null;
  let year: number;
  if (t.tag === TAG.UTC_TIME && (m = UTC_TIME.exec(s))) {
    const yy = Number(m[1]);
    year = yy < 50 ? 2000 + yy : 1900 + yy;
  } else if (t.tag === TAG.GENERALIZED_TIME && (m = GENERALIZED_TIME.exec(s))) {
    year = Number(m[1]);
  } else {
    throw new DerError('bad time');
  }
  const [mo, d, h, mi, se] = [2, 3, 4, 5, 6].map((i) => Number(m![i]));
  const date = new Date(Date.UTC(year, mo! - 1, d, h, mi, se));
  if (date.getUTCMonth() !== mo! - 1 || date.getUTCDate() !== d || h! > 23 || mi! > 59 || se! > 59) {
    throw new DerError('bad time');
  }
  return date;
}
