import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import type { X509BundlesResponse, X509SVID, X509SVIDResponse } from '../proto/gen/workload.js';
import { bundleFromDer, type X509Bundle } from './bundle.js';
import { parseSpiffeId, parseTrustDomain, type SpiffeId } from './id.js';
import { splitConcatenatedDer } from './pem.js';
import { parseSvidLeaf } from './svid.js';
import { WorkloadApiError } from './workload-error.js';

/**
 * Workload API X.509 messages parsed into SVIDs (chain, key, SPIFFE ID) and
 * bundles. Checks what a client can without a peer: every SVID's leaf is
 * SVID-shaped, names the SPIFFE ID the message says, and matches its key.
 */

/** One X509-SVID as the Workload API delivered it, parsed. */
export interface X509Svid {
  readonly spiffeId: SpiffeId;
  /** DER certificates, leaf first, then the intermediates the agent sent. */
  readonly chain: readonly Buffer[];
  /** The private key of the leaf. */
  readonly key: KeyObject;
  /** The same key as PKCS#8 DER. */
  readonly keyDer: Buffer;
  /** Operator-defined label used to choose between SVIDs; may be empty. */
  readonly hint: string;
  /** The leaf's notAfter. */
  readonly notAfter: Date;
}

/** Everything FetchX509SVID says at one moment: the caller's SVIDs and the bundles to verify peers with. */
export interface X509Context {
  /** Never empty; the first is the default identity. */
  readonly svids: readonly X509Svid[];
  /** Keyed by trust domain name: the SVIDs' own trust domains and the federated ones. */
  readonly bundles: ReadonlyMap<string, X509Bundle>;
}

/** Parses one FetchX509SVID message. Throws WorkloadApiError('INVALID_RESPONSE'). */
export function parseX509Context(res: X509SVIDResponse): X509Context {
  if (res.svids.length === 0) throw invalidResponse('the response holds no SVID');
  const svids = res.svids.map((s, i) => parseSvid(s, i));
  const bundles = new Map<string, X509Bundle>();
  for (const [td, der] of Object.entries(res.federatedBundles)) {
    const bundle = parseBundle(td, der);
    bundles.set(bundle.trustDomain, bundle);
  }
  // The SVIDs' own bundles win over a federated entry for the same domain.
  res.svids.forEach((s, i) => {
    const td = svids[i]!.spiffeId.trustDomain;
    if (s.bundle.length > 0) bundles.set(td, parseBundle(td, s.bundle));
  });
  for (const svid of svids) {
    if (!bundles.has(svid.spiffeId.trustDomain)) {
      throw invalidResponse(`no bundle for the trust domain of ${svid.spiffeId.toString()}`);
    }
  }
  return Object.freeze({ svids: Object.freeze(svids), bundles });
}

/** Parses one FetchX509Bundles message. Throws WorkloadApiError('INVALID_RESPONSE'). */
export function parseX509Bundles(res: X509BundlesResponse): Map<string, X509Bundle> {
  const bundles = new Map<string, X509Bundle>();
  for (const [td, der] of Object.entries(res.bundles)) {
    const bundle = parseBundle(td, der);
    bundles.set(bundle.trustDomain, bundle);
  }
  if (bundles.size === 0) throw invalidResponse('the response holds no bundle');
  return bundles;
}

function parseSvid(s: X509SVID, i: number): X509Svid {
  const what = `SVID ${i}`;
  let spiffeId: SpiffeId;
  try {
    spiffeId = parseSpiffeId(s.spiffeId);
  } catch (e) {
    throw invalidResponse(`${what}: invalid spiffe_id`, e);
  }
  if (spiffeId.isTrustDomainId) throw invalidResponse(`${what}: '${s.spiffeId}' has no path`);
  let chain: Buffer[];
  let leaf: X509Certificate;
  try {
    chain = splitConcatenatedDer(s.x509Svid).map((d) => Buffer.from(d));
    if (chain.length === 0) throw new Error('the certificate chain is empty');
    leaf = new X509Certificate(chain[0]!);
  } catch (e) {
    throw invalidResponse(`${what} (${spiffeId.toString()}): unreadable x509_svid`, e);
  }
  let leafId: SpiffeId;
  try {
    leafId = parseSvidLeaf(chain[0]!).spiffeId;
  } catch (e) {
    throw invalidResponse(`${what} (${spiffeId.toString()}): the leaf is not an X509-SVID: ${(e as Error).message}`, e);
  }
  if (!leafId.equals(spiffeId)) {
    throw invalidResponse(`${what}: the leaf's SPIFFE ID ${leafId.toString()} does not match spiffe_id ${spiffeId.toString()}`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: Buffer.from(s.x509SvidKey), format: 'der', type: 'pkcs8' });
  } catch (e) {
    throw invalidResponse(`${what} (${spiffeId.toString()}): x509_svid_key is not a PKCS#8 private key`, e);
  }
  if (!leaf.checkPrivateKey(key)) {
    throw invalidResponse(`${what} (${spiffeId.toString()}): x509_svid_key does not match the leaf's public key`);
  }
  return Object.freeze({
    spiffeId,
    chain: Object.freeze(chain),
    key,
    keyDer: Buffer.from(s.x509SvidKey),
    hint: s.hint,
    notAfter: new Date(leaf.validTo),
  });
}

function parseBundle(name: string, der: Uint8Array): X509Bundle {
  try {
    return bundleFromDer(parseTrustDomain(name), der);
  } catch (e) {
    throw invalidResponse(`bundle '${name}': ${(e as Error).message}`, e);
  }
}

function invalidResponse(message: string, cause?: unknown): WorkloadApiError {
  return new WorkloadApiError('INVALID_RESPONSE', message, cause === undefined ? undefined : { cause });
}
