/**
 * No secret in any log line or audit record: the whole system runs as real
 * processes at debug level (a CA, an agent with an SSH host certificate,
 * workloads fetching SVIDs and SSH user certificates, an admin minting,
 * a replayed join token), then every line the CA and the agent wrote and
 * every audit record is searched for private key material (PEM headers;
 * each private key's PKCS#8 DER and its private scalar in base64, base64url
 * and hex), the key-encryption key, and join tokens.
 */
import { generateKeyPairSync, createPrivateKey, type KeyObject } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseKekHex } from '../ca/keys/kek.js';
import { KeyStore } from '../ca/keys/keystore.js';
import { formatAuthorizedKey, sshPublicKeyBlob } from '../ca/ssh/public-key.js';
import { tempDir, waitFor } from './support/agent-harness.js';
import { AGENT_BIN, CA_BIN, requireBuilt, runCli, runCliAsync, startDaemon, type Daemon } from './support/processes.js';

const KEK = Buffer.from(Array.from({ length: 32 }, (_, i) => (i * 37 + 11) & 0xff)).toString('hex');

let dir: string;
let cleanupDir: () => void;
let ca: Daemon;
let agent: Daemon;
let adminSocket: string;
let socket: string;
const tokens: string[] = [];
/** What an agent refused by the CA (a replayed join token) wrote. */
let replayLog = '';

function admin(args: string[]): string {
  const r = runCli(CA_BIN, [...args, '--socket', adminSocket]);
  if (r.status !== 0) throw new Error(`brevis-ca ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout.trim();
}

/** Every form a private key could leak in: PKCS#8 DER and its private scalar, in base64, base64url and hex. */
function needles(name: string, key: KeyObject): Array<{ what: string; text: string }> {
  const der = key.export({ type: 'pkcs8', format: 'der' });
  const jwk = key.export({ format: 'jwk' }) as { d?: string };
  const out = [
    { what: `${name} PKCS#8 (base64)`, text: der.toString('base64').slice(0, 64) },
    { what: `${name} PKCS#8 (hex)`, text: der.toString('hex').slice(0, 96) },
  ];
  if (jwk.d) {
    const d = Buffer.from(jwk.d, 'base64url');
    out.push({ what: `${name} private scalar (base64url)`, text: jwk.d }, { what: `${name} private scalar (base64)`, text: d.toString('base64') }, { what: `${name} private scalar (hex)`, text: d.toString('hex') });
  }
  return out;
}

beforeAll(async () => {
  requireBuilt();
  ({ dir, cleanup: cleanupDir } = tempDir('brevis-secrets-'));
  const f = (n: string) => path.join(dir, n);
  const env = { BREVIS_KEK: KEK };
  ca = await startDaemon(CA_BIN, ['run', '--data-dir', f('ca'), '--trust-domain', 'example.org', '--listen', '127.0.0.1:0', '--log-level', 'debug'], /CA serving/, env);
  const port = Number(/"port":(\d+)/.exec(ca.output())![1]);
  adminSocket = f('ca/admin.sock');
  writeFileSync(f('bundle.pem'), `${admin(['bundle', 'show'])}\n`);
  const tok = JSON.parse(admin(['token', 'create', '--json', '--ssh-host-principal', 'host1.example.org'])) as { token: string; agent_id: string };
  tokens.push(tok.token);
  const uid = String(process.getuid!());
  admin(['entry', 'create', '--spiffe-id', 'spiffe://example.org/secrets/workload', '--parent-id', tok.agent_id, '--selector', `unix:uid:${uid}`, '--ssh-principal', 'deploy']);
  // The node's sshd host key: the agent keeps a host certificate for its public half.
  const host = generateKeyPairSync('ed25519');
  writeFileSync(f('host_ed25519.pub'), `${formatAuthorizedKey(sshPublicKeyBlob(host.publicKey), 'host')}\n`);
  socket = f('agent.sock');
  agent = await startDaemon(
    AGENT_BIN,
    ['run', '--server', `127.0.0.1:${port}`, '--trust-domain', 'example.org', '--trust-bundle', f('bundle.pem'), '--data-dir', f('agent'), '--socket', socket,
      '--join-token', tok.token, '--sync-interval', '1s', '--log-level', 'debug', '--ssh-host-key', f('host_ed25519.pub'), '--ssh-host-cert', f('host_ed25519-cert.pub')],
    /agent running/,
  );
  await waitFor(async () => (await runCliAsync(AGENT_BIN, ['healthcheck', '--socket', socket])).status === 0, 20_000, 'the agent to serve');

  // Workloads: an X.509-SVID to files, an SSH user certificate for their own key.
  const fetched = runCli(AGENT_BIN, ['api', 'fetch', 'x509', '--socket', socket, '--out-dir', f('workload')]);
  expect(fetched.status, fetched.stderr).toBe(0);
  const user = generateKeyPairSync('ed25519');
  writeFileSync(f('user.pub'), `${formatAuthorizedKey(sshPublicKeyBlob(user.publicKey), 'user')}\n`);
  const signed = runCli(AGENT_BIN, ['api', 'ssh', 'sign', '--socket', socket, '--public-key', f('user.pub'), '--out', f('user-cert.pub')]);
  expect(signed.status, signed.stderr).toBe(0);
  // An admin mint (the CLI makes its key), and a replayed join token refused by the CA.
  admin(['x509', 'mint', '--spiffe-id', 'spiffe://example.org/secrets/admin-minted', '--out-dir', f('minted')]);
  const replay = runCli(AGENT_BIN, ['run', '--server', `127.0.0.1:${port}`, '--trust-domain', 'example.org', '--trust-bundle', f('bundle.pem'), '--data-dir', f('agent2'), '--socket', f('agent2.sock'), '--join-token', tok.token, '--log-level', 'debug']);
  expect(replay.status).not.toBe(0);
  replayLog = replay.stderr;
  const second = JSON.parse(admin(['token', 'create', '--json'])) as { token: string };
  tokens.push(second.token);
  await waitFor(() => readdirSync(dir).includes('host_ed25519-cert.pub'), 20_000, 'the host certificate');
}, 120_000);

afterAll(async () => {
  await agent?.stop();
  await ca?.stop();
  cleanupDir?.();
});

describe('secrets in logs and audit records', () => {
  it('no log line of the CA or the agent and no audit record holds a private key, the KEK or a join token', async () => {
    const f = (n: string) => path.join(dir, n);
    const audit = admin(['audit', 'list', '--json']);
    expect(JSON.parse(audit).length).toBeGreaterThan(5);
    await agent.stop();
    await ca.stop();
    const logs = { 'CA log': ca.output(), 'agent log': agent.output(), 'refused agent log': replayLog, 'audit records': audit };
    const lines = Object.values(logs).reduce((n, s) => n + s.split('\n').filter(Boolean).length, 0);
    expect(logs['CA log']).toMatch(/"level":20/); // debug lines were written (the agent has none of its own)

    // The secrets, read back from where they legitimately live.
    const kek = { key: parseKekHex(KEK, 'kek') };
    const keysDir = f('ca/keys');
    const secrets: Array<{ what: string; text: string }> = [{ what: 'PEM private key header', text: 'PRIVATE KEY-----' }, { what: 'the KEK', text: KEK }];
    for (const name of readdirSync(keysDir).filter((n) => n.endsWith('.key'))) {
      const signer = await new KeyStore({ dir: keysDir, kek }).load(name.slice(0, -4));
      secrets.push(...needles(`CA key ${name}`, signer.privateKeyObject));
    }
    expect(secrets.length).toBeGreaterThan(10);
    const pemKey = (file: string) => createPrivateKey(/-----BEGIN PRIVATE KEY-----[^-]+-----END PRIVATE KEY-----/.exec(readFileSync(file, 'utf8'))![0]);
    secrets.push(...needles('agent key', pemKey(f('agent/agent-svid.pem'))));
    const workloadKey = needles('workload key', pemKey(f('workload/svid.key')));
    // The search does find a key where it legitimately is: the workload's own key file.
    expect(readFileSync(f('workload/svid.key'), 'utf8')).toContain(workloadKey[0]!.text);
    secrets.push(...workloadKey);
    secrets.push(...needles('admin-minted key', pemKey(f('minted/svid.key'))));
    for (const [i, t] of tokens.entries()) secrets.push({ what: `join token ${i + 1}`, text: t });

    const found: string[] = [];
    for (const [where, text] of Object.entries(logs)) {
      for (const s of secrets) if (text.includes(s.text)) found.push(`${s.what} in ${where}`);
    }
    console.log(`searched ${lines} log lines and audit records for ${secrets.length} secret forms: ${found.length} found`);
    expect(found).toEqual([]);
  });
});
