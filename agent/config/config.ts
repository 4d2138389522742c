/**
 * Agent configuration: parse (JSON file + flags, flags win), validate,
 * freeze. Durations and fractions are parsed once here; nothing downstream
 * reads raw strings.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { validateHostPrincipal } from '../../ca/ssh/options.js';
import { parseListenAddress } from '../../ca/metrics/listen-address.js';
import { parseDuration } from '../../spiffe/duration.js';
import { parseTrustDomain } from '../../spiffe/id.js';
import { parseServerList } from '../node/failover.js';

/** How the agent proves who it is on first start (or when it must attest again). */
export type AttestationConfig =
  | { readonly method: 'join_token'; readonly token: string }
  | { readonly method: 'x509pop'; readonly certFile: string; readonly keyFile: string };

/**
 * When an SVID is replaced: once its remaining life falls below `fraction`
 * of its lifetime, moved by a random ±`jitter` (relative) per SVID so that a
 * fleet does not renew in step.
 */
export interface RotationPolicy {
  /** In (0, 1); 0.5 renews at half-life. */
  readonly fraction: number;
  /** In [0, 0.5); 0.1 means ±10% of the time to the rotation point. */
  readonly jitter: number;
}

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

/** The node's sshd host certificate, kept current by the agent. */
export interface SshHostConfig {
  /** Absolute; the sshd host public key (`.pub`). */
  readonly keyFile: string;
  /** Absolute; where the host certificate is written (sshd HostCertificate). */
  readonly certFile: string;
  /** Lower case; empty means every host name the admin bound to this agent. */
  readonly principals: readonly string[];
  /** Run with `sh -c` after each new host certificate (e.g. reload sshd); null for none. */
  readonly reloadCommand: string | null;
}

export interface AgentSshConfig {
  /** null: the agent keeps no host certificate. */
  readonly host: SshHostConfig | null;
  /** Absolute; where trusted_user_ca_keys and known_hosts are kept; null for none. */
  readonly trustDir: string | null;
}

export interface AgentConfig {
  /** host:port of the CA's node API (TLS): the first of `serverAddresses`. */
  readonly serverAddress: string;
  /** Every CA server, in order of preference; the agent fails over between them. */
  readonly serverAddresses: readonly string[];
  readonly trustDomain: string;
  /** PEM file with the CA's root certificates, used until the agent has a bundle of its own. */
  readonly trustBundleFile: string;
  /** Absolute; holds the agent SVID, its key and the last bundle. */
  readonly dataDir: string;
  /** Absolute path of the Workload API Unix socket. */
  readonly socketPath: string;
  /** null: the agent must already hold a valid agent SVID in dataDir. */
  readonly attestation: AttestationConfig | null;
  readonly syncIntervalSeconds: number;
  readonly rotation: RotationPolicy;
  readonly logLevel: LogLevel;
  /**
   * OpenSSH host certificate and trust files; absent when none is
   * configured (user certificates for workloads need no setting).
   */
  readonly ssh?: AgentSshConfig;
  /** host:port of the Prometheus endpoint; absent: off. */
  readonly metricsListen?: string;
}

export class AgentConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  constructor(message: string) {
    super(message);
    this.name = 'AgentConfigError';
  }
}

const duration = z.string().transform((s, ctx) => {
  try {
    return parseDuration(s);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});

// Flags arrive as strings, a JSON file may hold numbers: accept both.
const number = z.union([
  z.number(),
  z
    .string()
    .regex(/^\d+(\.\d+)?$/, 'must be a number such as 0.5')
    .transform(Number),
]);

/** The raw shape accepted from a JSON config file and from flags (camelCase of the flag names). */
export const rawAgentConfigSchema = z
  .object({
    // HOST:PORT, or several servers of one CA: HOST:PORT,HOST:PORT,... (a config file may give a list).
    server: z.union([z.string(), z.array(z.string()).min(1).transform((l) => l.join(','))]).transform((s, ctx) => {
      try {
        return parseServerList(s);
      } catch (e) {
        ctx.addIssue({ code: 'custom', message: `server must be HOST:PORT or HOST:PORT,HOST:PORT,...: ${(e as Error).message}` });
        return z.NEVER;
      }
    }),
    trustDomain: z.string().min(1),
    trustBundle: z.string().min(1),
    dataDir: z.string().min(1),
    socket: z.string().min(1),
    joinToken: z.string().min(1).optional(),
    x509popCert: z.string().min(1).optional(),
    x509popKey: z.string().min(1).optional(),
    syncInterval: duration.prefault('5s'),
    rotationFraction: number.prefault(0.5),
    rotationJitter: number.prefault(0.1),
    logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error']).default('info'),
    metrics: z
      .string()
      .refine((s) => {
        try {
          return parseListenAddress(s).port >= 0;
        } catch {
          return false;
        }
      }, 'must be HOST:PORT')
      .optional(),
    sshHostKey: z.string().min(1).optional(),
    sshHostCert: z.string().min(1).optional(),
    // Repeatable flag (a list); a config file may give one name as a string.
    sshHostPrincipal: z.union([z.string().min(1).transform((s) => [s]), z.array(z.string().min(1))]).optional(),
    sshTrustDir: z.string().min(1).optional(),
    sshReloadCmd: z.string().min(1).optional(),
  })
  .strict();

export type RawAgentConfig = z.input<typeof rawAgentConfigSchema>;

/** Flag spelling of a raw key, for messages: trustBundle -> --trust-bundle. */
export function flagName(key: string): string {
  return `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/** Reads a JSON config file (an object); missing keys are fine, flags may supply them. */
export function readAgentConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new AgentConfigError(`cannot read config file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    return v as Record<string, unknown>;
  } catch (e) {
    throw new AgentConfigError(`config file ${file} is not a JSON object: ${(e as Error).message}`);
  }
}

/** The file's keys overlaid with every flag that was given (undefined flags are skipped). */
export function mergeAgentConfig(file: Record<string, unknown>, flags: Record<string, unknown>): Record<string, unknown> {
  const raw = { ...file };
  for (const [k, v] of Object.entries(flags)) if (v !== undefined) raw[k] = v;
  return raw;
}

/** Validates the merged raw config and builds the frozen AgentConfig. Throws AgentConfigError. */
export function buildAgentConfig(raw: Record<string, unknown>): AgentConfig {
  for (const k of ['server', 'trustDomain', 'trustBundle', 'dataDir', 'socket'] as const) {
    if (raw[k] === undefined) throw new AgentConfigError(`${flagName(k)} is required (flag or config file)`);
  }
  const parsed = rawAgentConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = issue.path[0];
    const where = typeof key === 'string' ? `${flagName(key)}: ` : '';
    throw new AgentConfigError(`invalid configuration: ${where}${issue.message}`);
  }
  const c = parsed.data;
  let trustDomain: string;
  try {
    trustDomain = parseTrustDomain(c.trustDomain);
  } catch (e) {
    throw new AgentConfigError(`invalid trust domain: ${(e as Error).message}`);
  }

  let attestation: AttestationConfig | null = null;
  if (c.joinToken !== undefined && (c.x509popCert !== undefined || c.x509popKey !== undefined)) {
    throw new AgentConfigError('choose one attestation method: --join-token or --x509pop-cert/--x509pop-key, not both');
  }
  if ((c.x509popCert === undefined) !== (c.x509popKey === undefined)) {
    throw new AgentConfigError('x509pop attestation needs both --x509pop-cert and --x509pop-key');
  }
  if (c.joinToken !== undefined) attestation = Object.freeze({ method: 'join_token', token: c.joinToken });
  else if (c.x509popCert !== undefined && c.x509popKey !== undefined) {
    attestation = Object.freeze({ method: 'x509pop', certFile: path.resolve(c.x509popCert), keyFile: path.resolve(c.x509popKey) });
  }

  if (c.syncInterval < 1) throw new AgentConfigError('--sync-interval must be at least 1s');
  if (!(c.rotationFraction > 0 && c.rotationFraction < 1)) {
    throw new AgentConfigError(`--rotation-fraction must lie strictly between 0 and 1 (got ${c.rotationFraction})`);
  }
  if (!(c.rotationJitter >= 0 && c.rotationJitter < 0.5)) {
    throw new AgentConfigError(`--rotation-jitter must lie in [0, 0.5) (got ${c.rotationJitter})`);
  }
  // The latest rotation point must come before expiry, or an SVID would lapse before its renewal.
  if ((1 - c.rotationFraction) * (1 + c.rotationJitter) >= 1) {
    throw new AgentConfigError('--rotation-fraction and --rotation-jitter together would rotate SVIDs only after they expire');
  }
  if (!path.isAbsolute(c.socket) && c.socket.startsWith('unix:')) {
    throw new AgentConfigError('--socket takes a file path, not a unix:// URI');
  }

  const ssh = buildSshConfig(c);

  return Object.freeze({
    serverAddress: c.server[0]!,
    serverAddresses: Object.freeze(c.server),
    trustDomain,
    trustBundleFile: path.resolve(c.trustBundle),
    dataDir: path.resolve(c.dataDir),
    socketPath: path.resolve(c.socket),
    attestation,
    syncIntervalSeconds: c.syncInterval,
    rotation: Object.freeze({ fraction: c.rotationFraction, jitter: c.rotationJitter }),
    logLevel: c.logLevel,
    ...(ssh ? { ssh } : {}),
    ...(c.metrics ? { metricsListen: c.metrics } : {}),
  });
}

function buildSshConfig(c: z.output<typeof rawAgentConfigSchema>): AgentSshConfig | undefined {
  const host = c.sshHostKey !== undefined || c.sshHostCert !== undefined;
  if (host && (c.sshHostKey === undefined || c.sshHostCert === undefined)) {
    throw new AgentConfigError('an SSH host certificate needs both --ssh-host-key (the sshd host public key) and --ssh-host-cert (where to write the certificate)');
  }
  if (!host && c.sshHostPrincipal !== undefined) throw new AgentConfigError('--ssh-host-principal needs --ssh-host-key and --ssh-host-cert');
  if (!host && c.sshReloadCmd !== undefined) throw new AgentConfigError('--ssh-reload-cmd needs --ssh-host-key and --ssh-host-cert');
  let principals: string[] = [];
  try {
    principals = [...new Set((c.sshHostPrincipal ?? []).map(validateHostPrincipal))];
  } catch (e) {
    throw new AgentConfigError(`--ssh-host-principal: ${(e as Error).message}`);
  }
  if (!host && c.sshTrustDir === undefined) return undefined;
  if (host && path.resolve(c.sshHostKey!) === path.resolve(c.sshHostCert!)) {
    throw new AgentConfigError('--ssh-host-cert must not be the host key file');
  }
  return Object.freeze({
    host: host
      ? Object.freeze({
          keyFile: path.resolve(c.sshHostKey!),
          certFile: path.resolve(c.sshHostCert!),
          principals: Object.freeze(principals),
          reloadCommand: c.sshReloadCmd ?? null,
        })
      : null,
    trustDir: c.sshTrustDir !== undefined ? path.resolve(c.sshTrustDir) : null,
  });
}
