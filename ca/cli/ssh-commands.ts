/**
 * The SSH part of brevis-ca: `ssh sign`, `ssh ca-keys`, and the SSH flags
 * of `entry create` and `token create`. Registered by main.ts, which passes
 * its shared helpers in.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { Option, type Command } from 'commander';
import type { EntrySSH, SSHCertificate } from '../../proto/gen/brevis/ca/v1/types.js';
import { SSHCertificateType } from '../../proto/gen/brevis/ca/v1/types.js';
import type { AdminApi } from './admin-client.js';
import { CliError } from './cli-error.js';

export interface CliHelpers {
  withSocket(cmd: Command): Command;
  withAdmin<T>(opts: { socket?: string }, fn: (api: AdminApi) => Promise<T>): Promise<T>;
  out(s: string): void;
  json(v: unknown): void;
  durationArg(v: string): number;
  collect(v: string, prev?: string[]): string[];
}

const TYPES = { user: SSHCertificateType.SSH_CERTIFICATE_TYPE_USER, host: SSHCertificateType.SSH_CERTIFICATE_TYPE_HOST } as const;

/** Adds the SSH options of `entry create`. */
export function addEntrySshOptions(cmd: Command, h: Pick<CliHelpers, 'durationArg' | 'collect'>): Command {
  return cmd
    .option('--ssh-principal <name>', 'principal (login name) of SSH user certificates for this entry (repeatable)', h.collect)
    .option('--ssh-ttl <duration>', 'SSH user certificate lifetime (default 1h)', h.durationArg)
    .option('--ssh-extension <name>', 'SSH user certificate extension (repeatable; replaces the default set)', h.collect)
    .option('--ssh-no-extensions', 'SSH user certificates without any extension')
    .option('--ssh-force-command <cmd>', 'force-command critical option of SSH user certificates')
    .option('--ssh-source-address <cidrs>', 'source-address critical option (comma-separated CIDR list)')
    .option('--ssh-host-principal <name>', 'node entries: host name for every agent this node entry matches (repeatable)', h.collect);
}

interface EntrySshFlags {
  sshPrincipal?: string[];
  sshTtl?: number;
  sshExtension?: string[];
  sshNoExtensions?: boolean;
  sshForceCommand?: string;
  sshSourceAddress?: string;
  sshHostPrincipal?: string[];
}

/** The entry's `ssh` field from the flags, or undefined when no SSH flag was given. */
export function entrySshFromFlags(f: EntrySshFlags): EntrySSH | undefined {
  if (f.sshNoExtensions && f.sshExtension) throw new CliError('use either --ssh-extension or --ssh-no-extensions, not both');
  const any = [f.sshPrincipal, f.sshTtl, f.sshExtension, f.sshNoExtensions, f.sshForceCommand, f.sshSourceAddress, f.sshHostPrincipal].some((v) => v !== undefined);
  if (!any) return undefined;
  const extensions = f.sshNoExtensions ? { extensions: { names: [] } } : f.sshExtension ? { extensions: { names: f.sshExtension } } : {};
  return {
    principals: f.sshPrincipal ?? [],
    ttl: f.sshTtl ?? 0,
    ...extensions,
    forceCommand: f.sshForceCommand ?? '',
    sourceAddress: f.sshSourceAddress ?? '',
    hostPrincipals: f.sshHostPrincipal ?? [],
  };
}

/** `entry show` lines for the SSH settings. */
export function entrySshLines(ssh: EntrySSH | undefined, formatTtl: (s: number) => string): string[] {
  if (!ssh) return [];
  const lines: string[] = [];
  if (ssh.principals.length > 0) {
    lines.push(
      `SSH principals : ${ssh.principals.join(', ')}`,
      `SSH TTL        : ${ssh.ttl ? formatTtl(ssh.ttl) : 'default'}`,
      `SSH extensions : ${ssh.extensions?.names.join(', ') || '-'}`,
      `SSH options    : ${[ssh.forceCommand && `force-command=${ssh.forceCommand}`, ssh.sourceAddress && `source-address=${ssh.sourceAddress}`].filter(Boolean).join(' ') || '-'}`,
    );
  }
  if (ssh.hostPrincipals.length > 0) lines.push(`SSH host names : ${ssh.hostPrincipals.join(', ')}`);
  return lines;
}

function readPublicKey(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new CliError(`cannot read public key file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  // Never send a private key to the CA, not even over the local socket.
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) throw new CliError(`${file} is a private key: give the public key (the .pub file)`);
  return text;
}

function certJson(c: SSHCertificate, extra: Record<string, unknown> = {}) {
  return {
    certificate: c.certificate,
    type: c.type === SSHCertificateType.SSH_CERTIFICATE_TYPE_USER ? 'user' : 'host',
    serial: c.serial,
    key_id: c.keyId,
    principals: c.principals,
    valid_after: c.validAfter,
    valid_before: c.validBefore,
    ca_fingerprint: c.caFingerprint,
    ...extra,
  };
}

/** Registers `brevis-ca ssh sign` and `brevis-ca ssh ca-keys`. */
export function registerSshCommands(program: Command, h: CliHelpers): void {
  const ssh = program.command('ssh').description('OpenSSH certificates');
  const typeOption = () => new Option('--type <type>', 'certificate type').choices(['user', 'host']).makeOptionMandatory();

  h.withSocket(ssh.command('sign'))
    .description('sign an OpenSSH certificate for a public key; prints the certificate (or writes it to --out)')
    .addOption(typeOption())
    .requiredOption('--public-key <file>', 'the public key to certify (a .pub file)')
    .requiredOption('--principal <name>', 'principal: a login name (user) or host name (host); repeatable', h.collect)
    .option('--ttl <duration>', 'lifetime (default: user 1h, host 8h)', h.durationArg)
    .option('--key-id <id>', 'key id logged by sshd (default: brevis-ca admin serial=<serial>)')
    .option('--force-command <cmd>', 'user certificates: the force-command critical option')
    .option('--source-address <cidrs>', 'user certificates: the source-address critical option (comma-separated CIDR list)')
    .option('--out <file>', 'write the certificate to this file (default: stdout)')
    .option('--json', 'print a JSON object')
    .action(async (opts) => {
      const publicKey = readPublicKey(opts.publicKey);
      const res = await h.withAdmin(opts, (api) =>
        api.call<unknown, { certificate: SSHCertificate }>('signSshCertificate', {
          type: TYPES[opts.type as keyof typeof TYPES],
          publicKey,
          principals: opts.principal,
          ttlSeconds: opts.ttl ?? 0,
          keyId: opts.keyId ?? '',
          forceCommand: opts.forceCommand ?? '',
          sourceAddress: opts.sourceAddress ?? '',
        }),
      );
      const c = res.certificate;
      if (opts.out) {
        try {
          writeFileSync(opts.out, `${c.certificate}\n`, { mode: 0o644 });
        } catch (e) {
          throw new CliError(`cannot write ${opts.out}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
        }
      }
      if (opts.json) h.json(certJson(c, opts.out ? { out: opts.out } : {}));
      else if (opts.out) {
        h.out(`wrote ${opts.out}: ${opts.type} certificate, serial ${c.serial}, principals ${c.principals.join(',')}, valid until ${new Date(c.validBefore * 1000).toISOString()}`);
      } else h.out(c.certificate);
    });

  h.withSocket(ssh.command('ca-keys'))
    .description('print the SSH CA public keys to trust, one authorized_keys line each')
    .addOption(typeOption())
    .option('--json', 'print a JSON array')
    .action(async (opts) => {
      const res = await h.withAdmin(opts, (api) => api.call<unknown, { publicKeys: string[] }>('getSshcaKeys', { type: TYPES[opts.type as keyof typeof TYPES] }));
      if (opts.json) h.json(res.publicKeys);
      else h.out(res.publicKeys.join('\n'));
    });
}
