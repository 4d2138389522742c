/**
 * Zero-downtime rotation, judged by handshakes: two services using the
 * spiffe/ helpers (X509Source from a real agent's Workload API,
 * createMtlsServer and tlsClientOptions) handshake continuously while the
 * CA rotates the intermediate, rotates the root, then taints and revokes
 * the old root; and so does an openssl s_server/s_client pair that reads
 * the files `brevis-agent api watch` keeps current. Not one handshake may
 * fail.
 */
import { spawn } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from '../agent/agent.js';
import { chainAuthorityIds } from '../agent/push/chain-ids.js';
import { acknowledgements, outstanding } from '../ca/rotation/fleet.js';
import { activeOf } from '../ca/rotation/model.js';
import { authorizeId } from '../spiffe/authorize.js';
import { createMtlsServer, tlsClientOptions } from '../spiffe/mtls.js';
import { handshakeOnce } from './support/tls-probe.js';
import { X509Source, pickSvidById } from '../spiffe/x509-source.js';
import { startTestCa, type TestCa } from './support/ca-harness.js';
import { agentConfig, createEntry, createJoinToken, tempDir, testLogger, waitFor } from './support/agent-harness.js';
import { AGENT_BIN, requireBuilt, startDaemon } from './support/processes.js';

const SERVER = 'spiffe://example.org/svc/server';
const CLIENT = 'spiffe://example.org/svc/client';
/** Short SVIDs so that they rotate (at half-life) several times during the test. */
const SVID_TTL_SECONDS = 16;

const free = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => resolve(p));
    });
  });

/**
 * A consistent copy of what `api watch` wrote: svid.key and svid.pem are
 * each replaced atomically but not together, so a reader copies them and
 * checks that the key matches the certificate (reading again if it caught
 * the moment between the two renames).
 */
async function snapshot(watchDir: string, into: string): Promise<string> {
  for (let i = 0; ; i++) {
    const cert = readFileSync(path.join(watchDir, 'svid.pem'), 'utf8');
    const key = readFileSync(path.join(watchDir, 'svid.key'), 'utf8');
    const bundle = readFileSync(path.join(watchDir, 'bundle.pem'), 'utf8');
    if (new X509Certificate(cert).checkPrivateKey(createPrivateKey(key))) {
      mkdirSync(into, { recursive: true });
      writeFileSync(path.join(into, 'svid.pem'), cert);
      writeFileSync(path.join(into, 'svid.key'), key, { mode: 0o600 });
      writeFileSync(path.join(into, 'bundle.pem'), bundle);
      return into;
    }
    if (i >= 20) throw new Error('svid.pem and svid.key never matched');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** One mTLS handshake between openssl s_server and s_client, both with the files in `d`. */
async function opensslHandshake(d: string): Promise<void> {
  const port = await free();
  const files = ['-cert', path.join(d, 'svid.pem'), '-cert_chain', path.join(d, 'svid.pem'), '-key', path.join(d, 'svid.key'), '-CAfile', path.join(d, 'bundle.pem'), '-verify_return_error', '-x509_strict'];
  const server = spawn('openssl', ['s_server', '-accept', `127.0.0.1:${port}`, '-naccept', '1', '-Verify', '3', ...files]);
  let serverOut = '';
  server.stdout.on('data', (x) => (serverOut += x));
  server.stderr.on('data', (x) => (serverOut += x));
  const serverDone = new Promise<number | null>((r) => server.on('close', r));
  try {
    await waitFor(() => serverOut.includes('ACCEPT') || server.exitCode !== null, 10_000, 'openssl s_server to listen');
    if (!serverOut.includes('ACCEPT')) throw new Error(`s_server did not start: ${serverOut.trim()}`);
    const client = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-verify', '3', '-brief', ...files]);
    let clientOut = '';
    client.stdout.on('data', (x) => (clientOut += x));
    client.stderr.on('data', (x) => (clientOut += x));
    client.stdin.end('hello over mTLS\n');
    const code = await new Promise<number | null>((r) => client.on('close', r));
    await serverDone;
    if (code !== 0 || !clientOut.includes('Verification: OK') || !serverOut.includes('hello over mTLS')) {
      throw new Error(`openssl handshake failed (s_client ${code}): ${clientOut.trim().split('\n').slice(-3).join(' | ')} / ${serverOut.trim().split('\n').slice(-3).join(' | ')}`);
    }
  } finally {
    if (server.exitCode === null) server.kill('SIGKILL');
  }
}

describe('rotation under load', () => {
  const closers: Array<() => unknown> = [];
  afterAll(async () => {
    for (const c of closers.reverse()) await c();
  });

  it('keeps every mTLS handshake succeeding through an intermediate rotation, a root rotation, and a taint and revoke of the old root', async () => {
    const t: TestCa = await startTestCa();
    closers.push(() => t.cleanup());
    const tmp = tempDir('brevis-handshakes-');
    closers.push(tmp.cleanup);
    const { token, agentId } = await createJoinToken(t);
    const agent: RunningAgent = await startAgent(agentConfig(t, tmp.dir, { joinToken: token, syncInterval: '5s' }), { logger: testLogger() });
    closers.push(() => agent.close());
    const uid = `unix:uid:${process.getuid!()}`;
    await createEntry(t, { spiffeId: SERVER, parentId: agentId, selectors: [uid], x509SvidTtl: SVID_TTL_SECONDS });
    await createEntry(t, { spiffeId: CLIENT, parentId: agentId, selectors: [uid], x509SvidTtl: SVID_TTL_SECONDS });
    await waitFor(() => agent.cache.isReady() && agent.cache.svidsFor(new Set([uid])).length === 2, 10_000, 'both SVIDs');

    const socketPath = agent.socketPath;
    const serverSource = await X509Source.create({ socketPath, picker: pickSvidById(SERVER) });
    closers.push(() => serverSource.close());
    const clientSource = await X509Source.create({ socketPath, picker: pickSvidById(CLIENT) });
    closers.push(() => clientSource.close());

    const rejected: string[] = [];
    const server = createMtlsServer(serverSource, authorizeId(CLIENT), (socket) => socket.end('ok'), {
      onReject: (err) => rejected.push(err.message),
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise<void>((r) => server.close(() => r())));
    const port = (server.address() as AddressInfo).port;

    const handshake = () => handshakeOnce(tlsClientOptions(clientSource, authorizeId(SERVER)), port, 'example.org');

    // The openssl pair reads the files `brevis-agent api watch` keeps current (the caller's default SVID).
    requireBuilt();
    const watchDir = path.join(tmp.dir, 'watch');
    const watcher = await startDaemon(AGENT_BIN, ['api', 'watch', '--socket', socketPath, '--out-dir', watchDir], /wrote /);
    closers.push(() => watcher.stop());
    let osslOk = 0;
    const osslFailures: string[] = [];

    let ok = 0;
    const failures: string[] = [];
    let running = true;
    const osslLoop = (async () => {
      for (let i = 0; running; i++) {
        try {
          await opensslHandshake(await snapshot(watchDir, path.join(tmp.dir, 'ossl', String(i % 4))));
          osslOk++;
        } catch (e) {
          osslFailures.push(`${new Date().toISOString()} ${(e as Error).message}`);
        }
      }
    })();
    const loop = (async () => {
      while (running) {
        const began = Date.now();
        try {
          await handshake();
          ok++;
        } catch (e) {
          failures.push(`${new Date().toISOString()} ${(e as Error).message}`);
        }
        await new Promise((r) => setTimeout(r, Math.max(0, 100 - (Date.now() - began))));
      }
    })();

    const lc = t.ca.lifecycle;
    const idsOf = (s: X509Source) => chainAuthorityIds(s.getX509Svid().chain);
    const both = (pred: (ids: readonly string[]) => boolean) => pred(idsOf(serverSource)) && pred(idsOf(clientSource));
    const phases: string[] = [];
    const phase = (name: string) => phases.push(`${name} at ${ok} handshakes`);
    try {
      await waitFor(() => ok >= 10, 10_000, 'the first handshakes');

      // 1. Intermediate rotation (what the automatic schedule does at 1/2 and 5/6).
      const inter1 = activeOf(lc.snapshot, 'x509-intermediate')!;
      const inter2 = (await lc.prepare('x509-intermediate', { caller: 'test' })).prepared;
      await lc.activate('x509-intermediate', inter2.id, { caller: 'test' });
      await waitFor(() => both((ids) => ids[0] === inter2.id), 3 * SVID_TTL_SECONDS * 1000, 'SVIDs from the new intermediate');
      phase(`intermediate ${inter1.id.slice(0, 8)} -> ${inter2.id.slice(0, 8)}`);

      // 2. Root rotation: trust first, acknowledged by the agent, then signing.
      const root1 = activeOf(lc.snapshot, 'x509-root')!;
      const p = await lc.prepare('x509-root', { caller: 'test' });
      const root2 = p.prepared;
      const inter3 = p.alsoPrepared[0]!;
      await waitFor(() => serverSource.getBundle('example.org')!.authorities.length === 2 && clientSource.getBundle('example.org')!.authorities.length === 2, 5_000, 'the new root at both services');
      await waitFor(async () => acknowledgements(lc.snapshot.authorities.find((a) => a.id === root2.id)!, await lc.fleet()).missing.length === 0, 5_000, 'the agent to acknowledge');
      await lc.activate('x509-root', root2.id, { caller: 'test' });
      // New SVIDs come with the intermediate cross-signed by the old root.
      await waitFor(() => both((ids) => ids[0] === inter3.id && ids.includes(root1.id)), 3 * SVID_TTL_SECONDS * 1000, 'SVIDs with the cross-signed chain');
      phase(`root ${root1.id.slice(0, 8)} -> ${root2.id.slice(0, 8)}`);

      // 3. Emergency: taint the old root; everything chained to it is replaced, then it is revoked.
      await lc.taint('x509-root', root1.id, { caller: 'test' });
      await waitFor(() => both((ids) => ids[0] === inter3.id && ids.includes(root2.id) && !ids.includes(root1.id)), 10_000, 'SVIDs chained to the new root only');
      await waitFor(async () => outstanding(root1.id, await lc.fleet()).credentials === 0, 10_000, 'no credential outstanding for the old root');
      phase('old root tainted, nothing outstanding');
      await lc.revoke('x509-root', root1.id, { caller: 'test' });
      await waitFor(() => serverSource.getBundle('example.org')!.authorities.length === 1 && clientSource.getBundle('example.org')!.authorities.length === 1, 5_000, 'the old root to leave both bundles');
      phase('old root revoked');
      const after = ok;
      await waitFor(() => ok >= after + 20, 10_000, 'handshakes after the revocation');
    } finally {
      running = false;
      await loop;
      await osslLoop;
    }
    console.log(`handshake loop: ${ok} handshakes (spiffe/ helpers), ${failures.length} failed; ${osslOk} openssl s_server/s_client handshakes, ${osslFailures.length} failed; ${phases.join('; ')}`);
    expect(failures).toEqual([]);
    expect(osslFailures).toEqual([]);
    expect(osslOk).toBeGreaterThan(20);
    expect(rejected).toEqual([]);
    expect(ok).toBeGreaterThan(100);
  }, 120_000);
});
