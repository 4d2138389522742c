/**
 * `brevis-ca audit list` and `audit verify`: the tamper-evident audit trail.
 * Registered by main.ts.
 */
import type { Command } from 'commander';
import { AuditServiceClient, type AuditRecord, type ListAuditResponse, type VerifyAuditResponse } from '../../proto/gen/brevis/ca/v1/audit.js';
import { parseDuration } from '../../spiffe/duration.js';
import { resolveAdminSocket } from './admin-client.js';
import { CliError } from './cli-error.js';
import { SocketClient } from './socket-client.js';

export interface AuditCliHelpers {
  withSocket(cmd: Command): Command;
  out(s: string): void;
  json(v: unknown): void;
}

const PAGE = 1000;

/**
 * `--since`: an RFC 3339 time (`2025-01-31T12:00:00Z`), milliseconds since
 * the epoch, or a duration meaning "that long ago" (`10m`, `24h`).
 */
export function parseSince(text: string, now: Date): number {
  const s = text.trim();
  if (/^\d+[smhd]/.test(s)) {
    try {
      return now.getTime() - parseDuration(s) * 1000;
    } catch {
      // not a duration after all: try a time below
    }
  }
  if (/^\d{10,}$/.test(s)) return Number(s);
  const t = Date.parse(s);
  if (Number.isNaN(t)) throw new CliError(`invalid --since '${text}': give a time like 2025-01-31T12:00:00Z or a duration like 10m (that long ago)`);
  return t;
}

function recordJson(r: AuditRecord) {
  return {
    seq: r.seq,
    time: new Date(r.timeMs).toISOString(),
    timeMs: r.timeMs,
    caller: r.caller,
    action: r.action,
    spiffeId: r.spiffeId ?? null,
    serial: r.serial ?? null,
    notAfter: r.notAfter ?? null,
    outcome: r.outcome,
    detail: r.detail ?? null,
    prevHash: r.prevHash,
    hash: r.hash,
  };
}

function recordLine(r: AuditRecord): string {
  const parts = [`#${r.seq}`, new Date(r.timeMs).toISOString(), r.caller, r.action, r.outcome];
  if (r.spiffeId) parts.push(r.spiffeId);
  if (r.serial) parts.push(`serial=${r.serial}`);
  if (r.notAfter) parts.push(`not-after=${new Date(r.notAfter * 1000).toISOString()}`);
  if (r.detail) parts.push(`(${r.detail})`);
  return parts.join('  ');
}

export function registerAuditCommands(program: Command, h: AuditCliHelpers): void {
  const audit = program.command('audit').description('the tamper-evident audit trail');
  const client = (opts: { socket?: string }) => new SocketClient(resolveAdminSocket(opts.socket), AuditServiceClient);

  h.withSocket(audit.command('list'))
    .description('list audit records, oldest first')
    .option('--since <time>', 'only records since TIME (RFC 3339, or a duration such as 10m meaning that long ago)')
    .option('--json', 'print a JSON array')
    .action(async (opts: { socket?: string; since?: string; json?: boolean }) => {
      const sinceMs = opts.since ? parseSince(opts.since, new Date()) : 0;
      const c = client(opts);
      const all: AuditRecord[] = [];
      try {
        for (let after = 0; ; ) {
          const page = await c.call<object, ListAuditResponse>('listAudit', { sinceMs, afterSeq: after, limit: PAGE });
          all.push(...page.records);
          if (page.records.length < PAGE) break;
          after = page.records[page.records.length - 1]!.seq;
        }
      } finally {
        c.close();
      }
      if (opts.json) h.json(all.map(recordJson));
      else if (all.length === 0) h.out('no audit records');
      else h.out(all.map(recordLine).join('\n'));
    });

  h.withSocket(audit.command('verify'))
    .description('verify the hash chain; exit 0 with a count when intact, else name the first broken record')
    .action(async (opts: { socket?: string }) => {
      const c = client(opts);
      let v: VerifyAuditResponse;
      try {
        v = await c.call<object, VerifyAuditResponse>('verifyAudit', {});
      } finally {
        c.close();
      }
      if (!v.intact) {
        throw new CliError(`audit trail broken at record #${v.brokenSeq}: ${v.reason} (${v.count} records before it are intact)`);
      }
      h.out(`audit trail intact: ${v.count} records${v.count > 0 ? ` (head #${v.headSeq} ${v.headHash})` : ''}`);
    });
}
