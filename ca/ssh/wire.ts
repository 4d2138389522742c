/**
 * The SSH wire encoding (RFC 4251 section 5) as OpenSSH keys and
 * certificates use it: big-endian uint32/uint64, length-prefixed strings
 * and two's-complement mpints. The reader is strict: every read is
 * bounds-checked and a caller can insist that nothing is left over, so a
 * truncated or padded blob is an error, never a half-read value.
 */
import { CaError } from '../errors.js';

/** Appends SSH wire values to a growing list of chunks. */
export class SshWriter {
  readonly #chunks: Buffer[] = [];

  uint32(n: number): this {
    if (!Number.isInteger(n) || n < 0 || n > 0xffff_ffff) throw new TypeError(`uint32 out of range: ${n}`);
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(n);
    this.#chunks.push(b);
    return this;
  }

  uint64(n: bigint): this {
    if (n < 0n || n > 0xffff_ffff_ffff_ffffn) throw new TypeError(`uint64 out of range: ${n}`);
    const b = Buffer.allocUnsafe(8);
    b.writeBigUInt64BE(n);
    this.#chunks.push(b);
    return this;
  }

  /** A length-prefixed byte string; a JS string is written as UTF-8. */
  string(s: Uint8Array | string): this {
    const bytes = typeof s === 'string' ? Buffer.from(s, 'utf8') : Buffer.from(s.buffer, s.byteOffset, s.byteLength);
    this.uint32(bytes.length);
    this.#chunks.push(bytes);
    return this;
  }

  /**
   * A non-negative integer given as unsigned big-endian bytes, written as an
   * mpint: leading zero bytes removed, and one zero byte added back when the
   * top bit is set (mpints are two's complement).
   */
  mpint(unsigned: Uint8Array): this {
    let i = 0;
    while (i < unsigned.length && unsigned[i] === 0) i++;
    const body = Buffer.from(unsigned.subarray(i));
    return this.string(body.length > 0 && body[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), body]) : body);
  }

  /** Bytes written as they are (already encoded). */
  raw(bytes: Uint8Array): this {
    this.#chunks.push(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    return this;
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.#chunks);
  }
}

/**
 * Reads SSH wire values from a buffer. Malformed input throws
 * CaError('INVALID_ARGUMENT') with `what` naming the structure.
 */
export class SshReader {
  #pos = 0;

  constructor(
    private readonly buf: Buffer,
    private readonly what: string,
  ) {}

  get offset(): number {
    return this.#pos;
  }

  get remaining(): number {
    return this.buf.length - this.#pos;
  }

  uint32(): number {
    this.#need(4);
    const v = this.buf.readUInt32BE(this.#pos);
    this.#pos += 4;
    return v;
  }

  uint64(): bigint {
    this.#need(8);
    const v = this.buf.readBigUInt64BE(this.#pos);
    this.#pos += 8;
    return v;
  }

  /** A length-prefixed byte string (a view into the buffer). */
  bytes(): Buffer {
    const n = this.uint32();
    this.#need(n);
    const v = this.buf.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    return v;
  }

  /** A length-prefixed string that must be valid UTF-8. */
  text(): string {
    const b = this.bytes();
    const s = b.toString('utf8');
    if (!Buffer.from(s, 'utf8').equals(b)) this.fail('a string is not valid UTF-8');
    return s;
  }

  /**
   * A non-negative mpint in its minimal encoding (as OpenSSH writes and
   * requires), returned as unsigned big-endian bytes without leading zeros.
   */
  positiveMpint(): Buffer {
    const b = this.bytes();
    if (b.length === 0) return b;
    if (b[0]! & 0x80) this.fail('an integer is negative');
    if (b[0] === 0 && (b.length === 1 || (b[1]! & 0x80) === 0)) this.fail('an integer has a superfluous leading zero');
    return b[0] === 0 ? b.subarray(1) : b;
  }

  /** Fails unless every byte was consumed. */
  end(): void {
    if (this.remaining !== 0) this.fail(`${this.remaining} unexpected trailing bytes`);
  }

  fail(msg: string): never {
    throw new CaError('INVALID_ARGUMENT', `${this.what}: ${msg}`);
  }

  #need(n: number): void {
    if (this.remaining < n) this.fail('truncated');
  }
}

/** Encodes a list of strings as the concatenation of SSH strings (principals). */
export function encodeStringList(items: readonly string[]): Buffer {
  const w = new SshWriter();
  for (const s of items) w.string(s);
  return w.toBuffer();
}

/** Decodes a concatenation of SSH strings. */
export function decodeStringList(buf: Buffer, what: string): string[] {
  const r = new SshReader(buf, what);
  const out: string[] = [];
  while (r.remaining > 0) out.push(r.text());
  return out;
}
