import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCaConfig } from '../ca/config/config.js';
import { createLogger } from '../ca/log.js';
import { startCa, type RunningCa } from '../ca/server/ca.js';
import { AdminServiceClient } from '../proto/gen/brevis/ca/v1/admin.js';
import { attestAgent, call, newKey, nodeClient, TD, type TestCa } from './support/ca-harness.js';
import { expectGrpcError } from './support/ssh-harness.js';

/** A destination that keeps what pino writes. */
function capture(): { stream: Writable; text: () => string } {
  let buf = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      buf += chunk.toString('utf8');
      cb();
    },
  });
  return { stream, text: () => buf };
}

type Line = Record<string, unknown> & { msg: string; level: number };

describe('log format', () => {
  it('writes one JSON object per line with the program name, level and pid when not on a terminal', () => {
    const out = capture();
    const logger = createLogger('info', 'brevis-ca', { pretty: false, destination: out.stream });
    logger.info({ agentId: 'spiffe://example.org/brevis/agent/x' }, 'agent attested');
    logger.debug('not shown at info');
    const lines = out.text().trim().split('\n');
    expect(lines).toHaveLength(1);
    const l = JSON.parse(lines[0]!) as Line;
    expect(l).toMatchObject({ name: 'brevis-ca', level: 30, pid: process.pid, msg: 'agent attested', agentId: 'spiffe://example.org/brevis/agent/x' });
    expect(typeof l.time).toBe('number');
  });

  it('writes human-readable lines, coloured only when asked, in pretty mode', () => {
    const plain = capture();
    createLogger('info', 'brevis-agent', { pretty: true, colorize: false, destination: plain.stream }).warn({ retryInMs: 800 }, 'sync with the CA failed');
    expect(plain.text()).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] WARN \(brevis-agent\): sync with the CA failed\n\s+retryInMs: 800\n$/);
    expect(plain.text()).not.toContain('\u001b[');

    const coloured = capture();
    createLogger('info', 'brevis-agent', { pretty: true, colorize: true, destination: coloured.stream }).warn('sync with the CA failed');
    expect(coloured.text()).toContain('\u001b[');
  });

  it('redacts secrets by key', () => {
    const out = capture();
    createLogger('info', 'brevis-ca', { pretty: false, destination: out.stream }).info({ token: 'sekrit-token', nested: { privateKey: 'pk' } }, 'x');
    expect(out.text()).not.toContain('sekrit-token');
    expect(out.text()).not.toContain('"pk"');
  });
});

describe('API edge logs', () => {
  let dir: string;
  let ca: RunningCa;
  let admin: AdminServiceClient;
  const out = capture();
  const lines = () =>
    out
      .text()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Line);

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'brevis-logs-'));
    const config = buildCaConfig({ dataDir: dir, trustDomain: TD, listen: '127.0.0.1:0' });
    ca = await startCa(config, { logger: createLogger('debug', 'brevis-ca', { pretty: false, destination: out.stream }) });
    admin = new AdminServiceClient(`unix://${ca.adminSocket}`, grpc.credentials.createInsecure());
  });
  afterAll(async () => {
    admin?.close();
    await ca?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const t = () => ({ ca, admin, roots: () => ca.authority.bundle().roots }) as unknown as TestCa;

  it('logs each call once with a request id, the caller and the outcome, and tags lines logged while serving it', async () => {
    const from = lines().length;
    const tok = await call<object, { token: string; tokenId: string }>(admin, 'createJoinToken', { agentId: '', ttlSeconds: 0 });
    const mine = lines().slice(from);
    const edge = mine.filter((l) => l.msg === 'call served');
    expect(edge).toHaveLength(1);
    expect(edge[0]).toMatchObject({ level: 30, rpc: 'AdminService/CreateJoinToken', caller: 'admin:local', code: 'OK' });
    expect(edge[0]!.reqId).toMatch(/^[0-9a-f]{6}-[0-9a-z]+$/);
    expect(typeof edge[0]!.durationMs).toBe('number');
    // The handler's own line carries the same request id.
    const inner = mine.find((l) => l.msg === 'join token created')!;
    expect(inner.tokenId).toBe(tok.tokenId);
    expect(inner.reqId).toBe(edge[0]!.reqId);
    // The secret is in no line.
    expect(out.text()).not.toContain(tok.token);
  });

  it('names the agent from its TLS client certificate, anonymous without one, and gives every call its own id', async () => {
    const a = await attestAgent(t());
    const from = lines().length;
    await call(a.client, 'fetchAuthorizedEntries', {});
    await call(a.client, 'fetchAuthorizedEntries', {});
    const served = lines()
      .slice(from)
      .filter((l) => l.msg === 'call served');
    a.client.close();
    expect(served.map((l) => [l.rpc, l.caller, l.level])).toEqual([
      ['NodeService/FetchAuthorizedEntries', a.agentId, 20],
      ['NodeService/FetchAuthorizedEntries', a.agentId, 20],
    ]);
    expect(served[0]!.reqId).not.toBe(served[1]!.reqId);
    const attest = lines().find((l) => l.rpc === 'NodeService/AttestJoinToken')!;
    expect(attest.caller).toBe('anonymous');
    // 'agent attested' was logged inside that call.
    expect(lines().find((l) => l.msg === 'agent attested')!.reqId).toBe(attest.reqId);
  });

  it('logs refusals with their status and safe details at warn, and client mistakes at info', async () => {
    const anon = nodeClient(t());
    const k = await newKey();
    const from = lines().length;
    await expectGrpcError(call(anon, 'attestJoinToken', { token: 'y'.repeat(43), csr: k.csr }), grpc.status.PERMISSION_DENIED);
    await expectGrpcError(call(admin, 'getEntry', { id: 'nope' }), grpc.status.NOT_FOUND);
    anon.close();
    const mine = lines().slice(from);
    const refused = mine.find((l) => l.rpc === 'NodeService/AttestJoinToken' && l.msg === 'call refused')!;
    expect(refused).toMatchObject({ level: 40, code: 'PERMISSION_DENIED', caller: 'anonymous', details: 'join token is unknown' });
    // The attestation handler's own warning is tied to the same call.
    expect(mine.find((l) => l.msg === 'join token attestation refused')!.reqId).toBe(refused.reqId);
    expect(mine.find((l) => l.rpc === 'AdminService/GetEntry')).toMatchObject({ level: 30, msg: 'call rejected', code: 'NOT_FOUND' });
  });
});
