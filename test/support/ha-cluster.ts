/**
 * A cluster of CA server processes on one throwaway PostgreSQL, for the
 * HA tests: start, SIGKILL and restart any server (same data directory,
 * same port), find the one doing the singleton work, and admin clients on
 * any server's socket.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { AdminServiceClient } from '../../proto/gen/brevis/ca/v1/admin.js';
import { AuthorityServiceClient } from '../../proto/gen/brevis/ca/v1/authority.js';
import { LOCK_CLASS, LOCKS } from '../../ca/store/postgres-locks.js';
import { CA_BIN, requireBuilt, startDaemon, type Daemon } from './processes.js';
import { startTestPostgres, type TestPostgres } from './postgres.js';

export interface CaServer {
  readonly name: string;
  readonly port: number;
  readonly address: string;
  readonly adminSocket: string;
  readonly dataDir: string;
  daemon: Daemon | null;
  /** Output of every run of this server, killed ones included. */
  log: string;
}

export interface HaCluster {
  readonly pg: TestPostgres;
  readonly url: string;
  readonly dir: string;
  readonly servers: CaServer[];
  readonly addresses: string[];
  /** Starts (or restarts) a server; `env` adds environment variables (e.g. BREVIS_CRASH_AT). */
  start(s: CaServer, env?: NodeJS.ProcessEnv): Promise<void>;
  kill(s: CaServer): Promise<void>;
  /** The server holding the singleton lock now, or null. */
  leader(): Promise<CaServer | null>;
  admin(s: CaServer): AdminServiceClient;
  authority(s: CaServer): AuthorityServiceClient;
  close(): Promise<void>;
}

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

/** Starts PostgreSQL and `n` CA servers (all at once) with the same config and KEK. */
export async function startHaCluster(n: number, config: Record<string, unknown>): Promise<HaCluster> {
  requireBuilt();
  const pg = await startTestPostgres();
  const url = await pg.createDatabase();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'brevis-ha-'));
  const kekFile = path.join(dir, 'kek');
  writeFileSync(kekFile, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  const configFile = path.join(dir, 'ca.json');
  writeFileSync(configFile, JSON.stringify({ trustDomain: 'example.org', datastore: url, kekFile, ...config }));
  const servers: CaServer[] = [];
  for (let i = 1; i <= n; i++) {
    const dataDir = path.join(dir, `ca${i}`);
    mkdirSync(dataDir, { mode: 0o700 });
    const port = await freePort();
    servers.push({ name: `ca${i}`, port, address: `127.0.0.1:${port}`, adminSocket: path.join(dataDir, 'admin.sock'), dataDir, daemon: null, log: '' });
  }
  const clients: grpc.Client[] = [];
  const cluster: HaCluster = {
    pg,
    url,
    dir,
    servers,
    addresses: servers.map((s) => s.address),
    async start(s, env = {}) {
      const d = await startDaemon(CA_BIN, ['run', '--config', configFile, '--data-dir', s.dataDir, '--listen', s.address, '--admin-socket', s.adminSocket], /CA serving/, env, 60_000);
      s.daemon = d;
      const before = s.log;
      d.proc.on('exit', () => {
        s.log = before + d.output();
        if (s.daemon === d) s.daemon = null;
      });
    },
    async kill(s) {
      const d = s.daemon;
      if (!d) return;
      s.daemon = null;
      await d.stop('SIGKILL');
    },
    async leader() {
      const rows = await pg.sql<{ application_name: string }>(
        url,
        `SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.classid = $1 AND l.objid = $2 AND l.granted`,
        [LOCK_CLASS, LOCKS.singleton],
      );
      const pid = Number(/:(\d+)$/.exec(rows[0]?.application_name ?? '')?.[1]);
      return servers.find((s) => s.daemon?.proc.pid === pid) ?? null;
    },
    admin(s) {
      const c = new AdminServiceClient(`unix://${s.adminSocket}`, grpc.credentials.createInsecure());
      clients.push(c);
      return c;
    },
    authority(s) {
      const c = new AuthorityServiceClient(`unix://${s.adminSocket}`, grpc.credentials.createInsecure());
      clients.push(c);
      return c;
    },
    async close() {
      for (const c of clients) c.close();
      await Promise.all(servers.map((s) => s.daemon?.stop('SIGTERM')));
      await pg.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await Promise.all(servers.map((s) => cluster.start(s)));
  } catch (e) {
    await cluster.close();
    throw e;
  }
  return cluster;
}
