/**
 * A real authority life cycle for tests: SQLite and key files in a temp
 * directory, a manual clock, and helpers that mint an SVID with whatever
 * signs now and judge chains with `openssl verify`.
 */
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { X509Minter } from '../../ca/issue/x509-minter.js';
import { KeyStore } from '../../ca/keys/keystore.js';
import { AuthorityLifecycle, type AuthorityLifecycleOptions } from '../../ca/rotation/lifecycle.js';
import { SqliteLifecycleStore } from '../../ca/rotation/lifecycle-store.js';
import { openSqliteStore, type SqliteStore } from '../../ca/store/sqlite.js';
import { ManualClock } from './manual-clock.js';

export const LTD = 'rotation.example';

export interface LifecycleRig {
  dir: string;
  clock: ManualClock;
  store: SqliteStore;
  ls: SqliteLifecycleStore;
  keys: KeyStore;
  lifecycle: AuthorityLifecycle;
  /** Closes and opens everything again on the same directory (a restart). */
  reopen(over?: Partial<AuthorityLifecycleOptions>): Promise<void>;
  mint(spiffeId?: string, ttlSeconds?: number): Promise<{ chain: Buffer[]; notAfter: Date }>;
  close(): Promise<void>;
  cleanup(): Promise<void>;
}

export async function openLifecycleRig(over: Partial<AuthorityLifecycleOptions> = {}, start = new Date('2030-01-01T00:00:00Z')): Promise<LifecycleRig> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'brevis-lifecycle-'));
  const clock = new ManualClock(start);
  const logger = pino({ level: process.env.BREVIS_TEST_LOG ?? 'silent' });
  const keys = new KeyStore({ dir: path.join(dir, 'keys') });
  const open = async (o: Partial<AuthorityLifecycleOptions>) => {
    const store = await openSqliteStore(path.join(dir, 'brevis.db'), { clock });
    const ls = new SqliteLifecycleStore(store.db);
    const lifecycle = await AuthorityLifecycle.open({
      lifecycleStore: ls,
      store,
      keys,
      clock,
      trustDomain: LTD,
      keyType: 'ec-p256',
      sshKeyType: 'ed25519',
      rootTtlSeconds: 365 * 86400,
      intermediateTtlSeconds: 6 * 3600,
      retire: { x509LeafSeconds: 3600 + 30, sshUserSeconds: 3600, sshHostSeconds: 8 * 3600 },
      agentSvidTtlSeconds: 3600,
      logger,
      ...o,
    });
    return { store, ls, lifecycle };
  };
  const first = await open(over);
  const rig: LifecycleRig = {
    dir,
    clock,
    keys,
    ...first,
    async reopen(o = {}) {
      await rig.store.close();
      Object.assign(rig, await open({ ...over, ...o }));
    },
    async mint(spiffeId = `spiffe://${LTD}/w`, ttlSeconds = 600) {
      const minter = new X509Minter({ authority: rig.lifecycle.x509, clock, backdateSeconds: 30 });
      const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const s = await minter.mint({ spiffeId, dnsNames: [], publicKey, ttlSeconds });
      return { chain: s.chain, notAfter: s.notAfter };
    },
    close: () => rig.store.close(),
    async cleanup() {
      await rig.store.close().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return rig;
}

export function pem(ders: readonly Uint8Array[]): string {
  return ders.map((d) => `-----BEGIN CERTIFICATE-----\n${Buffer.from(d).toString('base64').replace(/.{1,64}/g, '$&\n')}-----END CERTIFICATE-----\n`).join('');
}

/**
 * `openssl verify -x509_strict` of a leaf with its served intermediates
 * against `roots`, at `at` (the manual clock's time). Returns the output on
 * failure, '' on success.
 */
export function opensslVerify(dir: string, chain: readonly Buffer[], roots: readonly Buffer[], at: Date): string {
  const f = (name: string, ders: readonly Buffer[]) => {
    const p = path.join(dir, name);
    writeFileSync(p, pem(ders));
    return p;
  };
  const args = ['verify', '-x509_strict', '-purpose', 'sslclient', '-attime', String(Math.floor(at.getTime() / 1000)), '-CAfile', f('roots.pem', roots)];
  if (chain.length > 1) args.push('-untrusted', f('inter.pem', chain.slice(1)));
  args.push(f('leaf.pem', [chain[0]!]));
  try {
    execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    return '';
  } catch (e) {
    const err = e as { stdout?: Buffer; stderr?: Buffer };
    return `${err.stdout?.toString() ?? ''}${err.stderr?.toString() ?? ''}` || 'openssl verify failed';
  }
}
