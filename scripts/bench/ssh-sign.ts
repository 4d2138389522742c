/**
 * SSH user certificates per second end to end: an agent asks the node API
 * (mTLS, its current agent SVID) for user certificates for an entry with
 * SSH principals, several requests in flight, each with the public key a
 * workload would send. Includes authorization, signing and the audit record.
 */
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import type { NodeServiceClient } from '../../proto/gen/brevis/ca/v1/node.js';
import { formatAuthorizedKey, sshPublicKeyBlob } from '../../ca/ssh/public-key.js';
import { TD, unary, type BenchCa } from './ca-process.js';

export async function sshSignPerSecond(
  ca: BenchCa,
  agent: { agentId: string; clients: NodeServiceClient[] },
  inflight: number,
  seconds: number,
): Promise<{ perSecond: number; errors: number }> {
  const r = await unary<{ entry: { id: string } }>(ca.admin, 'createEntry', {
    entry: {
      id: '',
      spiffeId: `spiffe://${TD}/ssh/bench`,
      parentId: agent.agentId,
      selectors: [{ type: 'unix', value: 'uid:4242' }],
      x509SvidTtl: 0,
      dnsNames: [],
      hint: '',
      admin: false,
      expiresAt: 0,
      revision: 0,
      createdAt: 0,
      ssh: { principals: ['bench'], ttl: 0, forceCommand: '', sourceAddress: '', hostPrincipals: [] },
    },
  });
  const keys = Array.from({ length: 64 }, () => {
    // Imported from DER, not generateKeyPairSync's KeyObject (see agent/svid/new-key.ts).
    const der = generateKeyPairSync('ed25519', { publicKeyEncoding: { type: 'spki', format: 'der' }, privateKeyEncoding: { type: 'pkcs8', format: 'der' } });
    return formatAuthorizedKey(sshPublicKeyBlob(createPublicKey({ key: der.publicKey, format: 'der', type: 'spki' })));
  });
  let signed = 0;
  let errors = 0;
  let i = 0;
  const start = Date.now();
  const deadline = start + seconds * 1000;
  await Promise.all(
    Array.from({ length: inflight }, async (_, w) => {
      const client = agent.clients[w % agent.clients.length]!;
      while (Date.now() < deadline) {
        try {
          await unary(client, 'signSshUserCertificate', { entryId: r.entry.id, publicKey: keys[i++ % keys.length]! });
          signed++;
        } catch {
          errors++;
        }
      }
    }),
  );
  return { perSecond: signed / ((Date.now() - start) / 1000), errors };
}
