/**
 * High availability, judged by handshakes: three CA server processes on one
 * throwaway PostgreSQL, two agents (each with all three addresses, in
 * different orders) and two services handshaking every 100 ms with SVIDs
 * that live 16 seconds. Intermediates live 80 seconds, so the automatic
 * rotation replaces the signing intermediate every 20 seconds (when less
 * than a minute of it is left). Then:
 *
 * 1. the server doing the rotation is SIGKILLed: another takes over;
 * 2. an entry created through one server reaches an agent connected to
 *    another within a few seconds, and so does a new root;
 * 3. the server an agent is connected to is SIGKILLed: the agent moves on;
 * 4. the rotator is SIGKILLed in the middle of a rotation (its new keys
 *    saved, the records not committed): another server rolls the half
 *    rotation back and rotates.
 *
 * Killed servers are restarted, as an operator would. Not one handshake
 * may fail, and the audit chain stays one intact chain.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from '../agent/agent.js';
import { buildAgentConfig } from '../agent/config/config.js';
import { chainAuthorityIds } from '../agent/push/chain-ids.js';
import { verifyAuditChain } from '../ca/audit/verify-chain.js';
import { openPostgresStore } from '../ca/store/postgres.js';
import { Entry } from '../proto/gen/brevis/ca/v1/types.js';
import { authorizeId } from '../spiffe/authorize.js';
import { createMtlsServer, tlsClientOptions } from '../spiffe/mtls.js';
import { handshakeOnce } from './support/tls-probe.js';
import { certsToPem } from '../spiffe/pem.js';
import { X509Source, pickSvidById } from '../spiffe/x509-source.js';
import { call } from './support/ca-harness.js';
import { startHaCluster, type CaServer, type HaCluster } from './support/ha-cluster.js';
import { waitFor } from './support/agent-harness.js';

const TD = 'example.org';
const SERVER = `spiffe://${TD}/svc/server`;
const CLIENT = `spiffe://${TD}/svc/client`;
const SVID_TTL_SECONDS = 16;

/** An agent logger that also remembers which CA server the agent moved to. */
function trackingLogger(): { logger: Logger; current: (initial: string) => string; moves: string[] } {
  const moves: string[] = [];
  const stream = {
    write(line: string) {
      try {
        const o = JSON.parse(line) as { msg?: string; to?: string; from?: string };
        if (o.msg?.startsWith('CA server unreachable') && o.to) moves.push(o.to);
      } catch {
        // not JSON: ignore
      }
    },
  };
  return { logger: pino({ level: 'info' }, stream), moves, current: (initial) => moves[moves.length - 1] ?? initial };
}

describe('HA: three CA servers on PostgreSQL, SIGKILLed one at a time', () => {
  const closers: Array<() => unknown> = [];
  afterAll(async () => {
    for (const c of closers.reverse()) await c();
  });

  it('keeps every workload handshake succeeding while servers die, hands the rotation over, and spreads changes to agents on other servers', async () => {
    const cluster: HaCluster = await startHaCluster(3, {
      intermediateTtl: '80s',
      x509SvidTtl: '30s',
      x509SvidMinTtl: '1s',
      x509SvidMaxTtl: '60s',
      agentSvidTtl: '60s',
      logLevel: 'info',
    });
    closers.push(() => cluster.close());
    const [ca1, ca2, ca3] = cluster.servers as [CaServer, CaServer, CaServer];
    const admin = (s: CaServer) => cluster.admin(s);

    // Agents: A prefers ca1, B prefers ca2; both know all three.
    const bundle = await call<object, { bundle: { x509Authorities: Buffer[] } }>(admin(ca3), 'getBundle', {});
    const bundleFile = path.join(cluster.dir, 'bootstrap.pem');
    writeFileSync(bundleFile, certsToPem(bundle.bundle.x509Authorities));
    const uid = `unix:uid:${process.getuid!()}`;
    const startOne = async (name: string, servers: CaServer[]) => {
      const tok = await call<object, { token: string; agentId: string }>(admin(servers[0]!), 'createJoinToken', { agentId: '', ttlSeconds: 0 });
      const dir = path.join(cluster.dir, name);
      mkdirSync(dir);
      const track = trackingLogger();
      const config = buildAgentConfig({
        server: servers.map((s) => s.address).join(','),
        trustDomain: TD,
        trustBundle: bundleFile,
        dataDir: path.join(dir, 'data'),
        socket: path.join(dir, 'agent.sock'),
        joinToken: tok.token,
        // Long: only push notices (relayed between servers) make an agent sync early.
        syncInterval: '30s',
      });
      const agent: RunningAgent = await startAgent(config, { logger: track.logger });
      closers.push(() => agent.close());
      return { agent, agentId: tok.agentId, connected: () => track.current(servers[0]!.address), moves: track.moves };
    };
    const a = await startOne('agent-a', [ca1, ca2, ca3]);
    const b = await startOne('agent-b', [ca2, ca3, ca1]);
    const entry = (via: CaServer, spiffeId: string, parentId: string) =>
      call(admin(via), 'createEntry', { entry: Entry.fromPartial({ spiffeId, parentId, selectors: [{ type: 'unix', value: uid.slice(5) }], x509SvidTtl: SVID_TTL_SECONDS }) });
    await entry(ca1, SERVER, a.agentId);
    await entry(ca2, CLIENT, b.agentId);
    await waitFor(() => a.agent.cache.isReady() && a.agent.cache.svidsFor(new Set([uid])).length === 1, 15_000, 'the server SVID');
    await waitFor(() => b.agent.cache.isReady() && b.agent.cache.svidsFor(new Set([uid])).length === 1, 15_000, 'the client SVID');

    const serverSource = await X509Source.create({ socketPath: a.agent.socketPath, picker: pickSvidById(SERVER) });
    closers.push(() => serverSource.close());
    const clientSource = await X509Source.create({ socketPath: b.agent.socketPath, picker: pickSvidById(CLIENT) });
    closers.push(() => clientSource.close());
    const rejected: string[] = [];
    const server = createMtlsServer(serverSource, authorizeId(CLIENT), (socket) => socket.end('ok'), { onReject: (err) => rejected.push(err.message) });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise<void>((r) => server.close(() => r())));
    const port = (server.address() as AddressInfo).port;
    const handshake = () => handshakeOnce(tlsClientOptions(clientSource, authorizeId(SERVER)), port, TD);
    let ok = 0;
    const failures: string[] = [];
    const serials = new Set<string>();
    let running = true;
    const loop = (async () => {
      while (running) {
        const began = Date.now();
        try {
          await handshake();
          ok++;
          serials.add(serverSource.getX509Svid().chain[0]!.toString('hex').slice(-64));
          serials.add(clientSource.getX509Svid().chain[0]!.toString('hex').slice(-64));
        } catch (e) {
          failures.push(`${new Date().toISOString()} ${(e as Error).message}`);
        }
        await new Promise((r) => setTimeout(r, Math.max(0, 100 - (Date.now() - began))));
      }
    })();

    const events: string[] = [];
    const note = (what: string) => events.push(`${what} at ${ok} handshakes`);
    const leader = async () => (await cluster.leader()) ?? undefined;
    const journal = () =>
      cluster.pg.sql<{ seq: number; action: string; caller: string; status: string; detail: string | null; plan: string }>(
        cluster.url,
        "SELECT seq, action, caller, status, detail, plan FROM authority_journal WHERE kind = 'x509-intermediate' ORDER BY seq",
      );
    try {
      await waitFor(() => ok >= 10, 15_000, 'the first handshakes');

      // 1. SIGKILL the server doing the rotation: another takes over, and rotates in turn.
      const rotator = await waitFor(leader, 5_000, 'the server doing the rotation');
      await cluster.kill(rotator);
      const killedAt = Date.now();
      note(`killed ${rotator.name} (the rotator)`);
      const successor = await waitFor(leader, 10_000, 'another server to take the rotation over');
      note(`${successor.name} took the rotation over after ${Date.now() - killedAt} ms`);
      await cluster.start(rotator);

      // 2. Changes made on one server reach agents connected to another, within a few seconds.
      const bServer = cluster.servers.find((s) => s.address === b.connected())!;
      const elsewhere = cluster.servers.find((s) => s !== bServer && s.daemon)!;
      const extra = `spiffe://${TD}/svc/extra`;
      let began = Date.now();
      await entry(elsewhere, extra, b.agentId);
      await waitFor(() => b.agent.cache.svidsFor(new Set([uid])).some((s) => s.spiffeId === extra), 5_000, `the entry made on ${elsewhere.name} at agent B (on ${bServer.name})`);
      note(`entry made on ${elsewhere.name} reached agent B on ${bServer.name} in ${Date.now() - began} ms`);
      const aServer = cluster.servers.find((s) => s.address === a.connected())!;
      const other = cluster.servers.find((s) => s !== aServer && s.daemon)!;
      began = Date.now();
      const root = await call<object, { authority: { id: string } }>(cluster.authority(other), 'prepareAuthority', { kind: 'x509-root', keyType: '' });
      await waitFor(() => a.agent.cache.bundle().length === 2, 5_000, `the root prepared on ${other.name} at agent A (on ${aServer.name})`);
      note(`root ${root.authority.id.slice(0, 8)} prepared on ${other.name} reached agent A on ${aServer.name} in ${Date.now() - began} ms`);

      // 3. SIGKILL the server agent B is connected to: B mints on another.
      const victim = cluster.servers.find((s) => s.address === b.connected())!;
      const clientBefore = clientSource.getX509Svid().chain[0]!;
      await cluster.kill(victim);
      note(`killed ${victim.name} (agent B's server)`);
      await waitFor(() => b.connected() !== victim.address && !clientSource.getX509Svid().chain[0]!.equals(clientBefore), 30_000, 'agent B to mint on another server');
      note(`agent B moved to ${b.connected()} and minted there`);
      await cluster.start(victim);
      // Its change stream followed it: a change made on yet another server still arrives at once.
      const bNow = cluster.servers.find((s) => s.address === b.connected())!;
      const third = cluster.servers.find((s) => s !== bNow && s.daemon)!;
      began = Date.now();
      await entry(third, `spiffe://${TD}/svc/extra2`, b.agentId);
      await waitFor(() => b.agent.cache.svidsFor(new Set([uid])).some((s) => s.spiffeId === `spiffe://${TD}/svc/extra2`), 3_000, `the entry made on ${third.name} at agent B (now on ${bNow.name})`);
      note(`entry made on ${third.name} reached agent B on ${bNow.name} in ${Date.now() - began} ms`);

      // 4. SIGKILL the rotator in the middle of a rotation (keys saved, records not yet
      //    committed): ca1 is made the only server, armed to kill itself at that step,
      //    and the others come back as followers.
      await cluster.kill(ca1);
      // It may already die while starting, if it finds the intermediate due for replacement: start it again.
      for (let attempt = 1; !ca1.daemon; attempt++) {
        await cluster.start(ca1, { BREVIS_CRASH_AT: 'create:keys-saved' }).catch((e: unknown) => {
          if (attempt >= 3) throw e;
        });
      }
      await Promise.all([cluster.kill(ca2), cluster.kill(ca3)]);
      await waitFor(async () => (await leader()) === ca1, 10_000, 'ca1 to lead');
      await Promise.all([cluster.start(ca2), cluster.start(ca3)]);
      note('ca1 alone leads, armed; ca2 and ca3 back as followers');
      const crashed = await waitFor(async () => (await journal()).find((j) => j.action === 'create' && j.status === 'rolled_back'), 60_000, 'the interrupted rotation to be rolled back');
      note(`ca1 died during rotation (journal ${crashed.seq})`);
      const redone = await waitFor(async () => (await journal()).find((j) => j.action === 'create' && j.status === 'done' && j.seq > crashed.seq), 30_000, 'the rotation to complete on another server');
      const [created] = await cluster.pg.sql<{ authority_id: string }>(cluster.url, 'SELECT authority_id FROM authority_journal WHERE seq = $1', [redone.seq]);
      note(`journal ${redone.seq}: ${created!.authority_id.slice(0, 8)} created by another server`);
      expect(crashed.caller).toBe('ca:rotator');
      expect(redone.caller).toBe('ca:rotator');
      const orphanRefs = (JSON.parse(crashed.plan) as { keyRefs: string[] }).keyRefs;
      expect(await cluster.pg.sql(cluster.url, 'SELECT ref FROM ca_keys WHERE ref = ANY($1::text[])', [orphanRefs])).toEqual([]);
      if (!ca1.daemon) await cluster.start(ca1);
      // Workloads get SVIDs from the intermediate the rotation produced (or a later one).
      await waitFor(
        async () => {
          const inters = await cluster.pg.sql<{ id: string }>(cluster.url, "SELECT id FROM authorities WHERE kind = 'x509-intermediate' AND created_at >= (SELECT created_at FROM authorities WHERE id = $1)", [created!.authority_id]);
          const ids = new Set(inters.map((i) => i.id));
          return ids.has(chainAuthorityIds(serverSource.getX509Svid().chain)[0]!) && ids.has(chainAuthorityIds(clientSource.getX509Svid().chain)[0]!);
        },
        30_000,
        'SVIDs from the new intermediate',
      );
      note('both services hold SVIDs from the new intermediate');
      const after = ok;
      await waitFor(() => ok >= after + 20, 15_000, 'handshakes after the handover');
    } catch (e) {
      // Say what happened before the timeout: the steps, the journal, the servers' complaints.
      const journal = await cluster.pg.sql(cluster.url, 'SELECT seq, kind, action, authority_id, caller, status, started_ms, detail FROM authority_journal ORDER BY seq');
      const complaints = cluster.servers.flatMap((s) => (s.log + (s.daemon?.output() ?? '')).split('\n').filter((l) => /"level":(40|50|60)/.test(l)).map((l) => `${s.name}: ${l.slice(0, 400)}`));
      console.log(`events: ${events.join('; ')}\njournal: ${JSON.stringify(journal, null, 1)}\nwarnings:\n${complaints.slice(-40).join('\n')}`);
      throw e;
    } finally {
      running = false;
      await loop;
    }
    console.log(`HA handshake loop: ${ok} handshakes, ${failures.length} failed, ${serials.size} SVIDs seen; ${events.join('; ')}`);
    expect(failures).toEqual([]);
    expect(rejected).toEqual([]);
    expect(ok).toBeGreaterThan(150);
    expect(serials.size).toBeGreaterThan(4);

    const store = await openPostgresStore(cluster.url);
    try {
      expect(await verifyAuditChain((afterSeq, limit) => store.readAuditChain({ afterSeq, limit }))).toMatchObject({ intact: true });
    } finally {
      await store.close();
    }
  }, 240_000);
});
