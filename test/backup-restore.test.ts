/**
 * Backup and restore with real processes: `brevis-ca backup` takes an
 * encrypted, consistent snapshot while the CA keeps issuing; `brevis-ca
 * restore` writes it into a new data directory; a CA started there serves
 * the same root, entries and agents and keeps issuing (openssl judges the
 * new certificates against the original bundle).
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from './support/agent-harness.js';
import { call, newKey, nodeClient, toPem, type TestCa } from './support/ca-harness.js';
import { CA_BIN, requireBuilt, runCli, runCliAsync, startDaemon, type Daemon } from './support/processes.js';

let dir: string;
let cleanupDir: () => void;
const daemons: Daemon[] = [];

const f = (...n: string[]) => path.join(dir, ...n);

async function startCaProcess(dataDir: string, env: NodeJS.ProcessEnv = {}): Promise<{ d: Daemon; port: number; socket: string }> {
  const d = await startDaemon(CA_BIN, ['run', '--data-dir', dataDir, '--trust-domain', 'example.org', '--listen', '127.0.0.1:0'], /CA serving/, env);
  daemons.push(d);
  return { d, port: Number(/"port":(\d+)/.exec(d.output())![1]), socket: path.join(dataDir, 'admin.sock') };
}

function admin(socket: string, args: string[], env: NodeJS.ProcessEnv = {}): string {
  const r = runCli(CA_BIN, [...args, '--socket', socket], env);
  if (r.status !== 0) throw new Error(`brevis-ca ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout.trim();
}

/** The harness's node client against a CA process. */
function caAt(port: number, roots: Buffer[]): TestCa {
  return { roots: () => roots, ca: { port } } as unknown as TestCa;
}

function bundleDer(socket: string): Buffer[] {
  const pem = admin(socket, ['bundle', 'show']);
  return pem.split(/(?=-----BEGIN CERTIFICATE-----)/).map((p) => new X509Certificate(p).raw);
}

beforeAll(() => {
  requireBuilt();
  ({ dir, cleanup: cleanupDir } = tempDir('brevis-backup-'));
});

afterAll(async () => {
  for (const d of daemons) await d.stop();
  cleanupDir?.();
});

describe('backup and restore', () => {
  it('backs up a CA while it issues, restores into a new data directory, and the restored CA issues under the same root for the same agents', async () => {
    const orig = await startCaProcess(f('orig'));
    const roots = bundleDer(orig.socket);
    const tok = JSON.parse(admin(orig.socket, ['token', 'create', '--json'])) as { token: string };
    const k = await newKey();
    const anon = nodeClient(caAt(orig.port, roots));
    const att = await call<object, { svid: { spiffeId: string; certChain: Buffer[] } }>(anon, 'attestJoinToken', { token: tok.token, csr: k.csr });
    anon.close();
    const agentSvid = { chain: att.svid.certChain, key: k.privateKey };
    const entryId = admin(orig.socket, ['entry', 'create', '--spiffe-id', 'spiffe://example.org/backed-up', '--parent-id', att.svid.spiffeId, '--selector', 'unix:uid:1000']);

    // Keep minting while the backup is taken.
    const agent = nodeClient(caAt(orig.port, roots), agentSvid);
    let minting = true;
    let minted = 0;
    const errors: string[] = [];
    const load = (async () => {
      while (minting) {
        const csrs = await Promise.all(Array.from({ length: 5 }, () => newKey()));
        try {
          const res = await call<object, { results: Array<{ statusCode: number; statusMessage: string }> }>(agent, 'batchMintX509Svid', { params: csrs.map((c) => ({ entryId, csr: c.csr })) });
          for (const r of res.results) r.statusCode === 0 ? minted++ : errors.push(r.statusMessage);
        } catch (e) {
          errors.push((e as Error).message);
        }
      }
    })();
    await new Promise((r) => setTimeout(r, 300));
    const backup = await runCliAsync(CA_BIN, ['backup', '--socket', orig.socket, '--out', f('ca.backup')]);
    const mintedAtBackup = minted;
    await new Promise((r) => setTimeout(r, 300));
    minting = false;
    await load;
    agent.close();
    expect(backup.status, backup.stderr).toBe(0);
    expect(backup.stdout).toMatch(/^wrote .*ca\.backup \(\d+ bytes, sha256 [0-9a-f]{64}\)\n$/);
    expect(errors).toEqual([]);
    expect(mintedAtBackup).toBeGreaterThan(0);
    expect(minted).toBeGreaterThan(mintedAtBackup); // issuance went on during and after the backup
    expect(statSync(f('ca.backup')).mode & 0o777).toBe(0o600);
    const file = readFileSync(f('ca.backup'));
    for (const plain of ['SQLite format 3', 'spiffe://example.org', 'BRVSKEY', 'PRIVATE KEY']) expect(file.includes(plain), plain).toBe(false);
    // An existing file is never replaced.
    const again = runCli(CA_BIN, ['backup', '--socket', orig.socket, '--out', f('ca.backup')]);
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/ca\.backup already exists; choose another --out/);
    const audit = JSON.parse(admin(orig.socket, ['audit', 'list', '--json'])) as Array<{ action: string; detail: string }>;
    expect(audit.filter((a) => a.action === 'backup.create')).toHaveLength(1);

    // Restore: refused without the KEK, with the wrong one, into a non-empty directory, from a damaged file.
    const restore = (args: string[], env: NodeJS.ProcessEnv = {}) => runCli(CA_BIN, ['restore', ...args], env);
    expect(restore(['--from', f('ca.backup'), '--data-dir', f('new')]).stderr).toMatch(/give the key-encryption key of the CA that made the backup: --kek-file FILE/);
    expect(restore(['--from', f('ca.backup'), '--data-dir', f('new')], { BREVIS_KEK: 'ab'.repeat(32) }).stderr).toMatch(/cannot decrypt the backup: wrong key-encryption key/);
    const damaged = Buffer.from(file);
    damaged[damaged.length - 100]! ^= 1;
    writeFileSync(f('damaged.backup'), damaged);
    expect(restore(['--from', f('damaged.backup'), '--data-dir', f('new'), '--kek-file', f('orig', 'kek')]).stderr).toMatch(/wrong key-encryption key .*or the file is damaged/);
    expect(existsSync(f('new'))).toBe(false);
    const ok = restore(['--from', f('ca.backup'), '--data-dir', f('new'), '--kek-file', f('orig', 'kek')]);
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/restored the example\.org backup of .* into .*new \(\d+ files\)/);
    expect(restore(['--from', f('ca.backup'), '--data-dir', f('new'), '--kek-file', f('orig', 'kek')]).stderr).toMatch(/refusing to restore into .*new: it is not empty/);
    // The CA kept its KEK in its data directory, so the restored one does too; everything is private.
    expect(readFileSync(f('new', 'kek'), 'utf8')).toBe(readFileSync(f('orig', 'kek'), 'utf8'));
    for (const p of ['brevis.db', 'kek', ...readdirSync(f('new', 'keys')).map((n) => `keys/${n}`)]) expect(statSync(f('new', p)).mode & 0o777, p).toBe(0o600);
    expect(statSync(f('new')).mode & 0o777).toBe(0o700);

    // The restored CA: same root, same entries and agents, and it keeps issuing.
    await daemons.splice(0, 1)[0]!.stop();
    const restored = await startCaProcess(f('new'));
    expect(bundleDer(restored.socket).map((r) => r.toString('base64'))).toEqual(roots.map((r) => r.toString('base64')));
    expect(admin(restored.socket, ['entry', 'list'])).toContain('spiffe://example.org/backed-up');
    expect(admin(restored.socket, ['agent', 'list'])).toContain(att.svid.spiffeId);
    expect(admin(restored.socket, ['audit', 'verify'])).toMatch(/intact/);
    const sameAgent = nodeClient(caAt(restored.port, roots), agentSvid);
    const csr = await newKey();
    const res = await call<object, { results: Array<{ statusCode: number; svid?: { certChain: Buffer[] } }> }>(sameAgent, 'batchMintX509Svid', { params: [{ entryId, csr: csr.csr }] });
    sameAgent.close();
    expect(res.results[0]!.statusCode).toBe(0);
    writeFileSync(f('root.pem'), toPem(roots));
    writeFileSync(f('chain.pem'), toPem(res.results[0]!.svid!.certChain));
    const verified = execFileSync('openssl', ['verify', '-x509_strict', '-purpose', 'sslclient', '-CAfile', f('root.pem'), '-untrusted', f('chain.pem'), f('chain.pem')], { encoding: 'utf8' });
    expect(verified).toContain(': OK');
    admin(restored.socket, ['x509', 'mint', '--spiffe-id', 'spiffe://example.org/after-restore', '--out-dir', f('minted')]);
    expect(execFileSync('openssl', ['verify', '-x509_strict', '-CAfile', f('root.pem'), '-untrusted', f('minted', 'svid.pem'), f('minted', 'svid.pem')], { encoding: 'utf8' })).toContain(': OK');
  });

  it('restores a backup of a CA whose KEK comes from BREVIS_KEK without writing the KEK into the new data directory', async () => {
    const kek = 'c3'.repeat(32);
    const ca = await startCaProcess(f('env-orig'), { BREVIS_KEK: kek });
    const roots = bundleDer(ca.socket);
    const b = runCli(CA_BIN, ['backup', '--socket', ca.socket, '--out', f('env.backup'), '--json']);
    expect(b.status, b.stderr).toBe(0);
    expect(JSON.parse(b.stdout)).toMatchObject({ bytes: statSync(f('env.backup')).size });
    await daemons.pop()!.stop();
    const r = runCli(CA_BIN, ['restore', '--from', f('env.backup'), '--data-dir', f('env-new')], { BREVIS_KEK: kek });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/with the same BREVIS_KEK/);
    expect(readdirSync(f('env-new'))).not.toContain('kek');
    chmodSync(f('env-new'), 0o700);
    const restored = await startCaProcess(f('env-new'), { BREVIS_KEK: kek });
    expect(bundleDer(restored.socket)[0]!.equals(roots[0]!)).toBe(true);
  });
});
