/**
 * Helpers for SSH tests against a real CA (see ca-harness.ts): attest
 * agents with SSH host names, create entries with SSH settings, and call
 * the SSH RPCs as an agent (mTLS) or as the admin.
 */
import { generateKeyPairSync } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { expect } from 'vitest';
import { formatAuthorizedKey, sshPublicKeyBlob } from '../../ca/ssh/public-key.js';
import type { NodeServiceClient } from '../../proto/gen/brevis/ca/v1/node.js';
import { SSHCertificateType, type Entry, type EntrySSH, type SSHCertificate } from '../../proto/gen/brevis/ca/v1/types.js';
import { call, newKey, nodeClient, TD, type TestCa } from './ca-harness.js';

export const USER = SSHCertificateType.SSH_CERTIFICATE_TYPE_USER;
export const HOST = SSHCertificateType.SSH_CERTIFICATE_TYPE_HOST;
export const SERVER = `spiffe://${TD}/brevis/server`;

export function expectGrpcError(p: Promise<unknown>, code: grpc.status, re?: RegExp) {
  return p.then(
    () => {
      throw new Error(`expected gRPC status ${grpc.status[code]}, got success`);
    },
    (e: grpc.ServiceError) => {
      expect(grpc.status[e.code]).toBe(grpc.status[code]);
      if (re) expect(e.details).toMatch(re);
    },
  );
}

/** A fresh key as an authorized_keys line. */
export function sshKeyLine(type: 'ed25519' | 'ec' = 'ed25519'): string {
  const { publicKey } = type === 'ed25519' ? generateKeyPairSync('ed25519') : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return formatAuthorizedKey(sshPublicKeyBlob(publicKey), 'test@brevis');
}

export interface Agent {
  agentId: string;
  client: NodeServiceClient;
}

/** Creates a join token (with SSH host names) and redeems it. */
export async function attestWithHosts(t: TestCa, hosts: string[], agentId = ''): Promise<Agent> {
  const tok = await call<object, { token: string; sshHostPrincipals: string[] }>(t.admin, 'createJoinToken', { agentId, ttlSeconds: 0, ssh: { hostPrincipals: hosts } });
  expect(tok.sshHostPrincipals).toEqual(hosts.map((h) => h.toLowerCase()));
  const k = await newKey();
  const anon = nodeClient(t);
  try {
    const res = await call<object, { svid: { spiffeId: string; certChain: Buffer[] } }>(anon, 'attestJoinToken', { token: tok.token, csr: k.csr });
    return { agentId: res.svid.spiffeId, client: nodeClient(t, { chain: res.svid.certChain, key: k.privateKey }) };
  } finally {
    anon.close();
  }
}

export async function createEntry(t: TestCa, spiffeId: string, parentId: string, ssh?: EntrySSH, selectors = [{ type: 'unix', value: 'uid:1000' }]): Promise<Entry> {
  const entry: Entry = { id: '', spiffeId, parentId, selectors, x509SvidTtl: 0, dnsNames: [], hint: '', admin: false, expiresAt: 0, revision: 0, createdAt: 0, ...(ssh ? { ssh } : {}) };
  return (await call<object, { entry: Entry }>(t.admin, 'createEntry', { entry })).entry;
}

export const sshOf = (over: Partial<EntrySSH>): EntrySSH => ({ principals: [], ttl: 0, forceCommand: '', sourceAddress: '', hostPrincipals: [], ...over });

export const signUser = (a: Agent, entryId: string, publicKey = sshKeyLine()) =>
  call<object, { certificate: SSHCertificate }>(a.client, 'signSshUserCertificate', { entryId, publicKey }).then((r) => r.certificate);
export const signHost = (a: Agent, principals: string[], publicKey = sshKeyLine('ec')) =>
  call<object, { certificate: SSHCertificate }>(a.client, 'signSshHostCertificate', { publicKey, principals }).then((r) => r.certificate);
export const adminSign = (t: TestCa, req: Record<string, unknown>) =>
  call<object, { certificate: SSHCertificate }>(t.admin, 'signSshCertificate', { type: USER, publicKey: sshKeyLine(), principals: ['alice'], ttlSeconds: 0, keyId: '', forceCommand: '', sourceAddress: '', ...req }).then((r) => r.certificate);
export const caKeys = (t: TestCa, type: SSHCertificateType) => call<object, { publicKeys: string[] }>(t.admin, 'getSshcaKeys', { type }).then((r) => r.publicKeys);
