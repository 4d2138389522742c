/**
 * OpenSSH as an independent judge: ssh-keygen to make keys and read
 * certificates, and a private sshd on a loopback high port with an ssh
 * client to log in. Nothing here is a mock.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const SSHD = '/usr/sbin/sshd';

/** `ssh-keygen -L` of a certificate line, with times printed in UTC. */
export function sshKeygenList(certLine: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'brevis-sshl-'));
  try {
    const file = path.join(dir, 'id-cert.pub');
    writeFileSync(file, certLine.endsWith('\n') ? certLine : `${certLine}\n`);
    return execFileSync('ssh-keygen', ['-L', '-f', file], { env: { ...process.env, TZ: 'UTC' }, encoding: 'utf8' });
  } finally {
    execFileSync('rm', ['-rf', dir]);
  }
}

/** Like sshKeygenList but returns the exit status and stderr instead of throwing. */
export function sshKeygenListStatus(certLine: string): { status: number; output: string } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'brevis-sshl-'));
  try {
    const file = path.join(dir, 'id-cert.pub');
    writeFileSync(file, `${certLine}\n`);
    const r = spawnSync('ssh-keygen', ['-L', '-f', file], { env: { ...process.env, TZ: 'UTC' }, encoding: 'utf8' });
    return { status: r.status ?? -1, output: `${r.stdout}${r.stderr}` };
  } finally {
    execFileSync('rm', ['-rf', dir]);
  }
}

/** Generates a key with ssh-keygen into `dir/name` (+ .pub); returns the private key path. */
export function sshKeygenKey(dir: string, name: string, type: 'ed25519' | 'ecdsa' | 'rsa', bits?: number): string {
  const file = path.join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', type, ...(bits ? ['-b', String(bits)] : []), '-N', '', '-C', name, '-f', file]);
  return file;
}

/** A free TCP port on 127.0.0.1 (closed again before returning). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export interface Sshd {
  port: number;
  dir: string;
  proc: ChildProcess;
  /** Everything sshd logged so far (-e: to stderr). */
  log(): string;
  stop(): Promise<void>;
}

export interface SshdFiles {
  hostKey: string;
  hostCert: string;
  trustedUserCaKeys: string;
  /** user name -> principals sshd accepts for that user (AuthorizedPrincipalsFile). */
  principals: Record<string, string[]>;
}

/**
 * Starts `sshd -D -e -f CONFIG` on a free loopback port with a private
 * config (NOTES.md): public keys with certificates only, no PAM, no
 * passwords. Resolves once it logs "Server listening".
 */
export async function startSshd(dir: string, files: SshdFiles): Promise<Sshd> {
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const principalsDir = path.join(dir, 'principals');
  mkdirSync(principalsDir, { recursive: true });
  for (const [user, ps] of Object.entries(files.principals)) writeFileSync(path.join(principalsDir, user), `${ps.join('\n')}\n`);
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const config = path.join(dir, 'sshd_config');
    writeFileSync(
      config,
      [
        `Port ${port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${files.hostKey}`,
        `HostCertificate ${files.hostCert}`,
        `PidFile ${path.join(dir, 'sshd.pid')}`,
        'UsePAM no',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'AuthenticationMethods publickey',
        'AuthorizedKeysFile none',
        `TrustedUserCAKeys ${files.trustedUserCaKeys}`,
        `AuthorizedPrincipalsFile ${principalsDir}/%u`,
        'StrictModes no',
        'LogLevel VERBOSE',
        'PermitRootLogin yes',
        '',
      ].join('\n'),
    );
    const proc = spawn(SSHD, ['-D', '-e', '-f', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout!.on('data', (d) => (out += d));
    proc.stderr!.on('data', (d) => (out += d));
    const ok = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 15_000);
      const check = () => {
        if (/Server listening/.test(out)) {
          clearTimeout(timer);
          resolve(true);
        }
      };
      proc.stderr!.on('data', check);
      proc.stdout!.on('data', check);
      proc.once('exit', () => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    const sshd: Sshd = {
      port,
      dir,
      proc,
      log: () => out,
      stop: () =>
        new Promise<void>((resolve) => {
          if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
          proc.once('exit', () => resolve());
          proc.kill('SIGTERM');
        }),
    };
    if (ok) return sshd;
    await sshd.stop();
    // Another process may have taken the port between freePort() and bind.
    if (attempt >= 2 || !/Address already in use|Bind to port/.test(out)) throw new Error(`sshd did not start:\n${out}`);
  }
}

export interface SshResult {
  status: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `ssh` with a certificate against the test sshd, trusting hosts only
 * through `knownHosts` (StrictHostKeyChecking=yes). Returns its status.
 */
export function sshLogin(opts: { port: number; user: string; key: string; cert: string; knownHosts: string; command?: string; host?: string }): Promise<SshResult> {
  const args = [
    '-F', '/dev/null',
    '-o', 'IdentitiesOnly=yes',
    '-o', 'BatchMode=yes',
    '-o', `UserKnownHostsFile=${opts.knownHosts}`,
    '-o', 'GlobalKnownHostsFile=/dev/null',
    '-o', 'StrictHostKeyChecking=yes',
    '-o', 'ConnectTimeout=10',
    '-i', opts.key,
    '-o', `CertificateFile=${opts.cert}`,
    '-p', String(opts.port),
    `${opts.user}@${opts.host ?? '127.0.0.1'}`,
    opts.command ?? 'echo brevis-login-ok',
  ];
  return new Promise((resolve) => {
    const p = spawn('ssh', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), 30_000);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ status: code ?? -1, stdout, stderr });
    });
  });
}
