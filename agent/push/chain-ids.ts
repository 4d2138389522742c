/**
 * The authority ids a credential chain vouches through: the
 * AuthorityKeyIdentifier of each certificate (the leaf's names the
 * intermediate, the intermediate's names its root, or the root that
 * cross-signed it). The CA names X.509 authorities by these identifiers,
 * so an agent can tell which of its credentials chain to a tainted one.
 */
import { AsnConvert } from '@peculiar/asn1-schema';
import { AuthorityKeyIdentifier, Certificate, id_ce_authorityKeyIdentifier } from '@peculiar/asn1-x509';
import { parseCertificate } from '../../ca/x509/parse.js';

/** Results by leaf certificate, bounded (chains of expired SVIDs fall out). */
const cache = new Map<string, readonly string[]>();
const CACHE_LIMIT = 4096;
/**
 * Results by chain array: an agent asks again for the same SVIDs after every
 * sync, and may hold more than CACHE_LIMIT of them (10,000 entries made the
 * Map above miss every time, parsing 20,000 certificates per sync).
 */
const byChain = new WeakMap<readonly Uint8Array[], readonly string[]>();

function akiHex(der: Uint8Array): string | undefined {
  // The CA's strict DER reader first (about 100x faster); anything it refuses goes to the ASN.1 library as before.
  try {
    return parseCertificate(der).akiHex;
  } catch {
    // fall through
  }
  try {
    const cert = AsnConvert.parse(der, Certificate);
    const ext = cert.tbsCertificate.extensions?.find((e) => e.extnID === id_ce_authorityKeyIdentifier);
    if (!ext) return undefined;
    const aki = AsnConvert.parse(ext.extnValue.buffer, AuthorityKeyIdentifier);
    return aki.keyIdentifier ? Buffer.from(aki.keyIdentifier.buffer).toString('hex') : undefined;
  } catch {
    return undefined;
  }
}

/** Distinct lower-case hex AuthorityKeyIdentifiers of `chain`, leaf first. */
export function chainAuthorityIds(chain: readonly Uint8Array[]): readonly string[] {
  if (chain.length === 0) return [];
  const known = byChain.get(chain);
  if (known) return known;
  const key = chain.map((c) => Buffer.from(c).subarray(-32).toString('base64')).join('.');
  const hit = cache.get(key);
  if (hit) {
    byChain.set(chain, hit);
    return hit;
  }
  const ids = [...new Set(chain.map(akiHex).filter((x): x is string => x !== undefined))];
  if (cache.size >= CACHE_LIMIT) cache.delete(cache.keys().next().value!);
  cache.set(key, ids);
  byChain.set(chain, ids);
  return ids;
}

/** How many of `chains` chain to each authority id. */
export function countHoldings(chains: Iterable<readonly Uint8Array[]>): Map<string, number> {
  const out = new Map<string, number>();
  for (const chain of chains) for (const id of chainAuthorityIds(chain)) out.set(id, (out.get(id) ?? 0) + 1);
  return out;
}
