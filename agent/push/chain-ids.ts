/**
 * The authority ids a credential chain vouches through: the
 * AuthorityKeyIdentifier of each certificate (the leaf's names the
 * intermediate, the intermediate's names its root, or the root that
 * cross-signed it). The CA names X.509 authorities by these identifiers,
 * so an agent can tell which of its credentials chain to a tainted one.
 */
import { AsnConvert } from '@peculiar/asn1-schema';
import { AuthorityKeyIdentifier, Certificate, id_ce_authorityKeyIdentifier } from '@peculiar/asn1-x509';

/** Results by leaf certificate, bounded (chains of expired SVIDs fall out). */
const cache = new Map<string, readonly string[]>();
const CACHE_LIMIT = 4096;

function akiHex(der: Uint8Array): string | undefined {
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
  const key = chain.map((c) => Buffer.from(c).subarray(-32).toString('base64')).join('.');
  const hit = cache.get(key);
  if (hit) return hit;
  const ids = [...new Set(chain.map(akiHex).filter((x): x is string => x !== undefined))];
  if (cache.size >= CACHE_LIMIT) cache.delete(cache.keys().next().value!);
  cache.set(key, ids);
  return ids;
}

/** How many of `chains` chain to each authority id. */
export function countHoldings(chains: Iterable<readonly Uint8Array[]>): Map<string, number> {
  const out = new Map<string, number>();
  for (const chain of chains) for (const id of chainAuthorityIds(chain)) out.set(id, (out.get(id) ?? 0) + 1);
  return out;
}
