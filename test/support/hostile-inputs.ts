/**
 * fast-check arbitraries for hostile input: mutated CSRs, bad SSH public
 * keys, SPIFFE IDs that break each rule of the standard, bad selectors,
 * DNS names, principals and TTLs, and strings full of unicode and control
 * characters. Every arbitrary here produces only values the CA must
 * refuse, so a test can demand a refusal for each.
 */
import { generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';
import { MAX_CSR_BYTES } from '../../ca/x509/csr.js';
import { formatAuthorizedKey, sshPublicKeyBlob } from '../../ca/ssh/public-key.js';
import type { CsrCorpus } from './csr-forge.js';

/** Strings with what breaks naive code: controls, NUL, bidi overrides, emoji, combining marks, lone surrogates. */
export const nastyChar = fc.constantFrom(
  '\u0000', '\n', '\r', '\t', '\u001b', '\u007f', '\u0085', '\u2028', '\u202e', '\ufeff', '\ufffd', 'é', 'e\u0301', 'İ', 'ß', '😀', '\ud800', '/', '%', ':', '@', '?', '#', ' ', '..', '\\',
);

/** Any string, biased towards nasty characters. */
export const nastyString = (maxLength = 64) =>
  fc.oneof(
    fc.string({ maxLength }),
    fc.string({ unit: 'binary', maxLength }),
    fc.array(fc.oneof(nastyChar, fc.string({ maxLength: 3 })), { maxLength }).map((a) => a.join('')),
  );

/** A string longer than any field limit (up to 100 KB). */
export const hugeString = fc.integer({ min: 5_000, max: 100_000 }).chain((n) => fc.constantFrom('a', 'é', '😀', '\u0000').map((c) => c.repeat(n)));

/** A CSR the CA must refuse: mutated valid ones, forged ones, garbage, oversize. */
export function hostileCsr(corpus: CsrCorpus): fc.Arbitrary<{ how: string; der: Buffer }> {
  const valid = fc.constantFrom(...corpus.valid.map((v) => v.der));
  const validHex = new Set(corpus.valid.map((v) => v.der.toString('hex')));
  const mutated = fc.oneof(
    valid.chain((d) => fc.integer({ min: 0, max: d.length - 1 }).map((n) => ({ how: `truncated to ${n}`, der: d.subarray(0, n) }))),
    valid.chain((d) =>
      fc.tuple(fc.integer({ min: 0, max: d.length - 1 }), fc.integer({ min: 1, max: 255 })).map(([i, x]) => {
        const m = Buffer.from(d);
        m[i]! ^= x;
        return { how: `byte ${i} xor ${x}`, der: m };
      }),
    ),
    valid.chain((d) =>
      fc.tuple(fc.integer({ min: 0, max: d.length }), fc.uint8Array({ minLength: 1, maxLength: 16 })).map(([i, ins]) => ({
        how: `${ins.length} bytes inserted at ${i}`,
        der: Buffer.concat([d.subarray(0, i), ins, d.subarray(i)]),
      })),
    ),
    valid.chain((d) =>
      fc.tuple(fc.integer({ min: 0, max: d.length - 1 }), fc.integer({ min: 1, max: 32 })).map(([i, n]) => ({
        how: `${n} bytes removed at ${i}`,
        der: Buffer.concat([d.subarray(0, i), d.subarray(i + n)]),
      })),
    ),
    valid.chain((d) => fc.uint8Array({ minLength: 1, maxLength: 64 }).map((tail) => ({ how: 'trailing bytes', der: Buffer.concat([d, tail]) }))),
  );
  return fc
    .oneof(
      { weight: 6, arbitrary: mutated },
      { weight: 2, arbitrary: fc.constantFrom(...corpus.refused).map((r) => ({ how: r.name, der: r.der })) },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 512 }).map((b) => ({ how: 'random bytes', der: Buffer.from(b) })) },
      { weight: 1, arbitrary: fc.constant({ how: 'empty', der: Buffer.alloc(0) }) },
      {
        weight: 1,
        arbitrary: fc.integer({ min: MAX_CSR_BYTES + 1, max: 64 * 1024 }).map((n) => ({ how: `${n} bytes (oversize)`, der: Buffer.alloc(n, 0x30) })),
      },
      { weight: 1, arbitrary: fc.integer({ min: 100, max: 5000 }).map((n) => ({ how: `${n} nested SEQUENCEs`, der: nested(n) })) },
    )
    .filter((c) => !validHex.has(c.der.toString('hex')));
}

/** SEQUENCE { SEQUENCE { ... } } n deep, with indefinite-free lengths. */
function nested(n: number): Buffer {
  let b = Buffer.alloc(0);
  for (let i = 0; i < n; i++) b = Buffer.concat([Buffer.from([0x30]), lengthOf(b.length), b]);
  return b;
}

function lengthOf(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

const seg = fc.stringMatching(/^[a-zA-Z0-9._-]{1,12}$/).filter((s) => s !== '.' && s !== '..');

/** SPIFFE IDs that break a rule of the standard (or a length limit). `td` is the CA's trust domain. */
export function invalidSpiffeId(td: string): fc.Arbitrary<{ rule: string; id: string }> {
  const path = fc.array(seg, { minLength: 1, maxLength: 4 }).map((s) => `/${s.join('/')}`);
  const r = (rule: string, a: fc.Arbitrary<string>) => a.map((id) => ({ rule, id }));
  return fc.oneof(
    r('empty', fc.constant('')),
    r('wrong scheme', fc.tuple(fc.constantFrom('http', 'https', 'spiffe:', 'spife', 'urn', ''), path).map(([s, p]) => `${s}://${td}${p}`)),
    r('missing slashes', path.map((p) => `spiffe:${td}${p}`)),
    r('upper-case trust domain', path.map((p) => `spiffe://${td.toUpperCase()}${p}`)),
    r('trust domain character', fc.tuple(nastyChar, path).map(([c, p]) => `spiffe://ex${c}ample.org${p}`).filter((s) => !s.includes('ex/ample'))),
    r('port', fc.tuple(fc.integer({ min: 0, max: 65535 }), path).map(([n, p]) => `spiffe://${td}:${n}${p}`)),
    r('userinfo', path.map((p) => `spiffe://user@${td}${p}`)),
    r('empty trust domain', path.map((p) => `spiffe://${p}`)),
    r('trust domain too long', path.map((p) => `spiffe://${'a'.repeat(256)}${p}`)),
    r('empty segment', fc.tuple(path, path).map(([a, b]) => `spiffe://${td}${a}/${b}`)),
    r('trailing slash', path.map((p) => `spiffe://${td}${p}/`)),
    r('dot segment', fc.tuple(path, fc.constantFrom('.', '..')).map(([p, d]) => `spiffe://${td}${p}/${d}`)),
    r('percent-encoding', path.map((p) => `spiffe://${td}${p}%2Fx`)),
    r('path character', fc.tuple(path, nastyChar.filter((c) => c !== '/' && c !== '..')).map(([p, c]) => `spiffe://${td}${p}${c}x`)),
    r('query', path.map((p) => `spiffe://${td}${p}?a=b`)),
    r('fragment', path.map((p) => `spiffe://${td}${p}#frag`)),
    r('longer than 2048 bytes', fc.integer({ min: 2049, max: 9000 }).map((n) => `spiffe://${td}/${'a'.repeat(n)}`)),
    r('other trust domain', path.map((p) => `spiffe://other.example${p}`)),
    r('no path', fc.constant(`spiffe://${td}`)),
    r('garbage', nastyString().filter((s) => !s.startsWith('spiffe://'))),
  );
}

/** Selectors (type, value) that break a rule. */
export const invalidSelector: fc.Arbitrary<{ rule: string; type: string; value: string }> = fc.oneof(
  fc.constant({ rule: 'empty type', type: '', value: 'uid:0' }),
  fc.tuple(fc.constantFrom('Unix', 'UNIX', 'un ix', 'unix:uid', 'ünix', 'unix\n', '-'), fc.constant('uid:0')).map(([type, value]) => ({ rule: 'bad type', type, value })),
  fc.constant({ rule: 'empty value', type: 'unix', value: '' }),
  fc
    .tuple(nastyString(8), fc.constantFrom('\u0000', '\n', '\r', '\u001b', '\u007f', '\t'), nastyString(8))
    .map(([a, c, b]) => ({ rule: 'control character', type: 'unix', value: `uid:${a}${c}${b}` })),
  fc.integer({ min: 1020, max: 20_000 }).map((n) => ({ rule: 'longer than 1024 bytes', type: 'unix', value: 'x'.repeat(n) })),
);

/** DNS names validateDnsName refuses. */
export const invalidDnsName: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('', '-a.example', 'a-.example', 'a..b', '.', 'a.', '*', '*.*.example', 'a*.example', 'exa mple.org', 'exämple.org', 'a_b.example', 'a\u0000b', 'x\n.example', '😀.example'),
  fc.integer({ min: 64, max: 300 }).map((n) => `${'a'.repeat(n)}.example`),
  fc.integer({ min: 128, max: 200 }).map((n) => Array.from({ length: n }, () => 'ab').join('.')),
);

/** SSH user principals validateUserPrincipal refuses. */
export const invalidUserPrincipal: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('', '-root', '#root', 'a b', 'a,b', 'a"b', "a'b", 'a\nb', 'a\u0000b', 'ro\tot', 'é', '😀', '*', 'a/b'),
  fc.integer({ min: 256, max: 5000 }).map((n) => 'a'.repeat(n)),
);

/** SSH host principals validateHostPrincipal refuses. */
export const invalidHostPrincipal: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('', '-web', 'web-', 'a..b', 'we b', 'web_1', 'wéb', '*.example', '::g', '1.2.3.4/24', 'web\n', 'a\u0000', '😀'),
  fc.integer({ min: 64, max: 300 }).map((n) => 'a'.repeat(n)),
);

/** Seconds no TTL policy accepts (given max <= `max`), including absurd and non-integer ones. */
export function invalidTtl(maxSeconds: number): fc.Arbitrary<number> {
  return fc.oneof(
    fc.integer({ min: -(2 ** 31), max: -1 }),
    fc.integer({ min: maxSeconds + 1, max: 2 ** 31 - 1 }),
    fc.constantFrom(-1, -(2 ** 53) + 1, 2 ** 53 - 1, maxSeconds + 1, 2 ** 40, 10 ** 15),
  );
}

/** OpenSSH public keys the CA must refuse: weak or unsupported types, bad encodings. */
export function hostileSshKeys(): { lines: string[]; arbitrary: fc.Arbitrary<{ how: string; line: string }> } {
  const good = formatAuthorizedKey(sshPublicKeyBlob(generateKeyPairSync('ed25519').publicKey), 'ok');
  const [type, b64] = good.split(' ') as [string, string];
  const rsa1024 = formatAuthorizedKey(sshPublicKeyBlob(generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey));
  const rsa1536 = formatAuthorizedKey(sshPublicKeyBlob(generateKeyPairSync('rsa', { modulusLength: 1536 }).publicKey));
  const blob = Buffer.from(b64, 'base64');
  const str = (s: string | Buffer) => {
    const b = Buffer.from(s);
    const n = Buffer.alloc(4);
    n.writeUInt32BE(b.length);
    return Buffer.concat([n, b]);
  };
  const line = (t: string, body: Buffer) => `${t} ${body.toString('base64')}`;
  const fixed: Array<{ how: string; line: string }> = [
    { how: 'RSA-1024', line: rsa1024 },
    { how: 'RSA-1536', line: rsa1536 },
    { how: 'ssh-dss', line: line('ssh-dss', Buffer.concat([str('ssh-dss'), str(Buffer.alloc(129, 1)), str(Buffer.alloc(21, 1)), str(Buffer.alloc(128, 1)), str(Buffer.alloc(128, 1))])) },
    { how: 'sk-ssh-ed25519', line: line('sk-ssh-ed25519@openssh.com', Buffer.concat([str('sk-ssh-ed25519@openssh.com'), str(Buffer.alloc(32, 1)), str('ssh:')])) },
    { how: 'ed25519 key of 31 bytes', line: line(type, Buffer.concat([str(type), str(Buffer.alloc(31, 7))])) },
    { how: 'ecdsa point not on the curve', line: line('ecdsa-sha2-nistp256', Buffer.concat([str('ecdsa-sha2-nistp256'), str('nistp256'), str(Buffer.concat([Buffer.from([4]), Buffer.alloc(64, 1)]))])) },
    { how: 'ecdsa compressed point', line: line('ecdsa-sha2-nistp256', Buffer.concat([str('ecdsa-sha2-nistp256'), str('nistp256'), str(Buffer.concat([Buffer.from([2]), Buffer.alloc(32, 1)]))])) },
    { how: 'ecdsa curve mismatch', line: line('ecdsa-sha2-nistp256', Buffer.concat([str('ecdsa-sha2-nistp256'), str('nistp384'), str(Buffer.alloc(97, 4))])) },
    { how: 'RSA even modulus', line: line('ssh-rsa', Buffer.concat([str('ssh-rsa'), str(Buffer.from([1, 0, 1])), str(Buffer.concat([Buffer.from([0, 0xc0]), Buffer.alloc(255, 2)]))])) },
    { how: 'RSA exponent 1', line: line('ssh-rsa', Buffer.concat([str('ssh-rsa'), str(Buffer.from([1])), str(Buffer.concat([Buffer.from([0, 0xc0]), Buffer.alloc(255, 3)]))])) },
    { how: 'certificate instead of a key', line: line('ssh-ed25519-cert-v01@openssh.com', Buffer.concat([str('ssh-ed25519-cert-v01@openssh.com'), str(Buffer.alloc(32)), str(Buffer.alloc(32, 1))])) },
    { how: 'declared type differs', line: `ecdsa-sha2-nistp256 ${b64}` },
    // A P-256 blob is 104 bytes: its base64 ends in one '=' that canonical encoders never drop.
    { how: 'non-canonical base64', line: formatAuthorizedKey(sshPublicKeyBlob(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey)).replace(/=$/, '') },
    { how: 'not base64', line: `${type} ${b64.slice(0, 10)}!!${b64.slice(12)}` },
    { how: 'type only', line: type },
    { how: 'empty', line: '' },
    { how: 'two keys', line: `${good}\n${good}` },
    { how: 'private key', line: '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n' },
    { how: 'blob with trailing bytes', line: line(type, Buffer.concat([blob, Buffer.from([0])])) },
    { how: 'blob length overflow', line: line(type, Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff]), Buffer.from(type)])) },
    { how: 'longer than 16 KiB', line: `${type} ${'A'.repeat(20_000)}` },
  ];
  // Only the type name and the key's length field: any 32 bytes are an Ed25519 public key.
  const header = 4 + type.length + 4;
  const mutated = fc.tuple(fc.integer({ min: 0, max: header - 1 }), fc.integer({ min: 1, max: 255 })).map(([i, x]) => {
    const m = Buffer.from(blob);
    m[i]! ^= x;
    return { how: `blob byte ${i} xor ${x}`, line: line(type, m) };
  });
  const truncated = fc.integer({ min: 0, max: blob.length - 1 }).map((n) => ({ how: `blob truncated to ${n}`, line: line(type, blob.subarray(0, n)) }));
  const garbage = nastyString(200).map((s) => ({ how: 'garbage', line: s }));
  return {
    lines: fixed.map((f) => f.line),
    arbitrary: fc.oneof(fc.constantFrom(...fixed), mutated, truncated, garbage).filter((k) => k.line !== good),
  };
}

/** True for a message a person can act on: says something, bounded, printable, and not a generic internal error. */
export function isUsefulMessage(details: string): boolean {
  // eslint-disable-next-line no-control-regex
  return details.length >= 8 && details.length <= 1024 && !/internal error/i.test(details) && !/[\u0000-\u001f\u007f]/.test(details);
}

/** Whether `fn` throws (for checking a generated input is really invalid). */
export function throws(fn: () => unknown): boolean {
  try {
    fn();
    return false;
  } catch {
    return true;
  }
}
