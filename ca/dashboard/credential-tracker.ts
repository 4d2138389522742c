/**
 * The credentials the CA has issued that still matter, rebuilt from the
 * audit trail (every issuance is an audit record with its serial and
 * notAfter): the newest credential per holder and subject, until an hour
 * after it expires. Also keeps the most recent audit records.
 *
 * Health is remaining life as a fraction of the lifetime: agents replace a
 * credential at about half of its life, so a healthy fleet stays green and
 * yellow means a replacement is late.
 */
import type { AuditRecord } from '../store/store.js';

export type CredentialKind = 'x509' | 'agent' | 'ssh_user' | 'ssh_host';
export type CredentialHealth = 'green' | 'yellow' | 'red' | 'expired';

/** Remaining-life fractions at or above which a credential is green, yellow (below: red). */
export const HEALTH_THRESHOLDS = { green: 0.4, yellow: 0.15 } as const;
/** How long an expired credential stays listed (red, "expired"). */
const EXPIRED_RETENTION_MS = 3_600_000;

const KIND_BY_ACTION: Record<string, CredentialKind> = {
  'x509.mint': 'x509',
  'attest.join_token': 'agent',
  'attest.x509pop': 'agent',
  'agent.renew': 'agent',
  'ssh.sign.user': 'ssh_user',
  'ssh.sign.host': 'ssh_host',
};

export interface TrackedCredential {
  kind: CredentialKind;
  /** SPIFFE ID of the subject; for an SSH certificate signed by the admin, `serial <n>`. */
  subject: string;
  /** Who asked for it: an agent ID, `admin:local`. */
  holder: string;
  serial: string;
  issuedAtMs: number;
  notAfterMs: number;
}

export interface CredentialView extends TrackedCredential {
  /** (notAfter - now) / (notAfter - issuedAt), clamped to [0, 1]. */
  remaining: number;
  health: CredentialHealth;
}

/** The health of a credential at `nowMs`. */
export function credentialHealth(c: Pick<TrackedCredential, 'issuedAtMs' | 'notAfterMs'>, nowMs: number): { remaining: number; health: CredentialHealth } {
  const life = Math.max(1, c.notAfterMs - c.issuedAtMs);
  const remaining = Math.min(1, Math.max(0, (c.notAfterMs - nowMs) / life));
  if (nowMs >= c.notAfterMs) return { remaining: 0, health: 'expired' };
  if (remaining >= HEALTH_THRESHOLDS.green) return { remaining, health: 'green' };
  return { remaining, health: remaining >= HEALTH_THRESHOLDS.yellow ? 'yellow' : 'red' };
}

export class CredentialTracker {
  readonly #live = new Map<string, TrackedCredential>();
  readonly #recent: AuditRecord[] = [];
  #lastSeq = 0;

  /** @param recentSize how many of the newest audit records to keep. */
  constructor(private readonly recentSize = 20) {}

  /** The highest audit seq ingested (read from there on). */
  get lastSeq(): number {
    return this.#lastSeq;
  }

  /** Takes audit records oldest first; records at or below the last seq seen are ignored. */
  ingest(records: readonly AuditRecord[]): void {
    for (const r of records) {
      const seq = r.seq ?? this.#lastSeq + 1;
      if (seq <= this.#lastSeq) continue;
      this.#lastSeq = seq;
      this.#recent.push(r);
      if (this.#recent.length > this.recentSize) this.#recent.shift();
      const kind = KIND_BY_ACTION[r.action];
      if (!kind || r.outcome !== 'success' || r.serial === null || r.notAfter === null) continue;
      const subject = r.spiffeId ?? `serial ${r.serial}`;
      // One agent SVID per agent; workload credentials per holder and subject
      // (every agent serving a shared entry holds its own SVID for it).
      const key = kind === 'agent' ? `agent|${subject}` : `${kind}|${r.caller}|${subject}`;
      this.#live.set(key, { kind, subject, holder: r.caller, serial: r.serial, issuedAtMs: r.timeMs, notAfterMs: r.notAfter * 1000 });
    }
  }

  /** Credentials at `nowMs` with their health, least remaining life first; drops those expired over an hour ago. */
  credentials(nowMs: number): CredentialView[] {
    const out: CredentialView[] = [];
    for (const [key, c] of this.#live) {
      if (c.notAfterMs + EXPIRED_RETENTION_MS < nowMs) {
        this.#live.delete(key);
        continue;
      }
      out.push({ ...c, ...credentialHealth(c, nowMs) });
    }
    return out.sort((a, b) => a.remaining - b.remaining || a.notAfterMs - b.notAfterMs || (a.subject < b.subject ? -1 : 1));
  }

  /** The newest audit records, newest first. */
  recentAudit(): AuditRecord[] {
    return [...this.#recent].reverse();
  }
}
