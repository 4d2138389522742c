import { describe, expect, it } from 'vitest';
import { CredentialTracker, credentialHealth } from '../ca/dashboard/credential-tracker.js';
import { authorityTimeline, rateChart } from '../ca/dashboard/charts.js';
import { humanDuration, relative } from '../ca/dashboard/html.js';
import { renderSections } from '../ca/dashboard/render.js';
import type { DashboardSnapshot } from '../ca/dashboard/dashboard-model.js';
import { ActivityHistory } from '../ca/metrics/activity-history.js';
import type { AuditRecord } from '../ca/store/store.js';
import { ManualClock } from './support/manual-clock.js';

const T0 = Date.UTC(2030, 0, 1, 12, 0, 0);
let seq = 0;
function rec(over: Partial<AuditRecord>): AuditRecord {
  return { seq: ++seq, timeMs: T0, caller: 'spiffe://td/brevis/agent/a', action: 'x509.mint', spiffeId: 'spiffe://td/web', serial: `s${seq}`, notAfter: T0 / 1000 + 3600, outcome: 'success', detail: null, ...over };
}

describe('credential health', () => {
  it('is green with at least 40% of the lifetime left, yellow down to 15%, red below, expired at notAfter', () => {
    const c = { issuedAtMs: T0, notAfterMs: T0 + 100_000 };
    expect(credentialHealth(c, T0).health).toBe('green');
    expect(credentialHealth(c, T0 + 60_000)).toEqual({ remaining: 0.4, health: 'green' });
    expect(credentialHealth(c, T0 + 60_001).health).toBe('yellow');
    expect(credentialHealth(c, T0 + 85_000).health).toBe('yellow');
    expect(credentialHealth(c, T0 + 85_001).health).toBe('red');
    expect(credentialHealth(c, T0 + 100_000)).toEqual({ remaining: 0, health: 'expired' });
  });
});

describe('credential tracker', () => {
  it('keeps the newest credential per holder and subject, one agent SVID per agent, and ignores failures and non-issuance', () => {
    const t = new CredentialTracker();
    t.ingest([
      rec({ serial: 'old' }),
      rec({ serial: 'new', timeMs: T0 + 1000 }),
      rec({ caller: 'spiffe://td/brevis/agent/b', serial: 'other-agent' }),
      rec({ action: 'attest.join_token', caller: 'spiffe://td/brevis/agent/a', spiffeId: 'spiffe://td/brevis/agent/a', serial: 'a1' }),
      rec({ action: 'agent.renew', caller: 'spiffe://td/brevis/agent/a', spiffeId: 'spiffe://td/brevis/agent/a', serial: 'a2', timeMs: T0 + 5 }),
      rec({ action: 'ssh.sign.user', caller: 'admin:local', spiffeId: null, serial: '77' }),
      rec({ outcome: 'failure', serial: null, notAfter: null }),
      rec({ action: 'entry.create', serial: null, notAfter: null }),
    ]);
    const serials = t.credentials(T0 + 2000).map((c) => c.serial).sort();
    expect(serials).toEqual(['77', 'a2', 'new', 'other-agent']);
    expect(t.credentials(T0 + 2000).find((c) => c.serial === '77')).toMatchObject({ kind: 'ssh_user', subject: 'serial 77', holder: 'admin:local' });
    expect(t.recentAudit()[0]!.action).toBe('entry.create');
    expect(t.lastSeq).toBe(seq);
  });

  it('ignores records it has already seen, orders by least remaining life, and forgets credentials an hour after expiry', () => {
    const t = new CredentialTracker(3);
    const short = rec({ spiffeId: 'spiffe://td/short', notAfter: T0 / 1000 + 600 });
    const long = rec({ spiffeId: 'spiffe://td/long', notAfter: T0 / 1000 + 7200 });
    t.ingest([short, long]);
    t.ingest([short]);
    expect(t.credentials(T0 + 300_000).map((c) => [c.subject, c.health])).toEqual([
      ['spiffe://td/short', 'green'],
      ['spiffe://td/long', 'green'],
    ]);
    expect(t.credentials(T0 + 601_000).map((c) => [c.subject, c.health])[0]).toEqual(['spiffe://td/short', 'expired']);
    expect(t.credentials(T0 + 600_000 + 3_600_001).map((c) => c.subject)).toEqual(['spiffe://td/long']);
    t.ingest([rec({}), rec({}), rec({})]);
    expect(t.recentAudit()).toHaveLength(3);
  });
});

describe('activity history', () => {
  it('counts per minute, shows the last 60 minutes oldest first, and reuses a bucket once its minute is an hour old', () => {
    const clock = new ManualClock(T0 + 30_000);
    const h = new ActivityHistory(clock);
    h.recordIssued('x509', 3);
    h.recordIssued('ssh_user');
    h.recordErrors(2);
    clock.advance(60_000);
    h.recordIssued('x509');
    let s = h.series();
    expect(s).toHaveLength(60);
    expect(s.at(-1)).toEqual({ startMs: T0 + 60_000, issued: { x509: 1, ssh_user: 0, ssh_host: 0 }, errors: 0 });
    expect(s.at(-2)).toEqual({ startMs: T0, issued: { x509: 3, ssh_user: 1, ssh_host: 0 }, errors: 2 });
    clock.advance(59 * 60_000);
    s = h.series();
    expect(s[0]!.startMs).toBe(T0 + 60_000);
    expect(s[0]!.issued.x509).toBe(1);
    expect(s.reduce((n, m) => n + m.issued.x509, 0)).toBe(1);
    h.recordIssued('ssh_host');
    expect(h.series().at(-1)!.issued).toEqual({ x509: 0, ssh_user: 0, ssh_host: 1 });
  });
});

describe('dashboard rendering', () => {
  const snapshot = (over: Partial<DashboardSnapshot> = {}): DashboardSnapshot => ({
    generatedAtMs: T0,
    trustDomain: 'example.org',
    summary: { agents: { active: 1, expired: 0, banned: 0 }, entries: 2, credentials: { green: 1, yellow: 0, red: 0, expired: 0 }, issuedLastHour: { x509: 4, ssh_user: 1, ssh_host: 0 }, errorsLastHour: 1 },
    authorities: [{ id: 'abc', kind: 'x509-root', state: 'active', parentId: null, notBefore: T0 / 1000 - 86400, notAfter: T0 / 1000 + 86400 * 364, progress: [] }],
    agents: [],
    credentials: [],
    rate: [],
    audit: { recent: [], chain: { status: 'not available', count: 0, checkedAtMs: null, detail: 'no' } },
    ...over,
  });

  it('escapes every value that comes from callers or the store', () => {
    const evil = '<img src=x onerror=alert(1)>"\'&';
    const html = Object.values(
      renderSections(
        snapshot({
          agents: [{ agentId: evil, attestationType: evil, state: 'active', lastSyncAt: T0 / 1000, syncLagSeconds: 0, svidExpiresAt: T0 / 1000 + 60, entries: 1, workloadSvids: 0 }],
          audit: { recent: [rec({ caller: evil, detail: evil, spiffeId: evil })], chain: { status: 'broken', count: 1, checkedAtMs: T0, detail: evil } },
          credentials: [{ kind: 'x509', subject: evil, holder: evil, serial: evil, issuedAtMs: T0, notAfterMs: T0 + 1000, remaining: 1, health: 'green' }],
        }),
      ),
    ).join('');
    expect(html).not.toContain('<img');
    expect(html).toContain('&lt;img src=x onerror=alert(1)&gt;&quot;&#39;&amp;');
  });

  it('draws one bar per minute stacked by kind and marks errors, and an authority bar ending at notAfter', () => {
    const rate = Array.from({ length: 60 }, (_, i) => ({ startMs: T0 + i * 60_000, issued: { x509: i === 59 ? 5 : 0, ssh_user: i === 59 ? 2 : 0, ssh_host: 0 }, errors: i === 58 ? 1 : 0 }));
    const svg = rateChart(rate);
    expect(svg.match(/class="hit"/g)).toHaveLength(60);
    expect(svg.match(/class="k-x509"/g)).toHaveLength(1);
    expect(svg.match(/class="k-ssh_user"/g)).toHaveLength(1);
    expect(svg.match(/class="errors-bar"/g)).toHaveLength(1);
    expect(svg).toContain('5 X.509, 2 SSH user, 0 SSH host, 0 errors');
    const tl = authorityTimeline(snapshot().authorities, T0 / 1000);
    expect(tl).toContain('data-authority="abc"');
    expect(tl).toContain('expires in 364d');
    expect(authorityTimeline([{ ...snapshot().authorities[0]!, kind: 'ssh-user', notAfter: null }], T0 / 1000)).toContain('no expiry');
  });

  it('writes durations as their two largest units', () => {
    expect(humanDuration(0)).toBe('0s');
    expect(humanDuration(59)).toBe('59s');
    expect(humanDuration(3725)).toBe('1h 2m');
    expect(humanDuration(86400 * 6 + 3600 * 23 + 59)).toBe('6d 23h');
    expect(relative(100, 40)).toBe('in 1m');
    expect(relative(40, 100)).toBe('1m ago');
  });
});
