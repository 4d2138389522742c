import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SpiffeError } from '../spiffe/errors.js';
import {
  certsToPem,
  concatDer,
  pemDecodeAll,
  pemDecodeBlocks,
  pemDecodeOne,
  pemEncode,
  splitConcatenatedDer,
} from '../spiffe/pem.js';

let dir: string;
/** Two certificates made by openssl, as openssl's own PEM text and DER bytes. */
const certs: Array<{ pem: string; der: Buffer }> = [];

function opensslCert(name: string, days: number): { pem: string; der: Buffer } {
  const key = path.join(dir, `${name}.key`);
  const crt = path.join(dir, `${name}.pem`);
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', key, '-out', crt, '-subj', `/CN=${name}`, '-days', String(days),
  ], { stdio: 'pipe' });
  const der = execFileSync('openssl', ['x509', '-in', crt, '-outform', 'DER']);
  return { pem: fs.readFileSync(crt, 'utf8'), der };
}

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(SpiffeError);
    return (e as SpiffeError).code;
  }
  return 'no error';
}

function message(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return (e as Error).message;
  }
  return 'no error';
}

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'brevis-pem-'));
  certs.push(opensslCert('one', 1), opensslCert('two', 2));
});

afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('pemEncode', () => {
  it('produces exactly the PEM text openssl writes for the same certificate', () => {
    for (const c of certs) expect(pemEncode('CERTIFICATE', c.der)).toBe(c.pem);
  });

  it('writes PEM that openssl reads back to the same DER', () => {
    const file = path.join(dir, 'roundtrip.pem');
    fs.writeFileSync(file, pemEncode('CERTIFICATE', certs[0]!.der));
    expect(execFileSync('openssl', ['x509', '-in', file, '-outform', 'DER']).equals(certs[0]!.der)).toBe(true);
  });

  it('accepts a Uint8Array view into a larger buffer', () => {
    const big = Buffer.concat([Buffer.from([1, 2, 3]), certs[0]!.der, Buffer.from([9])]);
    const view = new Uint8Array(big.buffer, big.byteOffset + 3, certs[0]!.der.length);
    expect(pemEncode('CERTIFICATE', view)).toBe(certs[0]!.pem);
  });

  it('refuses a malformed label', () => {
    expect(() => pemEncode('certificate', Buffer.from([0x30, 0]))).toThrow(TypeError);
    expect(() => pemEncode('CERT-----X', Buffer.from([0x30, 0]))).toThrow(TypeError);
  });
});

describe('certsToPem and pemDecodeAll', () => {
  it('round-trips a list of certificates in order', () => {
    const pem = certsToPem(certs.map((c) => c.der));
    expect(pem).toBe(certs[0]!.pem + certs[1]!.pem);
    const back = pemDecodeAll(pem, 'CERTIFICATE');
    expect(back).toHaveLength(2);
    expect(back[0]!.equals(certs[0]!.der)).toBe(true);
    expect(back[1]!.equals(certs[1]!.der)).toBe(true);
  });

  it('returns an empty list for text with no block', () => {
    expect(pemDecodeAll('')).toEqual([]);
    expect(pemDecodeAll('just a comment\n')).toEqual([]);
  });

  it('tolerates CRLF, indentation, blank lines, odd line lengths and text between blocks', () => {
    const b64 = certs[0]!.der.toString('base64');
    const messy =
      '# bundle for example.org\r\n' +
      'subject=CN = one\r\n' +
      '   -----BEGIN CERTIFICATE-----  \r\n' +
      `  ${b64.slice(0, 10)}\r\n\r\n\t${b64.slice(10, 200)}\r\n${b64.slice(200)}\r\n` +
      '-----END CERTIFICATE-----\r\n' +
      'some explanatory text\n' +
      certs[1]!.pem;
    const back = pemDecodeAll(messy, 'CERTIFICATE');
    expect(back.map((d) => d.toString('hex'))).toEqual(certs.map((c) => c.der.toString('hex')));
  });

  it('reports block labels through pemDecodeBlocks', () => {
    const text = pemEncode('CERTIFICATE', certs[0]!.der) + pemEncode('PRIVATE KEY', Buffer.from([0x30, 0]));
    expect(pemDecodeBlocks(text).map((b) => b.label)).toEqual(['CERTIFICATE', 'PRIVATE KEY']);
  });

  it('refuses a block with another label when a label is required, without echoing its contents', () => {
    const secret = Buffer.from('300a0408736563726574212121', 'hex');
    const text = certs[0]!.pem + pemEncode('PRIVATE KEY', secret);
    expect(code(() => pemDecodeAll(text, 'CERTIFICATE'))).toBe('INVALID_PEM');
    const msg = message(() => pemDecodeAll(text, 'CERTIFICATE'));
    expect(msg).toMatch(/unexpected PEM block 'PRIVATE KEY'/);
    expect(msg).not.toContain(secret.toString('base64'));
    expect(pemDecodeAll(text)).toHaveLength(2);
  });

  it('refuses a block without an END line', () => {
    const text = certs[0]!.pem.replace('-----END CERTIFICATE-----\n', '');
    expect(code(() => pemDecodeAll(text))).toBe('INVALID_PEM');
    expect(message(() => pemDecodeAll(text))).toMatch(/no END line/);
  });

  it('refuses an END line without a BEGIN line', () => {
    const text = certs[0]!.pem.replace('-----BEGIN CERTIFICATE-----\n', '');
    expect(message(() => pemDecodeAll(text))).toMatch(/without a matching BEGIN/);
  });

  it('refuses mismatched BEGIN and END labels', () => {
    const text = certs[0]!.pem.replace('END CERTIFICATE', 'END X509 CRL');
    expect(message(() => pemDecodeAll(text))).toMatch(/does not match BEGIN 'CERTIFICATE'/);
  });

  it('refuses a BEGIN line nested inside a block', () => {
    const text = certs[0]!.pem.replace('-----END CERTIFICATE-----\n', '') + certs[1]!.pem;
    expect(message(() => pemDecodeAll(text))).toMatch(/BEGIN inside the 'CERTIFICATE' block/);
  });

  it('refuses an empty block', () => {
    const text = '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n';
    expect(message(() => pemDecodeAll(text))).toMatch(/is empty/);
  });

  it('refuses characters outside the base64 alphabet, including url-safe ones and headers', () => {
    const lines = certs[0]!.pem.split('\n');
    const withChar = (c: string) => [lines[0], `${lines[1]!.slice(0, 10)}${c}${lines[1]!.slice(11)}`, ...lines.slice(2)].join('\n');
    for (const c of ['-', '_', '*', '.']) {
      expect(code(() => pemDecodeAll(withChar(c))), c).toBe('INVALID_PEM');
    }
    const encrypted = [lines[0], 'Proc-Type: 4,ENCRYPTED', '', ...lines.slice(1)].join('\n');
    expect(message(() => pemDecodeAll(encrypted))).toMatch(/not valid base64/);
  });

  it('refuses base64 with missing padding, misplaced padding or non-zero padding bits', () => {
    const wrap = (b64: string) => `-----BEGIN X-----\n${b64}\n-----END X-----\n`;
    expect(pemDecodeAll(wrap('MAA='))[0]!.equals(Buffer.from([0x30, 0]))).toBe(true);
    expect(message(() => pemDecodeAll(wrap('MAA')))).toMatch(/not valid base64/);
    expect(message(() => pemDecodeAll(wrap('MA=A')))).toMatch(/not valid base64/);
    expect(message(() => pemDecodeAll(wrap('MAB=')))).toMatch(/not canonical base64/);
  });
});

describe('pemDecodeOne', () => {
  it('returns the single block with the label', () => {
    expect(pemDecodeOne(certs[0]!.pem, 'CERTIFICATE').equals(certs[0]!.der)).toBe(true);
  });

  it('refuses zero or several blocks', () => {
    expect(message(() => pemDecodeOne('', 'CERTIFICATE'))).toMatch(/found 0/);
    expect(message(() => pemDecodeOne(certs[0]!.pem + certs[1]!.pem, 'CERTIFICATE'))).toMatch(/found 2/);
  });
});

describe('concatDer and splitConcatenatedDer', () => {
  it('split undoes concat for real certificates', () => {
    const joined = concatDer(certs.map((c) => c.der));
    expect(joined.length).toBe(certs[0]!.der.length + certs[1]!.der.length);
    const parts = splitConcatenatedDer(joined);
    expect(parts.map((p) => p.toString('hex'))).toEqual(certs.map((c) => c.der.toString('hex')));
  });

  it('returns an empty list for an empty buffer', () => {
    expect(splitConcatenatedDer(Buffer.alloc(0))).toEqual([]);
  });

  it('handles short-form, one-byte and two-byte lengths', () => {
    const short = Buffer.from([0x30, 0x02, 0x05, 0x00]);
    const oneByte = Buffer.concat([Buffer.from([0x30, 0x81, 0x80]), Buffer.alloc(0x80, 7)]);
    const twoByte = Buffer.concat([Buffer.from([0x30, 0x82, 0x01, 0x00]), Buffer.alloc(0x100, 9)]);
    const parts = splitConcatenatedDer(Buffer.concat([short, oneByte, twoByte]));
    expect(parts.map((p) => p.length)).toEqual([4, 3 + 0x80, 4 + 0x100]);
    expect(parts[2]!.equals(twoByte)).toBe(true);
  });

  it('throws when the last item is truncated', () => {
    const joined = concatDer(certs.map((c) => c.der));
    expect(code(() => splitConcatenatedDer(joined.subarray(0, joined.length - 1)))).toBe('INVALID_DER');
    expect(message(() => splitConcatenatedDer(joined.subarray(0, joined.length - 1)))).toMatch(/truncated/);
    expect(message(() => splitConcatenatedDer(Buffer.from([0x30])))).toMatch(/truncated in its length/);
    expect(message(() => splitConcatenatedDer(Buffer.from([0x30, 0x82, 0x01])))).toMatch(/truncated in its length/);
  });

  it('throws on an item that is not a SEQUENCE', () => {
    const joined = Buffer.concat([certs[0]!.der, Buffer.from([0x04, 0x00])]);
    expect(message(() => splitConcatenatedDer(joined))).toMatch(/not a SEQUENCE \(tag 0x04\)/);
  });

  it('throws on indefinite and non-minimal lengths', () => {
    expect(message(() => splitConcatenatedDer(Buffer.from([0x30, 0x80, 0x00, 0x00])))).toMatch(/indefinite/);
    expect(message(() => splitConcatenatedDer(Buffer.from([0x30, 0x81, 0x01, 0x00])))).toMatch(/non-minimal/);
    const padded = Buffer.concat([Buffer.from([0x30, 0x82, 0x00, 0x81]), Buffer.alloc(0x81)]);
    expect(message(() => splitConcatenatedDer(padded))).toMatch(/non-minimal/);
  });
});
