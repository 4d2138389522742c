/**
 * Crash safety of the authority life cycle: a real CA process is killed
 * with SIGKILL (BREVIS_CRASH_AT) at each step of each kind of transition,
 * then started again. It must come back consistent: exactly one active
 * authority per kind, no pending journal entry, no key file without its
 * authority, the transition either complete or rolled back, the audit
 * chain intact, and no serial number ever issued twice.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sqlite3 from 'sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CA_BIN, requireBuilt, runCliAsync, startDaemon, type Daemon } from './support/processes.js';

interface Shown {
  kind: string;
  id: string;
  state: string;
}

function query<T>(file: string, sql: string): Promise<T[]> {
  return new Promise((resolve, reject) => {
    const db = new sqlite3.Database(file, sqlite3.OPEN_READONLY, (err) => {
      if (err) return reject(err);
      db.all<T>(sql, (e, rows) => db.close(() => (e ? reject(e) : resolve(rows))));
    });
  });
}

describe('crash safety of rotation', () => {
  let root: string;
  beforeAll(() => {
    requireBuilt();
    root = mkdtempSync(path.join(os.tmpdir(), 'brevis-crash-'));
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  /** A CA on its own data directory that can be crashed and started again. */
  function rig(name: string) {
    const dataDir = path.join(root, name);
    const sock = path.join(dataDir, 'admin.sock');
    let ca: Daemon | null = null;
    const cli = async (...args: string[]) => runCliAsync(CA_BIN, [...args, '--socket', sock]);
    return {
      dataDir,
      cli,
      async start(crashAt?: string) {
        ca = await startDaemon(CA_BIN, ['run', '--data-dir', dataDir, '--trust-domain', 'crash.example', '--listen', '127.0.0.1:0'], /CA serving/, crashAt ? { BREVIS_CRASH_AT: crashAt } : {});
      },
      /** Waits for the CA to die (the crash) and returns its exit signal. */
      async died(): Promise<string | null> {
        const p = ca!.proc;
        if (p.exitCode === null && p.signalCode === null) await new Promise((r) => p.once('exit', r));
        return p.signalCode;
      },
      async stop() {
        await ca?.stop();
      },
      async show(): Promise<Shown[]> {
        const r = await cli('authority', 'show', '--json');
        expect(r.status, r.stderr).toBe(0);
        return (JSON.parse(r.stdout) as { authorities: Shown[] }).authorities;
      },
      async mint(n: number) {
        for (let i = 0; i < n; i++) {
          const r = await cli('x509', 'mint', '--spiffe-id', `spiffe://crash.example/w/${i}`, '--out-dir', path.join(dataDir, '..', `${name}-out`));
          expect(r.status, r.stderr).toBe(0);
        }
      },
      /** Every consistency property that must hold after a restart. */
      async checkConsistent() {
        const shown = await this.show();
        for (const kind of ['x509-root', 'x509-intermediate', 'ssh-user', 'ssh-host']) {
          expect(shown.filter((a) => a.kind === kind && a.state === 'active'), kind).toHaveLength(1);
        }
        const db = path.join(dataDir, 'brevis.db');
        expect(await query(db, "SELECT seq FROM authority_journal WHERE status = 'pending'")).toEqual([]);
        const refs = new Set((await query<{ key_ref: string }>(db, 'SELECT key_ref FROM authorities')).map((r) => r.key_ref));
        const files = readdirSync(path.join(dataDir, 'keys')).filter((f) => f.endsWith('.key')).map((f) => f.slice(0, -4));
        expect(files.filter((f) => !refs.has(f)), 'key files without an authority').toEqual([]);
        const verify = await cli('audit', 'verify');
        expect(verify.status, verify.stderr).toBe(0);
        expect(verify.stdout).toMatch(/^audit trail intact: \d+ records/);
        const serials = (await query<{ serial: string }>(db, "SELECT serial FROM audit WHERE action = 'x509.mint' AND serial IS NOT NULL")).map((r) => r.serial);
        expect(serials.length).toBeGreaterThan(0);
        expect(new Set(serials).size, 'a serial was issued twice').toBe(serials.length);
        return shown;
      },
    };
  }

  const prepareSteps = ['prepare:journaled', 'prepare:keys-saved', 'prepare:in-transaction'];
  for (const step of prepareSteps) {
    it(`rolls back a root preparation killed at ${step}`, async () => {
      const r = rig(step.replace(':', '-'));
      await r.start();
      await r.mint(2);
      const before = await r.show();
      await r.stop();
      await r.start(step);
      const res = await r.cli('authority', 'prepare', '--kind', 'x509-root');
      expect(res.status).not.toBe(0);
      expect(await r.died()).toBe('SIGKILL');
      await r.start();
      try {
        const after = await r.checkConsistent();
        // Nothing was prepared: the same authorities as before.
        expect(after.map((a) => `${a.id}:${a.state}`)).toEqual(before.map((a) => `${a.id}:${a.state}`));
        const audit = JSON.parse((await r.cli('audit', 'list', '--json')).stdout) as Array<{ action: string; outcome: string; caller: string; detail: string }>;
        expect(audit.at(-1)).toMatchObject({ action: 'authority.prepare', outcome: 'failure', caller: 'ca:start' });
        expect(audit.at(-1)!.detail).toMatch(/interrupted/);
        // The kind works again, and minting never reuses a serial.
        expect((await r.cli('authority', 'prepare', '--kind', 'x509-root')).status).toBe(0);
        await r.mint(2);
        await r.checkConsistent();
      } finally {
        await r.stop();
      }
    });
  }

  it('keeps a root preparation killed right after its commit', async () => {
    const r = rig('prepare-committed');
    await r.start('prepare:committed');
    await r.mint(1);
    await r.cli('authority', 'prepare', '--kind', 'x509-root');
    expect(await r.died()).toBe('SIGKILL');
    await r.start();
    try {
      const after = await r.checkConsistent();
      expect(after.filter((a) => a.state === 'prepared').map((a) => a.kind)).toEqual(['x509-root', 'x509-intermediate']);
      expect((await r.cli('bundle', 'show')).stdout.match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
    } finally {
      await r.stop();
    }
  });

  for (const [step, committed] of [
    ['activate:before-commit', false],
    ['activate:in-transaction', false],
    ['activate:committed', true],
  ] as const) {
    it(`leaves a root activation killed at ${step} ${committed ? 'complete' : 'undone'}`, async () => {
      const r = rig(step.replace(':', '-'));
      await r.start();
      await r.mint(1);
      const id = (await r.cli('authority', 'prepare', '--kind', 'x509-root')).stdout.trim();
      const oldRoot = (await r.show()).find((a) => a.kind === 'x509-root' && a.state === 'active')!.id;
      await r.stop();
      await r.start(step);
      const res = await r.cli('authority', 'activate', '--kind', 'x509-root', '--id', id);
      expect(res.status).not.toBe(0);
      expect(await r.died()).toBe('SIGKILL');
      await r.start();
      try {
        const after = await r.checkConsistent();
        const active = after.find((a) => a.kind === 'x509-root' && a.state === 'active')!.id;
        expect(active).toBe(committed ? id : oldRoot);
        expect(after.find((a) => a.id === (committed ? oldRoot : id))!.state).toBe(committed ? 'retired' : 'prepared');
        await r.mint(2);
        await r.checkConsistent();
      } finally {
        await r.stop();
      }
    });
  }

  for (const step of ['taint:in-transaction', 'revoke:in-transaction']) {
    it(`leaves the authority unchanged when killed at ${step}`, async () => {
      const r = rig(step.replace(':', '-'));
      await r.start();
      await r.mint(1);
      const id = (await r.cli('authority', 'prepare', '--kind', 'x509-intermediate')).stdout.trim();
      const old = (await r.show()).find((a) => a.kind === 'x509-intermediate' && a.state === 'active')!.id;
      expect((await r.cli('authority', 'activate', '--kind', 'x509-intermediate', '--id', id)).status).toBe(0);
      if (step.startsWith('revoke')) expect((await r.cli('authority', 'taint', '--kind', 'x509-intermediate', '--id', old)).status).toBe(0);
      const stateBefore = (await r.show()).find((a) => a.id === old)!.state;
      await r.stop();
      await r.start(step);
      const verb = step.split(':')[0]!;
      await r.cli('authority', verb, '--kind', 'x509-intermediate', '--id', old, ...(verb === 'revoke' ? ['--force'] : []));
      expect(await r.died()).toBe('SIGKILL');
      await r.start();
      try {
        const after = await r.checkConsistent();
        expect(after.find((a) => a.id === old)!.state).toBe(stateBefore);
      } finally {
        await r.stop();
      }
    });
  }

  it('starts cleanly after being killed while creating its first authorities', async () => {
    const r = rig('create');
    const killed = await runCliAsync(CA_BIN, ['run', '--data-dir', r.dataDir, '--trust-domain', 'crash.example', '--listen', '127.0.0.1:0'], { BREVIS_CRASH_AT: 'create:keys-saved' });
    expect(killed.status).toBe(-1);
    expect(killed.stderr).toContain('BREVIS_CRASH_AT: killing the CA at create:keys-saved');
    await r.start();
    try {
      await r.mint(1);
      await r.checkConsistent();
    } finally {
      await r.stop();
    }
  });
});
