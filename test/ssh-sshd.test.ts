/**
 * A real OpenSSH server judges Brevis certificates: sshd trusts the user CA
 * (TrustedUserCAKeys from `brevis-ca ssh ca-keys --type user`) and presents
 * a host certificate an agent obtained; the ssh client trusts only the host
 * CA (`@cert-authority` in known_hosts) with StrictHostKeyChecking=yes.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_USER_EXTENSIONS } from '../ca/ssh/options.js';
import { parseAuthorizedKey } from '../ca/ssh/public-key.js';
import { SshIssuer } from '../ca/ssh/ssh-issuer.js';
import { startTestCa, TD, type TestCa } from './support/ca-harness.js';
import { CA_BIN, requireBuilt, runCliAsync } from './support/processes.js';
import { adminSign, attestWithHosts, createEntry, signHost, signUser, sshOf, type Agent } from './support/ssh-harness.js';
import { sshKeygenKey, sshLogin, startSshd, type Sshd } from './support/ssh-tools.js';

describe('a real sshd and ssh client with Brevis certificates', () => {
  let t: TestCa;
  let dir: string;
  let sshd: Sshd;
  let agent: Agent;
  let knownHosts: string;
  let userKey: string;
  const f = (name: string) => path.join(dir, name);
  // Async: the CA runs in this process, so a blocking spawn would starve it.
  const cli = (...args: string[]) => runCliAsync(CA_BIN, [...args, '--socket', t.ca.adminSocket]);

  /** Writes a certificate line as `<key>-<name>-cert.pub` and returns its path. */
  const writeCert = (name: string, line: string) => {
    const file = f(`${name}-cert.pub`);
    writeFileSync(file, `${line}\n`);
    return file;
  };
  const login = (cert: string, command?: string) =>
    sshLogin({ port: sshd.port, user: 'root', key: userKey, cert, knownHosts, ...(command ? { command } : {}) });
  /** sshd's log lines written since `mark` (a length of the log). */
  const logSince = (mark: number) => sshd.log().slice(mark);

  beforeAll(async () => {
    requireBuilt();
    dir = mkdtempSync(path.join(os.tmpdir(), 'brevis-sshd-'));
    t = await startTestCa();
    agent = await attestWithHosts(t, ['127.0.0.1']);

    // sshd trusts the user CA, as printed by the CLI.
    const userCa = await cli('ssh', 'ca-keys', '--type', 'user');
    expect(userCa.status, userCa.stderr).toBe(0);
    writeFileSync(f('trusted_user_ca_keys'), userCa.stdout);

    // The host key is certified by the host CA through the agent.
    const hostKey = sshKeygenKey(dir, 'ssh_host_ed25519_key', 'ed25519');
    const hostCert = await signHost(agent, [], readFileSync(`${hostKey}.pub`, 'utf8'));
    writeFileSync(`${hostKey}-cert.pub`, `${hostCert.certificate}\n`);

    userKey = sshKeygenKey(dir, 'id_alice', 'ed25519');
    sshd = await startSshd(dir, {
      hostKey,
      hostCert: `${hostKey}-cert.pub`,
      trustedUserCaKeys: f('trusted_user_ca_keys'),
      principals: { root: ['alice', 'deploy'] },
    });
    const hostCa = await cli('ssh', 'ca-keys', '--type', 'host');
    expect(hostCa.status, hostCa.stderr).toBe(0);
    knownHosts = f('known_hosts');
    writeFileSync(knownHosts, `@cert-authority [127.0.0.1]:${sshd.port} ${hostCa.stdout.trim()}\n`);
  });
  afterAll(async () => {
    agent?.client.close();
    await sshd?.stop();
    await t?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it('accepts a login with a user certificate the agent obtained for its entry, over a strictly checked host certificate', async () => {
    const entry = await createEntry(t, `spiffe://${TD}/ops/alice`, agent.agentId, sshOf({ principals: ['alice'] }));
    const cert = await signUser(agent, entry.id, readFileSync(`${userKey}.pub`, 'utf8'));
    const mark = sshd.log().length;
    const r = await login(writeCert('agent', cert.certificate));
    expect(r.stderr).not.toMatch(/Host key verification failed/);
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe('brevis-login-ok');
    expect(logSince(mark)).toContain(`Accepted publickey for root from 127.0.0.1`);
    expect(logSince(mark)).toContain(`ID ${cert.keyId} (serial ${cert.serial})`);
  });

  it('refuses a certificate whose principals are not allowed for the account', async () => {
    const cert = await adminSign(t, { publicKey: readFileSync(`${userKey}.pub`, 'utf8'), principals: ['mallory'] });
    const mark = sshd.log().length;
    const r = await login(writeCert('mallory', cert.certificate));
    expect(r.status).toBe(255);
    expect(r.stderr).toMatch(/Permission denied \(publickey\)/);
    expect(logSince(mark)).toContain('Certificate does not contain an authorized principal');
  });

  it('refuses an expired certificate', async () => {
    // The real user CA key, with a test clock two hours behind: valid-before is an hour ago.
    const past = { now: () => new Date(Date.now() - 2 * 3600_000), sleep: async () => {} };
    const issuer = new SshIssuer({ authority: t.ca.sshAuthority, clock: past, backdateSeconds: 30 });
    const cert = await issuer.issue({
      type: 'user',
      publicKey: parseAuthorizedKey(readFileSync(`${userKey}.pub`, 'utf8')),
      principals: ['alice'],
      ttlSeconds: 3600,
      keyId: (s) => `expired serial=${s}`,
      extensions: DEFAULT_USER_EXTENSIONS,
    });
    expect(cert.validBefore).toBeLessThan(Date.now() / 1000);
    const mark = sshd.log().length;
    const r = await login(writeCert('expired', cert.line));
    expect(r.status).toBe(255);
    expect(logSince(mark)).toContain('Certificate invalid: expired');
  });

  it('refuses a certificate signed by a CA sshd does not trust', async () => {
    const rogueCa = sshKeygenKey(dir, 'rogue_ca', 'ed25519');
    const rogueUserKey = sshKeygenKey(dir, 'id_rogue', 'ed25519');
    execFileSync('ssh-keygen', ['-q', '-s', rogueCa, '-I', 'rogue', '-n', 'alice', '-V', '-5m:+1h', `${rogueUserKey}.pub`]);
    const mark = sshd.log().length;
    const r = await sshLogin({ port: sshd.port, user: 'root', key: rogueUserKey, cert: `${rogueUserKey}-cert.pub`, knownHosts });
    expect(r.status).toBe(255);
    expect(logSince(mark)).toMatch(/Failed publickey for root from 127\.0\.0\.1 .* ID rogue \(serial 0\)/);
    expect(logSince(mark)).not.toContain('Accepted');
    // The same key certified by Brevis gets in: it was the CA that made the difference.
    const good = await adminSign(t, { publicKey: readFileSync(`${rogueUserKey}.pub`, 'utf8'), principals: ['alice'] });
    const ok = await sshLogin({ port: sshd.port, user: 'root', key: rogueUserKey, cert: writeCert('rogue-ok', good.certificate), knownHosts });
    expect(ok.status).toBe(0);
  });

  it('refuses a certificate whose source-address does not include the client, and accepts one that does', async () => {
    const pub = readFileSync(`${userKey}.pub`, 'utf8');
    const far = await adminSign(t, { publicKey: pub, principals: ['alice'], sourceAddress: '10.0.0.0/8,192.168.0.0/16' });
    const mark = sshd.log().length;
    const r = await login(writeCert('far', far.certificate));
    expect(r.status).toBe(255);
    expect(logSince(mark)).toContain('valid certificate but not from a permitted source address (127.0.0.1)');
    const near = await adminSign(t, { publicKey: pub, principals: ['alice'], sourceAddress: '10.0.0.0/8,127.0.0.0/8' });
    expect((await login(writeCert('near', near.certificate))).status).toBe(0);
  });

  it('runs the force-command a certificate carries instead of the client command', async () => {
    const cert = await adminSign(t, { publicKey: readFileSync(`${userKey}.pub`, 'utf8'), principals: ['deploy'], forceCommand: 'echo forced-by-brevis' });
    const r = await login(writeCert('forced', cert.certificate), 'echo client-command');
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe('forced-by-brevis');
  });

  it('does not connect when known_hosts trusts another CA for this host (StrictHostKeyChecking=yes)', async () => {
    const cert = await adminSign(t, { publicKey: readFileSync(`${userKey}.pub`, 'utf8'), principals: ['alice'] });
    const wrongKnownHosts = f('known_hosts_wrong');
    // The user CA is a real Brevis CA too, but not the one that signs host keys.
    writeFileSync(wrongKnownHosts, `@cert-authority [127.0.0.1]:${sshd.port} ${(await cli('ssh', 'ca-keys', '--type', 'user')).stdout.trim()}\n`);
    const r = await sshLogin({ port: sshd.port, user: 'root', key: userKey, cert: writeCert('wrong-kh', cert.certificate), knownHosts: wrongKnownHosts });
    expect(r.status).toBe(255);
    expect(r.stderr).toMatch(/Host key verification failed/);
  });
});
