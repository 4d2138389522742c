import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CA_BIN, requireBuilt, runCli, runCliAsync, startDaemon, type Daemon } from './support/processes.js';

describe('brevis-ca command line', () => {
  let dir: string;
  let ca: Daemon;
  let sock: string;
  const cli = (...args: string[]) => runCli(CA_BIN, [...args, '--socket', sock]);

  beforeAll(async () => {
    requireBuilt();
    dir = mkdtempSync(path.join(os.tmpdir(), 'brevis-cli-'));
    sock = path.join(dir, 'ca', 'admin.sock');
    ca = await startDaemon(CA_BIN, ['run', '--data-dir', path.join(dir, 'ca'), '--trust-domain', 'cli.example', '--listen', '127.0.0.1:0'], /CA serving/);
  });
  afterAll(async () => {
    await ca?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reports health through the admin socket', () => {
    const r = cli('healthcheck');
    expect(r.status).toBe(0);
  });

  it('creates a join token and prints only the token, or an object with --json', () => {
    const plain = cli('token', 'create', '--ttl', '5m');
    expect(plain.status).toBe(0);
    expect(plain.stdout.trim()).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const j = cli('token', 'create', '--agent-id', 'spiffe://cli.example/brevis/agent/node-1', '--json');
    const obj = JSON.parse(j.stdout);
    expect(obj.agent_id).toBe('spiffe://cli.example/brevis/agent/node-1');
    expect(obj.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(ca.output()).not.toContain(obj.token);
    expect(ca.output()).not.toContain(plain.stdout.trim());
  });

  it('creates, lists, shows and deletes entries', () => {
    const created = cli('entry', 'create', '--spiffe-id', 'spiffe://cli.example/web', '--parent-id', 'spiffe://cli.example/brevis/agent/node-1', '--selector', 'unix:uid:1000', '--selector', 'unix:path:/usr/bin/web', '--x509-ttl', '10m', '--dns', 'web.cli.example', '--hint', 'web');
    expect(created.stderr).toBe('');
    expect(created.status).toBe(0);
    const id = created.stdout.trim();
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    const list = JSON.parse(cli('entry', 'list', '--json').stdout);
    expect(list.map((e: { id: string }) => e.id)).toContain(id);
    const show = JSON.parse(cli('entry', 'show', id, '--json').stdout);
    expect(show).toMatchObject({ id, spiffeId: 'spiffe://cli.example/web', x509SvidTtl: 600, dnsNames: ['web.cli.example'], hint: 'web' });
    expect(show.selectors).toEqual([{ type: 'unix', value: 'path:/usr/bin/web' }, { type: 'unix', value: 'uid:1000' }]);
    expect(cli('entry', 'show', id).stdout).toContain('SPIFFE ID  : spiffe://cli.example/web');
    expect(cli('entry', 'delete', id).status).toBe(0);
    const gone = cli('entry', 'show', id);
    expect(gone.status).toBe(1);
    expect(gone.stderr.trim()).toBe(`brevis-ca: no entry with id ${id}`);
  });

  it('fails with one clear line and a non-zero status on bad input', () => {
    const cases: Array<[string[], RegExp]> = [
      [['entry', 'create', '--spiffe-id', 'spiffe://cli.example/a/', '--parent-id', 'spiffe://cli.example/p', '--selector', 'unix:uid:1'], /trailing/],
      [['entry', 'create', '--spiffe-id', 'spiffe://cli.example/a', '--parent-id', 'spiffe://cli.example/p', '--selector', 'nocolon'], /TYPE:VALUE/],
      [['token', 'create', '--ttl', '10 minutes'], /invalid duration/],
      [['x509', 'mint', '--spiffe-id', 'spiffe://elsewhere.example/x', '--out-dir', path.join(os.tmpdir(), 'never')], /not in trust domain/],
    ];
    for (const [args, re] of cases) {
      const r = cli(...args);
      expect(r.status, args.join(' ')).not.toBe(0);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/^brevis-ca: /);
      expect(r.stderr).toMatch(re);
    }
    const noCa = runCli(CA_BIN, ['entry', 'list', '--socket', path.join(dir, 'nope.sock')]);
    expect(noCa.status).toBe(1);
    expect(noCa.stderr).toMatch(/cannot reach the CA admin socket/);
  });

  it('shows the bundle as PEM and as a SPIFFE JWKS', () => {
    const pem = cli('bundle', 'show').stdout;
    const root = new X509Certificate(pem);
    expect(root.ca).toBe(true);
    expect(root.subjectAltName).toBe('URI:spiffe://cli.example');
    const jwks = JSON.parse(cli('bundle', 'show', '--format', 'spiffe').stdout);
    expect(jwks.spiffe_sequence).toBeGreaterThanOrEqual(1);
    expect(jwks.keys).toHaveLength(1);
    expect(jwks.keys[0].use).toBe('x509-svid');
    expect(Buffer.from(jwks.keys[0].x5c[0], 'base64').equals(root.raw)).toBe(true);
  });

  it('mints an SVID into files that openssl verifies, with the key kept private', async () => {
    const out = path.join(dir, 'minted');
    const r = await runCliAsync(CA_BIN, ['x509', 'mint', '--spiffe-id', 'spiffe://cli.example/batch-job', '--ttl', '5m', '--dns', 'job.cli.example', '--out-dir', out, '--socket', sock]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(statSync(path.join(out, 'svid.key')).mode & 0o777).toBe(0o600);
    const chain = readFileSync(path.join(out, 'svid.pem'), 'utf8');
    const leafPem = chain.slice(0, chain.indexOf('-----END CERTIFICATE-----') + 26);
    writeFileSync(path.join(out, 'leaf.pem'), leafPem);
    writeFileSync(path.join(out, 'inter.pem'), chain.slice(leafPem.length));
    const verify = execFileSync('openssl', ['verify', '-x509_strict', '-purpose', 'sslclient', '-CAfile', path.join(out, 'bundle.pem'), '-untrusted', path.join(out, 'inter.pem'), path.join(out, 'leaf.pem')]).toString();
    expect(verify).toMatch(/: OK\n$/);
    // The key in svid.key belongs to the certificate in svid.pem.
    const keyPub = execFileSync('openssl', ['pkey', '-in', path.join(out, 'svid.key'), '-pubout']).toString();
    const certPub = execFileSync('openssl', ['x509', '-in', path.join(out, 'leaf.pem'), '-noout', '-pubkey']).toString();
    expect(keyPub).toBe(certPub);
  });

  it('lists, evicts and bans agents, with clear errors for unknown ones', () => {
    expect(cli('agent', 'list').stdout.trim()).toBe('no agents');
    const r = cli('agent', 'evict', 'spiffe://cli.example/brevis/agent/ghost');
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe('brevis-ca: no agent spiffe://cli.example/brevis/agent/ghost');
  });

  it('refuses to start without a trust domain, with one line', () => {
    const r = runCli(CA_BIN, ['run', '--data-dir', path.join(dir, 'x'), '--listen', '127.0.0.1:0']);
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe('brevis-ca: --trust-domain is required (flag or config file)');
  });
});
