/**
 * Issues OpenSSH certificates with the active SSH CA of the right kind:
 * random 32-byte nonce, random non-zero 64-bit serial, validity from the
 * clock (backdated for skew), then the encoder, then a check of what was
 * signed (parsed back, signature verified, every field compared). A
 * certificate that fails the check is never returned.
 */
import { randomBytes } from 'node:crypto';
import type { Clock } from '../../spiffe/clock.js';
import { CaError } from '../errors.js';
import { certTypeName, encodeCertificate, formatCertificate, type SshCertType, type SshCriticalOptions } from './certificate.js';
import { validityWindow } from './options.js';
import { parseCertificate, verifyCertificateSignature } from './parse-certificate.js';
import { sshFingerprint, type SshPublicKey } from './public-key.js';
import type { SshAuthority } from './ssh-authority.js';

export interface SshCertificateRequest {
  type: SshCertType;
  /** From parseAuthorizedKey: already validated. */
  publicKey: SshPublicKey;
  /** Already validated (options.ts); never empty. */
  principals: readonly string[];
  /** Already resolved against the TTL policy. */
  ttlSeconds: number;
  /** The key id, built once the serial is known (it usually names it). */
  keyId: (serial: bigint) => string;
  /** User certificates only. */
  criticalOptions?: SshCriticalOptions;
  /** User certificates only. */
  extensions?: readonly string[];
}

export interface IssuedSshCertificate {
  type: SshCertType;
  /** The certificate blob. */
  blob: Buffer;
  /** `<cert type> <base64>`: the contents of a `-cert.pub` file (without newline). */
  line: string;
  serial: bigint;
  keyId: string;
  principals: string[];
  /** Seconds since the epoch. */
  validAfter: number;
  validBefore: number;
  /** Fingerprint of the CA key that signed. */
  caFingerprint: string;
  /** Fingerprint of the certified key. */
  subjectFingerprint: string;
}

export interface SshIssuerDeps {
  authority: Pick<SshAuthority, 'signing'>;
  clock: Clock;
  /** Seconds valid-after is set before now (clock skew). */
  backdateSeconds: number;
}

export class SshIssuer {
  constructor(private readonly deps: SshIssuerDeps) {}

  async issue(req: SshCertificateRequest): Promise<IssuedSshCertificate> {
    const ca = this.deps.authority.signing(req.type === 'user' ? 'ssh-user' : 'ssh-host');
    const serial = randomSerial();
    const keyId = req.keyId(serial);
    const { validAfter, validBefore } = validityWindow(this.deps.clock.now(), req.ttlSeconds, this.deps.backdateSeconds);
    const template = {
      type: req.type,
      subject: req.publicKey,
      nonce: randomBytes(32),
      serial,
      keyId,
      principals: req.principals,
      validAfter,
      validBefore,
      ...(req.criticalOptions ? { criticalOptions: req.criticalOptions } : {}),
      ...(req.extensions ? { extensions: req.extensions } : {}),
    };
    const blob = await encodeCertificate(template, ca.signer);
    checkIssued(blob, { ...template, caKeyBlob: ca.signer.publicKeyBlob, subjectBlob: req.publicKey.blob });
    return {
      type: req.type,
      blob,
      line: formatCertificate(blob, certTypeName(req.publicKey.type)),
      serial,
      keyId,
      principals: [...req.principals],
      validAfter,
      validBefore,
      caFingerprint: ca.fingerprint,
      subjectFingerprint: sshFingerprint(req.publicKey.blob),
    };
  }
}

/** A random serial in [1, 2^64): zero is avoided so that no tool reads it as "unset". */
export function randomSerial(): bigint {
  for (;;) {
    const s = randomBytes(8).readBigUInt64BE();
    if (s !== 0n) return s;
  }
}

/** Parses what was signed and compares it with what was asked for. */
function checkIssued(
  blob: Buffer,
  want: {
    type: SshCertType;
    serial: bigint;
    keyId: string;
    principals: readonly string[];
    validAfter: number;
    validBefore: number;
    criticalOptions?: SshCriticalOptions;
    extensions?: readonly string[];
    caKeyBlob: Buffer;
    subjectBlob: Buffer;
  },
): void {
  const fail = (what: string): never => {
    throw new CaError('INTERNAL', `self-check of an issued SSH certificate failed: ${what}`);
  };
  let c;
  try {
    c = parseCertificate(blob);
  } catch (cause) {
    throw new CaError('INTERNAL', 'self-check of an issued SSH certificate failed: it does not parse', { cause });
  }
  if (!verifyCertificateSignature(c)) fail('the signature does not verify');
  if (!c.caKeyBlob.equals(want.caKeyBlob)) fail('wrong CA key');
  if (!c.subjectKeyBlob.equals(want.subjectBlob)) fail('wrong subject key');
  if (c.type !== want.type || c.serial !== want.serial || c.keyId !== want.keyId) fail('type, serial or key id');
  if (c.principals.length === 0 || c.principals.join('\n') !== want.principals.join('\n')) fail('principals');
  if (c.validAfter !== BigInt(want.validAfter) || c.validBefore !== BigInt(want.validBefore)) fail('validity');
  const opts = want.criticalOptions ?? {};
  const wantOptions = new Map<string, string>();
  if (opts.forceCommand !== undefined) wantOptions.set('force-command', opts.forceCommand);
  if (opts.sourceAddress !== undefined) wantOptions.set('source-address', opts.sourceAddress);
  if (!sameMap(c.criticalOptions, wantOptions)) fail('critical options');
  if (!sameMap(c.extensions, new Map((want.extensions ?? []).map((e) => [e, ''])))) fail('extensions');
}

function sameMap(a: Map<string, string>, b: Map<string, string>): boolean {
  return a.size === b.size && [...a].every(([k, v]) => b.get(k) === v);
}
