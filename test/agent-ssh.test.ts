/**
 * The agent's SSH side in process, against a real CA: the trust directory,
 * the host certificate keeper (first issue, subset of names, names not
 * bound, renewal with the reload command, CA outage, restart, new host key)
 * and the user certificate service on the Workload API socket, called by
 * this test process as the workload (attested from its kernel credentials).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { pino, type Logger } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from '../agent/agent.js';
import { buildAgentConfig } from '../agent/config/config.js';
import type { BackoffPolicy } from '../agent/sync/backoff.js';
import { KNOWN_HOSTS_FILE, TRUSTED_USER_CA_KEYS_FILE } from '../agent/ssh/trust-files.js';
import { requestUserCertificate } from '../agent/ssh/sign-client.js';
import { SSHCertificateServiceClient } from '../proto/gen/brevis/agent/v1/ssh.js';
import { Entry, type EntrySSH } from '../proto/gen/brevis/ca/v1/types.js';
import { call, startTestCa, TD, type TestCa } from './support/ca-harness.js';
import { agentConfig, sel, tempDir, waitFor } from './support/agent-harness.js';
import { caKeys, HOST, USER } from './support/ssh-harness.js';
import { sshKeygenKey, sshKeygenList } from './support/ssh-tools.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const UID = process.getuid!();
const FAST_BACKOFF: BackoffPolicy = { initialMs: 200, maxMs: 1_000 };

/** A pino logger whose records the test can read. */
function capturingLogger(): { logger: Logger; records: Array<Record<string, unknown>> } {
  const records: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void records.push(JSON.parse(line) as Record<string, unknown>) });
  return { logger, records };
}

async function createToken(t: TestCa, hosts: string[]): Promise<{ token: string; agentId: string }> {
  return call<object, { token: string; agentId: string }>(t.admin, 'createJoinToken', { agentId: '', ttlSeconds: 0, ssh: { hostPrincipals: hosts } });
}

async function createSshEntry(t: TestCa, e: { id: string; spiffeId: string; parentId: string; selectors: string[]; ssh?: Partial<EntrySSH> }): Promise<Entry> {
  const ssh = e.ssh ? { principals: [], ttl: 0, forceCommand: '', sourceAddress: '', hostPrincipals: [], ...e.ssh } : undefined;
  const entry = Entry.fromPartial({ id: e.id, spiffeId: e.spiffeId, parentId: e.parentId, selectors: e.selectors.map(sel), ...(ssh ? { ssh } : {}) });
  return (await call<object, { entry: Entry }>(t.admin, 'createEntry', { entry })).entry;
}

interface Setup {
  t: TestCa;
  dir: string;
  agent: RunningAgent;
  agentId: string;
  hostKey: string;
  certFile: string;
  trustDir: string;
  records: Array<Record<string, unknown>>;
  raw: Record<string, unknown>;
  restartAgent(): Promise<RunningAgent>;
}

/** A CA, a temp dir with an sshd host key, and an agent attested with a token binding `hosts`. */
async function setup(o: { hosts?: string[]; ca?: Record<string, unknown>; agent?: Record<string, unknown>; entries?: (agentId: string, t: TestCa) => Promise<void> } = {}): Promise<Setup> {
  const t = await startTestCa(o.ca ?? {});
  cleanups.push(() => t.cleanup());
  const { dir, cleanup } = tempDir('brevis-agent-ssh-');
  cleanups.push(cleanup);
  const { token, agentId } = await createToken(t, o.hosts ?? ['web-1.example.org', '127.0.0.1']);
  await o.entries?.(agentId, t);
  const hostKey = sshKeygenKey(dir, 'ssh_host_ed25519_key', 'ed25519');
  const certFile = `${hostKey}-cert.pub`;
  const trustDir = path.join(dir, 'trust');
  const raw = { joinToken: token, sshHostKey: `${hostKey}.pub`, sshHostCert: certFile, sshTrustDir: trustDir, ...o.agent };
  const { logger, records } = capturingLogger();
  const start = async () => {
    const a = await startAgent(agentConfig(t, dir, raw), { logger, backoff: FAST_BACKOFF });
    cleanups.push(() => a.close());
    return a;
  };
  const s: Setup = {
    t,
    dir,
    agent: await start(),
    agentId,
    hostKey,
    certFile,
    trustDir,
    records,
    raw,
    async restartAgent() {
      await s.agent.close();
      s.agent = await start();
      return s.agent;
    },
  };
  return s;
}

const fingerprint = (pubFile: string) => execFileSync('ssh-keygen', ['-lf', pubFile], { encoding: 'utf8' }).split(' ')[1]!;
const certSerial = (file: string) => /Serial: (\d+)/.exec(sshKeygenList(readFileSync(file, 'utf8')))![1]!;
const records = (s: Setup, msg: string) => s.records.filter((r) => r.msg === msg);

describe('the SSH trust directory', () => {
  it('holds the CA keys of each sync, and is rewritten only when the content changes', async () => {
    const s = await setup();
    const userFile = path.join(s.trustDir, TRUSTED_USER_CA_KEYS_FILE);
    const knownHosts = path.join(s.trustDir, KNOWN_HOSTS_FILE);
    await waitFor(() => existsSync(userFile) && existsSync(knownHosts), 10_000, 'the trust files');
    const [userCa] = await caKeys(s.t, USER);
    const [hostCa] = await caKeys(s.t, HOST);
    expect(readFileSync(userFile, 'utf8')).toBe(`${userCa}\n`);
    expect(readFileSync(knownHosts, 'utf8')).toBe(`@cert-authority * ${hostCa}\n`);
    expect(statSync(userFile).mode & 0o777).toBe(0o644);
    expect(statSync(knownHosts).mode & 0o777).toBe(0o644);
    // ssh-keygen reads the known_hosts line as a CA for every host.
    expect(execFileSync('ssh-keygen', ['-F', 'any.host.example', '-f', knownHosts], { encoding: 'utf8' })).toContain(`@cert-authority * ${hostCa}`);

    const before = { user: statSync(userFile), kh: statSync(knownHosts) };
    await s.agent.syncNow();
    await s.agent.syncNow();
    expect(statSync(userFile).ino).toBe(before.user.ino);
    expect(statSync(userFile).mtimeMs).toBe(before.user.mtimeMs);
    expect(statSync(knownHosts).ino).toBe(before.kh.ino);

    // A file changed behind the agent's back is put right on the next sync, by replacement.
    writeFileSync(knownHosts, '@cert-authority * ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl rogue\n');
    await s.agent.syncNow();
    expect(readFileSync(knownHosts, 'utf8')).toBe(`@cert-authority * ${hostCa}\n`);
    expect(statSync(knownHosts).ino).not.toBe(before.kh.ino);
    expect(records(s, 'SSH trust files updated').length).toBe(2);
  });
});

describe('the SSH host certificate', () => {
  it("is obtained for all of the node's host names and written 0644 for sshd, as ssh-keygen reads it", async () => {
    const s = await setup({ hosts: ['Web-1.Example.org', '127.0.0.1'] });
    await waitFor(() => existsSync(s.certFile), 10_000, 'the host certificate');
    const listing = sshKeygenList(readFileSync(s.certFile, 'utf8'));
    expect(listing).toContain('Type: ssh-ed25519-cert-v01@openssh.com host certificate');
    expect(listing).toMatch(/Principals: \n {16}web-1\.example\.org\n {16}127\.0\.0\.1\n/);
    expect(listing).toContain(`Public key: ED25519-CERT ${fingerprint(`${s.hostKey}.pub`)}`);
    const hostCaFile = path.join(s.dir, 'host-ca.pub');
    writeFileSync(hostCaFile, `${(await caKeys(s.t, HOST))[0]}\n`);
    expect(listing).toContain(`Signing CA: ED25519 ${fingerprint(hostCaFile)}`);
    expect(listing).toContain(`Key ID: "${s.agentId} host serial=`);
    expect(listing).toContain('Critical Options: (none)');
    expect(statSync(s.certFile).mode & 0o777).toBe(0o644);
    expect(readFileSync(s.certFile, 'utf8').trim().split('\n')).toHaveLength(1);
    expect(s.agent.ssh.hostCertificate!.current!.serial).toBe(certSerial(s.certFile));
  });

  it('carries only the host names given with --ssh-host-principal', async () => {
    const s = await setup({ hosts: ['web-1.example.org', '127.0.0.1'], agent: { sshHostPrincipal: ['127.0.0.1'] } });
    await waitFor(() => existsSync(s.certFile), 10_000, 'the host certificate');
    expect(sshKeygenList(readFileSync(s.certFile, 'utf8'))).toMatch(/Principals: \n {16}127\.0\.0\.1\n\s+Critical/);
  });

  it('is not obtained for a host name the admin did not bind to this node, and the refusal is logged once', async () => {
    const s = await setup({ hosts: ['web-1.example.org'], agent: { sshHostPrincipal: ['db-1.example.org'] } });
    await waitFor(() => records(s, 'could not renew the SSH host certificate; keeping the current one').length > 0, 10_000, 'the refusal');
    // Several retries (200 ms backoff, doubling to 1 s) within 3 s, all refused by the CA.
    await new Promise((r) => setTimeout(r, 3_000));
    const audit = (await s.t.ca.store.listAudit()).filter((a) => a.action === 'ssh.sign.host');
    expect(audit.length).toBeGreaterThan(1);
    expect(audit.every((a) => a.outcome === 'failure' && a.caller === s.agentId)).toBe(true);
    expect(audit[0]!.detail).toContain('db-1.example.org');
    expect(existsSync(s.certFile)).toBe(false);
    expect(s.agent.ssh.hostCertificate!.current).toBeNull();
    const refusals = records(s, 'could not renew the SSH host certificate; keeping the current one');
    expect(refusals).toHaveLength(1);
    expect(refusals[0]!.err).toMatch(/PERMISSION_DENIED: host names not bound to agent .*: db-1\.example\.org/);
  });

  it('is renewed at its rotation point, replaced atomically, and the reload command runs after each write', async () => {
    const { dir, cleanup } = tempDir('brevis-reload-');
    cleanups.push(cleanup);
    const marker = path.join(dir, 'reloaded');
    // 20 s certificates renewed when 80% is left: after about 4 s.
    const s = await setup({
      ca: { sshHostTtl: '20s', sshMinTtl: '10s' },
      agent: { rotationFraction: 0.8, sshReloadCmd: `echo reload >> '${marker}'` },
    });
    await waitFor(() => existsSync(s.certFile) && existsSync(marker), 10_000, 'the first certificate and reload');
    const first = s.agent.ssh.hostCertificate!.current!;
    const firstIno = statSync(s.certFile).ino;
    const firstAt = Date.now();
    expect(first.validBefore.getTime() - first.validAfter.getTime()).toBe((20 + 30) * 1000);
    const second = await waitFor(() => {
      const c = s.agent.ssh.hostCertificate!.current!;
      return c.serial !== first.serial && c;
    }, 15_000, 'the renewed certificate');
    const renewedAfter = Date.now() - firstAt;
    expect(renewedAfter).toBeGreaterThan(2_500);
    expect(renewedAfter).toBeLessThan(9_000);
    expect(second.validBefore.getTime()).toBeGreaterThan(first.validBefore.getTime());
    expect(certSerial(s.certFile)).toBe(second.serial);
    expect(statSync(s.certFile).ino).not.toBe(firstIno);
    await waitFor(() => readFileSync(marker, 'utf8').split('\n').filter(Boolean).length >= 2, 5_000, 'the second reload');
    expect(readFileSync(marker, 'utf8')).toMatch(/^reload\nreload\n/);
  });

  it('stays in place while the CA is down, and is renewed once the CA returns', async () => {
    const s = await setup({ ca: { sshHostTtl: '20s', sshMinTtl: '10s' }, agent: { rotationFraction: 0.8 } });
    await waitFor(() => s.agent.ssh.hostCertificate!.current ?? undefined, 10_000, 'the first certificate');
    const first = s.agent.ssh.hostCertificate!.current!;
    const text = readFileSync(s.certFile, 'utf8');
    const port = s.t.ca.port;
    await s.t.stop();
    // The rotation point (~4 s) passes with the CA down.
    await waitFor(() => records(s, 'could not renew the SSH host certificate; keeping the current one').length > 0, 10_000, 'a failed renewal');
    await new Promise((r) => setTimeout(r, 1_000));
    expect(readFileSync(s.certFile, 'utf8')).toBe(text);
    expect(s.agent.ssh.hostCertificate!.current!.serial).toBe(first.serial);
    const failure = records(s, 'could not renew the SSH host certificate; keeping the current one')[0]!;
    expect(failure.code).toBe('UNAVAILABLE');
    expect(failure.expires).toBe(first.validBefore.toISOString());

    s.t = await startTestCa({ sshHostTtl: '20s', sshMinTtl: '10s', listen: `127.0.0.1:${port}` }, s.t.dir);
    cleanups.push(() => s.t.cleanup());
    const renewed = await waitFor(() => {
      const c = s.agent.ssh.hostCertificate!.current!;
      return c.serial !== first.serial && c;
    }, 15_000, 'the renewal after the CA returned');
    expect(renewed.validBefore.getTime()).toBeLessThan(first.validBefore.getTime() + 30_000);
    expect(certSerial(s.certFile)).toBe(renewed.serial);
    expect(records(s, 'SSH host certificate obtained again')).toHaveLength(1);
  });

  it('on disk is reused after a restart rather than minted again', async () => {
    const s = await setup();
    await waitFor(() => s.agent.ssh.hostCertificate!.current ?? undefined, 10_000, 'the first certificate');
    const text = readFileSync(s.certFile, 'utf8');
    const issued = async () => (await s.t.ca.store.listAudit()).filter((a) => a.action === 'ssh.sign.host').length;
    expect(await issued()).toBe(1);
    const again = await s.restartAgent();
    await again.syncNow();
    await waitFor(() => records(s, 'reusing the SSH host certificate on disk').length === 1, 5_000, 'the reuse');
    expect(again.ssh.hostCertificate!.renewals).toBe(0);
    expect(again.ssh.hostCertificate!.current!.line).toBe(text.trim());
    expect(await issued()).toBe(1);
  });

  it('is replaced within a sync interval when the sshd host key changes', async () => {
    const s = await setup();
    await waitFor(() => s.agent.ssh.hostCertificate!.current ?? undefined, 10_000, 'the first certificate');
    const first = s.agent.ssh.hostCertificate!.current!;
    rmSync(s.hostKey);
    rmSync(`${s.hostKey}.pub`);
    sshKeygenKey(s.dir, path.basename(s.hostKey), 'ecdsa');
    await waitFor(() => s.agent.ssh.hostCertificate!.current!.serial !== first.serial, 10_000, 'a certificate for the new key');
    const listing = sshKeygenList(readFileSync(s.certFile, 'utf8'));
    expect(listing).toContain('Type: ecdsa-sha2-nistp256-cert-v01@openssh.com host certificate');
    expect(listing).toContain(`Public key: ECDSA-CERT ${fingerprint(`${s.hostKey}.pub`)}`);
    expect(records(s, 'SSH host certificate written').at(-1)!.reason).toBe('the host key changed');
  });
});

describe('user certificates for workloads (brevis.agent.v1.SSHCertificateService)', () => {
  let s: Setup;
  let userKey: string;
  const sign = (spiffeId?: string, publicKey = readFileSync(`${userKey}.pub`, 'utf8')) =>
    requestUserCertificate({ socketPath: s.agent.socketPath, publicKey, spiffeId, timeoutMs: 10_000 });
  const refused = async (p: Promise<unknown>, code: grpc.status, re: RegExp) => {
    const e = await p.then(
      () => {
        throw new Error('expected a refusal');
      },
      (err: grpc.ServiceError) => err,
    );
    expect(grpc.status[e.code]).toBe(grpc.status[code]);
    expect(e.details).toMatch(re);
  };

  async function workloadSetup(): Promise<void> {
    s = await setup({
      entries: async (agentId, t) => {
        const me = [`unix:uid:${UID}`];
        await createSshEntry(t, { id: 'a-plain', spiffeId: `spiffe://${TD}/plain`, parentId: agentId, selectors: me });
        await createSshEntry(t, { id: 'b-ops', spiffeId: `spiffe://${TD}/ops/alice`, parentId: agentId, selectors: me, ssh: { principals: ['alice'], ttl: 600 } });
        await createSshEntry(t, { id: 'c-deploy', spiffeId: `spiffe://${TD}/ci/deploy`, parentId: agentId, selectors: me, ssh: { principals: ['deploy', 'www'], forceCommand: '/usr/local/bin/deploy' } });
        await createSshEntry(t, { id: 'd-other', spiffeId: `spiffe://${TD}/other`, parentId: agentId, selectors: ['unix:uid:4242'], ssh: { principals: ['other'] } });
      },
    });
    await waitFor(() => s.agent.cache.isReady(), 10_000, 'the first sync');
    userKey = sshKeygenKey(s.dir, 'id_workload', 'ed25519');
  }

  it("signs the caller's key for its first entry with SSH principals, and ssh-keygen shows what the entry asked for", async () => {
    await workloadSetup();
    const res = await sign();
    expect(res).toMatchObject({ spiffeId: `spiffe://${TD}/ops/alice`, principals: ['alice'] });
    expect(res.validBefore - res.validAfter).toBe(600 + 30);
    const listing = sshKeygenList(res.certificate);
    expect(listing).toContain('Type: ssh-ed25519-cert-v01@openssh.com user certificate');
    expect(listing).toContain(`Public key: ED25519-CERT ${fingerprint(`${userKey}.pub`)}`);
    expect(listing).toContain(`Key ID: "spiffe://${TD}/ops/alice entry=b-ops serial=${res.serial}"`);
    expect(listing).toContain(`Serial: ${res.serial}`);
    expect(listing).toMatch(/Principals: \n {16}alice\n\s+Critical Options: \(none\)\n\s+Extensions: \n {16}permit-X11-forwarding\n/);
    expect(res.keyId).toBe(`spiffe://${TD}/ops/alice entry=b-ops serial=${res.serial}`);
    const caFile = path.join(s.dir, 'user-ca.pub');
    writeFileSync(caFile, `${(await caKeys(s.t, USER))[0]}\n`);
    expect(res.caFingerprint).toBe(fingerprint(caFile));
    const audit = (await s.t.ca.store.listAudit()).filter((a) => a.action === 'ssh.sign.user');
    expect(audit).toEqual([expect.objectContaining({ caller: s.agentId, spiffeId: `spiffe://${TD}/ops/alice`, serial: res.serial, outcome: 'success' })]);

    // spiffe_id picks another of the caller's identities, with that entry's settings.
    const deploy = await sign(`spiffe://${TD}/ci/deploy`);
    expect(deploy).toMatchObject({ spiffeId: `spiffe://${TD}/ci/deploy`, principals: ['deploy', 'www'] });
    expect(sshKeygenList(deploy.certificate)).toMatch(/Critical Options: \n {16}force-command \/usr\/local\/bin\/deploy\n/);

    // Refusals: an identity that is not the caller's, and one of its own without SSH principals.
    await refused(sign(`spiffe://${TD}/other`), grpc.status.PERMISSION_DENIED, /has no identity spiffe:\/\/example\.org\/other/);
    await refused(sign(`spiffe://${TD}/plain`), grpc.status.PERMISSION_DENIED, /not allowed SSH user certificates/);
    // The CA was asked only for the two certificates that were signed.
    expect((await s.t.ca.store.listAudit()).filter((a) => a.action === 'ssh.sign.user')).toHaveLength(2);

    // Bad keys never reach the CA.
    await refused(sign(undefined, 'ssh-ed25519 AAAA*not-base64*'), grpc.status.INVALID_ARGUMENT, /not base64/);
    await refused(sign(undefined, readFileSync(userKey, 'utf8')), grpc.status.INVALID_ARGUMENT, /private key/);
    const rsa1024 = sshKeygenKey(s.dir, 'id_rsa_small', 'rsa', 1024);
    await refused(sign(undefined, readFileSync(`${rsa1024}.pub`, 'utf8')), grpc.status.INVALID_ARGUMENT, /2048/);
    expect((await s.t.ca.store.listAudit()).filter((a) => a.action === 'ssh.sign.user')).toHaveLength(2);

    // Without the Workload API's security header: InvalidArgument, as on SpiffeWorkloadAPI.
    const raw = new SSHCertificateServiceClient(`unix://${s.agent.socketPath}`, grpc.credentials.createInsecure());
    try {
      const e = await new Promise<grpc.ServiceError | null>((resolve) =>
        raw.signUserCertificate({ publicKey: readFileSync(`${userKey}.pub`, 'utf8'), spiffeId: '' }, (err) => resolve(err)),
      );
      expect(e && grpc.status[e.code]).toBe('INVALID_ARGUMENT');
      expect(e!.details).toBe('security header missing');
    } finally {
      raw.close();
    }
  });
});

describe('SSH configuration of the agent', () => {
  const base = { server: 'ca.example.org:8081', trustDomain: 'example.org', trustBundle: '/b.pem', dataDir: '/d', socket: '/s.sock' };

  it('leaves SSH out when no SSH setting is given, and resolves paths and lower-cases host names when one is', () => {
    expect(buildAgentConfig(base).ssh).toBeUndefined();
    const c = buildAgentConfig({ ...base, sshHostKey: 'k.pub', sshHostCert: 'k-cert.pub', sshHostPrincipal: ['Web-1.Example.org', 'web-1.example.org', '10.0.0.1'], sshReloadCmd: 'true' });
    expect(c.ssh).toEqual({
      host: { keyFile: path.resolve('k.pub'), certFile: path.resolve('k-cert.pub'), principals: ['web-1.example.org', '10.0.0.1'], reloadCommand: 'true' },
      trustDir: null,
    });
    expect(Object.isFrozen(c.ssh!.host)).toBe(true);
    // A config file may give a single host name as a string.
    expect(buildAgentConfig({ ...base, sshHostKey: 'k.pub', sshHostCert: 'c', sshHostPrincipal: 'db.example.org' }).ssh!.host!.principals).toEqual(['db.example.org']);
    expect(buildAgentConfig({ ...base, sshTrustDir: 'trust' }).ssh).toEqual({ host: null, trustDir: path.resolve('trust') });
  });

  it('refuses SSH settings that cannot work together, naming the flags', () => {
    const refuse = (raw: Record<string, unknown>, re: RegExp) => expect(() => buildAgentConfig({ ...base, ...raw })).toThrow(re);
    refuse({ sshHostKey: 'k.pub' }, /needs both --ssh-host-key .* and --ssh-host-cert/);
    refuse({ sshHostCert: 'c' }, /needs both --ssh-host-key .* and --ssh-host-cert/);
    refuse({ sshHostPrincipal: ['a.example.org'] }, /--ssh-host-principal needs --ssh-host-key and --ssh-host-cert/);
    refuse({ sshReloadCmd: 'true', sshTrustDir: 't' }, /--ssh-reload-cmd needs --ssh-host-key and --ssh-host-cert/);
    refuse({ sshHostKey: 'k.pub', sshHostCert: 'k.pub' }, /must not be the host key file/);
    refuse({ sshHostKey: 'k.pub', sshHostCert: 'c', sshHostPrincipal: ['not a host'] }, /--ssh-host-principal: invalid SSH host principal 'not a host'/);
    refuse({ sshHostKey: 'k.pub', sshHostCert: 'c', sshHostPrincipals: ['x'] }, /invalid configuration/);
  });
});
