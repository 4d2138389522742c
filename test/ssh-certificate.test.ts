import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CaError } from '../ca/errors.js';
import { generateSigner, signerFromPkcs8 } from '../ca/keys/signer.js';
import { encodeCertificate, formatCertificate, type SshCertificateTemplate } from '../ca/ssh/certificate.js';
import { DEFAULT_USER_EXTENSIONS, validateExtensions, validateHostPrincipal, validatePrincipals, validateSourceAddress, validateUserPrincipal, validityWindow } from '../ca/ssh/options.js';
import { decodeCertificateLine, parseCertificate, verifyCertificateSignature } from '../ca/ssh/parse-certificate.js';
import { parseAuthorizedKey, sshFingerprint } from '../ca/ssh/public-key.js';
import { sshCaSigner, type SshCaSigner } from '../ca/ssh/ssh-signer.js';
import { SshIssuer } from '../ca/ssh/ssh-issuer.js';
import { SshWriter } from '../ca/ssh/wire.js';
import { sshKeygenKey, sshKeygenList, sshKeygenListStatus } from './support/ssh-tools.js';

// Fixed test keys (made once for these vectors; never used anywhere else).
const CA_ED25519_PKCS8 = 'MC4CAQAwBQYDK2VwBCIEIKJ5xvz0TwZ3WPuZf0GOe2W2Po8xtlNjDgZcvwxWcArW';
const CA_P256_PKCS8 =
  'MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgetFAZ/Rg7oZZv7GI++HzQj5eCSZXpdFUZgyqkyyMCmGhRANCAASWQBoULbtvxqAZEKXCrSPyVKZrj5ZwLBiXYQr+1T0uAZRQ+ZoEW0vS8Xp3N0AI4Kc3OsMJIJpryaorkG36EEuD';
const SUBJECT_ED25519 = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILGWvMJucZKbovw6L/DE7X0+4TX0pTzPXB+FvkEiBApg alice@laptop';
const SUBJECT_P256 =
  'ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBAr+zCIg5bCq64FixQVPBLvmy6RHjJxfV1C0l/Og1QpWt7ySb9Y5SePyKRv4XrSVxaThRSm+Bm8qS5CdsJuuBqc=';
const SUBJECT_P384 =
  'ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBOby1NzzjtgjHzr2XeU/aqezaUbzQBsoMM1aRsLirFHP1jZScJVOWU0MNsV8gHqTdKzGAK5vT2l4pu+aGWHiqhpKFUeblphHggtdZqyynzjcAdrtGl045VHv7s9RrKX97A== p384';
const SUBJECT_RSA2048 =
  'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCT3CY0hrVZkv+P+/AdX9tNRjrAWmENTjm/p4yo91kbHpZNsSrw4+dFWCyg2lDJ4biTESKaHpMcseUqvadxw1bJiPVo5NxGAT+m2PJ/MghZYOmVOwElE0DaP659k1Z4NB9XqGxE8pxRl2SakrVQzZiG0SbWqxnvG0WFJYjhKzErHave81e7k7KbjCz8VcP+RPFQQ5J6jhQjWEe1j5iefSJIK3X4fXQJkiz711hFVLY22m+vkEIlwwBY616sT2+3jkQrMy90drXzHuYpXeJBjJbOsxluaFC5OJ7jXCdFLSmy/x4wOlC9QVgWCsdo/SDZIk2zBGodAY7xVwYOkclljybN rsa';

// The golden vectors: generated once by this encoder, read by `ssh-keygen -L`
// (output below), then pinned. Any change to the encoding changes these bytes.
const GOLDEN_USER_ED25519 =
  'AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4fAAAAILGWvMJucZKbovw6L/DE7X0+4TX0pTzPXB+FvkEiBApgASNFZ4mrze8AAAABAAAAOnNwaWZmZTovL2V4YW1wbGUub3JnL3dlYiBlbnRyeT1lMSBzZXJpYWw9ODE5ODU1MjkyMTY0ODY4OTUAAAATAAAABWFsaWNlAAAABmRlcGxveQAAAABlU/EAAAAAAGVT/xAAAABOAAAADWZvcmNlLWNvbW1hbmQAAAARAAAADS91c3IvYmluL3RydWUAAAAOc291cmNlLWFkZHJlc3MAAAASAAAADjEwLjAuMC4wLzgsOjoxAAAAggAAABVwZXJtaXQtWDExLWZvcndhcmRpbmcAAAAAAAAAF3Blcm1pdC1hZ2VudC1mb3J3YXJkaW5nAAAAAAAAABZwZXJtaXQtcG9ydC1mb3J3YXJkaW5nAAAAAAAAAApwZXJtaXQtcHR5AAAAAAAAAA5wZXJtaXQtdXNlci1yYwAAAAAAAAAAAAAAMwAAAAtzc2gtZWQyNTUxOQAAACA6bF2aD+l5EdKa5xoZseVllgznn9Yaw8J1coIeGjkEigAAAFMAAAALc3NoLWVkMjU1MTkAAABAh9BvD2Z6gCNlqQ1x1GFt2nnFxDnMUVV6hlq08xkG+EUIP0nnep4Qxdg8ZoQLbMgjYnkApSrLRKRdK6kNQadRAw==';
const GOLDEN_HOST_ED25519 =
  'AAAAKGVjZHNhLXNoYTItbmlzdHAyNTYtY2VydC12MDFAb3BlbnNzaC5jb20AAAAgq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6sAAAAIbmlzdHAyNTYAAABBBAr+zCIg5bCq64FixQVPBLvmy6RHjJxfV1C0l/Og1QpWt7ySb9Y5SePyKRv4XrSVxaThRSm+Bm8qS5CdsJuuBqf+3LqYdlQyEAAAAAIAAABec3BpZmZlOi8vZXhhbXBsZS5vcmcvYnJldmlzL2FnZW50L2pvaW5fdG9rZW4vMDAxMTIyMzM0NDU1NjY3NyBob3N0IHNlcmlhbD0xODM2NDc1ODU0NDQ5MzA2NDcyMAAAACAAAAAPd2ViLmV4YW1wbGUub3JnAAAACTEyNy4wLjAuMQAAAABlU/EAAAAAAGVUYYAAAAAAAAAAAAAAAAAAAAAzAAAAC3NzaC1lZDI1NTE5AAAAIDpsXZoP6XkR0prnGhmx5WWWDOef1hrDwnVygh4aOQSKAAAAUwAAAAtzc2gtZWQyNTUxOQAAAEC68FENhET1pIozcSmgJW5CbLvxJ7xRbzTRRtMKIVN7K2BgJrC6htJgAQDM6H+PWHhWbKrHfuqO9M+3DfIPvn4E';
// ECDSA signatures are randomized: the ECDSA-CA vector pins everything the signature covers.
const GOLDEN_HOST_P256CA_SIGNED =
  'AAAAKGVjZHNhLXNoYTItbmlzdHAyNTYtY2VydC12MDFAb3BlbnNzaC5jb20AAAAgq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6sAAAAIbmlzdHAyNTYAAABBBAr+zCIg5bCq64FixQVPBLvmy6RHjJxfV1C0l/Og1QpWt7ySb9Y5SePyKRv4XrSVxaThRSm+Bm8qS5CdsJuuBqf+3LqYdlQyEAAAAAIAAABec3BpZmZlOi8vZXhhbXBsZS5vcmcvYnJldmlzL2FnZW50L2pvaW5fdG9rZW4vMDAxMTIyMzM0NDU1NjY3NyBob3N0IHNlcmlhbD0xODM2NDc1ODU0NDQ5MzA2NDcyMAAAACAAAAAPd2ViLmV4YW1wbGUub3JnAAAACTEyNy4wLjAuMQAAAABlU/EAAAAAAGVUYYAAAAAAAAAAAAAAAAAAAABoAAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBJZAGhQtu2/GoBkQpcKtI/JUpmuPlnAsGJdhCv7VPS4BlFD5mgRbS9Lxenc3QAjgpzc6wwkgmmvJqiuQbfoQS4M=';

const userTemplate = (): SshCertificateTemplate => ({
  type: 'user',
  subject: parseAuthorizedKey(SUBJECT_ED25519),
  nonce: Buffer.from(Array.from({ length: 32 }, (_, i) => i)),
  serial: 0x0123456789abcdefn,
  keyId: 'spiffe://example.org/web entry=e1 serial=81985529216486895',
  principals: ['alice', 'deploy'],
  validAfter: 1_700_000_000,
  validBefore: 1_700_003_600,
  criticalOptions: { forceCommand: '/usr/bin/true', sourceAddress: '10.0.0.0/8,::1' },
  extensions: DEFAULT_USER_EXTENSIONS,
});

const hostTemplate = (): SshCertificateTemplate => ({
  type: 'host',
  subject: parseAuthorizedKey(SUBJECT_P256),
  nonce: Buffer.alloc(32, 0xab),
  serial: 0xfedcba9876543210n,
  keyId: 'spiffe://example.org/brevis/agent/join_token/0011223344556677 host serial=18364758544493064720',
  principals: ['web.example.org', '127.0.0.1'],
  validAfter: 1_700_000_000,
  validBefore: 1_700_028_800,
});

const line = (blob: Buffer) => formatCertificate(blob, parseCertificate(blob).certType);

async function caFrom(pkcs8b64: string): Promise<SshCaSigner> {
  return sshCaSigner(await signerFromPkcs8(Buffer.from(pkcs8b64, 'base64')));
}

function expectCaError(fn: () => unknown, code: CaError['code'], message: RegExp): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(CaError);
  expect((err as CaError).code).toBe(code);
  expect((err as CaError).message).toMatch(message);
}

describe('OpenSSH certificate encoder', () => {
  let edCa: SshCaSigner;
  let ecCa: SshCaSigner;
  let tmp: string;
  beforeAll(async () => {
    edCa = await caFrom(CA_ED25519_PKCS8);
    ecCa = await caFrom(CA_P256_PKCS8);
    tmp = mkdtempSync(path.join(os.tmpdir(), 'brevis-sshcert-'));
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('encodes a user certificate with an Ed25519 CA to exactly the pinned bytes', async () => {
    const blob = await encodeCertificate(userTemplate(), edCa);
    expect(blob.toString('base64')).toBe(GOLDEN_USER_ED25519);
  });

  it('encodes a host certificate for a P-256 key to exactly the pinned bytes', async () => {
    const blob = await encodeCertificate(hostTemplate(), edCa);
    expect(blob.toString('base64')).toBe(GOLDEN_HOST_ED25519);
  });

  it('signs with an ECDSA P-256 CA: the signed part is pinned and the signature is mpint r, mpint s', async () => {
    const blob = await encodeCertificate(hostTemplate(), ecCa);
    const c = parseCertificate(blob);
    expect(c.signedData.toString('base64')).toBe(GOLDEN_HOST_P256CA_SIGNED);
    expect(c.signatureAlgorithm).toBe('ecdsa-sha2-nistp256');
    expect(verifyCertificateSignature(c)).toBe(true);
    expect(sshKeygenList(line(blob))).toContain('Signing CA: ECDSA SHA256:thAQmCQxjCbRW4B48vYKyOCOaTs/pp6qhfYxaQDMYIM (using ecdsa-sha2-nistp256)');
  });

  it('shows in ssh-keygen -L exactly the type, key id, serial, principals, validity, options and extensions of the user vector', () => {
    expect(sshKeygenList(line(Buffer.from(GOLDEN_USER_ED25519, 'base64'))).split('\n').slice(1).join('\n')).toBe(
      [
        '        Type: ssh-ed25519-cert-v01@openssh.com user certificate',
        '        Public key: ED25519-CERT SHA256:hEBwbVAIMmld4/5bnXVdj85ad2CjtDYis1yJbXF/MX4',
        '        Signing CA: ED25519 SHA256:nCoJdoQvRBkTxzb+1YJk/UPPJBODjOiAYA2RCZ7e750 (using ssh-ed25519)',
        '        Key ID: "spiffe://example.org/web entry=e1 serial=81985529216486895"',
        '        Serial: 81985529216486895',
        '        Valid: from 2023-11-14T22:13:20 to 2023-11-14T23:13:20',
        '        Principals: ',
        '                alice',
        '                deploy',
        '        Critical Options: ',
        '                force-command /usr/bin/true',
        '                source-address 10.0.0.0/8,::1',
        '        Extensions: ',
        '                permit-X11-forwarding',
        '                permit-agent-forwarding',
        '                permit-port-forwarding',
        '                permit-pty',
        '                permit-user-rc',
        '',
      ].join('\n'),
    );
  });

  it('shows in ssh-keygen -L a host certificate with its principals and no options or extensions', () => {
    const out = sshKeygenList(line(Buffer.from(GOLDEN_HOST_ED25519, 'base64')));
    expect(out).toContain('Type: ecdsa-sha2-nistp256-cert-v01@openssh.com host certificate');
    expect(out).toContain('Serial: 18364758544493064720');
    expect(out).toContain('Valid: from 2023-11-14T22:13:20 to 2023-11-15T06:13:20');
    expect(out).toMatch(/Principals: \n {16}web\.example\.org\n {16}127\.0\.0\.1\n/);
    expect(out).toContain('Critical Options: (none)');
    expect(out).toContain('Extensions: (none)');
  });

  it('certifies P-384 and RSA subject keys that ssh-keygen reads back', async () => {
    for (const [key, type] of [
      [SUBJECT_P384, 'ecdsa-sha2-nistp384-cert-v01@openssh.com'],
      [SUBJECT_RSA2048, 'ssh-rsa-cert-v01@openssh.com'],
    ] as const) {
      const blob = await encodeCertificate({ ...userTemplate(), subject: parseAuthorizedKey(key) }, edCa);
      const c = parseCertificate(blob);
      expect(c.certType).toBe(type);
      expect(c.subjectKeyBlob.equals(parseAuthorizedKey(key).blob)).toBe(true);
      expect(sshKeygenList(line(blob))).toContain(`Type: ${type} user certificate`);
    }
  });

  it('is judged by ssh-keygen: a flipped signature bit makes the certificate unreadable', async () => {
    const blob = await encodeCertificate(userTemplate(), edCa);
    blob[blob.length - 5]! ^= 1;
    const r = sshKeygenListStatus(line(blob));
    expect(r.status).not.toBe(0);
    expect(r.output).toMatch(/incorrect signature/);
    expect(verifyCertificateSignature(parseCertificate(blob))).toBe(false);
  });

  it('reads certificates that ssh-keygen made, signature included', async () => {
    const caKey = sshKeygenKey(tmp, 'kgca', 'ecdsa', 256);
    const userKey = sshKeygenKey(tmp, 'kguser', 'ed25519');
    execFileSync('ssh-keygen', ['-q', '-s', caKey, '-I', 'made by ssh-keygen', '-n', 'bob,carol', '-z', '42', '-V', '20240101000000Z:20240102000000Z', '-O', 'clear', '-O', 'permit-pty', '-O', 'force-command=/bin/date', `${userKey}.pub`]);
    const c = parseCertificate(decodeCertificateLine(readFileSync(`${userKey}-cert.pub`, 'utf8')));
    expect(c).toMatchObject({ type: 'user', keyId: 'made by ssh-keygen', principals: ['bob', 'carol'], serial: 42n, validAfter: 1_704_067_200n, validBefore: 1_704_153_600n });
    expect([...c.criticalOptions]).toEqual([['force-command', '/bin/date']]);
    expect([...c.extensions]).toEqual([['permit-pty', '']]);
    expect(c.caKeyBlob.equals(parseAuthorizedKey(readFileSync(`${caKey}.pub`, 'utf8')).blob)).toBe(true);
    expect(verifyCertificateSignature(c)).toBe(true);
  });

  it('refuses to encode a certificate without principals', async () => {
    await expect(encodeCertificate({ ...userTemplate(), principals: [] }, edCa)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: /without principals/ });
  });

  it('refuses critical options or extensions on a host certificate, and an empty validity window', async () => {
    await expect(encodeCertificate({ ...hostTemplate(), extensions: ['permit-pty'] }, edCa)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: /host certificates/ });
    await expect(encodeCertificate({ ...hostTemplate(), criticalOptions: { forceCommand: 'x' } }, edCa)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(encodeCertificate({ ...hostTemplate(), validBefore: hostTemplate().validAfter }, edCa)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: /validity/ });
  });

  it('sorts extensions by name as OpenSSH does, upper case first', async () => {
    const blob = await encodeCertificate({ ...userTemplate(), criticalOptions: {}, extensions: ['permit-pty', 'permit-X11-forwarding', 'login@example.org'] }, edCa);
    expect([...parseCertificate(blob).extensions.keys()]).toEqual(['login@example.org', 'permit-X11-forwarding', 'permit-pty']);
  });
});

describe('SSH subject public keys', () => {
  it('parses Ed25519, P-256, P-384 and RSA keys with their comments and fingerprints as ssh-keygen prints them', () => {
    const ed = parseAuthorizedKey(`${SUBJECT_ED25519}\n`);
    expect(ed).toMatchObject({ type: 'ssh-ed25519', bits: 256, comment: 'alice@laptop' });
    expect(sshFingerprint(ed.blob)).toBe(execFileSync('ssh-keygen', ['-lf', '-'], { input: SUBJECT_ED25519, encoding: 'utf8' }).split(' ')[1]);
    expect(parseAuthorizedKey(SUBJECT_P256)).toMatchObject({ type: 'ecdsa-sha2-nistp256', bits: 256, comment: '' });
    expect(parseAuthorizedKey(SUBJECT_P384)).toMatchObject({ type: 'ecdsa-sha2-nistp384', bits: 384 });
    expect(parseAuthorizedKey(SUBJECT_RSA2048)).toMatchObject({ type: 'ssh-rsa', bits: 2048 });
  });

  it('refuses malformed keys with INVALID_ARGUMENT and a message that says what is wrong', () => {
    const ed = parseAuthorizedKey(SUBJECT_ED25519);
    const b64 = (b: Buffer) => b.toString('base64');
    const offCurve = Buffer.from(parseAuthorizedKey(SUBJECT_P256).blob);
    offCurve[offCurve.length - 1]! ^= 1;
    const cases: Array<[string, RegExp]> = [
      ['', /no public key/],
      ['-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n', /private key: give the public key/],
      [`${SUBJECT_ED25519}\n${SUBJECT_P256}`, /exactly one/],
      ['ssh-ed25519', /type base64/],
      ['ssh-ed25519 not*base64', /not base64/],
      [`ssh-rsa ${b64(ed.blob)}`, /says 'ssh-rsa' but the key inside is ssh-ed25519/],
      [`ssh-ed25519 ${b64(Buffer.concat([ed.blob, Buffer.from([0])]))}`, /trailing bytes/],
      [`ssh-ed25519 ${b64(ed.blob.subarray(0, ed.blob.length - 1))}`, /truncated/],
      [`ssh-ed25519 ${b64(new SshWriter().string('ssh-ed25519').string(Buffer.alloc(31)).toBuffer())}`, /32 bytes/],
      [`ecdsa-sha2-nistp256 ${b64(offCurve)}`, /not a point on the curve/],
      [`ecdsa-sha2-nistp256 ${b64(new SshWriter().string('ecdsa-sha2-nistp256').string('nistp384').string(Buffer.alloc(65, 4)).toBuffer())}`, /names curve 'nistp384'/],
    ];
    for (const [text, re] of cases) expectCaError(() => parseAuthorizedKey(text), 'INVALID_ARGUMENT', re);
  });

  it('refuses unsupported and weak keys with UNSUPPORTED_KEY', () => {
    const rsa = (bits: number, e: number) => {
      const n = Buffer.alloc(bits / 8, 0xff);
      return `ssh-rsa ${new SshWriter().string('ssh-rsa').mpint(Buffer.from(e.toString(16).padStart(6, '0'), 'hex')).mpint(n).toBuffer().toString('base64')}`;
    };
    const cases: Array<[string, RegExp]> = [
      [rsa(1024, 65537), /1024 bits/],
      [rsa(8192, 65537), /8192 bits/],
      [rsa(2048, 3), /exponent/],
      [`ssh-dss ${new SshWriter().string('ssh-dss').toBuffer().toString('base64')}`, /DSA is obsolete/],
      [`sk-ssh-ed25519@openssh.com ${new SshWriter().string('sk-ssh-ed25519@openssh.com').toBuffer().toString('base64')}`, /security-key/],
      [`ecdsa-sha2-nistp521 ${new SshWriter().string('ecdsa-sha2-nistp521').toBuffer().toString('base64')}`, /unsupported SSH key type/],
      [line(Buffer.from(GOLDEN_USER_ED25519, 'base64')), /is a certificate/],
    ];
    for (const [text, re] of cases) expectCaError(() => parseAuthorizedKey(text), 'UNSUPPORTED_KEY', re);
  });

  it('accepts keys that ssh-keygen generates, RSA from 2048 to 4096 bits', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'brevis-sshkeys-'));
    try {
      for (const [type, bits] of [['rsa', 3072], ['rsa', 4096], ['ecdsa', 384], ['ed25519', undefined]] as const) {
        const k = parseAuthorizedKey(readFileSync(`${sshKeygenKey(dir, `${type}${bits ?? ''}`, type, bits)}.pub`, 'utf8'));
        expect(k.bits).toBe(bits ?? 256);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('SSH certificate options', () => {
  it('validates source-address lists of addresses and CIDR networks as sshd reads them', () => {
    expect(validateSourceAddress('10.0.0.0/8, 192.168.1.7,::1,2001:DB8::/32')).toBe('10.0.0.0/8,192.168.1.7,::1,2001:db8::/32');
    for (const [bad, re] of [
      ['10.0.0.1/8', /host bits/],
      ['10.0.0.0/33', /prefix length/],
      ['*', /not an IPv4/],
      ['example.org', /not an IPv4/],
      ['10.0.0.0/8/1', /not an address/],
      ['', /not an IPv4/],
      ['2001:db8::1/32', /host bits/],
    ] as const) {
      expectCaError(() => validateSourceAddress(bad), 'INVALID_ARGUMENT', re);
    }
  });

  it('validates principals and extensions and never allows an empty principal list', () => {
    expect(validatePrincipals(['alice', 'alice', 'deploy'], 'user')).toEqual(['alice', 'deploy']);
    expect(validatePrincipals(['Web.Example.org', '127.0.0.1', '::1'], 'host')).toEqual(['web.example.org', '127.0.0.1', '::1']);
    expectCaError(() => validatePrincipals([], 'user'), 'INVALID_ARGUMENT', /at least one principal/);
    for (const bad of ['', 'a b', 'a,b', '-x', '#x', 'a\nb']) expectCaError(() => validateUserPrincipal(bad), 'INVALID_ARGUMENT', /user principal/);
    for (const bad of ['*.example.org', 'a_b.example', '-a.example', 'a..b']) expectCaError(() => validateHostPrincipal(bad), 'INVALID_ARGUMENT', /host principal/);
    expect(validateExtensions(['permit-pty', 'permit-X11-forwarding', 'x@example.org'])).toEqual(['permit-X11-forwarding', 'permit-pty', 'x@example.org']);
    expectCaError(() => validateExtensions(['permit-everything']), 'INVALID_ARGUMENT', /unknown SSH extension/);
  });

  it('backdates valid-after for clock skew and sets valid-before from the TTL', () => {
    expect(validityWindow(new Date(1_700_000_000_500), 3600, 30)).toEqual({ validAfter: 1_699_999_970, validBefore: 1_700_003_600 });
  });
});

describe('SSH issuer', () => {
  it('gives every certificate a fresh 32-byte nonce and a random non-zero serial, and checks what it signed', async () => {
    const signer = sshCaSigner(await generateSigner('ed25519'));
    const ca = { record: {} as never, fingerprint: sshFingerprint(signer.publicKeyBlob), signer };
    const clock = { now: () => new Date(1_700_000_000_000), sleep: async () => {} };
    const issuer = new SshIssuer({ authority: { signing: () => ca }, clock, backdateSeconds: 30 });
    const req = { type: 'user' as const, publicKey: parseAuthorizedKey(SUBJECT_ED25519), principals: ['alice'], ttlSeconds: 600, keyId: (s: bigint) => `k serial=${s}`, extensions: DEFAULT_USER_EXTENSIONS };
    const [a, b] = await Promise.all([issuer.issue(req), issuer.issue(req)]);
    const [pa, pb] = [parseCertificate(a.blob), parseCertificate(b.blob)];
    expect(pa.nonce).toHaveLength(32);
    expect(pa.nonce.equals(pb.nonce)).toBe(false);
    expect(a.serial).not.toBe(b.serial);
    expect(a.serial).toBeGreaterThan(0n);
    expect(pa.keyId).toBe(`k serial=${a.serial}`);
    expect(a).toMatchObject({ validAfter: 1_699_999_970, validBefore: 1_700_000_600, caFingerprint: ca.fingerprint, principals: ['alice'] });
    expect(a.line).toBe(`ssh-ed25519-cert-v01@openssh.com ${a.blob.toString('base64')}`);
    expect(sshKeygenList(a.line)).toContain(`Serial: ${a.serial}`);
  });

  it('never returns a certificate whose signature does not verify', async () => {
    const signer = sshCaSigner(await generateSigner('ec-p256'));
    const broken = { ...signer, sign: async (d: Uint8Array) => { const s = await signer.sign(d); s[s.length - 1]! ^= 1; return s; } };
    const issuer = new SshIssuer({ authority: { signing: () => ({ record: {} as never, fingerprint: 'x', signer: broken }) }, clock: { now: () => new Date(), sleep: async () => {} }, backdateSeconds: 30 });
    await expect(issuer.issue({ type: 'host', publicKey: parseAuthorizedKey(SUBJECT_P256), principals: ['h.example'], ttlSeconds: 60, keyId: () => 'k' })).rejects.toMatchObject({ code: 'INTERNAL', message: /signature does not verify/ });
  });
});
