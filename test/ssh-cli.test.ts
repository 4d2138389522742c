import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CA_BIN, requireBuilt, runCli, startDaemon, type Daemon } from './support/processes.js';
import { sshKeygenKey, sshKeygenList } from './support/ssh-tools.js';

describe('brevis-ca ssh commands', () => {
  let dir: string;
  let ca: Daemon;
  let sock: string;
  let userPub: string;
  let hostPub: string;
  const cli = (...args: string[]) => runCli(CA_BIN, [...args, '--socket', sock]);

  beforeAll(async () => {
    requireBuilt();
    dir = mkdtempSync(path.join(os.tmpdir(), 'brevis-sshcli-'));
    sock = path.join(dir, 'ca', 'admin.sock');
    ca = await startDaemon(CA_BIN, ['run', '--data-dir', path.join(dir, 'ca'), '--trust-domain', 'cli.example', '--listen', '127.0.0.1:0'], /CA serving/);
    userPub = `${sshKeygenKey(dir, 'id_user', 'ed25519')}.pub`;
    hostPub = `${sshKeygenKey(dir, 'host_key', 'ecdsa', 384)}.pub`;
  });
  afterAll(async () => {
    await ca?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('prints the user and host CA keys, one authorized_keys line each, or a JSON array', () => {
    const user = cli('ssh', 'ca-keys', '--type', 'user');
    const host = cli('ssh', 'ca-keys', '--type', 'host');
    expect(user.status, user.stderr).toBe(0);
    expect(user.stdout).toMatch(/^ssh-ed25519 AAAA[A-Za-z0-9+/=]+ brevis-ssh-user-ca@cli\.example\n$/);
    expect(host.stdout).toMatch(/^ssh-ed25519 AAAA[A-Za-z0-9+/=]+ brevis-ssh-host-ca@cli\.example\n$/);
    expect(host.stdout.split(' ')[1]).not.toBe(user.stdout.split(' ')[1]);
    expect(execFileSync('ssh-keygen', ['-lf', '-'], { input: user.stdout, encoding: 'utf8' })).toMatch(/^256 SHA256:\S+ brevis-ssh-user-ca@cli\.example \(ED25519\)/);
    expect(JSON.parse(cli('ssh', 'ca-keys', '--type', 'host', '--json').stdout)).toEqual([host.stdout.trim()]);
  });

  it('signs a user certificate to stdout exactly as asked', () => {
    const r = cli('ssh', 'sign', '--type', 'user', '--public-key', userPub, '--principal', 'alice', '--principal', 'ops', '--ttl', '10m', '--key-id', 'alice laptop', '--force-command', '/usr/bin/id', '--source-address', '10.0.0.0/8,::1');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^ssh-ed25519-cert-v01@openssh\.com AAAA[A-Za-z0-9+/=]+\n$/);
    const listing = sshKeygenList(r.stdout);
    expect(listing).toContain('Key ID: "alice laptop"');
    expect(listing).toMatch(/Principals: \n {16}alice\n {16}ops\n/);
    expect(listing).toMatch(/Critical Options: \n {16}force-command \/usr\/bin\/id\n {16}source-address 10\.0\.0\.0\/8,::1\n/);
    const [, from, to] = /Valid: from (\S+) to (\S+)/.exec(listing)!;
    expect(Date.parse(`${to}Z`) - Date.parse(`${from}Z`)).toBe((600 + 30) * 1000);
    const userCa = cli('ssh', 'ca-keys', '--type', 'user').stdout;
    const caFp = execFileSync('ssh-keygen', ['-lf', '-'], { input: userCa, encoding: 'utf8' }).split(' ')[1];
    expect(listing).toContain(`Signing CA: ED25519 ${caFp}`);
  });

  it('signs a host certificate into a file, with a JSON summary on request', () => {
    const out = path.join(dir, 'host_key-cert.pub');
    const plain = cli('ssh', 'sign', '--type', 'host', '--public-key', hostPub, '--principal', 'db-1.cli.example', '--out', out);
    expect(plain.status, plain.stderr).toBe(0);
    expect(plain.stdout).toMatch(/^wrote .*host_key-cert\.pub: host certificate, serial \d+, principals db-1\.cli\.example, valid until \S+Z\n$/);
    const listing = sshKeygenList(readFileSync(out, 'utf8'));
    expect(listing).toContain('Type: ecdsa-sha2-nistp384-cert-v01@openssh.com host certificate');
    expect(listing).toMatch(/Key ID: "brevis-ca admin serial=(\d+)"\n\s+Serial: \1\n/);
    const j = JSON.parse(cli('ssh', 'sign', '--type', 'host', '--public-key', hostPub, '--principal', 'db-1.cli.example', '--ttl', '1h', '--json').stdout);
    expect(j).toMatchObject({ type: 'host', principals: ['db-1.cli.example'], key_id: `brevis-ca admin serial=${j.serial}` });
    expect(j.valid_before - j.valid_after).toBe(3600 + 30);
    expect(sshKeygenList(j.certificate)).toContain(`Serial: ${j.serial}`);
  });

  it('creates entries and join tokens with SSH settings, and shows them', () => {
    const id = cli('entry', 'create', '--spiffe-id', 'spiffe://cli.example/deploy', '--parent-id', 'spiffe://cli.example/brevis/agent/n1', '--selector', 'unix:uid:1000', '--ssh-principal', 'deploy', '--ssh-principal', 'git', '--ssh-ttl', '30m', '--ssh-extension', 'permit-pty', '--ssh-force-command', 'git-shell', '--ssh-source-address', '10.1.0.0/16').stdout.trim();
    const shown = JSON.parse(cli('entry', 'show', id, '--json').stdout);
    expect(shown.ssh).toEqual({ principals: ['deploy', 'git'], ttl: 1800, extensions: { names: ['permit-pty'] }, forceCommand: 'git-shell', sourceAddress: '10.1.0.0/16', hostPrincipals: [] });
    const human = cli('entry', 'show', id).stdout;
    expect(human).toContain('SSH principals : deploy, git');
    expect(human).toContain('SSH TTL        : 30m');
    expect(human).toContain('SSH options    : force-command=git-shell source-address=10.1.0.0/16');

    const node = cli('entry', 'create', '--spiffe-id', 'spiffe://cli.example/nodes/db', '--parent-id', 'spiffe://cli.example/brevis/server', '--selector', 'x509pop:subject:cn:db-1', '--ssh-host-principal', 'db-1.cli.example', '--ssh-host-principal', 'db.cli.example', '--json');
    expect(node.status, node.stderr).toBe(0);
    expect(JSON.parse(node.stdout).ssh.hostPrincipals).toEqual(['db-1.cli.example', 'db.cli.example']);

    const tok = JSON.parse(cli('token', 'create', '--ssh-host-principal', 'Web-1.cli.example', '--ssh-host-principal', '10.9.8.7', '--json').stdout);
    expect(tok.ssh_host_principals).toEqual(['web-1.cli.example', '10.9.8.7']);
    expect(tok.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('fails with one clear line and a non-zero status on bad SSH input', () => {
    const badKey = path.join(dir, 'bad.pub');
    writeFileSync(badKey, 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7\n');
    const entry = ['entry', 'create', '--spiffe-id', 'spiffe://cli.example/x', '--parent-id', 'spiffe://cli.example/brevis/agent/n1', '--selector', 'unix:uid:1'];
    const cases: Array<[string[], RegExp]> = [
      [['ssh', 'sign', '--type', 'user', '--public-key', userPub], /--principal/],
      [['ssh', 'sign', '--type', 'admin', '--public-key', userPub, '--principal', 'a'], /--type.*user, host/],
      [['ssh', 'sign', '--type', 'user', '--public-key', path.join(dir, 'missing.pub'), '--principal', 'a'], /cannot read public key file .*missing\.pub: ENOENT/],
      [['ssh', 'sign', '--type', 'user', '--public-key', badKey, '--principal', 'a'], /invalid SSH public key: truncated/],
      [['ssh', 'sign', '--type', 'user', '--public-key', userPub.replace(/\.pub$/, ''), '--principal', 'a'], /id_user is a private key: give the public key/],
      [['ssh', 'sign', '--type', 'host', '--public-key', hostPub, '--principal', 'h.example', '--force-command', 'x'], /user certificates only/],
      [['ssh', 'sign', '--type', 'user', '--public-key', userPub, '--principal', 'a', '--ttl', '2d'], /outside the allowed range/],
      [['ssh', 'ca-keys'], /--type/],
      [[...entry, '--ssh-host-principal', 'h.example'], /belong on a node entry/],
      [[...entry, '--ssh-principal', 'a', '--ssh-extension', 'permit-pty', '--ssh-no-extensions'], /either --ssh-extension or --ssh-no-extensions/],
      [['token', 'create', '--ssh-host-principal', '*.example'], /invalid SSH host principal/],
    ];
    for (const [args, re] of cases) {
      const r = cli(...args);
      expect(r.status, args.join(' ')).not.toBe(0);
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stderr).toMatch(/^brevis-ca: /);
      expect(r.stderr, args.join(' ')).toMatch(re);
    }
  });
});
