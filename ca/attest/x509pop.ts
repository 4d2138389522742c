/**
 * x509pop node attestation: a node proves possession of the private key of
 * a certificate issued by an operator-configured CA bundle (an existing host
 * PKI) by signing a fresh server nonce, bound to the CSR it wants signed.
 *
 * Payload signed: "brevis-x509pop-v1" || nonce (32 bytes) || SHA-256(csr DER).
 * Binding the CSR stops a relayed signature from being used with another key.
 */
import { X509Certificate, createHash, sign, verify, type KeyObject } from 'node:crypto';
import { CaError } from '../errors.js';
import type { Selector } from '../../spiffe/selector.js';

const DOMAIN = Buffer.from('brevis-x509pop-v1', 'utf8');
export const X509POP_NONCE_BYTES = 32;
const MAX_CHAIN = 8;

export function x509popPayload(nonce: Uint8Array, csrDer: Uint8Array): Buffer {
  return Buffer.concat([DOMAIN, nonce, createHash('sha256').update(csrDer).digest()]);
}

function digestFor(key: KeyObject): string | null {
  return key.asymmetricKeyType === 'ed25519' || key.asymmetricKeyType === 'ed448' ? null : 'sha256';
}

/** Client side: the node signs the payload with its certificate's key. */
export function signX509PopPayload(privateKey: KeyObject, payload: Buffer): Buffer {
  return sign(digestFor(privateKey), payload, privateKey);
}

export interface X509PopResult {
  leaf: X509Certificate;
  /** The trusted CA certificate the chain ends at. */
  ca: X509Certificate;
}

/**
 * Verifies the node's chain (leaf first) up to one of the trusted CAs at
 * `now`. Throws CaError('ATTESTATION_FAILED') saying what is wrong.
 */
export function verifyX509PopChain(chainDer: Uint8Array[], trusted: X509Certificate[], now: Date): X509PopResult {
  if (chainDer.length === 0) throw new CaError('ATTESTATION_FAILED', 'x509pop: no certificate presented');
  if (chainDer.length > MAX_CHAIN) throw new CaError('ATTESTATION_FAILED', `x509pop: chain longer than ${MAX_CHAIN}`);
  let chain: X509Certificate[];
  try {
    chain = chainDer.map((d) => new X509Certificate(Buffer.from(d)));
  } catch {
    throw new CaError('ATTESTATION_FAILED', 'x509pop: a certificate in the chain cannot be parsed');
  }
  for (const c of chain) {
    if (new Date(c.validFrom) > now || new Date(c.validTo) < now) {
      throw new CaError('ATTESTATION_FAILED', `x509pop: certificate '${oneLine(c.subject)}' is not valid now`);
    }
  }
  for (let i = 0; i < chain.length; i++) {
    const cert = chain[i]!;
    const anchor = trusted.find((t) => cert.checkIssued(t) && cert.verify(t.publicKey));
    if (anchor) {
      if (new Date(anchor.validTo) < now || new Date(anchor.validFrom) > now) {
        throw new CaError('ATTESTATION_FAILED', 'x509pop: the issuing CA is not valid now');
      }
      return { leaf: chain[0]!, ca: anchor };
    }
    const next = chain[i + 1];
    if (!next || !next.ca || !cert.checkIssued(next) || !cert.verify(next.publicKey)) break;
  }
  throw new CaError('ATTESTATION_FAILED', 'x509pop: the certificate is not issued by a trusted CA');
}

export function verifyX509PopSignature(leaf: X509Certificate, payload: Buffer, signature: Uint8Array): boolean {
  try {
    return verify(digestFor(leaf.publicKey), payload, leaf.publicKey, signature);
  } catch {
    return false;
  }
}

export function fingerprintSha256(cert: X509Certificate): string {
  return createHash('sha256').update(cert.raw).digest('hex');
}

export function x509popAgentId(trustDomain: string, leaf: X509Certificate): string {
  return `spiffe://${trustDomain}/brevis/agent/x509pop/${fingerprintSha256(leaf)}`;
}

/** Node selectors: x509pop:subject:cn:<cn>, x509pop:ca:fingerprint:<sha256>, x509pop:san:dns:<name>. */
export function x509popSelectors(r: X509PopResult): Selector[] {
  const out: Selector[] = [];
  const cn = /^CN=(.*)$/m.exec(r.leaf.subject)?.[1];
  if (cn) out.push({ type: 'x509pop', value: `subject:cn:${cn}` });
  out.push({ type: 'x509pop', value: `ca:fingerprint:${fingerprintSha256(r.ca)}` });
  for (const part of (r.leaf.subjectAltName ?? '').split(', ')) {
    if (part.startsWith('DNS:')) out.push({ type: 'x509pop', value: `san:dns:${part.slice(4)}` });
  }
  return out;
}

function oneLine(s: string): string {
  return s.replace(/\n/g, ', ');
}
