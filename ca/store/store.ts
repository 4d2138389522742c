/**
 * The narrow storage interface the CA logic depends on. The SQLite store
 * implements it today; a PostgreSQL store can implement it later without
 * touching the CA. Stores throw StoreError (never gRPC statuses).
 *
 * Times are integer seconds since the epoch unless a name says otherwise.
 */

export interface Selector {
  type: string;
  value: string;
}

export interface EntryRecord {
  id: string;
  spiffeId: string;
  parentId: string;
  /** Sorted by type then value, no duplicates. */
  selectors: Selector[];
  /** Seconds; 0 means the server's default. */
  x509SvidTtl: number;
  dnsNames: string[];
  hint: string;
  admin: boolean;
  /** Seconds since the epoch, or null for no expiry. */
  expiresAt: number | null;
  revision: number;
  createdAt: number;
  /** OpenSSH certificate settings; absent when the entry has none. */
  ssh?: EntrySsh;
}

/** The OpenSSH side of an entry. */
export interface EntrySsh {
  /** Principals of user certificates for the entry's workloads; empty: no user certificates. */
  principals: string[];
  /** User certificate lifetime, seconds; 0 means the server's default. */
  ttl: number;
  /** User certificate extension names (flags), in byte order. */
  extensions: string[];
  /** Critical option force-command, or null. */
  forceCommand: string | null;
  /** Critical option source-address (comma-separated CIDR list), or null. */
  sourceAddress: string | null;
  /** Node entries only: host names granted to every agent the node entry matches. */
  hostPrincipals: string[];
}

export type NewEntry = Omit<EntryRecord, 'revision' | 'createdAt'>;

export interface AgentRecord {
  agentId: string;
  attestationType: 'join_token' | 'x509pop';
  /** Hex serial of the agent's current SVID: the only one accepted. */
  serial: string;
  /** notAfter of that SVID. */
  expiresAt: number;
  selectors: Selector[];
  banned: boolean;
  createdAt: number;
  lastSeenAt: number;
  /** Host names bound by the join token the agent redeemed (SSH host certificates); absent when none. */
  sshHostPrincipals?: string[];
}

export interface JoinTokenRecord {
  /** Public identifier, safe to log and to put in an agent ID. */
  id: string;
  /** SHA-256 of the secret, hex. The secret itself is never stored. */
  secretHash: string;
  agentId: string;
  expiresAt: number;
  usedAt: number | null;
  createdAt: number;
  /** Host names bound to the agent that redeems the token; absent when none. */
  sshHostPrincipals?: string[];
}

export type AuditOutcome = 'success' | 'failure';

export interface AuditRecord {
  /** Assigned by the store on append (monotonic). */
  seq?: number;
  /** Milliseconds since the epoch. */
  timeMs: number;
  /** Who asked: an agent ID, 'admin:uid=N', 'anonymous', ... */
  caller: string;
  /** e.g. 'attest.join_token', 'x509.mint', 'token.create', 'entry.create'. */
  action: string;
  spiffeId: string | null;
  serial: string | null;
  /** notAfter of the credential, seconds. */
  notAfter: number | null;
  outcome: AuditOutcome;
  /** Free text: the reason of a failure, an entry id. Never a secret. */
  detail: string | null;
}

export type AuthorityKind = 'x509-root' | 'x509-intermediate' | 'ssh-user' | 'ssh-host';
export type AuthorityState = 'prepared' | 'active' | 'retired' | 'tainted' | 'revoked';

export interface AuthorityRecord {
  /** X.509: SubjectKeyIdentifier hex (lower case). SSH: SHA256 fingerprint. */
  id: string;
  kind: AuthorityKind;
  state: AuthorityState;
  /** X.509: the certificate, DER. SSH: the public key blob. */
  publicDer: Buffer;
  /** The id of the authority that signed this one (null for a self-signed root). */
  parentId: string | null;
  /** Name of the key file in <data-dir>/keys. */
  keyRef: string;
  notBefore: number;
  notAfter: number;
  createdAt: number;
}

export type ConsumeTokenResult =
  | { ok: true; token: JoinTokenRecord }
  | { ok: false; reason: 'unknown' | 'expired' | 'used' };

export interface Store {
  close(): Promise<void>;

  // Registration entries
  createEntry(entry: NewEntry, createdAt: number): Promise<EntryRecord>;
  getEntry(id: string): Promise<EntryRecord | undefined>;
  listEntries(): Promise<EntryRecord[]>;
  /** Entries whose parentId is any of the given IDs. */
  listEntriesByParents(parentIds: string[]): Promise<EntryRecord[]>;
  /** Returns false when no such entry existed. */
  deleteEntry(id: string): Promise<boolean>;
  /**
   * For answers derived from entries and kept in memory (authorized-entries.ts):
   * `revision` changes whenever this process writes entries, and `maxAgeMs`
   * bounds how long such an answer may be served (the staleness a writer
   * outside this process may cause). Absent when another process may write
   * entries at any time (a datastore shared by several servers): nothing is kept.
   */
  entriesRevision?(): { revision: number; maxAgeMs: number };

  // Join tokens
  createJoinToken(token: JoinTokenRecord): Promise<void>;
  /** Atomically marks the token used if it is known, unexpired and unused. */
  consumeJoinToken(secretHash: string, now: number): Promise<ConsumeTokenResult>;

  // Agents
  /** Insert or replace the agent's record (attestation, re-attestation). */
  upsertAgent(agent: AgentRecord): Promise<void>;
  getAgent(agentId: string): Promise<AgentRecord | undefined>;
  listAgents(): Promise<AgentRecord[]>;
  /** Pins a new current serial after a renewal. False if the agent is unknown. */
  updateAgentSvid(agentId: string, serial: string, expiresAt: number, now: number): Promise<boolean>;
  touchAgent(agentId: string, now: number): Promise<void>;
  /** Eviction: forget the agent (it may attest again). False if unknown. */
  deleteAgent(agentId: string): Promise<boolean>;
  /** Ban: keep the record, refuse it forever (until deleted). False if unknown. */
  banAgent(agentId: string): Promise<boolean>;

  // Audit (append-only)
  appendAudit(records: AuditRecord[]): Promise<void>;
  /** Oldest first; optionally only records at or after `sinceMs`. */
  listAudit(options?: { sinceMs?: number; limit?: number }): Promise<AuditRecord[]>;

  // Authorities
  putAuthority(authority: AuthorityRecord): Promise<void>;
  listAuthorities(kind?: AuthorityKind): Promise<AuthorityRecord[]>;
  setAuthorityState(id: string, state: AuthorityState): Promise<boolean>;

  // Small key/value state (bundle sequence number, schema facts)
  getMeta(key: string): Promise<string | undefined>;
  setMeta(key: string, value: string): Promise<void>;
}

export type StoreErrorCode = 'CONFLICT' | 'IO' | 'CORRUPT' | 'CLOSED';

export class StoreError extends Error {
  readonly code: StoreErrorCode;
  constructor(code: StoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreError';
    this.code = code;
  }
}
