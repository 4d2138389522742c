/**
 * New CA keys with their certificates (X.509) or public key blobs (SSH),
 * in memory. Nothing is written here: the life cycle saves the keys and
 * commits the records as one journaled transition.
 */
import 'reflect-metadata';
import { epochSeconds } from '../../spiffe/clock.js';
import type { KeyType } from '../keys/keytype.js';
import { generateSigner, type LocalSigner } from '../keys/signer.js';
import { formatAuthorizedKey, sshFingerprint } from '../ssh/public-key.js';
import { sshCaSigner } from '../ssh/ssh-signer.js';
import type { AuthorityKind, AuthorityState } from '../store/store.js';
import { createIntermediateCertificate, createRootCertificate } from '../x509/hierarchy.js';
import type { CrossCert, LifecycleAuthority } from './model.js';

/** CA certificates are backdated this much for clock skew (milliseconds). */
const CA_BACKDATE_MS = 60_000;
/** SSH CA keys do not expire; their record's notAfter holds 9999-12-31T23:59:59Z. */
export const SSH_NO_EXPIRY = 253_402_300_799;

export interface KeyMaterial {
  record: LifecycleAuthority;
  signer: LocalSigner;
}

function record(
  base: Pick<LifecycleAuthority, 'id' | 'kind' | 'publicDer' | 'parentId' | 'keyRef' | 'notBefore' | 'notAfter'>,
  state: AuthorityState,
  nowSeconds: number,
): LifecycleAuthority {
  return { ...base, state, createdAt: nowSeconds, trustedSinceSeq: null, retiredAt: null, trustUntil: null, untrustedAt: null };
}

export async function newRoot(p: { trustDomain: string; keyType: KeyType; now: Date; ttlSeconds: number; state: AuthorityState }): Promise<KeyMaterial> {
  const signer = await generateSigner(p.keyType);
  const cert = await createRootCertificate({
    trustDomain: p.trustDomain,
    signer,
    notBefore: new Date(p.now.getTime() - CA_BACKDATE_MS),
    notAfter: new Date(p.now.getTime() + p.ttlSeconds * 1000),
  });
  return {
    signer,
    record: record(
      {
        id: cert.skiHex,
        kind: 'x509-root',
        publicDer: cert.der,
        parentId: null,
        keyRef: `x509-root-${cert.skiHex}`,
        notBefore: epochSeconds(cert.notBefore),
        notAfter: epochSeconds(cert.notAfter),
      },
      p.state,
      epochSeconds(p.now),
    ),
  };
}

/** An intermediate signed by `root`; its notAfter is capped at the root's. */
export async function newIntermediate(p: {
  trustDomain: string;
  keyType: KeyType;
  now: Date;
  ttlSeconds: number;
  root: KeyMaterial;
  state: AuthorityState;
}): Promise<KeyMaterial> {
  const signer = await generateSigner(p.keyType);
  const notAfterMs = Math.min(p.now.getTime() + p.ttlSeconds * 1000, p.root.record.notAfter * 1000);
  const cert = await createIntermediateCertificate({
    trustDomain: p.trustDomain,
    subjectSigner: signer,
    issuerCertDer: p.root.record.publicDer,
    issuerSigner: p.root.signer,
    notBefore: new Date(p.now.getTime() - CA_BACKDATE_MS),
    notAfter: new Date(notAfterMs),
  });
  return {
    signer,
    record: record(
      {
        id: cert.skiHex,
        kind: 'x509-intermediate',
        publicDer: cert.der,
        parentId: p.root.record.id,
        keyRef: `x509-intermediate-${cert.skiHex}`,
        notBefore: epochSeconds(cert.notBefore),
        notAfter: epochSeconds(cert.notAfter),
      },
      p.state,
      epochSeconds(p.now),
    ),
  };
}

/**
 * The intermediate's certificate signed by another root (same subject and
 * key, so the same SubjectKeyIdentifier and the same leaves validate under
 * either). Capped at both the intermediate's and the issuer's notAfter.
 */
export async function crossSign(p: { trustDomain: string; now: Date; subject: KeyMaterial; issuer: KeyMaterial }): Promise<CrossCert> {
  const cert = await createIntermediateCertificate({
    trustDomain: p.trustDomain,
    subjectSigner: p.subject.signer,
    issuerCertDer: p.issuer.record.publicDer,
    issuerSigner: p.issuer.signer,
    notBefore: new Date(p.subject.record.notBefore * 1000),
    notAfter: new Date(Math.min(p.subject.record.notAfter, p.issuer.record.notAfter) * 1000),
  });
  return { subjectId: p.subject.record.id, issuerId: p.issuer.record.id, der: cert.der, notAfter: epochSeconds(cert.notAfter), createdAt: epochSeconds(p.now) };
}

export type SshCaKeyType = 'ed25519' | 'ec-p256';

/** A new SSH CA key, named by its SHA256 fingerprint. */
export async function newSshCa(p: { kind: Extract<AuthorityKind, 'ssh-user' | 'ssh-host'>; keyType: SshCaKeyType; now: Date; state: AuthorityState }): Promise<KeyMaterial> {
  const signer = await generateSigner(p.keyType);
  const blob = sshCaSigner(signer).publicKeyBlob;
  const fingerprint = sshFingerprint(blob);
  const nowSeconds = epochSeconds(p.now);
  return {
    signer,
    record: record(
      {
        id: fingerprint,
        kind: p.kind,
        publicDer: blob,
        parentId: null,
        // Key refs allow only [A-Za-z0-9._-]: the fingerprint's base64 becomes hex.
        keyRef: `${p.kind}-${Buffer.from(fingerprint.slice('SHA256:'.length), 'base64').toString('hex')}`,
        notBefore: nowSeconds,
        notAfter: SSH_NO_EXPIRY,
      },
      p.state,
      nowSeconds,
    ),
  };
}

/** The authorized_keys line of an SSH CA record. */
export function sshCaLine(rec: Pick<LifecycleAuthority, 'publicDer' | 'kind'>, trustDomain: string): string {
  return formatAuthorizedKey(rec.publicDer, `brevis-${rec.kind}-ca@${trustDomain}`);
}
