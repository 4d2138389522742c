/**
 * Test harness: a real CA (in-process, real SQLite in a temp dir, real gRPC
 * on loopback and a Unix socket) plus promise-based clients that act as an
 * agent or an admin. No mocks.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generateKeyPairSync, X509Certificate, type KeyObject } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { buildCaConfig, type CaConfig } from '../../ca/config/config.js';
import { startCa, type RunningCa } from '../../ca/server/ca.js';
import { AdminServiceClient } from '../../proto/gen/brevis/ca/v1/admin.js';
import { NodeServiceClient } from '../../proto/gen/brevis/ca/v1/node.js';
import { createCsr } from '../../ca/x509/csr.js';
import { certsToPem } from '../../spiffe/pem.js';

export const TD = 'example.org';

export interface TestCa {
  dir: string;
  config: CaConfig;
  ca: RunningCa;
  admin: AdminServiceClient;
  roots(): Buffer[];
  restart(): Promise<void>;
  stop(): Promise<void>;
  cleanup(): Promise<void>;
}

export async function startTestCa(overrides: Record<string, unknown> = {}, dir?: string): Promise<TestCa> {
  const dataDir = dir ?? mkdtempSync(path.join(os.tmpdir(), 'brevis-ca-'));
  const config = buildCaConfig({ dataDir, trustDomain: TD, listen: '127.0.0.1:0', x509SvidMinTtl: '1s', ...overrides });
  const logger = pino({ level: process.env.BREVIS_TEST_LOG ?? 'silent' });
  const t: TestCa = {
    dir: dataDir,
    config,
    ca: await startCa(config, { logger }),
    admin: undefined as unknown as AdminServiceClient,
    roots: () => t.ca.authority.bundle().roots,
    async restart() {
      t.admin.close();
      const port = t.ca.port;
      await t.ca.close();
      const again = buildCaConfig({ dataDir, trustDomain: TD, listen: `127.0.0.1:${port}`, x509SvidMinTtl: '1s', ...overrides });
      t.ca = await startCa(again, { logger });
      t.admin = new AdminServiceClient(`unix://${t.ca.adminSocket}`, grpc.credentials.createInsecure());
    },
    async stop() {
      t.admin.close();
      await t.ca.close();
    },
    async cleanup() {
      await t.stop().catch(() => {});
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  t.admin = new AdminServiceClient(`unix://${t.ca.adminSocket}`, grpc.credentials.createInsecure());
  return t;
}

/** Calls a callback-style unary grpc-js method as a promise. */
export function call<Req, Res>(client: grpc.Client, method: string, req: Req): Promise<Res> {
  return new Promise((resolve, reject) => {
    (client as unknown as Record<string, (r: Req, cb: (e: grpc.ServiceError | null, r: Res) => void) => void>)[method]!.call(
      client,
      req,
      (e, r) => (e ? reject(e) : resolve(r)),
    );
  });
}

export function toPem(ders: Uint8Array[]): string {
  return certsToPem(ders);
}

export interface KeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
  csr: Buffer;
}

export async function newKey(): Promise<KeyPair> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { privateKey, publicKey, csr: await createCsr(privateKey, publicKey) };
}

/** Checks the CA's serving identity the way an agent must: the SPIFFE ID, not a host name. */
export function checkCaServer(trustDomain: string) {
  return (_host: string, cert: { raw?: Buffer }): Error | undefined => {
    if (!cert.raw) return new Error('no server certificate');
    const san = new X509Certificate(cert.raw).subjectAltName ?? '';
    return san === `URI:spiffe://${trustDomain}/brevis/server` ? undefined : new Error(`unexpected CA identity ${san}`);
  };
}

/** A node API client: anonymous (attestation) or mTLS with an agent SVID. */
export function nodeClient(t: TestCa, svid?: { chain: Uint8Array[]; key: KeyObject }): NodeServiceClient {
  const roots = Buffer.from(toPem(t.roots()));
  const creds = svid
    ? grpc.credentials.createSsl(
        roots,
        Buffer.from(svid.key.export({ type: 'pkcs8', format: 'pem' }) as string),
        Buffer.from(toPem(svid.chain)),
        { checkServerIdentity: checkCaServer(TD) },
      )
    : grpc.credentials.createSsl(roots, null, null, { checkServerIdentity: checkCaServer(TD) });
  // SNI carries the trust domain: an IP address is not a valid server name (RFC 6066).
  return new NodeServiceClient(`127.0.0.1:${t.ca.port}`, creds, { 'grpc.ssl_target_name_override': TD });
}

export interface TestAgent {
  agentId: string;
  chain: Buffer[];
  key: KeyObject;
  client: NodeServiceClient;
  serial: string;
}

/** Creates a join token and redeems it: a freshly attested agent with an mTLS client. */
export async function attestAgent(t: TestCa, agentId = ''): Promise<TestAgent> {
  const tok = await call<object, { token: string }>(t.admin, 'createJoinToken', { agentId, ttlSeconds: 0 });
  const k = await newKey();
  const anon = nodeClient(t);
  try {
    const res = await call<object, { svid: { spiffeId: string; certChain: Buffer[]; serial: string } }>(anon, 'attestJoinToken', { token: tok.token, csr: k.csr });
    const client = nodeClient(t, { chain: res.svid.certChain, key: k.privateKey });
    return { agentId: res.svid.spiffeId, chain: res.svid.certChain, key: k.privateKey, client, serial: res.svid.serial };
  } finally {
    anon.close();
  }
}
