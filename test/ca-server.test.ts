import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attestAgent, call, newKey, nodeClient, startTestCa, TD, toPem, type TestCa } from './support/ca-harness.js';

interface Svid {
  spiffeId: string;
  certChain: Buffer[];
  serial: string;
  expiresAt: number;
}
interface MintResult {
  svid?: Svid;
  statusCode: number;
  statusMessage: string;
}

function expectGrpcError(p: Promise<unknown>, code: grpc.status, re?: RegExp) {
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

async function createEntry(t: TestCa, spiffeId: string, parentId: string, extra: Record<string, unknown> = {}) {
  const res = await call<object, { entry: { id: string } }>(t.admin, 'createEntry', {
    entry: { id: '', spiffeId, parentId, selectors: [{ type: 'unix', value: 'uid:1000' }], x509SvidTtl: 0, dnsNames: [], hint: '', admin: false, expiresAt: 0, revision: 0, createdAt: 0, ...extra },
  });
  return res.entry.id;
}

describe('CA server', () => {
  let t: TestCa;
  let work: string;
  beforeAll(async () => {
    t = await startTestCa();
    work = mkdtempSync(path.join(os.tmpdir(), 'brevis-verify-'));
  });
  afterAll(async () => {
    await t.cleanup();
    rmSync(work, { recursive: true, force: true });
  });

  it('redeems a join token for an agent SVID named after the token id, never the secret', async () => {
    const tok = await call<object, { token: string; tokenId: string; agentId: string }>(t.admin, 'createJoinToken', { agentId: '', ttlSeconds: 0 });
    expect(Buffer.from(tok.token, 'base64url').length).toBeGreaterThanOrEqual(16);
    expect(tok.agentId).toBe(`spiffe://${TD}/brevis/agent/join_token/${tok.tokenId}`);
    expect(tok.agentId).not.toContain(tok.token);
    const k = await newKey();
    const anon = nodeClient(t);
    const res = await call<object, { svid: Svid }>(anon, 'attestJoinToken', { token: tok.token, csr: k.csr });
    anon.close();
    expect(res.svid.spiffeId).toBe(tok.agentId);
    const leaf = new X509Certificate(res.svid.certChain[0]!);
    expect(leaf.subjectAltName).toBe(`URI:${tok.agentId}`);
    const audit = await t.ca.store.listAudit();
    expect(JSON.stringify(audit)).not.toContain(tok.token);
  });

  it('mints SVIDs that openssl verifies strictly for client and server use, with the fields of the standard', async () => {
    const agent = await attestAgent(t);
    const entryId = await createEntry(t, `spiffe://${TD}/web`, agent.agentId, { dnsNames: ['web.example.org'], x509SvidTtl: 600 });
    const k = await newKey();
    const res = await call<object, { results: MintResult[] }>(agent.client, 'batchMintX509Svid', { params: [{ entryId, csr: k.csr }] });
    const svid = res.results[0]!.svid!;
    expect(res.results[0]!.statusCode).toBe(0);
    expect(svid.certChain).toHaveLength(2);
    writeFileSync(path.join(work, 'root.pem'), toPem(t.roots()));
    writeFileSync(path.join(work, 'inter.pem'), toPem([svid.certChain[1]!]));
    writeFileSync(path.join(work, 'leaf.pem'), toPem([svid.certChain[0]!]));
    for (const purpose of ['sslclient', 'sslserver']) {
      const out = execFileSync('openssl', ['verify', '-x509_strict', '-purpose', purpose, '-CAfile', path.join(work, 'root.pem'), '-untrusted', path.join(work, 'inter.pem'), path.join(work, 'leaf.pem')]).toString();
      expect(out.trim()).toBe(`${path.join(work, 'leaf.pem')}: OK`);
    }
    const text = execFileSync('openssl', ['x509', '-in', path.join(work, 'leaf.pem'), '-noout', '-text']).toString();
    expect(text).toMatch(/X509v3 Subject Alternative Name: critical\s+URI:spiffe:\/\/example\.org\/web, DNS:web\.example\.org|X509v3 Subject Alternative Name: critical\s+DNS:web\.example\.org, URI:spiffe:\/\/example\.org\/web/);
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:FALSE/);
    expect(text).toMatch(/X509v3 Key Usage: critical\s+Digital Signature, Key Agreement/);
    expect(text).toMatch(/X509v3 Extended Key Usage:\s+TLS Web Server Authentication, TLS Web Client Authentication/);
    expect(text).toMatch(/X509v3 Subject Key Identifier/);
    expect(text).toMatch(/X509v3 Authority Key Identifier/);
    const leaf = new X509Certificate(svid.certChain[0]!);
    const lifetime = (Date.parse(leaf.validTo) - Date.parse(leaf.validFrom)) / 1000;
    expect(lifetime).toBe(600 + 30); // TTL plus the 30 s backdate
    expect(BigInt(`0x${leaf.serialNumber}`) > 0n).toBe(true);
    expect(leaf.serialNumber.replace(/^0+/, '').length).toBeGreaterThan(24); // 128-bit random serial
    const inter = execFileSync('openssl', ['x509', '-in', path.join(work, 'inter.pem'), '-noout', '-text']).toString();
    expect(inter).toMatch(/CA:TRUE, pathlen:0/);
    expect(inter).toMatch(/X509v3 Name Constraints: critical\s+Permitted:\s+URI:example\.org/);
    expect(inter).toContain('URI:spiffe://example.org');
    agent.client.close();
  });

  it('refuses a reused, an unknown and an expired join token, and records each attempt', async () => {
    const tok = await call<object, { token: string }>(t.admin, 'createJoinToken', { agentId: '', ttlSeconds: 0 });
    const k = await newKey();
    const anon = nodeClient(t);
    await call(anon, 'attestJoinToken', { token: tok.token, csr: k.csr });
    const before = (await t.ca.store.listAudit()).filter((a) => a.outcome === 'failure').length;
    await expectGrpcError(call(anon, 'attestJoinToken', { token: tok.token, csr: k.csr }), grpc.status.PERMISSION_DENIED, /already used/);
    await expectGrpcError(call(anon, 'attestJoinToken', { token: 'A'.repeat(43), csr: k.csr }), grpc.status.PERMISSION_DENIED, /unknown/);
    const short = await call<object, { token: string }>(t.admin, 'createJoinToken', { agentId: '', ttlSeconds: 1 });
    await new Promise((r) => setTimeout(r, 2100));
    await expectGrpcError(call(anon, 'attestJoinToken', { token: short.token, csr: k.csr }), grpc.status.PERMISSION_DENIED, /expired/);
    const after = (await t.ca.store.listAudit()).filter((a) => a.outcome === 'failure' && a.action === 'attest.join_token').length;
    expect(after - before).toBe(3);
    anon.close();
  });

  it('lets an agent mint only for its own entries', async () => {
    const a = await attestAgent(t);
    const b = await attestAgent(t);
    const bEntry = await createEntry(t, `spiffe://${TD}/only-b`, b.agentId);
    const k = await newKey();
    const res = await call<object, { results: MintResult[] }>(a.client, 'batchMintX509Svid', { params: [{ entryId: bEntry, csr: k.csr }, { entryId: 'no-such-entry', csr: k.csr }] });
    for (const r of res.results) {
      expect(r.svid).toBeUndefined();
      expect(r.statusCode).toBe(grpc.status.PERMISSION_DENIED);
    }
    const fetched = await call<object, { entries: { id: string }[] }>(a.client, 'fetchAuthorizedEntries', {});
    expect(fetched.entries.map((e) => e.id)).not.toContain(bEntry);
    const mine = await call<object, { results: MintResult[] }>(b.client, 'batchMintX509Svid', { params: [{ entryId: bEntry, csr: k.csr }] });
    expect(mine.results[0]!.svid?.spiffeId).toBe(`spiffe://${TD}/only-b`);
    a.client.close();
    b.client.close();
  });

  it('authorizes entries through a node entry for agents whose node selectors match', async () => {
    // A join-token agent has no node selectors, so a node entry with selectors does not match it.
    const a = await attestAgent(t);
    const node = await createEntry(t, `spiffe://${TD}/node-group`, `spiffe://${TD}/brevis/server`, { selectors: [{ type: 'x509pop', value: 'subject:cn:web-1' }] });
    const child = await createEntry(t, `spiffe://${TD}/via-node`, `spiffe://${TD}/node-group`);
    const fetched = await call<object, { entries: { id: string }[] }>(a.client, 'fetchAuthorizedEntries', {});
    expect(fetched.entries.map((e) => e.id)).not.toContain(child);
    expect(node).toBeTruthy();
    a.client.close();
  });

  it('refuses anonymous callers, evicted agents, banned agents and superseded agent SVIDs', async () => {
    const anon = nodeClient(t);
    await expectGrpcError(call(anon, 'fetchAuthorizedEntries', {}), grpc.status.PERMISSION_DENIED, /mTLS/);
    anon.close();

    const evicted = await attestAgent(t);
    await call(t.admin, 'evictAgent', { agentId: evicted.agentId });
    await expectGrpcError(call(evicted.client, 'fetchAuthorizedEntries', {}), grpc.status.PERMISSION_DENIED, /not attested/);

    const banned = await attestAgent(t, `spiffe://${TD}/brevis/agent/banned-node`);
    await call(t.admin, 'banAgent', { agentId: banned.agentId });
    await expectGrpcError(call(banned.client, 'fetchAuthorizedEntries', {}), grpc.status.PERMISSION_DENIED, /banned/);
    await expectGrpcError(attestAgent(t, banned.agentId), grpc.status.PERMISSION_DENIED, /banned/);

    const renewed = await attestAgent(t);
    const k = await newKey();
    const res = await call<object, { svid: Svid }>(renewed.client, 'renewAgentSvid', { csr: k.csr });
    expect(res.svid.spiffeId).toBe(renewed.agentId);
    const fresh = nodeClient(t, { chain: res.svid.certChain, key: k.privateKey });
    await call(fresh, 'fetchAuthorizedEntries', {});
    // The old SVID is still cryptographically valid but no longer the pinned one.
    await expectGrpcError(call(renewed.client, 'fetchAuthorizedEntries', {}), grpc.status.PERMISSION_DENIED, /superseded/);
    for (const c of [evicted.client, banned.client, renewed.client, fresh]) c.close();
  });

  it('answers bad input with InvalidArgument or NotFound and stores nothing', async () => {
    const agent = await attestAgent(t);
    const entriesBefore = (await t.ca.store.listEntries()).length;
    const entryId = await createEntry(t, `spiffe://${TD}/bad-input`, agent.agentId);
    const k = await newKey();
    const broken = Buffer.from(k.csr);
    broken[broken.length - 5]! ^= 0xff;
    const res = await call<object, { results: MintResult[] }>(agent.client, 'batchMintX509Svid', {
      params: [
        { entryId, csr: Buffer.from('not a csr') },
        { entryId, csr: broken },
        { entryId, csr: k.csr.subarray(0, 20) },
      ],
    });
    for (const r of res.results) expect(r.statusCode).toBe(grpc.status.INVALID_ARGUMENT);
    await expectGrpcError(call(agent.client, 'batchMintX509Svid', { params: [] }), grpc.status.INVALID_ARGUMENT);
    const base = { id: '', parentId: agent.agentId, selectors: [{ type: 'unix', value: 'uid:1' }], x509SvidTtl: 0, dnsNames: [], hint: '', admin: false, expiresAt: 0, revision: 0, createdAt: 0 };
    for (const [entry, re] of [
      [{ ...base, spiffeId: 'spiffe://example.org/a/../b' }, /segment/],
      [{ ...base, spiffeId: 'spiffe://other.org/x' }, /not in trust domain/],
      [{ ...base, spiffeId: `spiffe://${TD}/x`, selectors: [] }, /selector/],
      [{ ...base, spiffeId: `spiffe://${TD}/x`, selectors: [{ type: 'unix', value: '' }] }, /empty/],
      [{ ...base, spiffeId: `spiffe://${TD}/x`, x509SvidTtl: 10 * 86400 }, /outside the allowed range/],
      [{ ...base, spiffeId: `spiffe://${TD}/x`, dnsNames: ['bad_name!'] }, /DNS/],
    ] as const) {
      await expectGrpcError(call(t.admin, 'createEntry', { entry }), grpc.status.INVALID_ARGUMENT, re);
    }
    await expectGrpcError(call(t.admin, 'getEntry', { id: 'missing' }), grpc.status.NOT_FOUND);
    await expectGrpcError(call(t.admin, 'deleteEntry', { id: 'missing' }), grpc.status.NOT_FOUND);
    await expectGrpcError(call(t.admin, 'evictAgent', { agentId: `spiffe://${TD}/brevis/agent/nobody` }), grpc.status.NOT_FOUND);
    await expectGrpcError(call(t.admin, 'createJoinToken', { agentId: `spiffe://${TD}/not-an-agent`, ttlSeconds: 0 }), grpc.status.INVALID_ARGUMENT);
    expect((await t.ca.store.listEntries()).length).toBe(entriesBefore + 1);
    // The server is still serving.
    const ok = await call<object, { results: MintResult[] }>(agent.client, 'batchMintX509Svid', { params: [{ entryId, csr: k.csr }] });
    expect(ok.results[0]!.statusCode).toBe(0);
    agent.client.close();
  });

  it('refuses an agent whose SVID has expired', async () => {
    const short = await startTestCa({ agentSvidTtl: '2s', backdate: '0s' });
    try {
      const agent = await attestAgent(short);
      await call(agent.client, 'fetchAuthorizedEntries', {});
      await new Promise((r) => setTimeout(r, 3000));
      const fresh = nodeClient(short, { chain: agent.chain, key: agent.key });
      await expectGrpcError(call(fresh, 'fetchAuthorizedEntries', {}), grpc.status.PERMISSION_DENIED);
      fresh.close();
      agent.client.close();
    } finally {
      await short.cleanup();
    }
  });

  it('keeps its root, entries and agents across a restart', async () => {
    const agent = await attestAgent(t);
    const entryId = await createEntry(t, `spiffe://${TD}/survivor`, agent.agentId);
    const rootBefore = t.roots()[0]!.toString('base64');
    agent.client.close();
    await t.restart();
    expect(t.roots()[0]!.toString('base64')).toBe(rootBefore);
    const again = nodeClient(t, { chain: agent.chain, key: agent.key });
    const k = await newKey();
    const res = await call<object, { results: MintResult[] }>(again, 'batchMintX509Svid', { params: [{ entryId, csr: k.csr }] });
    expect(res.results[0]!.svid?.spiffeId).toBe(`spiffe://${TD}/survivor`);
    again.close();
  });

  it('keeps the admin socket private (mode 0600)', () => {
    const st = spawnSync('stat', ['-c', '%a', t.ca.adminSocket]).stdout.toString().trim();
    expect(st).toBe('600');
  });
});
