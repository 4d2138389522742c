/**
 * The SQLite store's rows as node-sqlite3 returns them, and their mapping to
 * the Store's records. JSON columns are checked on the way out: a malformed
 * value is StoreError 'CORRUPT', never a half-built record.
 */
import {
  StoreError,
  type AgentRecord,
  type AuditRecord,
  type AuthorityKind,
  type AuthorityRecord,
  type AuthorityState,
  type EntryRecord,
  type EntrySsh,
  type JoinTokenRecord,
  type Selector,
} from './store.js';

/** Sorts by type then value (code-unit order, locale-independent) and drops duplicates. */
export function normalizeSelectors(selectors: readonly Selector[]): Selector[] {
  const sorted = selectors.map((s) => ({ type: s.type, value: s.value })).sort(compareSelectors);
  return sorted.filter((s, i) => i === 0 || compareSelectors(sorted[i - 1]!, s) !== 0);
}

function compareSelectors(a: Selector, b: Selector): number {
  return compareStrings(a.type, b.type) || compareStrings(a.value, b.value);
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export const SELECT_ENTRY = `SELECT id, spiffe_id, parent_id, selectors, x509_svid_ttl, dns_names, hint, admin,
  expires_at, revision, created_at, ssh FROM entries`;
export const SELECT_TOKEN = 'SELECT id, secret_hash, agent_id, expires_at, used_at, created_at, ssh_host_principals FROM join_tokens';
export const SELECT_AGENT = `SELECT agent_id, attestation_type, serial, expires_at, selectors, banned, created_at,
  last_seen_at, ssh_host_principals FROM agents`;

export interface EntryRow {
  id: string;
  spiffe_id: string;
  parent_id: string;
  selectors: string;
  x509_svid_ttl: number;
  dns_names: string;
  hint: string;
  admin: number;
  expires_at: number | null;
  revision: number;
  created_at: number;
  ssh: string | null;
}

export interface JoinTokenRow {
  id: string;
  secret_hash: string;
  agent_id: string;
  expires_at: number;
  used_at: number | null;
  created_at: number;
  ssh_host_principals: string;
}

export interface AgentRow {
  agent_id: string;
  attestation_type: AgentRecord['attestationType'];
  serial: string;
  expires_at: number;
  selectors: string;
  banned: number;
  created_at: number;
  last_seen_at: number;
  ssh_host_principals: string;
}

export interface AuditRow {
  seq: number;
  time_ms: number;
  caller: string;
  action: string;
  spiffe_id: string | null;
  serial: string | null;
  not_after: number | null;
  outcome: AuditRecord['outcome'];
  detail: string | null;
}

export interface AuthorityRow {
  id: string;
  kind: AuthorityKind;
  state: AuthorityState;
  public_der: Buffer;
  parent_id: string | null;
  key_ref: string;
  not_before: number;
  not_after: number;
  created_at: number;
}

export function entryFromRow(r: EntryRow): EntryRecord {
  return {
    id: r.id,
    spiffeId: r.spiffe_id,
    parentId: r.parent_id,
    selectors: parseSelectors(r.selectors, `entry ${r.id}`),
    x509SvidTtl: r.x509_svid_ttl,
    dnsNames: parseJsonArray(r.dns_names, `entry ${r.id}`).map((d) => String(d)),
    hint: r.hint,
    admin: r.admin === 1,
    expiresAt: r.expires_at,
    revision: r.revision,
    createdAt: r.created_at,
    ...(r.ssh === null ? {} : { ssh: parseEntrySsh(r.ssh, `entry ${r.id}`) }),
  };
}

export function tokenFromRow(r: JoinTokenRow): JoinTokenRecord {
  return {
    id: r.id,
    secretHash: r.secret_hash,
    agentId: r.agent_id,
    expiresAt: r.expires_at,
    usedAt: r.used_at,
    createdAt: r.created_at,
    ...optionalNames(r.ssh_host_principals, `token ${r.id}`),
  };
}

export function agentFromRow(r: AgentRow): AgentRecord {
  return {
    agentId: r.agent_id,
    attestationType: r.attestation_type,
    serial: r.serial,
    expiresAt: r.expires_at,
    selectors: parseSelectors(r.selectors, `agent ${r.agent_id}`),
    banned: r.banned === 1,
    createdAt: r.created_at,
    lastSeenAt: r.last_seen_at,
    ...optionalNames(r.ssh_host_principals, `agent ${r.agent_id}`),
  };
}

export function auditFromRow(r: AuditRow): AuditRecord {
  return {
    seq: r.seq,
    timeMs: r.time_ms,
    caller: r.caller,
    action: r.action,
    spiffeId: r.spiffe_id,
    serial: r.serial,
    notAfter: r.not_after,
    outcome: r.outcome,
    detail: r.detail,
  };
}

export function authorityFromRow(r: AuthorityRow): AuthorityRecord {
  return {
    id: r.id,
    kind: r.kind,
    state: r.state,
    publicDer: r.public_der,
    parentId: r.parent_id,
    keyRef: r.key_ref,
    notBefore: r.not_before,
    notAfter: r.not_after,
    createdAt: r.created_at,
  };
}

function parseJsonArray(text: string, what: string): unknown[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new StoreError('CORRUPT', `${what}: stored JSON does not parse`, { cause: err });
  }
  if (!Array.isArray(value)) throw new StoreError('CORRUPT', `${what}: stored JSON is not an array`);
  return value;
}

function parseSelectors(text: string, what: string): Selector[] {
  return normalizeSelectors(
    parseJsonArray(text, what).map((s) => {
      const { type, value } = (s ?? {}) as Partial<Selector>;
      if (typeof type !== 'string' || typeof value !== 'string') {
        throw new StoreError('CORRUPT', `${what}: stored selector is malformed`);
      }
      return { type, value };
    }),
  );
}

/** A JSON array of host names, as `{ sshHostPrincipals }` or nothing when empty. */
function optionalNames(text: string, what: string): { sshHostPrincipals?: string[] } {
  const names = parseStrings(text, what);
  return names.length === 0 ? {} : { sshHostPrincipals: names };
}

function parseStrings(text: string, what: string): string[] {
  return stringArray(parseJsonArray(text, what), what);
}

function stringArray(v: unknown, what: string): string[] {
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new StoreError('CORRUPT', `${what}: stored names are malformed`);
  return v as string[];
}

/** The stored JSON form of EntrySsh (the same keys). */
export function entrySshToJson(ssh: EntrySsh): string {
  return JSON.stringify({
    principals: ssh.principals,
    ttl: ssh.ttl,
    extensions: ssh.extensions,
    forceCommand: ssh.forceCommand,
    sourceAddress: ssh.sourceAddress,
    hostPrincipals: ssh.hostPrincipals,
  });
}

function parseEntrySsh(text: string, what: string): EntrySsh {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new StoreError('CORRUPT', `${what}: stored SSH settings do not parse`, { cause: err });
  }
  const strings = (x: unknown) => stringArray(x, `${what} SSH settings`);
  const nullableString = (x: unknown) => {
    if (x !== null && typeof x !== 'string') throw new StoreError('CORRUPT', `${what}: stored SSH option is malformed`);
    return x;
  };
  if (typeof v !== 'object' || v === null || !Number.isSafeInteger(v.ttl)) {
    throw new StoreError('CORRUPT', `${what}: stored SSH settings are malformed`);
  }
  return {
    principals: strings(v.principals),
    ttl: v.ttl as number,
    extensions: strings(v.extensions),
    forceCommand: nullableString(v.forceCommand),
    sourceAddress: nullableString(v.sourceAddress),
    hostPrincipals: strings(v.hostPrincipals),
  };
}
