import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AGENT_BIN, CA_BIN, requireBuilt, runCli, runCliAsync, startDaemon, type Daemon } from './support/processes.js';
import { tempDir, waitFor } from './support/agent-harness.js';

// Separate processes throughout: a CA, an agent, and workloads calling the agent's socket.
let dir: string;
let cleanupDir: () => void;
let ca: Daemon;
let agent: Daemon | null = null;
let adminSocket: string;
let port: number;
let agentArgs: string[];
let socket: string;
const uid = process.getuid!();

function ca_(args: string[]): string {
  const r = runCli(CA_BIN, [...args, '--socket', adminSocket]);
  if (r.status !== 0) throw new Error(`brevis-ca ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout.trim();
}

async function startAgentProcess(): Promise<Daemon> {
  return startDaemon(AGENT_BIN, agentArgs, /agent running/);
}

async function waitHealthy(): Promise<void> {
  await waitFor(async () => (await runCliAsync(AGENT_BIN, ['healthcheck', '--socket', socket])).status === 0, 15_000, 'the agent to report SERVING');
}

beforeAll(async () => {
  requireBuilt();
  if (!existsSync(AGENT_BIN)) throw new Error('dist/agent is missing: run `npm run build`');
  ({ dir, cleanup: cleanupDir } = tempDir('brevis-agent-cli-'));
  ca = await startDaemon(CA_BIN, ['run', '--data-dir', path.join(dir, 'ca'), '--trust-domain', 'example.org', '--listen', '127.0.0.1:0'], /CA serving/);
  port = Number(/"port":(\d+)/.exec(ca.output())![1]);
  adminSocket = path.join(dir, 'ca', 'admin.sock');
  writeFileSync(path.join(dir, 'bundle.pem'), `${ca_(['bundle', 'show'])}\n`);
  const tok = JSON.parse(ca_(['token', 'create', '--json'])) as { token: string; agent_id: string };
  ca_(['entry', 'create', '--entry-id', 'm-workload', '--spiffe-id', 'spiffe://example.org/cli-workload', '--parent-id', tok.agent_id, '--selector', `unix:uid:${uid}`, '--dns', 'workload.local']);
  socket = path.join(dir, 'agent.sock');
  agentArgs = ['run', '--server', `127.0.0.1:${port}`, '--trust-domain', 'example.org', '--trust-bundle', path.join(dir, 'bundle.pem'),
    '--data-dir', path.join(dir, 'agent'), '--socket', socket, '--join-token', tok.token, '--sync-interval', '1s'];
  agent = await startAgentProcess();
  await waitHealthy();
}, 60_000);

afterAll(async () => {
  await agent?.stop();
  await ca?.stop();
  cleanupDir?.();
});

describe('brevis-agent CLI', () => {
  it('healthcheck reports the serving agent', () => {
    const r = runCli(AGENT_BIN, ['healthcheck', '--socket', socket]);
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe('serving');
  });

  it('api fetch x509 writes an SVID that openssl verifies against the bundle, with a private key file', () => {
    const out = path.join(dir, 'fetched');
    const r = runCli(AGENT_BIN, ['api', 'fetch', 'x509', '--socket', socket, '--out-dir', out]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/wrote .*svid\.pem.* for spiffe:\/\/example\.org\/cli-workload/);
    expect(statSync(path.join(out, 'svid.key')).mode & 0o777).toBe(0o600);
    expect(readFileSync(path.join(out, 'svid.key'), 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    const f = (n: string) => path.join(out, n);
    const verify = execFileSync('openssl', ['verify', '-x509_strict', '-purpose', 'sslserver', '-CAfile', f('bundle.pem'), '-untrusted', f('svid.pem'), f('svid.pem')], { encoding: 'utf8' });
    expect(verify).toContain(': OK');
    const text = execFileSync('openssl', ['x509', '-in', f('svid.pem'), '-noout', '-text'], { encoding: 'utf8' });
    expect(text).toContain('URI:spiffe://example.org/cli-workload');
    expect(text).toContain('DNS:workload.local');
    // The key is the certificate's: same public key.
    const pubFromKey = execFileSync('openssl', ['pkey', '-in', f('svid.key'), '-pubout'], { encoding: 'utf8' });
    const pubFromCert = execFileSync('openssl', ['x509', '-in', f('svid.pem'), '-noout', '-pubkey'], { encoding: 'utf8' });
    expect(pubFromKey).toBe(pubFromCert);
  });

  it('finds the socket through SPIFFE_ENDPOINT_SOCKET when --socket is not given', () => {
    const out = path.join(dir, 'from-env');
    const r = runCli(AGENT_BIN, ['api', 'fetch', 'x509', '--out-dir', out], { SPIFFE_ENDPOINT_SOCKET: `unix://${socket}` });
    expect(r.status).toBe(0);
    expect(existsSync(path.join(out, 'svid.pem'))).toBe(true);
    expect(runCli(AGENT_BIN, ['healthcheck'], { SPIFFE_ENDPOINT_SOCKET: `unix://${socket}` }).status).toBe(0);
  });

  it('api watch keeps the files current and runs the command after each change', async () => {
    const out = path.join(dir, 'watched');
    const marker = path.join(dir, 'exec-marker');
    const watch = await startDaemon(AGENT_BIN, ['api', 'watch', '--socket', socket, '--out-dir', out, '--exec', `echo changed >> '${marker}'`], /wrote/);
    try {
      await waitFor(() => existsSync(marker) && readFileSync(marker, 'utf8') === 'changed\n', 5_000, 'the first --exec run');
      expect(readFileSync(path.join(out, 'svid.pem'), 'utf8')).toContain('BEGIN CERTIFICATE');
      // A new entry whose id sorts first becomes this workload's default SVID.
      const tok = JSON.parse(ca_(['agent', 'list', '--json'])) as Array<{ agentId: string }>;
      ca_(['entry', 'create', '--entry-id', 'a-workload', '--spiffe-id', 'spiffe://example.org/cli-default', '--parent-id', tok[0]!.agentId, '--selector', `unix:uid:${uid}`]);
      await waitFor(() => readFileSync(marker, 'utf8') === 'changed\nchanged\n', 10_000, 'a second --exec run');
      const text = execFileSync('openssl', ['x509', '-in', path.join(out, 'svid.pem'), '-noout', '-ext', 'subjectAltName'], { encoding: 'utf8' });
      expect(text).toContain('URI:spiffe://example.org/cli-default');
    } finally {
      expect(await watch.stop('SIGTERM')).toBe(0);
    }
  });

  it('restarts without a new join token: the spent token in its arguments is never redeemed again', async () => {
    expect(await agent!.stop('SIGTERM')).toBe(0);
    expect(runCli(AGENT_BIN, ['healthcheck', '--socket', socket]).status).not.toBe(0);
    agent = await startAgentProcess();
    await waitHealthy();
    expect(agent.output()).toMatch(/reusing the stored agent SVID/);
    const agents = JSON.parse(ca_(['agent', 'list', '--json'])) as unknown[];
    expect(agents).toHaveLength(1);
  });

  it('fails with one line and a non-zero status on bad usage', () => {
    const noServer = runCli(AGENT_BIN, ['run', '--trust-domain', 'example.org']);
    expect(noServer.status).not.toBe(0);
    expect(noServer.stderr).toBe('brevis-agent: --server is required (flag or config file)\n');

    const noSocket = runCli(AGENT_BIN, ['api', 'fetch', 'x509', '--out-dir', path.join(dir, 'x')], { SPIFFE_ENDPOINT_SOCKET: '' });
    expect(noSocket.status).not.toBe(0);
    expect(noSocket.stderr).toMatch(/^brevis-agent: .*SPIFFE_ENDPOINT_SOCKET.*\n$/);

    const deadSocket = runCli(AGENT_BIN, ['healthcheck', '--socket', path.join(dir, 'nobody.sock'), '--timeout', '2s']);
    expect(deadSocket.status).not.toBe(0);
    expect(deadSocket.stderr).toMatch(/^brevis-agent: cannot reach the agent on .*nobody\.sock.*\n$/);
  });

  it('refuses to start a second agent on a data dir with no SVID and no attestation method', () => {
    const r = runCli(AGENT_BIN, ['run', '--server', `127.0.0.1:${port}`, '--trust-domain', 'example.org', '--trust-bundle', path.join(dir, 'bundle.pem'),
      '--data-dir', path.join(dir, 'empty-agent'), '--socket', path.join(dir, 'other.sock')]);
    expect(r.status).not.toBe(0);
    expect(r.stderr.trim().split('\n').at(-1)).toMatch(/^brevis-agent: no agent SVID in .*--join-token.*--x509pop-cert/);
  });

  it('writes files with which openssl s_server and s_client complete an mTLS handshake', async () => {
    const a = path.join(dir, 'ossl-a');
    const b = path.join(dir, 'ossl-b');
    for (const d of [a, b]) expect((await runCliAsync(AGENT_BIN, ['api', 'fetch', 'x509', '--socket', socket, '--out-dir', d])).status).toBe(0);
    const { spawn } = await import('node:child_process');
    const { createServer } = await import('node:net');
    const free = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const server = spawn('openssl', ['s_server', '-accept', `127.0.0.1:${free}`, '-naccept', '1', '-cert', path.join(a, 'svid.pem'), '-cert_chain', path.join(a, 'svid.pem'), '-key', path.join(a, 'svid.key'), '-CAfile', path.join(a, 'bundle.pem'), '-Verify', '3', '-verify_return_error', '-x509_strict']);
    let serverOut = '';
    server.stdout.on('data', (d) => (serverOut += d));
    server.stderr.on('data', (d) => (serverOut += d));
    await waitFor(() => serverOut.includes('ACCEPT'), 10_000, 'openssl s_server to listen');
    const client = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${free}`, '-cert', path.join(b, 'svid.pem'), '-cert_chain', path.join(b, 'svid.pem'), '-key', path.join(b, 'svid.key'), '-CAfile', path.join(b, 'bundle.pem'), '-verify', '3', '-verify_return_error', '-x509_strict', '-brief']);
    let clientOut = '';
    client.stdout.on('data', (d) => (clientOut += d));
    client.stderr.on('data', (d) => (clientOut += d));
    await waitFor(() => clientOut.includes('CONNECTION ESTABLISHED') || client.exitCode !== null, 10_000, 'openssl s_client to connect');
    client.stdin.end('hello over mTLS\n');
    const code = await new Promise<number | null>((r) => client.on('close', r));
    await new Promise((r) => (server.exitCode !== null ? r(null) : server.on('close', r)));
    expect(clientOut).toContain('CONNECTION ESTABLISHED');
    expect(clientOut).toContain('Verification: OK');
    expect(clientOut).toMatch(/Peer certificate: .*|Server certificate/);
    expect(code).toBe(0);
    expect(serverOut).toContain('hello over mTLS');
    expect(serverOut).toMatch(/Client certificate/);
  });
});
