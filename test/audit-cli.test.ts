import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sqlite3 from 'sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSince } from '../ca/cli/audit-commands.js';
import { CA_BIN, requireBuilt, runCli, startDaemon, type Daemon } from './support/processes.js';

function tamper(file: string, sql: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const db = new sqlite3.Database(file, sqlite3.OPEN_READWRITE, (err) => {
      if (err) return reject(err);
      db.exec(`DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete; ${sql}`, (e) => {
        db.close(() => (e ? reject(e) : resolve()));
      });
    });
  });
}

describe('brevis-ca audit', () => {
  let dir: string;
  let dataDir: string;
  let ca: Daemon | undefined;
  let sock: string;
  const cli = (...args: string[]) => runCli(CA_BIN, [...args, '--socket', sock]);
  const start = async () => {
    ca = await startDaemon(CA_BIN, ['run', '--data-dir', dataDir, '--trust-domain', 'audit.example', '--listen', '127.0.0.1:0'], /CA serving/);
  };

  beforeAll(async () => {
    requireBuilt();
    dir = mkdtempSync(path.join(os.tmpdir(), 'brevis-audit-cli-'));
    dataDir = path.join(dir, 'ca');
    sock = path.join(dataDir, 'admin.sock');
    await start();
  });
  afterAll(async () => {
    await ca?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('lists records with their hash chain as JSON and as lines, and filters by --since', () => {
    for (let i = 0; i < 3; i++) expect(cli('token', 'create').status).toBe(0);
    const r = cli('audit', 'list', '--json');
    expect(r.stderr).toBe('');
    const records = JSON.parse(r.stdout) as Array<{ seq: number; action: string; caller: string; prevHash: string; hash: string; spiffeId: string | null; timeMs: number }>;
    const tokens = records.filter((x) => x.action === 'token.create');
    expect(tokens).toHaveLength(3);
    expect(tokens[0]!.caller).toBe('admin:local');
    expect(records[0]!.prevHash).toBe('0'.repeat(64));
    for (let i = 1; i < records.length; i++) expect(records[i]!.prevHash).toBe(records[i - 1]!.hash);
    const lines = cli('audit', 'list').stdout.trim().split('\n');
    expect(lines).toHaveLength(records.length);
    expect(lines.at(-1)).toMatch(/^#\d+ {2}\S+Z {2}admin:local {2}token\.create {2}success/);
    const later = JSON.parse(cli('audit', 'list', '--json', '--since', new Date(records.at(-1)!.timeMs).toISOString()).stdout) as unknown[];
    expect(later.length).toBeGreaterThanOrEqual(1);
    expect(later.length).toBeLessThan(records.length + 1);
    expect(JSON.parse(cli('audit', 'list', '--json', '--since', '2999-01-01T00:00:00Z').stdout)).toEqual([]);
  });

  it('verifies an intact trail: exit 0 and the count', () => {
    const n = (JSON.parse(cli('audit', 'list', '--json').stdout) as unknown[]).length;
    const r = cli('audit', 'verify');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^audit trail intact: ${n} records \\(head #\\d+ [0-9a-f]{64}\\)`));
  });

  it('names the first broken record and exits non-zero after the database file was edited', async () => {
    await ca!.stop();
    await tamper(path.join(dataDir, 'brevis.db'), "UPDATE audit SET caller = 'someone-else' WHERE seq = 2");
    await start();
    const r = cli('audit', 'verify');
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toMatch(/^brevis-ca: audit trail broken at record #2: its contents do not match its hash.*\(1 records before it are intact\)$/);
  });

  it('reads --since as a time, epoch milliseconds, or a duration ago', () => {
    const now = new Date('2025-06-01T12:00:00Z');
    expect(parseSince('2025-06-01T11:00:00Z', now)).toBe(Date.parse('2025-06-01T11:00:00Z'));
    expect(parseSince('10m', now)).toBe(now.getTime() - 600_000);
    expect(parseSince('1700000000000', now)).toBe(1_700_000_000_000);
    expect(() => parseSince('yesterday-ish', now)).toThrow(/invalid --since/);
  });
});
