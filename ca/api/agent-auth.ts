/**
 * Who is calling the node API? Only an attested agent presenting its
 * current agent SVID over mTLS. TLS has already verified the chain to one
 * of our roots (the server requests client certificates but does not
 * require them, so that attestation works without one); here we check
 * that it is an agent ID of our trust domain whose record exists, is not
 * banned, and pins exactly this serial.
 */
import { CaError } from '../errors.js';
import type { AgentRecord, Store } from '../store/store.js';
import { parseSpiffeId } from '../../spiffe/id.js';
import { parseCertificate, type ParsedCertificate } from '../x509/parse.js';

export const AGENT_PATH_PREFIX = '/brevis/agent/';

/** Serial numbers compared as lower-case hex without leading zeros. */
export function normalizeSerial(hex: string): string {
  return hex.toLowerCase().replace(/^0+(?=.)/, '');
}

export interface AuthenticatedAgent {
  agent: AgentRecord;
}

/** What authentication needs of a TLS-verified client certificate. */
interface PeerFacts {
  /** The single URI SAN, or undefined. */
  uri: string | undefined;
  notAfterMs: number;
  serialHex: string;
}

/**
 * Facts of recently seen client certificates, by their DER. Parsing costs
 * about 20 us with our DER reader (X509Certificate: about 175 us with
 * OpenSSL 3), and an agent presents the same SVID for every call of its
 * hour. Only facts TLS already verified are kept: nothing here grants trust.
 */
const PEER_CACHE_SIZE = 4096;
const peerFacts = new Map<string, PeerFacts>();
/**
 * The same facts by the certificate's buffer: a connection's calls share
 * one (ca/server/peer-certificate-once.ts), so most calls find theirs here
 * without encoding the DER as a key. Buffers are never changed in place.
 */
const factsByBuffer = new WeakMap<Buffer, PeerFacts>();

function factsOf(raw: Buffer): PeerFacts {
  const known = factsByBuffer.get(raw);
  if (known) return known;
  const key = raw.toString('base64');
  let f = peerFacts.get(key);
  if (f) {
    factsByBuffer.set(raw, f);
    return f;
  }
  let cert: ParsedCertificate;
  try {
    cert = parseCertificate(raw);
  } catch {
    // TLS accepted it, so it parses with OpenSSL; a certificate our reader refuses is not an SVID of ours.
    return { uri: undefined, notAfterMs: 0, serialHex: '' };
  }
  const uris = cert.subjectAltName?.uris ?? [];
  f = { uri: uris.length === 1 ? uris[0] : undefined, notAfterMs: cert.notAfter.getTime(), serialHex: cert.serialHex };
  if (peerFacts.size >= PEER_CACHE_SIZE) peerFacts.delete(peerFacts.keys().next().value!);
  peerFacts.set(key, f);
  factsByBuffer.set(raw, f);
  return f;
}

export async function authenticateAgent(
  call: { getAuthContext(): { sslPeerCertificate?: { raw?: Buffer } | undefined } | null },
  deps: { store: Pick<Store, 'getAgent'>; trustDomain: string; now: Date },
): Promise<AuthenticatedAgent> {
  const raw = call.getAuthContext()?.sslPeerCertificate?.raw;
  if (!raw) {
    throw new CaError(
      'PERMISSION_DENIED',
      'this call requires mTLS with a valid agent SVID (none presented, or it is expired or not issued by this trust domain)',
    );
  }
  const cert = factsOf(raw);
  let id;
  try {
    id = cert.uri ? parseSpiffeId(cert.uri) : undefined;
  } catch {
    id = undefined;
  }
  if (!id || id.trustDomain !== deps.trustDomain || !id.path.startsWith(AGENT_PATH_PREFIX)) {
    throw new CaError('PERMISSION_DENIED', 'the client certificate is not an agent SVID of this trust domain');
  }
  if (cert.notAfterMs <= deps.now.getTime()) throw new CaError('PERMISSION_DENIED', 'the agent SVID has expired');
  const agentId = id.toString();
  const agent = await deps.store.getAgent(agentId);
  if (!agent) throw new CaError('PERMISSION_DENIED', `agent ${agentId} is not attested (evicted?); it must attest again`);
  if (agent.banned) throw new CaError('PERMISSION_DENIED', `agent ${agentId} is banned`);
  if (normalizeSerial(agent.serial) !== normalizeSerial(cert.serialHex)) {
    throw new CaError('PERMISSION_DENIED', 'the agent SVID is not the current one for this agent (superseded serial)');
  }
  return { agent };
}
