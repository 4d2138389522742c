/**
 * The authorization matrix: every RPC of the CA (node API port and admin
 * socket) and of the agent's Workload API socket, called as every kind of
 * caller. Each cell has an expected answer; the test prints the matrix it
 * observed and fails on any surprise. README "Security model" shows the
 * same table.
 *
 * Services on the admin socket are discovered from proto/gen, so an RPC
 * added later is covered (an admin-socket RPC must be reachable by the
 * socket's owner only); a NodeService RPC without a row here fails the test.
 */
import { execFile } from 'node:child_process';
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from '../agent/agent.js';
import { signX509PopPayload, x509popPayload } from '../ca/attest/x509pop.js';
import {
  AttestJoinTokenRequest,
  AttestX509PopRequest,
  AttestX509PopResponse,
  BatchMintX509SVIDRequest,
  BatchMintX509SVIDResponse,
  FetchAuthorizedEntriesResponse,
  NodeServiceService,
  RenewAgentSVIDRequest,
  SignSSHHostCertificateRequest,
  SignSSHUserCertificateRequest,
} from '../proto/gen/brevis/ca/v1/node.js';
import { SSHCertificateServiceService, SignUserCertificateRequest } from '../proto/gen/brevis/agent/v1/ssh.js';
import { HealthCheckRequest, HealthService as HealthDef } from '../proto/gen/grpc/health/v1/health.js';
import { SpiffeWorkloadAPIService } from '../proto/gen/workload.js';
import { agentConfig, createJoinToken, testLogger, waitFor } from './support/agent-harness.js';
import { call, newKey, nodeClient, startTestCa, TD, type TestCa } from './support/ca-harness.js';
import { makeTestPki } from './support/memory-provider.js';
import { header, rawBidi, rawServerStream, rawUnary, statusName, type Outcome } from './support/raw-grpc.js';
import { callAsNobody, type PlannedCall } from './support/socket-caller.js';
import { createEntry, sshKeyLine, sshOf } from './support/ssh-harness.js';

const run = promisify(execFile);
const GEN = path.resolve(import.meta.dirname, '../proto/gen/brevis/ca/v1');

interface Identity {
  chain: Buffer[];
  key: KeyObject;
}

const TLS_CALLERS = [
  'no certificate',
  'other trust domain',
  'workload SVID',
  'admin workload SVID',
  'agent A',
  'agent B',
  'evicted agent',
  'banned agent',
  'expired agent SVID',
] as const;
const SOCKET_CALLERS = ['admin socket owner', 'admin socket uid 65534'] as const;
type Caller = (typeof TLS_CALLERS)[number] | (typeof SOCKET_CALLERS)[number];
const CALLERS: readonly Caller[] = [...TLS_CALLERS, ...SOCKET_CALLERS];

const OK = 'OK';
const DENIED = 'PERMISSION_DENIED';
const ALLOWED = 'allowed';
const UNIMPL = 'UNIMPLEMENTED';
const NO_ACCESS = 'cannot connect';

/** Expected answers for RPCs served on the node API port. */
function nodeRow(rpc: string): Record<Caller, string> {
  const open = Object.fromEntries(TLS_CALLERS.map((c) => [c, OK])) as Record<Caller, string>;
  const agentOnly = Object.fromEntries(TLS_CALLERS.map((c) => [c, DENIED])) as Record<Caller, string>;
  const socket = { 'admin socket owner': UNIMPL, 'admin socket uid 65534': NO_ACCESS };
  switch (rpc) {
    case 'AttestJoinToken':
    case 'AttestX509Pop':
      return { ...open, ...socket };
    case 'Health/Check':
      return { ...open, 'admin socket owner': OK, 'admin socket uid 65534': NO_ACCESS };
    case 'FetchAuthorizedEntries':
    case 'RenewAgentSVID':
    case 'WatchChanges':
    case 'ReportAgentStatus':
      return { ...agentOnly, 'agent A': OK, 'agent B': OK, ...socket };
    case 'BatchMintX509SVID':
      return { ...agentOnly, 'agent A': OK, 'agent B': `${OK}; result ${DENIED}`, ...socket };
    case 'SignSSHUserCertificate':
    case 'SignSSHHostCertificate':
      return { ...agentOnly, 'agent A': OK, ...socket };
    default:
      throw new Error(`NodeService/${rpc} has no row in the authorization matrix: add one`);
  }
}

/** Every admin-socket RPC: reachable by the socket's owner only, never over the network. */
function adminRow(): Record<Caller, string> {
  return { ...(Object.fromEntries(TLS_CALLERS.map((c) => [c, UNIMPL])) as Record<Caller, string>), 'admin socket owner': ALLOWED, 'admin socket uid 65534': NO_ACCESS };
}

let dir: string;
let t: TestCa;
let agentA: Identity & { id: string };
let agentB: Identity & { id: string };
const ids = new Map<Caller, Identity | null>();
let svcEntry: string;
let nodeCertPem: string;
let nodeKeyPem: string;

async function attest(hosts: string[] = []): Promise<Identity & { id: string }> {
  const tok = await call<object, { token: string }>(t.admin, 'createJoinToken', { agentId: '', ttlSeconds: 0, ...(hosts.length ? { ssh: { hostPrincipals: hosts } } : {}) });
  const k = await newKey();
  const anon = nodeClient(t);
  try {
    const res = await call<object, { svid: { spiffeId: string; certChain: Buffer[] } }>(anon, 'attestJoinToken', { token: tok.token, csr: k.csr });
    return { id: res.svid.spiffeId, chain: res.svid.certChain, key: k.privateKey };
  } finally {
    anon.close();
  }
}

async function mintFor(agent: Identity, entryId: string): Promise<Identity> {
  const k = await newKey();
  const c = nodeClient(t, agent);
  try {
    const res = await call<object, { results: Array<{ svid?: { certChain: Buffer[] }; statusMessage: string }> }>(c, 'batchMintX509Svid', { params: [{ entryId, csr: k.csr }] });
    const svid = res.results[0]!.svid;
    if (!svid) throw new Error(res.results[0]!.statusMessage);
    return { chain: svid.certChain, key: k.privateKey };
  } finally {
    c.close();
  }
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'brevis-authz-'));
  chmodSync(dir, 0o755); // the uid 65534 caller must reach the sockets (their own modes decide)
  const f = (n: string) => path.join(dir, n);
  const ossl = (...args: string[]) => run('openssl', args);
  await ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('hostca.key'), '-out', f('hostca.pem'), '-days', '2', '-subj', '/CN=hostca', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign');
  await ossl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('node.key'), '-out', f('node.csr'), '-subj', '/CN=matrix-node');
  await ossl('x509', '-req', '-in', f('node.csr'), '-CA', f('hostca.pem'), '-CAkey', f('hostca.key'), '-CAcreateserial', '-out', f('node.pem'), '-days', '1');
  nodeCertPem = readFileSync(f('node.pem'), 'utf8');
  nodeKeyPem = readFileSync(f('node.key'), 'utf8');
  mkdirSync(f('sockets'), { mode: 0o755 });
  t = await startTestCa({ x509popCaBundle: f('hostca.pem'), adminSocket: f('sockets/admin.sock') });

  agentA = await attest(['a.example.org']);
  agentB = await attest();
  const evicted = await attest();
  await call(t.admin, 'evictAgent', { agentId: evicted.id });
  const banned = await attest();
  await call(t.admin, 'banAgent', { agentId: banned.id });
  // An agent whose record pins an SVID that has since expired (a real one lasts an hour).
  const k = await newKey();
  const expiredId = `spiffe://${TD}/brevis/agent/matrix/expired`;
  const minted = await call<object, { svid: { certChain: Buffer[]; serial: string; expiresAt: number } }>(t.admin, 'mintX509Svid', { spiffeId: expiredId, csr: k.csr, ttlSeconds: 1, dnsNames: [] });
  const now = Math.floor(Date.now() / 1000);
  await t.ca.store.upsertAgent({ agentId: expiredId, attestationType: 'join_token', serial: minted.svid.serial, expiresAt: minted.svid.expiresAt, selectors: [], banned: false, createdAt: now, lastSeenAt: now });

  svcEntry = (await createEntry(t, `spiffe://${TD}/matrix/svc`, agentA.id, sshOf({ principals: ['svc'] }))).id;
  const adminEntry = await call<object, { entry: { id: string } }>(t.admin, 'createEntry', {
    entry: { id: '', spiffeId: `spiffe://${TD}/matrix/ops`, parentId: agentA.id, selectors: [{ type: 'unix', value: 'uid:0' }], x509SvidTtl: 0, dnsNames: [], hint: '', admin: true, expiresAt: 0, revision: 0, createdAt: 0 },
  });
  await createEntry(t, `spiffe://${TD}/matrix/b`, agentB.id);
  const other = await makeTestPki('other.example');
  const forged = await other.issue(agentA.id); // claims agent A's ID, signed by another trust domain's CA

  ids.set('no certificate', null);
  ids.set('other trust domain', { chain: forged.chain, key: createPrivateKey({ key: forged.key, format: 'der', type: 'pkcs8' }) });
  ids.set('workload SVID', await mintFor(agentA, svcEntry));
  ids.set('admin workload SVID', await mintFor(agentA, adminEntry.entry.id));
  ids.set('agent A', agentA);
  ids.set('agent B', agentB);
  ids.set('evicted agent', evicted);
  ids.set('banned agent', banned);
  ids.set('expired agent SVID', { chain: minted.svid.certChain, key: k.privateKey });
  await waitFor(() => new Date(new X509Certificate(minted.svid.certChain[0]!).validTo) < new Date(), 5000, 'the short SVID to expire');
}, 120_000);

afterAll(async () => {
  await t?.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

/** The x509pop exchange with the matrix node's certificate. */
function x509pop(client: grpc.Client, csr: Buffer): Promise<Outcome> {
  const chain = [new X509Certificate(nodeCertPem).raw];
  const key = createPrivateKey(nodeKeyPem);
  return new Promise((resolve) => {
    const s = client.makeBidiStreamRequest(NodeServiceService.attestX509Pop.path, (b: Buffer) => b, (b: Buffer) => b, new grpc.Metadata(), { deadline: Date.now() + 10_000 });
    const messages: Buffer[] = [];
    s.on('data', (m: Buffer) => {
      messages.push(m);
      const msg = AttestX509PopResponse.decode(m);
      if (msg.challenge) s.write(Buffer.from(AttestX509PopRequest.encode({ challengeResponse: signX509PopPayload(key, x509popPayload(msg.challenge, csr)) }).finish()));
      if (msg.result) s.end();
    });
    s.on('error', () => undefined);
    s.on('status', (st: grpc.StatusObject) => resolve({ code: st.code, details: st.details, messages, trailers: st.metadata }));
    s.write(Buffer.from(AttestX509PopRequest.encode({ hello: { certChain: chain, csr } }).finish()));
  });
}

/** One node RPC with a meaningful request aimed at agent A's resources. */
async function callNodeRpc(rpc: string, client: grpc.Client): Promise<string> {
  const M = NodeServiceService;
  const enc = (b: { finish(): Uint8Array }) => Buffer.from(b.finish());
  const k = await newKey();
  let o: Outcome;
  switch (rpc) {
    case 'AttestJoinToken': {
      const tok = await call<object, { token: string }>(t.admin, 'createJoinToken', { agentId: '', ttlSeconds: 0 });
      o = await rawUnary(client, M.attestJoinToken.path, enc(AttestJoinTokenRequest.encode({ token: tok.token, csr: k.csr })));
      break;
    }
    case 'AttestX509Pop':
      o = await x509pop(client, k.csr);
      break;
    case 'RenewAgentSVID':
      o = await rawUnary(client, M.renewAgentSvid.path, enc(RenewAgentSVIDRequest.encode({ csr: k.csr })));
      break;
    case 'FetchAuthorizedEntries':
      o = await rawUnary(client, M.fetchAuthorizedEntries.path, Buffer.alloc(0));
      if (o.code === grpc.status.OK) {
        const entries = FetchAuthorizedEntriesResponse.decode(o.messages[0]!).entries;
        if (entries.some((e) => e.id === svcEntry) && client !== clientOf.get('agent A')) return 'OK, with agent A\'s entries';
      }
      break;
    case 'BatchMintX509SVID': {
      o = await rawUnary(client, M.batchMintX509Svid.path, enc(BatchMintX509SVIDRequest.encode({ params: [{ entryId: svcEntry, csr: k.csr }] })));
      if (o.code === grpc.status.OK) {
        const r = BatchMintX509SVIDResponse.decode(o.messages[0]!).results[0]!;
        return r.statusCode === grpc.status.OK ? OK : `${OK}; result ${statusName(r.statusCode)}`;
      }
      break;
    }
    case 'SignSSHUserCertificate':
      o = await rawUnary(client, M.signSshUserCertificate.path, enc(SignSSHUserCertificateRequest.encode({ entryId: svcEntry, publicKey: sshKeyLine() })));
      break;
    case 'SignSSHHostCertificate':
      o = await rawUnary(client, M.signSshHostCertificate.path, enc(SignSSHHostCertificateRequest.encode({ principals: ['a.example.org'], publicKey: sshKeyLine('ec') })));
      break;
    case 'Health/Check':
      o = await rawUnary(client, HealthDef.check.path, enc(HealthCheckRequest.encode({ service: '' })));
      break;
    case 'WatchChanges':
      // The first message ('hello') is the answer; the stream then stays open until cancelled.
      o = await rawServerStream(client, `/brevis.ca.v1.NodeService/WatchChanges`, Buffer.alloc(0), new grpc.Metadata(), { cancelAfterMessages: 1 });
      if (o.code === grpc.status.CANCELLED && o.messages.length > 0) return OK;
      break;
    case 'ReportAgentStatus':
      o = await rawUnary(client, `/brevis.ca.v1.NodeService/ReportAgentStatus`, Buffer.alloc(0));
      break;
    default:
      throw new Error(`no request for ${rpc}`);
  }
  return statusName(o.code);
}

const clientOf = new Map<Caller, grpc.Client>();

/** Admin-socket service definitions found in proto/gen (every *Service except NodeService). */
async function adminSocketMethods(): Promise<Array<{ rpc: string; path: string; stream: boolean }>> {
  const out: Array<{ rpc: string; path: string; stream: boolean }> = [];
  for (const file of readdirSync(GEN).filter((n) => n.endsWith('.ts')).sort()) {
    const mod = (await import(path.join(GEN, file))) as Record<string, unknown>;
    for (const [name, value] of Object.entries(mod)) {
      if (!name.endsWith('Service') || name === 'NodeServiceService' || typeof value !== 'object' || value === null) continue;
      const methods = Object.values(value as Record<string, { path?: string; responseStream?: boolean; requestStream?: boolean }>);
      if (!methods.every((m) => typeof m.path === 'string')) continue;
      for (const m of methods) out.push({ rpc: m.path!.slice(1).replace(/^brevis\.ca\.v1\./, ''), path: m.path!, stream: Boolean(m.responseStream) });
    }
  }
  return out;
}

function formatMatrix(rows: Array<{ rpc: string; cells: Record<string, string> }>, callers: readonly string[]): string {
  const head = ['RPC', ...callers];
  const lines = [head, ...rows.map((r) => [r.rpc, ...callers.map((c) => r.cells[c] ?? '?')])];
  const widths = head.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
  const fmt = (l: string[]) => `| ${l.map((s, i) => s.padEnd(widths[i]!)).join(' | ')} |`;
  return [fmt(head), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...lines.slice(1).map(fmt)].join('\n');
}

describe('authorization matrix', () => {
  it('every CA RPC answers every kind of caller exactly as the matrix says', async () => {
    for (const c of TLS_CALLERS) {
      const id = ids.get(c);
      clientOf.set(c, id ? nodeClient(t, id) : nodeClient(t));
    }
    const adminSocket = `unix://${t.ca.adminSocket}`;
    const owner = new grpc.Client(adminSocket, grpc.credentials.createInsecure());
    const nodeRpcs = [...Object.values(NodeServiceService).map((m) => m.path.split('/')[2]!), 'Health/Check'];
    // Renewal changes the caller's SVID: run it last.
    nodeRpcs.sort((a, b) => Number(a === 'RenewAgentSVID') - Number(b === 'RenewAgentSVID'));
    const adminMethods = await adminSocketMethods();
    expect(adminMethods.map((m) => m.rpc)).toEqual(expect.arrayContaining(['AdminService/CreateEntry', 'AuditService/VerifyAudit']));

    const observed: Array<{ rpc: string; cells: Record<string, string> }> = [];
    const expected: Array<{ rpc: string; cells: Record<string, string> }> = [];
    const nobodyPlan: PlannedCall[] = [];
    const nodePath = (rpc: string) => (rpc === 'Health/Check' ? HealthDef.check.path : `/brevis.ca.v1.NodeService/${rpc}`);

    for (const m of adminMethods) {
      const cells: Record<string, string> = {};
      for (const c of TLS_CALLERS) {
        const o = m.stream ? await rawServerStream(clientOf.get(c)!, m.path, Buffer.alloc(0)) : await rawUnary(clientOf.get(c)!, m.path, Buffer.alloc(0));
        cells[c] = statusName(o.code);
      }
      const o = m.stream ? await rawServerStream(owner, m.path, Buffer.alloc(0), new grpc.Metadata(), { cancelAfterMessages: 1 }) : await rawUnary(owner, m.path, Buffer.alloc(0));
      // Reaching the handler is what matters: an empty request may well be invalid.
      cells['admin socket owner'] = ['UNIMPLEMENTED', 'UNAVAILABLE', 'PERMISSION_DENIED', 'UNAUTHENTICATED'].includes(statusName(o.code)) ? statusName(o.code) : ALLOWED;
      observed.push({ rpc: m.rpc, cells });
      expected.push({ rpc: m.rpc, cells: adminRow() });
      nobodyPlan.push({ path: m.path, stream: m.stream, body: Buffer.alloc(0), workloadHeader: false });
    }
    for (const rpc of nodeRpcs) {
      const cells: Record<string, string> = {};
      for (const c of TLS_CALLERS) cells[c] = await callNodeRpc(rpc, clientOf.get(c)!);
      const o = await rawUnary(owner, nodePath(rpc), Buffer.alloc(0));
      cells['admin socket owner'] = rpc === 'Health/Check' || statusName(o.code) === UNIMPL ? statusName(o.code) : `${statusName(o.code)} (served!)`;
      observed.push({ rpc: rpc.includes('/') ? rpc : `NodeService/${rpc}`, cells });
      expected.push({ rpc: rpc.includes('/') ? rpc : `NodeService/${rpc}`, cells: nodeRow(rpc) });
      nobodyPlan.push({ path: nodePath(rpc), stream: false, body: Buffer.alloc(0), workloadHeader: false });
    }
    // A local user who may not open the 0600 admin socket (its directory is 0755 here, so only the socket's mode decides).
    const nobody = await callAsNobody(dir, adminSocket, nobodyPlan);
    nobody.forEach((o, i) => {
      observed[i]!.cells['admin socket uid 65534'] = o.code === grpc.status.UNAVAILABLE && /EACCES|permission denied/i.test(o.details) ? NO_ACCESS : `${statusName(o.code)}: ${o.details}`;
    });
    owner.close();
    for (const c of clientOf.values()) c.close();

    console.log(`CA authorization matrix (${observed.length} RPCs x ${CALLERS.length} callers):\n${formatMatrix(observed, CALLERS)}`);
    expect(observed).toEqual(expected);
  });

  it('every Workload API socket RPC answers a registered workload, an unregistered local process and a call without the security header as the matrix says', async () => {
    const tok = await createJoinToken(t);
    const wdir = path.join(dir, 'agent');
    mkdirSync(wdir, { mode: 0o755 });
    const config = agentConfig(t, wdir, { joinToken: tok.token, socket: path.join(dir, 'sockets/workload.sock') });
    let agent: RunningAgent | undefined;
    try {
      agent = await startAgent(config, { logger: testLogger() });
      await createEntry(t, `spiffe://${TD}/matrix/workload`, tok.agentId, sshOf({ principals: ['svc'] }), [{ type: 'unix', value: `uid:${process.getuid!()}` }]);
      await agent.syncNow();
      await waitFor(() => agent!.cache.isReady(), 10_000, 'the agent to sync');
      const W = SpiffeWorkloadAPIService;
      const methods = [
        ...Object.values(W).map((m) => ({ rpc: `SpiffeWorkloadAPI/${m.path.split('/')[2]}`, path: m.path, stream: m.responseStream, body: Buffer.alloc(0) })),
        { rpc: 'brevis.agent.v1.SSHCertificateService/SignUserCertificate', path: SSHCertificateServiceService.signUserCertificate.path, stream: false, body: Buffer.from(SignUserCertificateRequest.encode({ publicKey: sshKeyLine(), spiffeId: '' }).finish()) },
        { rpc: 'Health/Check', path: HealthDef.check.path, stream: false, body: Buffer.alloc(0) },
      ];
      const client = new grpc.Client(`unix://${agent.socketPath}`, grpc.credentials.createInsecure());
      const callers = ['registered workload', 'unregistered process (uid 65534)', 'no security header'];
      const observed: Array<{ rpc: string; cells: Record<string, string> }> = [];
      for (const m of methods) {
        const once = async (md: grpc.Metadata) =>
          statusName((m.stream ? await rawServerStream(client, m.path, m.body, md, { cancelAfterMessages: 1 }) : await rawUnary(client, m.path, m.body, md)).code).replace('CANCELLED', OK);
        observed.push({ rpc: m.rpc, cells: { 'registered workload': await once(header({ 'workload.spiffe.io': 'true' })), 'no security header': await once(new grpc.Metadata()) } });
      }
      client.close();
      const nobody = await callAsNobody(dir, `unix://${agent.socketPath}`, methods.map((m) => ({ path: m.path, stream: m.stream, body: m.body, workloadHeader: true })));
      nobody.forEach((o, i) => (observed[i]!.cells['unregistered process (uid 65534)'] = statusName(o.code)));
      console.log(`Workload API socket authorization matrix:\n${formatMatrix(observed, callers)}`);
      const row = (registered: string, unregistered: string, noHeader: string) => ({ 'registered workload': registered, 'unregistered process (uid 65534)': unregistered, 'no security header': noHeader });
      const IA = 'INVALID_ARGUMENT';
      expect(observed).toEqual([
        { rpc: 'SpiffeWorkloadAPI/FetchX509SVID', cells: row(OK, DENIED, IA) },
        { rpc: 'SpiffeWorkloadAPI/FetchX509Bundles', cells: row(OK, DENIED, IA) },
        { rpc: 'SpiffeWorkloadAPI/FetchJWTSVID', cells: row(UNIMPL, UNIMPL, IA) },
        { rpc: 'SpiffeWorkloadAPI/FetchJWTBundles', cells: row(UNIMPL, UNIMPL, IA) },
        { rpc: 'SpiffeWorkloadAPI/ValidateJWTSVID', cells: row(UNIMPL, UNIMPL, IA) },
        { rpc: 'brevis.agent.v1.SSHCertificateService/SignUserCertificate', cells: row(OK, DENIED, IA) },
        { rpc: 'Health/Check', cells: row(OK, OK, OK) },
      ]);
    } finally {
      await agent?.close();
    }
  });
});
