/**
 * SSH CA rotation judged by a real sshd: the agent keeps TrustedUserCAKeys,
 * known_hosts and the HostCertificate; a workload logs in again and again
 * with fresh user certificates while the user CA and the host CA rotate.
 * Not one login may fail. Then the old host CA is tainted: the agent
 * replaces the host certificate at once (sshd reloads) and the old CA is
 * revoked.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { startAgent } from '../agent/agent.js';
import { requestUserCertificate } from '../agent/ssh/sign-client.js';
import { KNOWN_HOSTS_FILE, TRUSTED_USER_CA_KEYS_FILE } from '../agent/ssh/trust-files.js';
import { lineFingerprint } from '../agent/push/ssh-holdings.js';
import { acknowledgements, outstanding } from '../ca/rotation/fleet.js';
import { activeOf } from '../ca/rotation/model.js';
import { Entry } from '../proto/gen/brevis/ca/v1/types.js';
import { call, startTestCa } from './support/ca-harness.js';
import { agentConfig, sel, tempDir, waitFor } from './support/agent-harness.js';
import { sshKeygenKey, sshLogin, startSshd } from './support/ssh-tools.js';

const UID = process.getuid!();
const PRINCIPAL = 'brevis-rot';

describe('SSH CA rotation under load', () => {
  const closers: Array<() => unknown> = [];
  afterAll(async () => {
    for (const c of closers.reverse()) await c();
  });

  it('keeps sshd logins succeeding through an ssh-user and an ssh-host CA rotation, then replaces the host certificate of a tainted host CA', async () => {
    const t = await startTestCa();
    closers.push(() => t.cleanup());
    const { dir, cleanup } = tempDir('brevis-ssh-rot-');
    closers.push(cleanup);
    const tok = await call<object, { token: string; agentId: string }>(t.admin, 'createJoinToken', { agentId: '', ttlSeconds: 0, ssh: { hostPrincipals: ['127.0.0.1'] } });
    await call(t.admin, 'createEntry', {
      entry: Entry.fromPartial({ id: 'ssh-rot', spiffeId: 'spiffe://example.org/ops/rot', parentId: tok.agentId, selectors: [sel(`unix:uid:${UID}`)], ssh: { principals: [PRINCIPAL], ttl: 0, forceCommand: '', sourceAddress: '', hostPrincipals: [] } }),
    });
    const hostKey = sshKeygenKey(dir, 'ssh_host_ed25519_key', 'ed25519');
    const hostCert = `${hostKey}-cert.pub`;
    const trustDir = path.join(dir, 'trust');
    const reloads = path.join(dir, 'reloads');
    writeFileSync(reloads, '');
    const pidFile = path.join(dir, 'sshd.pid');
    const reload = `echo reload >> '${reloads}'; if [ -s '${pidFile}' ]; then kill -HUP "$(cat '${pidFile}')"; fi`;
    const agent = await startAgent(
      agentConfig(t, dir, { joinToken: tok.token, syncInterval: '5s', sshHostKey: `${hostKey}.pub`, sshHostCert: hostCert, sshTrustDir: trustDir, sshReloadCmd: reload }),
      { logger: pino({ level: process.env.BREVIS_TEST_LOG ?? 'silent' }), backoff: { initialMs: 200, maxMs: 1_000 } },
    );
    closers.push(() => agent.close());
    const userCaFile = path.join(trustDir, TRUSTED_USER_CA_KEYS_FILE);
    const knownHosts = path.join(trustDir, KNOWN_HOSTS_FILE);
    const lines = (f: string) => readFileSync(f, 'utf8').trim().split('\n').filter(Boolean);
    await waitFor(() => {
      try {
        return readFileSync(hostCert, 'utf8').length > 0 && lines(userCaFile).length === 1 && lines(knownHosts).length === 1;
      } catch {
        return false;
      }
    }, 10_000, 'the host certificate and trust files');
    const sshd = await startSshd(dir, { hostKey, hostCert, trustedUserCaKeys: userCaFile, principals: { root: [PRINCIPAL] } });
    closers.push(() => sshd.stop());

    const userKey = sshKeygenKey(dir, 'user_key', 'ed25519');
    const userCert = `${userKey}-cert.pub`;
    const usedCas = new Set<string>();
    const login = async () => {
      const issued = await requestUserCertificate({ socketPath: agent.socketPath, publicKey: readFileSync(`${userKey}.pub`, 'utf8').trim(), timeoutMs: 10_000 });
      writeFileSync(`${userCert}.tmp`, `${issued.certificate}\n`);
      renameSync(`${userCert}.tmp`, userCert);
      const r = await sshLogin({ port: sshd.port, user: 'root', key: userKey, cert: userCert, knownHosts });
      if (r.status !== 0 || r.stdout.trim() !== 'brevis-login-ok') throw new Error(`login failed (${r.status}): ${r.stderr.trim().split('\n').slice(-2).join(' | ')}`);
      usedCas.add(issued.caFingerprint);
    };

    let ok = 0;
    const failures: string[] = [];
    let running = true;
    const loop = (async () => {
      while (running) {
        try {
          await login();
          ok++;
        } catch (e) {
          failures.push((e as Error).message);
        }
        await new Promise((r) => setTimeout(r, 150));
      }
    })();

    const lc = t.ca.lifecycle;
    const acked = async (id: string) => acknowledgements(lc.snapshot.authorities.find((a) => a.id === id)!, await lc.fleet()).missing.length === 0;
    const hostCaOf = () => execFileSync('ssh-keygen', ['-L', '-f', hostCert], { encoding: 'utf8' }).match(/Signing CA: \S+ (SHA256:\S+)/)![1]!;
    const oldHost = activeOf(lc.snapshot, 'ssh-host')!;
    try {
      await waitFor(() => ok >= 3, 20_000, 'the first logins');

      // User CA: trusted by sshd before it signs, then signing; the old one is withdrawn.
      const oldUser = activeOf(lc.snapshot, 'ssh-user')!;
      const newUser = (await lc.prepare('ssh-user', { caller: 'test' })).prepared;
      await waitFor(() => lines(userCaFile).length === 2, 5_000, 'the new user CA in TrustedUserCAKeys');
      await waitFor(() => acked(newUser.id), 5_000, 'the agent to acknowledge the new user CA');
      await lc.activate('ssh-user', newUser.id, { caller: 'test' });
      const before = ok;
      await waitFor(() => usedCas.has(newUser.id) && ok >= before + 3, 20_000, 'logins with certificates of the new user CA');
      await lc.taint('ssh-user', oldUser.id, { caller: 'test' });
      await lc.revoke('ssh-user', oldUser.id, { caller: 'test' });
      await waitFor(() => lines(userCaFile).length === 1 && lineFingerprint(lines(userCaFile)[0]!) === newUser.id, 5_000, 'the old user CA to leave TrustedUserCAKeys');
      const afterUser = ok;
      await waitFor(() => ok >= afterUser + 3, 20_000, 'logins after the user CA rotation');

      // Host CA: known_hosts trusts the new one first; sshd keeps its certificate from the old (retired, still trusted) one.
      const newHost = (await lc.prepare('ssh-host', { caller: 'test' })).prepared;
      await waitFor(() => lines(knownHosts).length === 2, 5_000, 'the new host CA in known_hosts');
      await waitFor(() => acked(newHost.id), 5_000, 'the agent to acknowledge the new host CA');
      await lc.activate('ssh-host', newHost.id, { caller: 'test' });
      const afterHost = ok;
      await waitFor(() => ok >= afterHost + 3, 20_000, 'logins after the host CA rotation');
      expect(hostCaOf()).toBe(oldHost.id);
    } finally {
      running = false;
      await loop;
    }
    console.log(`ssh login loop: ${ok} logins, ${failures.length} failed, user certificates from ${usedCas.size} CAs`);
    expect(failures).toEqual([]);

    // Emergency on the host side: taint the old host CA; the agent replaces the host certificate and reloads sshd.
    const newHost = activeOf(lc.snapshot, 'ssh-host')!;
    await lc.taint('ssh-host', oldHost.id, { caller: 'test' });
    await waitFor(() => hostCaOf() === newHost.id, 10_000, 'a host certificate from the new host CA');
    await waitFor(() => lines(reloads).length >= 1, 5_000, 'the reload command');
    await waitFor(async () => outstanding(oldHost.id, await lc.fleet()).credentials === 0, 10_000, 'nothing outstanding for the old host CA');
    await lc.revoke('ssh-host', oldHost.id, { caller: 'test' });
    await waitFor(() => lines(knownHosts).length === 1, 5_000, 'the old host CA to leave known_hosts');
    // sshd re-executes on SIGHUP: wait until it listens again, then it presents the new certificate to a client that trusts only the new CA.
    await waitFor(async () => {
      try {
        await login();
        return true;
      } catch {
        return false;
      }
    }, 20_000, 'a login trusting only the new host CA');
  }, 180_000);
});
