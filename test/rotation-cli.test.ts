import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CA_BIN, requireBuilt, runCli, startDaemon, type Daemon } from './support/processes.js';

interface ShownAuthority {
  kind: string;
  id: string;
  state: string;
  notBefore: string;
  notAfter: string | null;
  parentId: string | null;
  crossSignedBy: string[];
  trusted: boolean;
  trustedSinceSequence: number | null;
  agents: number;
  acknowledgedAgents: number;
  outstandingCredentials: number;
  public: string;
}

describe('brevis-ca authority', () => {
  let dir: string;
  let ca: Daemon;
  let sock: string;
  const cli = (...args: string[]) => runCli(CA_BIN, [...args, '--socket', sock]);
  const show = () => JSON.parse(cli('authority', 'show', '--json').stdout) as { bundleSequence: number; authorities: ShownAuthority[] };
  const of = (kind: string, state: string) => show().authorities.filter((a) => a.kind === kind && a.state === state);
  const bundleRoots = () => (cli('bundle', 'show').stdout.match(/BEGIN CERTIFICATE/g) ?? []).length;

  beforeAll(async () => {
    requireBuilt();
    dir = mkdtempSync(path.join(os.tmpdir(), 'brevis-rot-cli-'));
    sock = path.join(dir, 'ca', 'admin.sock');
    ca = await startDaemon(CA_BIN, ['run', '--data-dir', path.join(dir, 'ca'), '--trust-domain', 'rot.example', '--listen', '127.0.0.1:0'], /CA serving/);
  });
  afterAll(async () => {
    await ca?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('shows one active authority of each kind with validity, trust and acknowledgement counts', () => {
    const s = show();
    expect(s.bundleSequence).toBe(3);
    expect(s.authorities.map((a) => `${a.kind}:${a.state}`)).toEqual(['x509-root:active', 'x509-intermediate:active', 'ssh-user:active', 'ssh-host:active']);
    const [root, inter, sshUser] = s.authorities;
    expect(root!.id).toMatch(/^[0-9a-f]{40}$/);
    expect(inter!.parentId).toBe(root!.id);
    expect(root!.public).toMatch(/^-----BEGIN CERTIFICATE-----/);
    expect(sshUser!.id).toMatch(/^SHA256:/);
    expect(sshUser!.public).toMatch(/^ssh-ed25519 /);
    expect(sshUser!.notAfter).toBeNull();
    expect(root).toMatchObject({ trusted: true, trustedSinceSequence: 1, agents: 0, acknowledgedAgents: 0 });
    const text = cli('authority', 'show');
    expect(text.status).toBe(0);
    expect(text.stdout).toMatch(/^bundle sequence 3\nx509-root +[0-9a-f]{40} {2}active/);
    expect(text.stdout).toContain('acks 0/0');
  });

  it('prepares a root (printing only its id), publishes it, activates it, and rolls the activation back', () => {
    const before = bundleRoots();
    const prep = cli('authority', 'prepare', '--kind', 'x509-root');
    expect(prep.stderr).toBe('');
    const id = prep.stdout.trim();
    expect(id).toMatch(/^[0-9a-f]{40}$/);
    expect(bundleRoots()).toBe(before + 1);
    const inter = of('x509-intermediate', 'prepared');
    expect(inter).toHaveLength(1);
    expect(inter[0]!.parentId).toBe(id);
    expect(inter[0]!.crossSignedBy).toEqual([of('x509-root', 'active')[0]!.id]);

    const act = cli('authority', 'activate', '--kind', 'x509-root', '--id', id);
    expect(act.stderr).toBe('');
    expect(act.stdout.trim()).toMatch(new RegExp(`^activated x509-root ${id}; retired [0-9a-f]{40}, [0-9a-f]{40}$`));
    expect(of('x509-root', 'active')[0]!.id).toBe(id);
    expect(cli('healthcheck').status).toBe(0);

    const rb = cli('authority', 'rollback', '--kind', 'x509-root');
    expect(rb.stdout.trim()).toMatch(new RegExp(`^rolled back the activate of x509-root ${id}; active: [0-9a-f]{40}$`));
    expect(of('x509-root', 'active')[0]!.id).not.toBe(id);
  });

  it('prepares with --json and a chosen key type, and refuses a second prepare with a one-line error', () => {
    const r = cli('authority', 'prepare', '--kind', 'ssh-host', '--key-type', 'ec-p256', '--json');
    const obj = JSON.parse(r.stdout) as ShownAuthority;
    expect(obj).toMatchObject({ kind: 'ssh-host', state: 'prepared', trusted: true });
    expect(obj.public).toMatch(/^ecdsa-sha2-nistp256 /);
    expect(cli('ssh', 'ca-keys', '--type', 'host').stdout.trim().split('\n')).toHaveLength(2);
    const again = cli('authority', 'prepare', '--kind', 'ssh-host');
    expect(again.status).toBe(1);
    expect(again.stderr.trim()).toMatch(/^brevis-ca: a prepared ssh-host already exists \(SHA256:.*\): activate it or roll it back first$/);
    expect(cli('authority', 'rollback', '--kind', 'ssh-host').status).toBe(0);
    expect(cli('ssh', 'ca-keys', '--type', 'host').stdout.trim().split('\n')).toHaveLength(1);
  });

  it('taints and revokes a retired authority; refuses bad kinds and active targets', () => {
    const p = cli('authority', 'prepare', '--kind', 'x509-intermediate').stdout.trim();
    const old = of('x509-intermediate', 'active')[0]!.id;
    expect(cli('authority', 'activate', '--kind', 'x509-intermediate', '--id', p).status).toBe(0);
    const activeTaint = cli('authority', 'taint', '--kind', 'x509-intermediate', '--id', p);
    expect(activeTaint.status).toBe(1);
    expect(activeTaint.stderr).toMatch(/is active/);
    const t = cli('authority', 'taint', '--kind', 'x509-intermediate', '--id', old);
    expect(t.stdout.trim()).toMatch(new RegExp(`^tainted x509-intermediate ${old}; \\d+ credentials outstanding`));
    const r = cli('authority', 'revoke', '--kind', 'x509-intermediate', '--id', old, '--force');
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe(`revoked x509-intermediate ${old}`);
    expect(show().authorities.find((a) => a.id === old)).toMatchObject({ state: 'revoked', trusted: false });
    const bad = cli('authority', 'prepare', '--kind', 'x509-leaf');
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/x509-leaf.*invalid|Allowed choices/i);
  });

  it('records every step in the audit trail, which stays intact', () => {
    const records = JSON.parse(cli('audit', 'list', '--json').stdout) as Array<{ action: string; caller: string; detail: string | null }>;
    const steps = records.filter((r) => r.action.startsWith('authority.') && r.caller === 'admin:local').map((r) => r.action);
    expect(steps).toEqual(expect.arrayContaining(['authority.prepare', 'authority.activate', 'authority.rollback', 'authority.taint', 'authority.revoke']));
    expect(cli('audit', 'verify').status).toBe(0);
  });
});
