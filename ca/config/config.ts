/**
 * CA configuration: parse (file + flags), validate, freeze. Durations are
 * parsed once here into seconds; nothing downstream reads raw strings.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { parseDuration } from '../../spiffe/duration.js';
import { parseTrustDomain } from '../../spiffe/id.js';
import { KEK_ENV, parseKekHex, type KekSetting } from '../keys/kek.js';
import { rateLimitConfigFields, rateLimitsFrom, type RateLimits } from '../limits/rate-limits.js';
import { isLoopbackHost, parseListenAddress } from '../metrics/listen-address.js';
import { parseDatastore, type DatastoreSetting } from '../store/datastore.js';

export type CaKeyType = 'ec-p256' | 'ec-p384' | 'ed25519';

export interface CaConfig {
  readonly dataDir: string;
  readonly trustDomain: string;
  /** host:port of the node API (TLS). */
  readonly listen: string;
  readonly adminSocket: string;
  readonly keyType: CaKeyType;
  readonly rootTtlSeconds: number;
  readonly intermediateTtlSeconds: number;
  readonly x509SvidDefaultTtlSeconds: number;
  readonly x509SvidMinTtlSeconds: number;
  readonly x509SvidMaxTtlSeconds: number;
  readonly agentSvidTtlSeconds: number;
  readonly joinTokenDefaultTtlSeconds: number;
  readonly joinTokenMaxTtlSeconds: number;
  /** Seconds notBefore (X.509) and valid-after (SSH) are backdated for clock skew. */
  readonly backdateSeconds: number;
  /** Worker threads minting SVIDs from CSRs (ca/issue/mint-pool.ts); 0: mint on the event loop and libuv's pool. */
  readonly mintWorkers: number;
  /** Key type of the SSH user and host CAs (used when they are first created). */
  readonly sshKeyType: 'ed25519' | 'ec-p256';
  readonly sshUserDefaultTtlSeconds: number;
  readonly sshUserMaxTtlSeconds: number;
  readonly sshHostDefaultTtlSeconds: number;
  readonly sshHostMaxTtlSeconds: number;
  /** Shortest SSH certificate lifetime accepted (user and host). */
  readonly sshMinTtlSeconds: number;
  /** Scheduled SSH CA rotation: a new key is prepared once the active one is this old (seconds); null: only by an admin. */
  readonly sshCaRotationSeconds: number | null;
  /** ...and activated this long after it was prepared, once every live agent acknowledged it (seconds). */
  readonly sshCaRotationOverlapSeconds: number;
  /** PEM bundle of host CAs trusted for x509pop node attestation, or null (x509pop off). */
  readonly x509popCaBundle: string | null;
  /** The key-encryption key for CA keys at rest (ca/keys/kek.ts); null: generated into <dataDir>/kek. */
  readonly kek: KekSetting;
  /** Rate limits of the node API (ca/limits/rate-limits.ts). */
  readonly rateLimits: RateLimits;
  readonly logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error';
  /** host:port of the Prometheus endpoint, or null (off). */
  readonly metricsListen: string | null;
  /** The read-only web dashboard, or null (off). */
  readonly dashboard: DashboardConfig | null;
  /** SQLite in the data directory (one server), or a PostgreSQL database shared by several servers. */
  readonly datastore: DatastoreSetting;
}

export interface DashboardConfig {
  /** host:port; a loopback address unless `tls` is set. */
  readonly listen: string;
  /** HTTPS that requires an admin client certificate issued by `clientCaFile`; null: plain HTTP on loopback. */
  readonly tls: { readonly certFile: string; readonly keyFile: string; readonly clientCaFile: string } | null;
}

const duration = z.string().transform((s, ctx) => {
  try {
    return parseDuration(s);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});

const hostPort = (what: string) =>
  z.string().refine((s) => {
    try {
      parseListenAddress(s);
      return true;
    } catch {
      return false;
    }
  }, `${what} must be HOST:PORT`);

/** The raw shape accepted from a JSON config file and from flags (flags win). */
export const rawCaConfigSchema = z
  .object({
    dataDir: z.string().min(1),
    trustDomain: z.string().min(1),
    listen: z.string().regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'listen must be HOST:PORT'),
    adminSocket: z.string().min(1).optional(),
    keyType: z.enum(['ec-p256', 'ec-p384', 'ed25519']).default('ec-p256'),
    rootTtl: duration.prefault('8760h'),
    intermediateTtl: duration.prefault('168h'),
    x509SvidTtl: duration.prefault('1h'),
    x509SvidMinTtl: duration.prefault('30s'),
    x509SvidMaxTtl: duration.prefault('24h'),
    agentSvidTtl: duration.prefault('1h'),
    joinTokenTtl: duration.prefault('10m'),
    joinTokenMaxTtl: duration.prefault('24h'),
    backdate: duration.prefault('30s'),
    mintWorkers: z.number().int().min(0).max(64).default(Math.min(4, os.availableParallelism())),
    sshKeyType: z.enum(['ed25519', 'ec-p256']).default('ed25519'),
    sshUserTtl: duration.prefault('1h'),
    sshUserMaxTtl: duration.prefault('24h'),
    sshHostTtl: duration.prefault('8h'),
    sshHostMaxTtl: duration.prefault('168h'),
    sshMinTtl: duration.prefault('30s'),
    sshCaRotation: duration.optional(),
    sshCaRotationOverlap: duration.prefault('1h'),
    x509popCaBundle: z.string().min(1).optional(),
    kekPassphraseEnv: z.string().min(1).optional(),
    kekFile: z.string().min(1).optional(),
    logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error']).default('info'),
    ...rateLimitConfigFields,
    metrics: hostPort('metrics').optional(),
    dashboard: hostPort('dashboard').optional(),
    datastore: z.string().min(1).optional(),
    dashboardTlsCert: z.string().min(1).optional(),
    dashboardTlsKey: z.string().min(1).optional(),
    dashboardClientCa: z.string().min(1).optional(),
  })
  .strict();

export type RawCaConfig = z.input<typeof rawCaConfigSchema>;

export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Reads a JSON config file; missing keys are fine (flags may supply them). */
export function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read config file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    return v as Record<string, unknown>;
  } catch (e) {
    throw new ConfigError(`config file ${file} is not a JSON object: ${(e as Error).message}`);
  }
}

/** Validates the merged raw config and builds the frozen CaConfig. */
export function buildCaConfig(raw: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): CaConfig {
  const parsed = rawCaConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length ? `${issue.path.join('.')}: ` : '';
    throw new ConfigError(`invalid configuration: ${where}${issue.message}`);
  }
  const c = parsed.data;
  let trustDomain: string;
  try {
    trustDomain = parseTrustDomain(c.trustDomain);
  } catch (e) {
    throw new ConfigError(`invalid trust domain: ${(e as Error).message}`);
  }
  if (c.x509SvidMinTtl > c.x509SvidMaxTtl) throw new ConfigError('x509SvidMinTtl must not exceed x509SvidMaxTtl');
  if (c.x509SvidTtl < c.x509SvidMinTtl || c.x509SvidTtl > c.x509SvidMaxTtl) {
    throw new ConfigError(`x509SvidTtl must lie between x509SvidMinTtl and x509SvidMaxTtl`);
  }
  if (c.intermediateTtl >= c.rootTtl) throw new ConfigError('intermediateTtl must be shorter than rootTtl');
  if (c.x509SvidMaxTtl > c.intermediateTtl) {
    throw new ConfigError('x509SvidMaxTtl must not exceed intermediateTtl (SVIDs are capped at the intermediate)');
  }
  for (const [what, def, max] of [['sshUserTtl', c.sshUserTtl, c.sshUserMaxTtl], ['sshHostTtl', c.sshHostTtl, c.sshHostMaxTtl]] as const) {
    if (c.sshMinTtl > max) throw new ConfigError(`sshMinTtl must not exceed ${what.replace('Ttl', 'MaxTtl')}`);
    if (def < c.sshMinTtl || def > max) throw new ConfigError(`${what} must lie between sshMinTtl and ${what.replace('Ttl', 'MaxTtl')}`);
  }
  if (c.sshCaRotation !== undefined && c.sshCaRotation <= c.sshCaRotationOverlap) {
    throw new ConfigError('sshCaRotation must be longer than sshCaRotationOverlap');
  }
  const envKek = env[KEK_ENV];
  if ([c.kekPassphraseEnv, c.kekFile, envKek].filter(Boolean).length > 1) {
    throw new ConfigError(`set only one of --kek-file, ${KEK_ENV} and --kek-passphrase-env`);
  }
  let kek: CaConfig['kek'] = null;
  if (c.kekFile) kek = { keyFile: path.resolve(c.kekFile) };
  else if (envKek) {
    try {
      kek = { key: parseKekHex(envKek, `environment variable ${KEK_ENV}`) };
    } catch (e) {
      throw new ConfigError((e as Error).message);
    }
  } else if (c.kekPassphraseEnv) {
    const v = env[c.kekPassphraseEnv];
    if (!v) throw new ConfigError(`environment variable ${c.kekPassphraseEnv} (kekPassphraseEnv) is empty or unset`);
    kek = { passphrase: v };
  }
  let datastore: DatastoreSetting;
  try {
    datastore = parseDatastore(c.datastore);
  } catch (e) {
    throw new ConfigError(`invalid configuration: datastore: ${(e as Error).message}`);
  }
  // Servers sharing a database share the CA keys in it: each must be given
  // the same KEK, never one generated on its own disk.
  if (datastore.kind === 'postgres' && kek === null) {
    throw new ConfigError('a PostgreSQL datastore is shared by every CA server: give each the same key-encryption key (--kek-file FILE or BREVIS_KEK)');
  }
  const dataDir = path.resolve(c.dataDir);
  const dashboard = dashboardConfig(c);
  return Object.freeze({
    dataDir,
    trustDomain,
    listen: c.listen,
    adminSocket: path.resolve(c.adminSocket ?? path.join(dataDir, 'admin.sock')),
    keyType: c.keyType,
    rootTtlSeconds: c.rootTtl,
    intermediateTtlSeconds: c.intermediateTtl,
    x509SvidDefaultTtlSeconds: c.x509SvidTtl,
    x509SvidMinTtlSeconds: c.x509SvidMinTtl,
    x509SvidMaxTtlSeconds: c.x509SvidMaxTtl,
    agentSvidTtlSeconds: c.agentSvidTtl,
    joinTokenDefaultTtlSeconds: c.joinTokenTtl,
    joinTokenMaxTtlSeconds: c.joinTokenMaxTtl,
    backdateSeconds: c.backdate,
    mintWorkers: c.mintWorkers,
    sshKeyType: c.sshKeyType,
    sshUserDefaultTtlSeconds: c.sshUserTtl,
    sshUserMaxTtlSeconds: c.sshUserMaxTtl,
    sshHostDefaultTtlSeconds: c.sshHostTtl,
    sshHostMaxTtlSeconds: c.sshHostMaxTtl,
    sshMinTtlSeconds: c.sshMinTtl,
    sshCaRotationSeconds: c.sshCaRotation ?? null,
    sshCaRotationOverlapSeconds: c.sshCaRotationOverlap,
    x509popCaBundle: c.x509popCaBundle ? path.resolve(c.x509popCaBundle) : null,
    kek,
    rateLimits: rateLimitsFrom(c),
    logLevel: c.logLevel,
    metricsListen: c.metrics ?? null,
    dashboard,
    datastore,
  });
}

/** The dashboard shows the CA's state to whoever reaches it: loopback only, unless admin client certificates are required. */
function dashboardConfig(c: { dashboard?: string; dashboardTlsCert?: string; dashboardTlsKey?: string; dashboardClientCa?: string }): DashboardConfig | null {
  const tlsKeys = [c.dashboardTlsCert, c.dashboardTlsKey, c.dashboardClientCa];
  if (!c.dashboard) {
    if (tlsKeys.some((v) => v !== undefined)) throw new ConfigError('dashboardTlsCert, dashboardTlsKey and dashboardClientCa need --dashboard HOST:PORT');
    return null;
  }
  if (tlsKeys.some((v) => v !== undefined) && tlsKeys.some((v) => v === undefined)) {
    throw new ConfigError('an HTTPS dashboard needs all three of --dashboard-tls-cert, --dashboard-tls-key and --dashboard-client-ca');
  }
  const tls = c.dashboardTlsCert && c.dashboardTlsKey && c.dashboardClientCa
    ? Object.freeze({ certFile: path.resolve(c.dashboardTlsCert), keyFile: path.resolve(c.dashboardTlsKey), clientCaFile: path.resolve(c.dashboardClientCa) })
    : null;
  const { host } = parseListenAddress(c.dashboard);
  if (!tls && !isLoopbackHost(host)) {
    throw new ConfigError(
      `--dashboard ${c.dashboard}: without an admin client certificate the dashboard listens on loopback only ` +
        '(127.0.0.1, [::1] or localhost); to serve it on another address require client certificates with ' +
        '--dashboard-client-ca, --dashboard-tls-cert and --dashboard-tls-key',
    );
  }
  return Object.freeze({ listen: c.dashboard, tls });
}
