/**
 * Key custody: CA private keys are always encrypted at rest, under a KEK
 * from --kek-file, BREVIS_KEK or a generated <data-dir>/kek (with a warning
 * at every start); plain keys of an older data directory are re-encrypted
 * in place; key and KEK files others can read stop the start.
 */
import { chmodSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { buildCaConfig } from '../ca/config/config.js';
import { parseKekHex } from '../ca/keys/kek.js';
import { KeyStore } from '../ca/keys/keystore.js';
import { startCa, type RunningCa } from '../ca/server/ca.js';
import { TD } from './support/ca-harness.js';

const dirs: string[] = [];
const running: RunningCa[] = [];

function tmp(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'brevis-custody-'));
  dirs.push(d);
  return d;
}

/** Starts a CA and returns it with the log lines it wrote (debug level). */
async function start(dataDir: string, raw: Record<string, unknown> = {}, env: NodeJS.ProcessEnv = {}): Promise<{ ca: RunningCa; lines: Array<Record<string, unknown>> }> {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  const ca = await startCa(buildCaConfig({ dataDir, trustDomain: TD, listen: '127.0.0.1:0', ...raw }, env), { logger });
  running.push(ca);
  return { ca, lines };
}

async function stop(ca: RunningCa): Promise<void> {
  running.splice(running.indexOf(ca), 1);
  await ca.close();
}

function keyFiles(dataDir: string): string[] {
  const keys = path.join(dataDir, 'keys');
  return readdirSync(keys).filter((n) => n.endsWith('.key')).map((n) => path.join(keys, n));
}

function isEncrypted(file: string): boolean {
  return readFileSync(file).subarray(0, 7).toString('latin1') === 'BRVSKEY';
}

const rootOf = (ca: RunningCa) => ca.authority.bundle().roots[0]!.toString('base64');

afterEach(async () => {
  for (const ca of running.splice(0)) await ca.close().catch(() => undefined);
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('key custody', () => {
  it('without a configured KEK generates <data-dir>/kek (0600, 64 hex), encrypts every CA key with it, and warns at every start', async () => {
    const dataDir = tmp();
    const first = await start(dataDir);
    const kekFile = path.join(dataDir, 'kek');
    expect(statSync(kekFile).mode & 0o777).toBe(0o600);
    expect(readFileSync(kekFile, 'utf8')).toMatch(/^[0-9a-f]{64}\n$/);
    const files = keyFiles(dataDir);
    expect(files.length).toBeGreaterThanOrEqual(4); // X.509 root and intermediate, SSH user and host CAs
    for (const f of files) {
      expect(isEncrypted(f), f).toBe(true);
      expect(statSync(f).mode & 0o777).toBe(0o600);
    }
    const warning = (lines: Array<Record<string, unknown>>) => lines.find((l) => /key-encryption key lives beside the CA keys/.test(String(l.msg)));
    expect(warning(first.lines)).toMatchObject({ level: 40, kekFile, generated: true });
    const root = rootOf(first.ca);
    await stop(first.ca);
    const again = await start(dataDir);
    expect(warning(again.lines)).toMatchObject({ level: 40, kekFile, generated: false });
    expect(rootOf(again.ca)).toBe(root);
  });

  it('takes the KEK from --kek-file or BREVIS_KEK (the same 64 hex characters), without a file beside the keys and without a warning', async () => {
    const dataDir = tmp();
    const hex = 'ab'.repeat(32);
    const kekFile = path.join(tmp(), 'kek.hex');
    writeFileSync(kekFile, `${hex}\n`, { mode: 0o600 });
    const byFile = await start(dataDir, { kekFile });
    expect(readdirSync(dataDir)).not.toContain('kek');
    expect(byFile.lines.some((l) => l.msg === 'CA keys are encrypted at rest' && l.kekOrigin === 'file')).toBe(true);
    expect(byFile.lines.some((l) => /lives beside/.test(String(l.msg)))).toBe(false);
    const root = rootOf(byFile.ca);
    await stop(byFile.ca);
    // The same key from the environment opens the same keys.
    const byEnv = await start(dataDir, {}, { BREVIS_KEK: hex.toUpperCase() });
    expect(rootOf(byEnv.ca)).toBe(root);
    expect(byEnv.lines.some((l) => l.kekOrigin === 'env')).toBe(true);
    await stop(byEnv.ca);
    // Another key does not, and says so without showing either.
    const wrong = 'cd'.repeat(32);
    const err = await start(dataDir, {}, { BREVIS_KEK: wrong }).then(() => null, (e: Error) => e);
    expect(err?.message).toMatch(/cannot decrypt CA key .*wrong key-encryption key/);
    expect(err?.message).not.toContain(wrong);
    // Nothing configured while the keys are encrypted: refused, not a new KEK.
    const none = await start(dataDir).then(() => null, (e: Error) => e);
    expect(none?.message).toMatch(/encrypted but no key-encryption key is configured: pass --kek-file FILE or set BREVIS_KEK/);
    expect(readdirSync(dataDir)).not.toContain('kek');
  });

  it('refuses a malformed BREVIS_KEK, and more than one KEK source, before touching the data directory', () => {
    const dataDir = tmp();
    const build = (raw: Record<string, unknown>, env: NodeJS.ProcessEnv) => () => buildCaConfig({ dataDir, trustDomain: TD, listen: '127.0.0.1:0', ...raw }, env);
    for (const bad of ['abc', 'zz'.repeat(32), 'ab'.repeat(31), 'ab'.repeat(33)]) {
      expect(build({}, { BREVIS_KEK: bad })).toThrow(/BREVIS_KEK must hold a key-encryption key of 64 hex characters/);
    }
    expect(build({ kekFile: '/x' }, { BREVIS_KEK: 'ab'.repeat(32) })).toThrow(/set only one of --kek-file, BREVIS_KEK and --kek-passphrase-env/);
    expect(() => parseKekHex('secret-value', 'the KEK')).toThrow(/64 hex characters/);
    expect(() => parseKekHex('secret-value', 'the KEK')).not.toThrow(/secret-value/);
  });

  it('re-encrypts the plain keys of an older data directory in place and keeps serving under the same root', async () => {
    const dataDir = tmp();
    const first = await start(dataDir);
    const root = rootOf(first.ca);
    await stop(first.ca);
    // Make it look like a data directory of a version that kept keys as plain PKCS#8 PEM.
    const kek = { key: parseKekHex(readFileSync(path.join(dataDir, 'kek'), 'utf8'), 'kek') };
    const keysDir = path.join(dataDir, 'keys');
    const plainDir = path.join(tmp(), 'plain');
    for (const f of keyFiles(dataDir)) {
      const ref = path.basename(f, '.key');
      await new KeyStore({ dir: plainDir }).save(ref, await new KeyStore({ dir: keysDir, kek }).load(ref));
      renameSync(path.join(plainDir, `${ref}.key`), f);
      expect(readFileSync(f, 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    }
    unlinkSync(path.join(dataDir, 'kek'));

    const migrated = await start(dataDir);
    expect(rootOf(migrated.ca)).toBe(root);
    for (const f of keyFiles(dataDir)) expect(isEncrypted(f), f).toBe(true);
    expect(readdirSync(keysDir).filter((n) => !n.endsWith('.key'))).toEqual([]);
    const line = migrated.lines.find((l) => l.msg === 'CA keys stored unencrypted were re-encrypted with the key-encryption key');
    expect((line?.keys as string[]).length).toBe(keyFiles(dataDir).length);
    await stop(migrated.ca);
    // And the next start needs no migration.
    const next = await start(dataDir);
    expect(next.lines.some((l) => /re-encrypted/.test(String(l.msg)))).toBe(false);
    expect(rootOf(next.ca)).toBe(root);
  });

  it('refuses to start when a key file or the KEK file is readable by group or others, naming the file', async () => {
    const dataDir = tmp();
    const { ca } = await start(dataDir);
    await stop(ca);
    const keyFile = keyFiles(dataDir)[0]!;
    chmodSync(keyFile, 0o640);
    const err = await start(dataDir).then(() => null, (e: Error) => e);
    expect(err?.message).toBe(`CA key file ${keyFile} is accessible by group or others (mode 0640); refusing to start: run chmod 600 ${keyFile}`);
    chmodSync(keyFile, 0o600);
    const kekFile = path.join(dataDir, 'kek');
    chmodSync(kekFile, 0o604);
    const err2 = await start(dataDir).then(() => null, (e: Error) => e);
    expect(err2?.message).toMatch(new RegExp(`key-encryption key file ${kekFile} is accessible by group or others \\(mode 0604\\); refusing to start`));
    chmodSync(kekFile, 0o600);
    const external = path.join(tmp(), 'kek.hex');
    writeFileSync(external, 'ab'.repeat(32), { mode: 0o644 });
    const err3 = await start(tmp(), { kekFile: external }).then(() => null, (e: Error) => e);
    expect(err3?.message).toMatch(/is accessible by group or others \(mode 0644\)/);
    const ok = await start(dataDir);
    expect(ok.ca.port).toBeGreaterThan(0);
  });
});
