/**
 * What the agent checks in each SVID the CA returns before keeping it: a
 * certificate for the entry's SPIFFE ID (exactly one URI SAN) carrying the
 * key the agent generated. Read with the CA's strict DER reader and compared
 * by SubjectPublicKeyInfo bytes (about 20 us); a certificate that reader
 * cannot decide on goes through node:crypto's X509Certificate and
 * checkPrivateKey instead (about 700 us with the key import), which was the
 * only path before and decides exactly as before.
 */
import { X509Certificate, type KeyObject } from 'node:crypto';
import type { MintX509SVIDResult } from '../../proto/gen/brevis/ca/v1/node.js';
import type { Entry } from '../../proto/gen/brevis/ca/v1/types.js';
import { parseCertificate } from '../../ca/x509/parse.js';
import type { SvidParts } from '../cache/cached-svid.js';
import { uriSansOf } from '../node/server-identity.js';

/** The key a CSR was made with. */
export interface MintedKey {
  /** PKCS#8 DER, kept with the SVID. */
  pkcs8: Buffer;
  /** SubjectPublicKeyInfo DER, as sent in the CSR. */
  spki: Buffer;
  privateKey: KeyObject;
}

/** What the agent reads from a minted leaf. */
export type LeafFacts = { uris: string[]; serial: string; notBefore: Date; notAfter: Date; ownKey: boolean };

/** The SVID without its rotation point, or why it cannot be used. */
export function checkMinted(r: MintX509SVIDResult, entry: Entry, key: MintedKey): Omit<SvidParts, 'rotateAt'> | string {
  if (!r.svid || r.statusCode !== 0) return r.statusMessage || `refused with status ${r.statusCode}`;
  if (r.svid.certChain.length === 0) return 'the CA returned an empty chain';
  const leafDer = r.svid.certChain[0]!;
  const facts = fastFacts(leafDer, key.spki) ?? slowFacts(leafDer, key.privateKey);
  if (!facts) return 'the CA returned a certificate that cannot be parsed';
  if (facts.uris.length !== 1 || facts.uris[0] !== entry.spiffeId) return `the certificate is not for ${entry.spiffeId}`;
  if (!facts.ownKey) return 'the certificate does not carry the key we generated';
  return {
    spiffeId: entry.spiffeId,
    chain: r.svid.certChain, // views of the response: the cache copies what it keeps (agent/cache/cached-svid.ts)
    key: key.pkcs8,
    serial: facts.serial,
    notBefore: facts.notBefore,
    notAfter: facts.notAfter,
  };
}

/**
 * The facts from the strict reader, or undefined when it cannot give them
 * as X509Certificate would: not strict DER, another key encoding, or a
 * serial that is zero or negative (formatted differently).
 */
export function fastFacts(der: Uint8Array, spki: Buffer): LeafFacts | undefined {
  let cert;
  try {
    cert = parseCertificate(der);
  } catch {
    return undefined;
  }
  if (!cert.spkiDer.equals(spki)) return undefined;
  // X509Certificate.serialNumber is the value's big-endian bytes: the DER content without its sign padding.
  const serial = cert.serialHex.replace(/^(00)+/, '');
  if (serial === '' || parseInt(serial[0]!, 16) >= 8 !== cert.serialHex.startsWith('00')) return undefined;
  return { uris: cert.subjectAltName?.uris ?? [], serial, notBefore: cert.notBefore, notAfter: cert.notAfter, ownKey: true };
}

function slowFacts(der: Uint8Array, privateKey: KeyObject): LeafFacts | undefined {
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(der);
  } catch {
    return undefined;
  }
  return {
    uris: uriSansOf(leaf.subjectAltName),
    serial: leaf.serialNumber.toLowerCase(),
    notBefore: new Date(leaf.validFrom),
    notAfter: new Date(leaf.validTo),
    ownKey: leaf.checkPrivateKey(privateKey),
  };
}
