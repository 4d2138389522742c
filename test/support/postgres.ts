/**
 * A throwaway PostgreSQL server for tests: `initdb` in a temp dir, `pg_ctl
 * start` on a loopback high port with its Unix socket in the same dir, one
 * fresh database per test (`createDatabase`), everything removed by `stop`.
 *
 * initdb refuses to run as root, so as root the server runs as the
 * `postgres` system user (setpriv) and the temp dir is handed to it.
 * The server binaries are found in $BREVIS_PG_BIN, /usr/lib/postgresql/<newest>/bin
 * (Debian's postgresql package) or on PATH.
 */
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import type { PgDb } from '../../ca/store/postgres-db.js';

const run = promisify(execFile);

export interface TestPostgres {
  /** Loopback TCP port of the server. */
  readonly port: number;
  /** Data and socket directory (removed by `stop`). */
  readonly dir: string;
  /** Superuser connection URL of `database` (default: the `postgres` maintenance database). */
  url(database?: string): string;
  /** Creates an empty database with a unique name; returns its URL. */
  createDatabase(): Promise<string>;
  /** Runs one statement as superuser on `database`'s URL (tampering, inspection). */
  sql<T = Record<string, unknown>>(url: string, text: string, params?: unknown[]): Promise<T[]>;
  /** Runs a client program of the server's installation (pg_dump, pg_restore, psql); rejects with its stderr. */
  client(program: string, args: string[]): Promise<string>;
  /** Stops the server at once and deletes its directory. Idempotent. */
  stop(): Promise<void>;
}

/** The directory holding initdb and pg_ctl, or null when PostgreSQL is not installed. */
export function findPostgresBin(): string | null {
  const fromEnv = process.env.BREVIS_PG_BIN;
  if (fromEnv && fs.existsSync(path.join(fromEnv, 'pg_ctl'))) return fromEnv;
  const debian = '/usr/lib/postgresql';
  if (fs.existsSync(debian)) {
    const versions = fs
      .readdirSync(debian)
      .filter((v) => fs.existsSync(path.join(debian, v, 'bin', 'pg_ctl')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions[0]) return path.join(debian, versions[0], 'bin');
  }
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && fs.existsSync(path.join(dir, 'pg_ctl')) && fs.existsSync(path.join(dir, 'initdb'))) return dir;
  }
  return null;
}

/** True when tests can start a server here. */
export const postgresAvailable: boolean = findPostgresBin() !== null;

const SUPERUSER = 'brevis';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** The argv prefix that runs a command as the server's owner (root cannot run PostgreSQL). */
function asOwner(): { prefix: string[]; uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null;
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
  return { prefix: ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups'], uid, gid };
}

async function runAs(owner: ReturnType<typeof asOwner>, file: string, args: string[]): Promise<void> {
  const [cmd, ...rest] = owner ? [...owner.prefix, file, ...args] : [file, ...args];
  try {
    await run(cmd!, rest, { env: { ...process.env, LC_ALL: 'C.UTF-8' } });
  } catch (e) {
    const err = e as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${path.basename(file)} failed: ${err.stderr || err.stdout || err.message}`);
  }
}

/**
 * Starts a server. Extra `settings` become `-c name=value` options (for
 * example `{ max_connections: '200' }`).
 */
export async function startTestPostgres(settings: Record<string, string> = {}): Promise<TestPostgres> {
  const bin = findPostgresBin();
  if (!bin) throw new Error('PostgreSQL server binaries not found (apt-get install postgresql, or set BREVIS_PG_BIN)');
  const owner = asOwner();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'brevis-pg-'));
  const data = path.join(dir, 'data');
  if (owner) fs.chownSync(dir, owner.uid, owner.gid);
  await runAs(owner, path.join(bin, 'initdb'), ['-D', data, '-U', SUPERUSER, '--auth=trust', '-E', 'UTF8', '--no-sync', '--no-instructions']);
  const options = {
    listen_addresses: '127.0.0.1',
    unix_socket_directories: dir,
    // A throwaway server: durability buys nothing and costs seconds.
    fsync: 'off',
    synchronous_commit: 'off',
    full_page_writes: 'off',
    max_connections: '200',
    // Several test files run their own server at once: keep each small.
    shared_buffers: '16MB',
    ...settings,
  };
  let port = 0;
  for (let attempt = 0; ; attempt++) {
    port = await freePort();
    const o = Object.entries({ ...options, port: String(port) })
      .map(([k, v]) => `-c ${k}=${v}`)
      .join(' ');
    try {
      await runAs(owner, path.join(bin, 'pg_ctl'), ['-D', data, '-l', path.join(dir, 'server.log'), '-w', '-t', '30', '-o', o, 'start']);
      break;
    } catch (e) {
      // Another process may have taken the port between the probe and the bind.
      if (attempt >= 3) {
        const log = fs.existsSync(path.join(dir, 'server.log')) ? fs.readFileSync(path.join(dir, 'server.log'), 'utf8') : '';
        fs.rmSync(dir, { recursive: true, force: true });
        throw new Error(`${(e as Error).message}\n${log.slice(-2000)}`);
      }
    }
  }
  let databases = 0;
  let stopped: Promise<void> | undefined;
  const url = (database = 'postgres') => `postgres://${SUPERUSER}@127.0.0.1:${port}/${database}`;
  const sql = async <T>(target: string, text: string, params: unknown[] = []): Promise<T[]> => {
    const client = new pg.Client({ connectionString: target });
    await client.connect();
    try {
      return (await client.query(text, params)).rows as T[];
    } finally {
      await client.end();
    }
  };
  return {
    port,
    dir,
    url,
    sql,
    async client(program, args) {
      try {
        return (await run(path.join(bin, program), args, { maxBuffer: 64 * 1024 * 1024 })).stdout;
      } catch (e) {
        throw new Error(`${program} failed: ${(e as { stderr?: string }).stderr || (e as Error).message}`);
      }
    },
    async createDatabase() {
      const name = `t${process.pid}_${++databases}`;
      await sql(url(), `CREATE DATABASE ${name}`);
      return url(name);
    },
    stop() {
      stopped ??= (async () => {
        await runAs(owner, path.join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => undefined);
        fs.rmSync(dir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}

/**
 * `db` as the HA loops use it (`connectDedicated`, `run`), with `hook`
 * called once a query on a dedicated connection whose text matches `match`
 * has been answered by the real server and before its caller sees the
 * answer: the window in which to race a close() against that query.
 */
export function afterDedicatedQuery(db: PgDb, match: RegExp, hook: () => void): PgDb {
  return {
    run: (sql: string, params: unknown[]) => db.run(sql, params),
    connectDedicated: async (purpose: string, timeoutMs?: number) => {
      const client = await db.connectDedicated(purpose, timeoutMs);
      const query = client.query.bind(client) as (...a: unknown[]) => Promise<unknown>;
      (client as unknown as { query: (...a: unknown[]) => Promise<unknown> }).query = async (...a: unknown[]) => {
        const r = await query(...a);
        if (match.test(String(a[0]))) hook();
        return r;
      };
      return client;
    },
  } as unknown as PgDb;
}

/** Resolves with `p`, or rejects with "`what` hung" when it has not settled within `ms`. */
export async function settlesWithin<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} hung`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
