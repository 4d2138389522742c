/**
 * The CA process killed with SIGKILL in the middle of minting under load:
 * it restarts on the same data directory with an intact database and audit
 * chain, no serial number is ever issued twice (every serial a client
 * received is audited exactly once), the load agent carries on with its
 * SVID, and an agent reconnects and picks up new work by itself.
 */
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import sqlite3 from 'sqlite3';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from '../agent/agent.js';
import { buildAgentConfig } from '../agent/config/config.js';
import { tempDir, waitFor } from './support/agent-harness.js';
import { call, newKey, nodeClient, type TestCa } from './support/ca-harness.js';
import { CA_BIN, requireBuilt, runCli, startDaemon, type Daemon } from './support/processes.js';
import { writeFileSync } from 'node:fs';

let dir: string;
let cleanupDir: () => void;
let ca: Daemon | undefined;
let agent: RunningAgent | undefined;
const f = (...n: string[]) => path.join(dir, ...n);

function admin(args: string[]): string {
  const r = runCli(CA_BIN, [...args, '--socket', f('ca', 'admin.sock')]);
  if (r.status !== 0) throw new Error(`brevis-ca ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout.trim();
}

async function startCaOn(listen: string): Promise<number> {
  ca = await startDaemon(CA_BIN, ['run', '--data-dir', f('ca'), '--trust-domain', 'example.org', '--listen', listen], /CA serving/);
  return Number(/"port":(\d+)/.exec(ca.output())![1]);
}

function integrityCheck(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const db = new sqlite3.Database(file, sqlite3.OPEN_READONLY, (err) => {
      if (err) return reject(err);
      db.get<{ integrity_check: string }>('PRAGMA integrity_check', (e, row) => {
        db.close();
        if (e) reject(e);
        else resolve(row!.integrity_check);
      });
    });
  });
}

beforeAll(() => {
  requireBuilt();
  ({ dir, cleanup: cleanupDir } = tempDir('brevis-kill-'));
});

afterAll(async () => {
  await agent?.close();
  await ca?.stop();
  cleanupDir?.();
});

describe('SIGKILL during minting', () => {
  it('restarts consistent: database and audit chain intact, no serial reused, agents carry on by themselves', async () => {
    const port = await startCaOn('127.0.0.1:0');
    const bundlePem = admin(['bundle', 'show']);
    const roots = bundlePem.split(/(?=-----BEGIN CERTIFICATE-----)/).map((p) => new X509Certificate(p).raw);
    const target = { roots: () => roots, ca: { port } } as unknown as TestCa;
    writeFileSync(f('bundle.pem'), `${bundlePem}\n`);

    // A load agent (raw node API client) and a real agent.
    const loadTok = JSON.parse(admin(['token', 'create', '--json'])) as { token: string };
    const k = await newKey();
    const anon = nodeClient(target);
    const att = await call<object, { svid: { spiffeId: string; certChain: Buffer[] } }>(anon, 'attestJoinToken', { token: loadTok.token, csr: k.csr });
    anon.close();
    const loadEntry = admin(['entry', 'create', '--spiffe-id', 'spiffe://example.org/load', '--parent-id', att.svid.spiffeId, '--selector', 'unix:uid:1000']);
    const agentTok = JSON.parse(admin(['token', 'create', '--json'])) as { token: string; agent_id: string };
    admin(['entry', 'create', '--spiffe-id', 'spiffe://example.org/steady', '--parent-id', agentTok.agent_id, '--selector', 'unix:uid:1000']);
    agent = await startAgent(
      buildAgentConfig({ server: `127.0.0.1:${port}`, trustDomain: 'example.org', trustBundle: f('bundle.pem'), dataDir: f('agent'), socket: f('agent.sock'), joinToken: agentTok.token, syncInterval: '1s' }),
      { logger: pino({ level: 'silent' }), backoff: { initialMs: 200, maxMs: 1000 } },
    );
    await waitFor(() => agent!.cache.isReady(), 10_000, 'the agent to sync');

    const received: string[] = [];
    let failedCalls = 0;
    let running = true;
    const client = nodeClient(target, { chain: att.svid.certChain, key: k.privateKey });
    const loop = async () => {
      while (running) {
        const csrs = await Promise.all(Array.from({ length: 10 }, () => newKey()));
        try {
          const res = await call<object, { results: Array<{ statusCode: number; svid?: { serial: string } }> }>(client, 'batchMintX509Svid', { params: csrs.map((c) => ({ entryId: loadEntry, csr: c.csr })) });
          for (const r of res.results) if (r.svid) received.push(r.svid.serial);
        } catch {
          failedCalls++;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    };
    const loops = [loop(), loop(), loop(), loop()];
    await waitFor(() => received.length >= 300, 30_000, '300 SVIDs under load');
    const pid = ca!.proc.pid;
    await ca!.stop('SIGKILL');
    expect(ca!.proc.signalCode).toBe('SIGKILL');
    const beforeKill = received.length;
    await new Promise((r) => setTimeout(r, 500));
    running = false;
    await Promise.all(loops);
    expect(failedCalls).toBeGreaterThan(0); // the load did run into the dead CA

    expect(await integrityCheck(f('ca', 'brevis.db'))).toBe('ok');
    await startCaOn(`127.0.0.1:${port}`);
    expect(ca!.proc.pid).not.toBe(pid);
    expect(admin(['audit', 'verify'])).toMatch(/intact/);
    const audit = JSON.parse(admin(['audit', 'list', '--json'])) as Array<{ action: string; outcome: string; serial: string | null }>;
    const auditedSerials = audit.filter((a) => a.action === 'x509.mint' && a.outcome === 'success').map((a) => a.serial!);
    expect(new Set(auditedSerials).size).toBe(auditedSerials.length);
    expect(new Set(received).size).toBe(received.length);
    const audited = new Set(auditedSerials);
    expect(received.filter((s) => !audited.has(s))).toEqual([]); // nothing was handed out unaudited

    // The load agent's SVID still works: no new attestation, a fresh serial.
    // (The client's channel retries its connection with backoff, as any grpc-js client does.)
    const csr = (await newKey()).csr;
    const after = await waitFor(
      () => call<object, { results: Array<{ svid?: { serial: string } }> }>(client, 'batchMintX509Svid', { params: [{ entryId: loadEntry, csr }] }).catch(() => undefined),
      20_000,
      'a mint after the restart',
    );
    expect(received).not.toContain(after.results[0]!.svid!.serial);
    client.close();
    // The real agent reconnects by itself: an entry created after the restart reaches it.
    admin(['entry', 'create', '--spiffe-id', 'spiffe://example.org/after-restart', '--parent-id', agentTok.agent_id, '--selector', 'unix:uid:2000']);
    await waitFor(() => agent!.cache.svidsFor(new Set(['unix:uid:2000'])).length === 1, 20_000, 'the agent to pick up the new entry');
    expect(agent.agentSvid().spiffeId).toBe(agentTok.agent_id);
    console.log(`SIGKILL after ${beforeKill} SVIDs: ${auditedSerials.length} audited serials, all unique; ${failedCalls} calls failed while the CA was down`);
  });
});

