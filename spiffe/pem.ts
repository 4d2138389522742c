import { SpiffeError } from './errors.js';

/**
 * PEM (RFC 7468) and concatenated-DER encodings of certificates and keys.
 *
 * Decoding is lenient about layout (CRLF, indentation, blank lines, any line
 * length, explanatory text between blocks as RFC 7468 allows) and strict about
 * content: a block must end with a matching END line and hold canonical
 * base64 with nothing else (no RFC 1421 headers, so no encrypted PEM).
 * Error messages name labels and positions, never block contents, since a
 * block may hold a private key.
 */

/** One decoded PEM block. */
export interface PemBlock {
  label: string;
  der: Buffer;
}

const BEGIN = /^-----BEGIN ([\x21-\x2c\x2e-\x7e](?:[- ]?[\x21-\x2c\x2e-\x7e])*)?-----$/;
const END = /^-----END ([\x21-\x2c\x2e-\x7e](?:[- ]?[\x21-\x2c\x2e-\x7e])*)?-----$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Encodes DER bytes as one PEM block with 64-character lines and a trailing newline. */
export function pemEncode(label: string, der: Uint8Array): string {
  if (!/^[A-Z0-9][A-Z0-9 ]*$/.test(label)) throw new TypeError(`invalid PEM label '${label}'`);
  const b64 = toBuffer(der).toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** Encodes DER certificates as consecutive `CERTIFICATE` blocks, in order. */
export function certsToPem(ders: readonly Uint8Array[]): string {
  return ders.map((d) => pemEncode('CERTIFICATE', d)).join('');
}

/**
 * Decodes every PEM block in `text`, in order. Text outside blocks is ignored.
 * Throws SpiffeError('INVALID_PEM') on an unterminated block, mismatched
 * BEGIN/END labels, a nested BEGIN, an END with no BEGIN, an empty block or
 * non-canonical base64.
 */
export function pemDecodeBlocks(text: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  const lines = text.split(/\r\n|\r|\n/);
  let open: { label: string; line: number; body: string[] } | undefined;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    const lineNo = i + 1;
    const begin = BEGIN.exec(line);
    const end = END.exec(line);
    if (begin) {
      if (open) throw invalidPem(`line ${lineNo}: BEGIN inside the '${open.label}' block opened at line ${open.line}`);
      open = { label: begin[1] ?? '', line: lineNo, body: [] };
    } else if (end) {
      if (!open) throw invalidPem(`line ${lineNo}: END '${end[1] ?? ''}' without a matching BEGIN`);
      if ((end[1] ?? '') !== open.label) {
        throw invalidPem(`line ${lineNo}: END '${end[1] ?? ''}' does not match BEGIN '${open.label}' at line ${open.line}`);
      }
      blocks.push({ label: open.label, der: decodeBase64(open.body.join(''), open.label, open.line) });
      open = undefined;
    } else if (open) {
      open.body.push(line.replace(/\s+/g, ''));
    }
  }
  if (open) throw invalidPem(`the '${open.label}' block opened at line ${open.line} has no END line`);
  return blocks;
}

/**
 * Decodes the DER contents of every PEM block in `text`. With `label`, every
 * block must carry that label: a stray block (say a private key in a file of
 * certificates) is an error rather than silently skipped. Returns [] when
 * the text holds no block at all; callers decide whether that is an error.
 */
export function pemDecodeAll(text: string, label?: string): Buffer[] {
  const blocks = pemDecodeBlocks(text);
  if (label !== undefined) {
    for (const b of blocks) {
      if (b.label !== label) throw invalidPem(`unexpected PEM block '${b.label}', expected '${label}'`);
    }
  }
  return blocks.map((b) => b.der);
}

/** Decodes exactly one PEM block with the given label. Throws SpiffeError('INVALID_PEM') otherwise. */
export function pemDecodeOne(text: string, label: string): Buffer {
  const ders = pemDecodeAll(text, label);
  if (ders.length !== 1) throw invalidPem(`expected exactly one '${label}' PEM block, found ${ders.length}`);
  return ders[0]!;
}

/** Concatenates DER items, as the Workload API carries certificate chains and bundles. */
export function concatDer(ders: readonly Uint8Array[]): Buffer {
  return Buffer.concat(ders.map(toBuffer));
}

/**
 * Splits concatenated DER (Workload API `x509_svid` and `bundle` fields) into
 * its items by walking the outer SEQUENCE headers. Only checks framing, not
 * what is inside. Throws SpiffeError('INVALID_DER') when an item is not a
 * SEQUENCE, uses an indefinite or non-minimal length, or runs past the end.
 * An empty buffer yields [].
 */
export function splitConcatenatedDer(buf: Uint8Array): Buffer[] {
  const b = toBuffer(buf);
  const items: Buffer[] = [];
  let pos = 0;
  while (pos < b.length) {
    const start = pos;
    if (b[pos] !== 0x30) {
      throw invalidDer(`item at byte ${start} is not a SEQUENCE (tag 0x${b[pos]!.toString(16).padStart(2, '0')})`);
    }
    pos++;
    if (pos >= b.length) throw invalidDer(`item at byte ${start} is truncated in its length`);
    const first = b[pos++]!;
    let length: number;
    if (first < 0x80) {
      length = first;
    } else {
      const n = first & 0x7f;
      if (n === 0) throw invalidDer(`item at byte ${start} uses an indefinite length, which DER forbids`);
      // Four length bytes already describe 4 GiB, far beyond any certificate.
      if (n > 4) throw invalidDer(`item at byte ${start} has a ${n}-byte length`);
      if (pos + n > b.length) throw invalidDer(`item at byte ${start} is truncated in its length`);
      length = 0;
      for (let i = 0; i < n; i++) length = length * 256 + b[pos + i]!;
      if (b[pos] === 0 || length < 0x80) {
        throw invalidDer(`item at byte ${start} has a non-minimal length encoding, which DER forbids`);
      }
      pos += n;
    }
    if (pos + length > b.length) {
      throw invalidDer(`item at byte ${start} is truncated: needs ${length} content bytes, ${b.length - pos} remain`);
    }
    pos += length;
    items.push(b.subarray(start, pos));
  }
  return items;
}

function decodeBase64(b64: string, label: string, line: number): Buffer {
  if (b64 === '') throw invalidPem(`the '${label}' block at line ${line} is empty`);
  if (!BASE64.test(b64) || b64.length % 4 !== 0) {
    throw invalidPem(`the '${label}' block at line ${line} is not valid base64`);
  }
  const der = Buffer.from(b64, 'base64');
  // Round-trip to refuse non-zero padding bits and other non-canonical forms.
  if (der.toString('base64') !== b64) {
    throw invalidPem(`the '${label}' block at line ${line} is not canonical base64`);
  }
  return der;
}

function toBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

function invalidPem(message: string): SpiffeError {
  return new SpiffeError('INVALID_PEM', message);
}

function invalidDer(message: string): SpiffeError {
  return new SpiffeError('INVALID_DER', message);
}
