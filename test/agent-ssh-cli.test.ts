/**
 * OpenSSH end to end with separate processes: a CA (30-second host
 * certificates), an agent keeping the host certificate, the trust directory
 * and a reload command, a real sshd configured only from the agent's files,
 * and workloads that get user certificates with `brevis-agent api ssh sign`
 * and log in with an ssh client that trusts hosts only through the agent's
 * known_hosts (StrictHostKeyChecking=yes).
 */
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KNOWN_HOSTS_FILE, TRUSTED_USER_CA_KEYS_FILE } from '../agent/ssh/trust-files.js';
import { tempDir, waitFor } from './support/agent-harness.js';
import { AGENT_BIN, CA_BIN, requireBuilt, runCli, runCliAsync, startDaemon, type Daemon } from './support/processes.js';
import { sshKeygenKey, sshKeygenList, sshLogin, startSshd, type Sshd } from './support/ssh-tools.js';

const run = promisify(execFile);
const UID = process.getuid!();
const NOBODY = 65534;

let dir: string;
let cleanupDir: () => void;
let ca: Daemon | null = null;
let agent: Daemon | null = null;
let sshd: Sshd | null = null;
let adminSocket: string;
let socket: string;
let hostKey: string;
let hostCert: string;
let trustDir: string;
let reloadMarker: string;
let userKey: string;
const f = (name: string) => path.join(dir, name);

function ca_(args: string[]): string {
  const r = runCli(CA_BIN, [...args, '--socket', adminSocket]);
  if (r.status !== 0) throw new Error(`brevis-ca ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout.trim();
}

/** The serial of the certificate in a -cert.pub file, as ssh-keygen prints it. */
const serialOf = (line: string) => /Serial: (\d+)/.exec(sshKeygenList(line))![1]!;

/** The host certificate sshd presents on its port (ssh-keyscan -c), as a -cert.pub line. */
async function presentedHostCert(port: number): Promise<string> {
  const { stdout } = await run('ssh-keyscan', ['-c', '-t', 'ed25519', '-p', String(port), '127.0.0.1'], { timeout: 20_000 });
  // ssh-keyscan -c prints `<cert type> <base64>`, without the host name.
  const words = stdout.split(/\s+/);
  const i = words.findIndex((w) => w.endsWith('-cert-v01@openssh.com'));
  if (i < 0) throw new Error(`ssh-keyscan found no host certificate:\n${stdout}`);
  return `${words[i]} ${words[i + 1]}`;
}

beforeAll(async () => {
  requireBuilt();
  ({ dir, cleanup: cleanupDir } = tempDir('brevis-agent-ssh-cli-'));
  // Workloads run as another uid below: they must reach the socket and read their key.
  chmodSync(dir, 0o755);
  writeFileSync(f('ca.json'), JSON.stringify({ sshHostTtl: '30s', sshMinTtl: '10s' }));
  ca = await startDaemon(CA_BIN, ['run', '--config', f('ca.json'), '--data-dir', f('ca'), '--trust-domain', 'example.org', '--listen', '127.0.0.1:0'], /CA serving/);
  const port = Number(/"port":(\d+)/.exec(ca.output())![1]);
  adminSocket = f('ca/admin.sock');
  writeFileSync(f('bundle.pem'), `${ca_(['bundle', 'show'])}\n`);
  const tok = JSON.parse(ca_(['token', 'create', '--ssh-host-principal', '127.0.0.1', '--json'])) as { token: string; agent_id: string };
  ca_(['entry', 'create', '--entry-id', 'ssh-alice', '--spiffe-id', 'spiffe://example.org/ops/alice', '--parent-id', tok.agent_id, '--selector', `unix:uid:${UID}`, '--ssh-principal', 'alice']);
  ca_(['entry', 'create', '--entry-id', 'nobody-x509', '--spiffe-id', 'spiffe://example.org/nobody', '--parent-id', tok.agent_id, '--selector', `unix:uid:${NOBODY}`]);

  hostKey = sshKeygenKey(dir, 'ssh_host_ed25519_key', 'ed25519');
  hostCert = `${hostKey}-cert.pub`;
  trustDir = f('ssh-trust');
  reloadMarker = f('reloaded');
  socket = f('agent.sock');
  const pidFile = f('sshd.pid');
  // sshd reads HostCertificate when it starts or on SIGHUP (it then re-executes itself).
  const reload = `echo reload >> '${reloadMarker}'; if [ -s '${pidFile}' ]; then kill -HUP "$(cat '${pidFile}')"; fi`;
  agent = await startDaemon(AGENT_BIN, [
    'run', '--server', `127.0.0.1:${port}`, '--trust-domain', 'example.org', '--trust-bundle', f('bundle.pem'),
    '--data-dir', f('agent'), '--socket', socket, '--join-token', tok.token, '--sync-interval', '1s',
    '--ssh-host-key', `${hostKey}.pub`, '--ssh-host-cert', hostCert, '--ssh-trust-dir', trustDir, '--ssh-reload-cmd', reload,
  ], /agent running/);
  await waitFor(() => existsSync(hostCert) && existsSync(path.join(trustDir, KNOWN_HOSTS_FILE)) && existsSync(path.join(trustDir, TRUSTED_USER_CA_KEYS_FILE)), 15_000, 'the host certificate and the trust files');

  // sshd is configured only from what the agent keeps.
  sshd = await startSshd(dir, {
    hostKey,
    hostCert,
    trustedUserCaKeys: path.join(trustDir, TRUSTED_USER_CA_KEYS_FILE),
    principals: { root: ['alice'] },
  });
  await waitFor(() => existsSync(pidFile), 5_000, 'the sshd pid file');
  userKey = sshKeygenKey(dir, 'id_workload', 'ed25519');
}, 90_000);

afterAll(async () => {
  await sshd?.stop();
  await agent?.stop();
  await ca?.stop();
  cleanupDir?.();
});

describe('OpenSSH with the agent as separate processes', () => {
  it('keeps the trust directory with exactly the CA keys brevis-ca ssh ca-keys prints', () => {
    const user = ca_(['ssh', 'ca-keys', '--type', 'user']);
    const host = ca_(['ssh', 'ca-keys', '--type', 'host']);
    expect(readFileSync(path.join(trustDir, TRUSTED_USER_CA_KEYS_FILE), 'utf8')).toBe(`${user}\n`);
    expect(readFileSync(path.join(trustDir, KNOWN_HOSTS_FILE), 'utf8')).toBe(`@cert-authority * ${host}\n`);
  });

  it('gives a workload a user certificate through api ssh sign, with which it logs in to sshd trusting the host only through the known_hosts the agent keeps', async () => {
    // SPIFFE_ENDPOINT_SOCKET, no --out: the certificate lands next to the key, where ssh looks for it.
    const r = await runCliAsync(AGENT_BIN, ['api', 'ssh', 'sign', '--public-key', `${userKey}.pub`], { SPIFFE_ENDPOINT_SOCKET: `unix://${socket}` });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const certFile = `${userKey}-cert.pub`;
    expect(r.stdout).toMatch(new RegExp(`^wrote ${certFile} for spiffe://example\\.org/ops/alice: principals alice, serial \\d+, valid until \\S+\\n$`));
    expect(statSync(certFile).mode & 0o777).toBe(0o644);
    const line = readFileSync(certFile, 'utf8');
    const listing = sshKeygenList(line);
    expect(listing).toContain('user certificate');
    expect(listing).toMatch(/Principals: \n {16}alice\n/);
    const serial = serialOf(line);

    const mark = sshd!.log().length;
    const login = await sshLogin({ port: sshd!.port, user: 'root', key: userKey, cert: certFile, knownHosts: path.join(trustDir, KNOWN_HOSTS_FILE) });
    expect(login.stderr).not.toMatch(/Host key verification failed/);
    expect(login.status).toBe(0);
    expect(login.stdout.trim()).toBe('brevis-login-ok');
    expect(sshd!.log().slice(mark)).toContain(`ID spiffe://example.org/ops/alice entry=ssh-alice serial=${serial} (serial ${serial})`);

    // --socket and --out; and the host certificate sshd presents is the file the agent keeps.
    const out = f('explicit-cert.pub');
    const again = await runCliAsync(AGENT_BIN, ['api', 'ssh', 'sign', '--socket', socket, '--public-key', `${userKey}.pub`, '--out', out]);
    expect(again.status).toBe(0);
    expect(serialOf(readFileSync(out, 'utf8'))).not.toBe(serial);
    expect(await presentedHostCert(sshd!.port)).toBe(readFileSync(hostCert, 'utf8').trim());
  });

  it('refuses with PermissionDenied a workload that has no entry with SSH principals, or no identity at all', async () => {
    for (const [uid, why] of [
      [NOBODY, /PERMISSION_DENIED: none of the caller's identities is allowed SSH user certificates/],
      [NOBODY - 1, /PERMISSION_DENIED: the caller has no identity/],
    ] as const) {
      const out = f(`denied-${uid}-cert.pub`);
      const r = await run('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', process.execPath, AGENT_BIN, 'api', 'ssh', 'sign', '--socket', socket, '--public-key', `${userKey}.pub`, '--out', out], { timeout: 30_000 }).then(
        () => ({ status: 0, stderr: '' }),
        (e: { code: number; stderr: string }) => ({ status: e.code, stderr: e.stderr }),
      );
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(why);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(existsSync(out)).toBe(false);
    }
  });

  it('fails with one line on bad usage, and never sends a private key', () => {
    // The message names --public-key: the CLI refused the file itself, before connecting to the agent.
    const priv = runCli(AGENT_BIN, ['api', 'ssh', 'sign', '--socket', socket, '--public-key', userKey, '--out', f('never-cert.pub')]);
    expect(priv.status).not.toBe(0);
    expect(priv.stderr).toMatch(/^brevis-agent: --public-key .*id_workload: .*this is a private key: give the public key \(the \.pub file\)\n$/);
    expect(existsSync(f('never-cert.pub'))).toBe(false);

    const noCert = runCli(AGENT_BIN, ['run', '--server', '127.0.0.1:1', '--trust-domain', 'example.org', '--trust-bundle', f('bundle.pem'),
      '--data-dir', f('other-agent'), '--socket', f('other.sock'), '--ssh-host-key', `${hostKey}.pub`]);
    expect(noCert.status).not.toBe(0);
    expect(noCert.stderr).toMatch(/^brevis-agent: an SSH host certificate needs both --ssh-host-key .* and --ssh-host-cert .*\n$/);

    const notPublic = runCli(AGENT_BIN, ['run', '--server', '127.0.0.1:1', '--trust-domain', 'example.org', '--trust-bundle', f('bundle.pem'),
      '--data-dir', f('other-agent'), '--socket', f('other.sock'), '--ssh-host-key', hostKey, '--ssh-host-cert', f('other-cert.pub')]);
    expect(notPublic.status).not.toBe(0);
    expect(notPublic.stderr).toMatch(/^brevis-agent: --ssh-host-key: the SSH host public key \S+ssh_host_ed25519_key is unusable: .*this is a private key.*\n$/);
  });

  it('renews the host certificate when due, rewrites the file and runs the reload command, after which sshd presents the new certificate', async () => {
    const first = readFileSync(hostCert, 'utf8');
    const firstSerial = serialOf(first);
    expect(readFileSync(reloadMarker, 'utf8')).toBe('reload\n');
    // 30 s certificates are renewed at about half-life.
    await waitFor(() => serialOf(readFileSync(hostCert, 'utf8')) !== firstSerial, 25_000, 'the renewed host certificate');
    const second = readFileSync(hostCert, 'utf8');
    const listing = sshKeygenList(second);
    expect(listing).toContain('host certificate');
    expect(listing).toMatch(/Principals: \n {16}127\.0\.0\.1\n/);
    await waitFor(() => readFileSync(reloadMarker, 'utf8') === 'reload\nreload\n', 5_000, 'the reload command');
    await waitFor(() => (sshd!.log().match(/Server listening/g) ?? []).length >= 2, 10_000, 'sshd to restart on SIGHUP');
    expect(sshd!.log()).toContain('Received SIGHUP; restarting.');
    expect(await presentedHostCert(sshd!.port)).toBe(second.trim());
    expect(agent!.output()).toMatch(/SSH host certificate written.*the host certificate is due for renewal|the host certificate is due for renewal.*SSH host certificate written/);

    // Logins keep working over the renewed host certificate.
    const r = await runCliAsync(AGENT_BIN, ['api', 'ssh', 'sign', '--socket', socket, '--public-key', `${userKey}.pub`]);
    expect(r.status).toBe(0);
    const login = await sshLogin({ port: sshd!.port, user: 'root', key: userKey, cert: `${userKey}-cert.pub`, knownHosts: path.join(trustDir, KNOWN_HOSTS_FILE) });
    expect(login.status).toBe(0);
  }, 60_000);
});
