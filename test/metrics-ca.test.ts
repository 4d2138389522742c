import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCaConfig } from '../ca/config/config.js';
import { startCa, type RunningCa } from '../ca/server/ca.js';
import { AdminServiceClient } from '../proto/gen/brevis/ca/v1/admin.js';
import { attestAgent, call, newKey, nodeClient, startTestCa, TD, type TestAgent, type TestCa } from './support/ca-harness.js';
import { ManualClock } from './support/manual-clock.js';
import { families, parseSamples, scrape, valueOf } from './support/prometheus.js';
import { adminSign, attestWithHosts, createEntry, expectGrpcError, signHost } from './support/ssh-harness.js';

const url = (port: number | null) => `http://127.0.0.1:${port}/metrics`;

describe('CA metrics endpoint', () => {
  let t: TestCa;
  let agent: TestAgent;
  const get = async () => (await scrape(url(t.ca.metricsPort))).text;

  beforeAll(async () => {
    t = await startTestCa({ metrics: '127.0.0.1:0' });
    agent = await attestAgent(t);
  });
  afterAll(async () => {
    agent?.client.close();
    await t?.cleanup();
  });

  it('is off unless a metrics address is configured', async () => {
    const plain = await startTestCa();
    try {
      expect(plain.ca.metricsPort).toBeNull();
    } finally {
      await plain.cleanup();
    }
    expect(t.ca.metricsPort).toBeGreaterThan(0);
  });

  it('serves the Prometheus text format with help, type and conventional names for every Brevis family', async () => {
    const res = await scrape(url(t.ca.metricsPort));
    expect(res.status).toBe(200);
    expect(res.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    const fams = [...families(res.text)].filter(([name]) => name.startsWith('brevis_ca_'));
    expect(fams.map(([n]) => n).sort()).toEqual([
      'brevis_ca_agent_sync_lag_max_seconds',
      'brevis_ca_agents',
      'brevis_ca_attestations_total',
      'brevis_ca_authorities',
      'brevis_ca_authority_expiry_timestamp_seconds',
      'brevis_ca_authority_rotations_total',
      'brevis_ca_credentials_issued_total',
      'brevis_ca_errors_total',
      'brevis_ca_grpc_server_handled_total',
      'brevis_ca_grpc_server_handling_seconds',
      'brevis_ca_issuance_duration_seconds',
      'brevis_ca_issuance_failures_total',
    ]);
    for (const [name, f] of fams) {
      expect(f.help.length, name).toBeGreaterThan(10);
      if (f.type === 'counter') expect(name).toMatch(/_total$/);
      if (f.type === 'histogram') expect(name).toMatch(/_seconds$/);
    }
    // Process metrics come with the endpoint.
    expect(valueOf(res.text, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);
    const scrapeAgain = await scrape(`http://127.0.0.1:${t.ca.metricsPort}/other`);
    expect(scrapeAgain.status).toBe(404);
  });

  it('counts and times issuance by kind: X.509, SSH user and SSH host', async () => {
    const before = await get();
    const issued = (text: string, kind: string) => valueOf(text, 'brevis_ca_credentials_issued_total', { kind })!;
    const timed = (text: string, kind: string) => valueOf(text, 'brevis_ca_issuance_duration_seconds_count', { kind })!;

    const k = await newKey();
    await call(t.admin, 'mintX509Svid', { spiffeId: `spiffe://${TD}/metrics/w1`, csr: k.csr, ttlSeconds: 0, dnsNames: [] });
    const a2 = await attestAgent(t);
    a2.client.close();
    await adminSign(t, {});
    const hostAgent = await attestWithHosts(t, ['web-1.example.org']);
    await signHost(hostAgent, ['web-1.example.org']);
    hostAgent.client.close();

    const after = await get();
    // Admin mint + the new agent's SVID; the host agent's SVID is one more.
    expect(issued(after, 'x509') - issued(before, 'x509')).toBe(3);
    expect(issued(after, 'ssh_user') - issued(before, 'ssh_user')).toBe(1);
    expect(issued(after, 'ssh_host') - issued(before, 'ssh_host')).toBe(1);
    for (const kind of ['x509', 'ssh_user', 'ssh_host']) expect(timed(after, kind) - timed(before, kind)).toBe(issued(after, kind) - issued(before, kind));
    expect(valueOf(after, 'brevis_ca_issuance_duration_seconds_sum', { kind: 'x509' })).toBeGreaterThan(0);
  });

  it('counts attestation outcomes by method and errors by gRPC code, at the call edge', async () => {
    const before = await get();
    const anon = nodeClient(t);
    const k = await newKey();
    await expectGrpcError(call(anon, 'attestJoinToken', { token: 'x'.repeat(43), csr: k.csr }), grpc.status.PERMISSION_DENIED);
    anon.close();
    const a = await attestAgent(t);
    a.client.close();

    const after = await get();
    const delta = (name: string, labels: Record<string, string>) => (valueOf(after, name, labels) ?? 0) - (valueOf(before, name, labels) ?? 0);
    expect(delta('brevis_ca_attestations_total', { method: 'join_token', outcome: 'failure' })).toBe(1);
    expect(delta('brevis_ca_attestations_total', { method: 'join_token', outcome: 'success' })).toBe(1);
    expect(delta('brevis_ca_attestations_total', { method: 'x509pop', outcome: 'success' })).toBe(0);
    expect(delta('brevis_ca_errors_total', { grpc_code: 'PERMISSION_DENIED' })).toBe(1);
    expect(delta('brevis_ca_grpc_server_handled_total', { grpc_service: 'brevis.ca.v1.NodeService', grpc_method: 'AttestJoinToken', grpc_code: 'PERMISSION_DENIED' })).toBe(1);
    expect(delta('brevis_ca_grpc_server_handled_total', { grpc_service: 'brevis.ca.v1.AdminService', grpc_method: 'CreateJoinToken', grpc_code: 'OK' })).toBe(1);
    expect(delta('brevis_ca_grpc_server_handling_seconds_count', { grpc_service: 'brevis.ca.v1.NodeService', grpc_method: 'AttestJoinToken' })).toBe(2);
  });

  it('counts refused items of a batched mint as errors although the call itself succeeds', async () => {
    const entry = await createEntry(t, `spiffe://${TD}/metrics/batch`, agent.agentId);
    const before = await get();
    const [k1, k2] = [await newKey(), await newKey()];
    const res = await call<object, { results: Array<{ statusCode: number }> }>(agent.client, 'batchMintX509Svid', {
      params: [{ entryId: entry.id, csr: k1.csr }, { entryId: 'no-such-entry', csr: k2.csr }],
    });
    expect(res.results.map((r) => r.statusCode)).toEqual([grpc.status.OK, grpc.status.PERMISSION_DENIED]);
    const after = await get();
    const delta = (name: string, labels: Record<string, string>) => (valueOf(after, name, labels) ?? 0) - (valueOf(before, name, labels) ?? 0);
    expect(delta('brevis_ca_errors_total', { grpc_code: 'PERMISSION_DENIED' })).toBe(1);
    expect(delta('brevis_ca_grpc_server_handled_total', { grpc_method: 'BatchMintX509SVID', grpc_code: 'OK' })).toBe(1);
    expect(delta('brevis_ca_credentials_issued_total', { kind: 'x509' })).toBe(1);
  });

  it('reads agents and authorities from the store at scrape time', async () => {
    const agents = (await call<object, { agents: Array<{ agentId: string; banned: boolean }> }>(t.admin, 'listAgents', {})).agents;
    let text = await get();
    expect(valueOf(text, 'brevis_ca_agents', { state: 'active' })).toBe(agents.filter((a) => !a.banned).length);
    expect(valueOf(text, 'brevis_ca_agents', { state: 'banned' })).toBe(0);

    const victim = await attestAgent(t);
    victim.client.close();
    await call(t.admin, 'banAgent', { agentId: victim.agentId });
    text = await get();
    expect(valueOf(text, 'brevis_ca_agents', { state: 'banned' })).toBe(1);
    expect(valueOf(text, 'brevis_ca_agents', { state: 'active' })).toBe(agents.length);

    const auths = await t.ca.store.listAuthorities();
    for (const kind of ['x509-root', 'x509-intermediate', 'ssh-user', 'ssh-host']) {
      expect(valueOf(text, 'brevis_ca_authorities', { kind, state: 'active' }), kind).toBe(auths.filter((a) => a.kind === kind && a.state === 'active').length);
    }
    const inter = auths.find((a) => a.kind === 'x509-intermediate' && a.state === 'active')!;
    expect(valueOf(text, 'brevis_ca_authority_expiry_timestamp_seconds', { kind: 'x509-intermediate' })).toBe(inter.notAfter);
    // SSH CA keys do not expire: no series rather than year 9999.
    expect(valueOf(text, 'brevis_ca_authority_expiry_timestamp_seconds', { kind: 'ssh-user' })).toBeUndefined();
  });

  it('never labels a series with a SPIFFE ID, serial or other unbounded value', async () => {
    const text = await get();
    expect(text).not.toContain('spiffe://');
    expect(text).not.toContain(agent.serial);
    const allowed = new Set(['kind', 'state', 'grpc_service', 'grpc_method', 'grpc_code', 'method', 'outcome', 'le']);
    for (const s of parseSamples(text).filter((x) => x.name.startsWith('brevis_'))) {
      for (const label of Object.keys(s.labels)) expect(allowed.has(label), `${s.name} has label ${label}`).toBe(true);
    }
  });

  it('keeps serving and counting after a scrape while calls fail', async () => {
    const before = await get();
    await expectGrpcError(call(t.admin, 'getEntry', { id: 'does-not-exist' }), grpc.status.NOT_FOUND);
    const after = await get();
    expect((valueOf(after, 'brevis_ca_errors_total', { grpc_code: 'NOT_FOUND' }) ?? 0) - (valueOf(before, 'brevis_ca_errors_total', { grpc_code: 'NOT_FOUND' }) ?? 0)).toBe(1);
  });
});

describe('CA metrics that depend on time', () => {
  let dir: string;
  let ca: RunningCa;
  let admin: AdminServiceClient;
  const clock = new ManualClock();

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'brevis-metrics-'));
    const config = buildCaConfig({ dataDir: dir, trustDomain: TD, listen: '127.0.0.1:0', metrics: '127.0.0.1:0' });
    ca = await startCa(config, { logger: pino({ level: 'silent' }), clock });
    admin = new AdminServiceClient(`unix://${ca.adminSocket}`, grpc.credentials.createInsecure());
  });
  afterAll(async () => {
    admin?.close();
    await ca?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reports the longest agent sync lag, which grows until the agent syncs again', async () => {
    const t = { ca, admin, roots: () => ca.authority.bundle().roots } as unknown as TestCa;
    const a = await attestAgent(t);
    try {
      let text = (await scrape(url(ca.metricsPort))).text;
      expect(valueOf(text, 'brevis_ca_agent_sync_lag_max_seconds')).toBe(0);
      clock.advance(90_000);
      text = (await scrape(url(ca.metricsPort))).text;
      expect(valueOf(text, 'brevis_ca_agent_sync_lag_max_seconds')).toBe(90);
      await call(a.client, 'fetchAuthorizedEntries', {});
      text = (await scrape(url(ca.metricsPort))).text;
      expect(valueOf(text, 'brevis_ca_agent_sync_lag_max_seconds')).toBe(0);
    } finally {
      a.client.close();
    }
  });

  it('counts an agent whose SVID has expired as expired, not active', async () => {
    clock.advance(2 * 3600_000);
    const text = (await scrape(url(ca.metricsPort))).text;
    expect(valueOf(text, 'brevis_ca_agents', { state: 'active' })).toBe(0);
    expect(valueOf(text, 'brevis_ca_agents', { state: 'expired' })).toBe(1);
  });
});
