/**
 * The agent's own X509-SVID with its private key, parsed and checked once.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { parseSpiffeId } from '../../spiffe/id.js';
import { uriSansOf } from '../node/server-identity.js';
import { AgentSvidError } from './errors.js';

export interface AgentSvid {
  readonly spiffeId: string;
  /** DER, leaf first. */
  readonly chain: readonly Buffer[];
  /** PKCS#8 PEM. */
  readonly keyPem: string;
  /** Lower-case hex without leading zeros (as the CA pins it). */
  readonly serial: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** When this agent received it; undefined when read back from disk. */
  readonly obtainedAt: Date | undefined;
}

/**
 * Builds an AgentSvid, checking that the leaf parses, carries exactly one
 * URI SAN that is an agent ID of `trustDomain`, and matches the key.
 * Throws AgentSvidError('STATE_INVALID') saying what is wrong (`what` names the source).
 */
export function agentSvidFrom(
  parts: { chain: readonly Uint8Array[]; keyPem: string; obtainedAt?: Date },
  trustDomain: string,
  what: string,
): AgentSvid {
  const bad = (why: string, cause?: unknown) =>
    new AgentSvidError('STATE_INVALID', `${what}: ${why}`, cause === undefined ? undefined : { cause });
  if (parts.chain.length === 0) throw bad('no certificate');
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(Buffer.from(parts.chain[0]!));
  } catch (e) {
    throw bad('the certificate cannot be parsed', e);
  }
  const uris = uriSansOf(leaf.subjectAltName);
  if (uris.length !== 1) throw bad(`the certificate must carry exactly one URI SAN (found ${uris.length})`);
  let id;
  try {
    id = parseSpiffeId(uris[0]!);
  } catch (e) {
    throw bad(`'${uris[0]}' is not a SPIFFE ID`, e);
  }
  if (id.trustDomain !== trustDomain) {
    throw bad(`it belongs to trust domain '${id.trustDomain}', not '${trustDomain}' (use another --data-dir for another trust domain)`);
  }
  let matches: boolean;
  try {
    matches = leaf.checkPrivateKey(createPrivateKey(parts.keyPem));
  } catch (e) {
    throw bad('the private key cannot be read', e);
  }
  if (!matches) throw bad('the private key does not belong to the certificate');
  return Object.freeze({
    spiffeId: id.toString(),
    chain: Object.freeze(parts.chain.map((c) => Buffer.from(c))),
    keyPem: parts.keyPem,
    serial: leaf.serialNumber.toLowerCase().replace(/^0+(?=.)/, ''),
    notBefore: new Date(leaf.validFrom),
    notAfter: new Date(leaf.validTo),
    obtainedAt: parts.obtainedAt,
  });
}
