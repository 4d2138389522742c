/**
 * Who is calling the node API? Only an attested agent presenting its
 * current agent SVID over mTLS. TLS has already verified the chain to one
 * of our roots (the server requests client certificates but does not
 * require them, so that attestation works without one); here we check
 * that it is an agent ID of our trust domain whose record exists, is not
 * banned, and pins exactly this serial.
 */
import { X509Certificate } from 'node:crypto';
import { CaError } from '../errors.js';
import type { AgentRecord, Store } from '../store/store.js';
import { parseSpiffeId } from '../../spiffe/id.js';

export const AGENT_PATH_PREFIX = '/brevis/agent/';

/** Serial numbers compared as lower-case hex without leading zeros. */
export function normalizeSerial(hex: string): string {
  return hex.toLowerCase().replace(/^0+(?=.)/, '');
}

/** The SPIFFE ID in a certificate's single URI SAN, or undefined. */
export function uriSanOf(cert: X509Certificate): string | undefined {
  const uris = (cert.subjectAltName ?? '')
    .split(', ')
    .filter((p) => p.startsWith('URI:'))
    .map((p) => p.slice(4));
  return uris.length === 1 ? uris[0] : undefined;
}

export interface AuthenticatedAgent {
  agent: AgentRecord;
  cert: X509Certificate;
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
  const cert = new X509Certificate(raw);
  const uri = uriSanOf(cert);
  let id;
  try {
    id = uri ? parseSpiffeId(uri) : undefined;
  } catch {
    id = undefined;
  }
  if (!id || id.trustDomain !== deps.trustDomain || !id.path.startsWith(AGENT_PATH_PREFIX)) {
    throw new CaError('PERMISSION_DENIED', 'the client certificate is not an agent SVID of this trust domain');
  }
  if (new Date(cert.validTo) <= deps.now) throw new CaError('PERMISSION_DENIED', 'the agent SVID has expired');
  const agentId = id.toString();
  const agent = await deps.store.getAgent(agentId);
  if (!agent) throw new CaError('PERMISSION_DENIED', `agent ${agentId} is not attested (evicted?); it must attest again`);
  if (agent.banned) throw new CaError('PERMISSION_DENIED', `agent ${agentId} is banned`);
  if (normalizeSerial(agent.serial) !== normalizeSerial(cert.serialNumber)) {
    throw new CaError('PERMISSION_DENIED', 'the agent SVID is not the current one for this agent (superseded serial)');
  }
  return { agent, cert };
}
