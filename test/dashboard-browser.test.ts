/**
 * The dashboard in a real headless Chromium (Debian's chromium, driven by
 * playwright-core) against a running CA with real agents: the numbers on
 * the page must match the admin API, the agents' own caches and the
 * metrics endpoint; the page must update live; screenshots are saved.
 *
 * BREVIS_SCREENSHOTS=docs writes the screenshots to docs/ (the README's);
 * otherwise they go to a temp directory.
 */
import { existsSync, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from '../agent/agent.js';
import { AuditServiceClient } from '../proto/gen/brevis/ca/v1/audit.js';
import { AuthorityServiceClient, type AuthorityInfo } from '../proto/gen/brevis/ca/v1/authority.js';
import { call, newKey, nodeClient, startTestCa, TD, type TestCa } from './support/ca-harness.js';
import { agentConfig, createEntry, createJoinToken, tempDir, waitFor, testLogger } from './support/agent-harness.js';
import { parseSamples, scrape } from './support/prometheus.js';
import { adminSign, expectGrpcError } from './support/ssh-harness.js';
import { ROOT } from './support/processes.js';

const CHROMIUM = '/usr/bin/chromium';

/** The little of the browser's DOM the page predicates use (tests compile without the DOM lib). */
interface Doc {
  querySelector(selector: string): { getAttribute(name: string): string | null } | null;
}
const uid = process.getuid!();

interface ApiAgent {
  agentId: string;
  banned: boolean;
  expiresAt: number;
  lastSeenAt: number;
}

// Skipped only on a developer machine without chromium; CI installs it (.ci/run) and must run this.
describe.skipIf(!existsSync(CHROMIUM) && !process.env.CI)('dashboard in headless Chromium', () => {
  let t: TestCa;
  let audit: AuditServiceClient;
  const agents: RunningAgent[] = [];
  const tmp = tempDir('brevis-dash-browser-');
  const shots = process.env.BREVIS_SCREENSHOTS === 'docs' ? path.join(ROOT, 'docs') : path.join(tmp.dir, 'shots');
  let browser: Browser;
  let page: Page;
  const serials: Record<'expired' | 'red' | 'yellow', string> = { expired: '', red: '', yellow: '' };

  const text = (sel: string) => page.locator(sel).first().getAttribute('data-value');
  const num = async (sel: string) => Number(await text(sel));

  beforeAll(async () => {
    t = await startTestCa({ dashboard: '127.0.0.1:0', metrics: '127.0.0.1:0' });
    audit = new AuditServiceClient(`unix://${t.ca.adminSocket}`, grpc.credentials.createInsecure());
    // Two agents serving workloads; a long sync interval keeps their last sync still while the test compares.
    for (const [i, names] of [['web', 'api', 'db'], ['batch', 'reports']].entries()) {
      const tok = await createJoinToken(t);
      for (const n of names) await createEntry(t, { spiffeId: `spiffe://${TD}/prod/${n}`, parentId: tok.agentId, selectors: [`unix:uid:${uid}`] });
      const dir = path.join(tmp.dir, `agent-${i}`);
      mkdirSync(dir);
      agents.push(await startAgent(agentConfig(t, dir, { joinToken: tok.token, syncInterval: '1h' }), { logger: testLogger() }));
    }
    for (const a of agents) await waitFor(() => a.cache.isReady(), 10_000, 'the first sync');
    // A banned agent, SSH certificates, refused calls.
    const tok = await createJoinToken(t);
    const k = await newKey();
    const anon = nodeClient(t);
    const banned = await call<object, { svid: { spiffeId: string } }>(anon, 'attestJoinToken', { token: tok.token, csr: k.csr });
    await call(t.admin, 'banAgent', { agentId: banned.svid.spiffeId });
    await expectGrpcError(call(anon, 'attestJoinToken', { token: 'z'.repeat(43), csr: k.csr }), grpc.status.PERMISSION_DENIED);
    anon.close();
    await adminSign(t, { principals: ['alice'] });
    await adminSign(t, { principals: ['deploy'], ttlSeconds: 1800 });
    // Short-lived admin SVIDs that turn expired, red and yellow while the test runs.
    for (const [kind, ttl] of [['expired', 3], ['red', 20], ['yellow', 26]] as const) {
      const key = await newKey();
      const r = await call<object, { svid: { serial: string } }>(t.admin, 'mintX509Svid', { spiffeId: `spiffe://${TD}/ops/${kind}-demo`, csr: key.csr, ttlSeconds: ttl, dnsNames: [] });
      serials[kind] = r.svid.serial;
    }

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
    // No external network: fail the test on any request that leaves the CA.
    await page.route('**/*', (route) => (route.request().url().startsWith(`http://127.0.0.1:${t.ca.dashboardPort}/`) ? route.continue() : route.abort()));
  });
  afterAll(async () => {
    await browser?.close();
    for (const a of agents) await a.close();
    audit?.close();
    await t?.cleanup();
    tmp.cleanup();
  });

  it('loads without errors and goes live over server-sent events', async () => {
    const problems: string[] = [];
    page.on('console', (m) => m.type() === 'error' && problems.push(m.text()));
    page.on('pageerror', (e) => problems.push(e.message));
    page.on('requestfailed', (r) => problems.push(`${r.url()} ${r.failure()?.errorText}`));
    await page.goto(`http://127.0.0.1:${t.ca.dashboardPort}/`);
    await page.waitForSelector('#live[data-state=live]', { timeout: 10_000 });
    expect(await page.title()).toBe(`Brevis CA · ${TD}`);
    expect(problems).toEqual([]);
  });

  it('shows the agents the admin API lists, with their last sync, SVID expiry and what they serve', async () => {
    const listed = (await call<object, { agents: ApiAgent[] }>(t.admin, 'listAgents', {})).agents;
    const now = Date.now() / 1000;
    expect(await num('[data-testid=agents-active] .num')).toBe(listed.filter((a) => !a.banned && a.expiresAt > now).length);
    expect(await page.locator('[data-testid=agents-active] .sub').textContent()).toContain('1 banned');
    const rows = page.locator('tr[data-agent-id]');
    expect(await rows.count()).toBe(listed.length);
    for (const a of listed) {
      const row = page.locator(`tr[data-agent-id="${a.agentId}"]`);
      expect(Number(await row.locator('[data-field=last-sync]').getAttribute('data-value')), a.agentId).toBe(a.lastSeenAt);
      expect(Number(await row.locator('[data-field=svid-expiry]').getAttribute('data-value'))).toBe(a.expiresAt);
      expect(await row.locator('.badge').textContent()).toBe(a.banned ? 'banned' : 'active');
    }
    for (const agent of agents) {
      const row = page.locator(`tr[data-agent-id="${agent.agentSvid().spiffeId}"]`);
      // What the CA authorizes and what the agent itself holds agree with the page.
      expect(Number(await row.locator('[data-field=entries]').getAttribute('data-value'))).toBe(agent.cache.entries().length);
      expect(Number(await row.locator('[data-field=workload-svids]').getAttribute('data-value'))).toBe(agent.cache.entries().filter((e) => agent.cache.svidOf(e.id)).length);
      // Every SVID the agent holds is listed, green.
      for (const e of agent.cache.entries()) {
        expect(await page.locator(`tr[data-serial="${agent.cache.svidOf(e.id)!.serial}"]`).getAttribute('data-health')).toBe('green');
      }
    }
    const entries = (await call<object, { entries: unknown[] }>(t.admin, 'listEntries', {})).entries;
    expect(await num('[data-testid=entries] .num')).toBe(entries.length);
  });

  it('shows the authorities of each kind with their state, lifetime and rotation progress as the admin API does', async () => {
    const client = new AuthorityServiceClient(`unix://${t.ca.adminSocket}`, grpc.credentials.createInsecure());
    const auths = await new Promise<AuthorityInfo[]>((resolve, reject) => client.listAuthorities({}, (e, r) => (e ? reject(e) : resolve(r.authorities))));
    client.close();
    await page.reload();
    for (const kind of ['x509-root', 'x509-intermediate', 'ssh-user', 'ssh-host']) {
      expect(await num(`[data-testid="authorities-${kind}"]`), kind).toBe(auths.filter((a) => a.kind === kind).length);
    }
    for (const a of auths) {
      const row = page.locator(`tr[data-authority-id="${a.id}"]`);
      expect(await row.locator('.badge').textContent(), a.id).toBe(a.state);
      const progress = await row.locator('td').last().textContent();
      expect(progress).toContain(`acknowledged: ${a.acknowledgedAgents}/${a.agents} agents`);
      expect(progress).toContain(`outstanding credentials: ${a.outstandingCredentials}`);
    }
    const inter = auths.find((a) => a.kind === 'x509-intermediate' && a.state === 'active')!;
    const row = page.locator(`tr[data-authority-id="${inter.id}"]`);
    expect(Number(await row.locator('td[data-value]').getAttribute('data-value'))).toBe(inter.notAfter);
    expect(await page.locator(`g[data-authority="${inter.id}"] rect.bar.st-active`).count()).toBe(1);
  });

  it('agrees with the metrics endpoint on issuance and errors, and with the audit API on the trail', async () => {
    await page.reload();
    await page.waitForSelector('#live[data-state=live]');
    const samples = parseSamples((await scrape(`http://127.0.0.1:${t.ca.metricsPort}/metrics`)).text);
    const sum = (name: string) => samples.filter((s) => s.name === name).reduce((n, s) => n + s.value, 0);
    expect(await num('[data-testid=issued-hour] .num')).toBe(sum('brevis_ca_credentials_issued_total'));
    expect(await num('[data-testid=errors-hour] .num')).toBe(sum('brevis_ca_errors_total'));
    expect(await num('[data-testid=errors-hour] .num')).toBeGreaterThanOrEqual(1);
    // The chart has one bar slot per minute.
    expect(await page.locator('#rate svg .hit').count()).toBe(60);

    const verdict = await new Promise<{ intact: boolean; count: number }>((resolve, reject) =>
      audit.verifyAudit({}, (e, r) => (e ? reject(e) : resolve(r))),
    );
    expect(verdict.intact).toBe(true);
    await waitFor(async () => {
      await page.reload();
      return (await text('[data-testid=audit-chain-status]')) === 'intact';
    }, 10_000, 'the chain check on the page');
    const records = await new Promise<Array<{ seq: number; action: string }>>((resolve, reject) =>
      audit.listAudit({ sinceMs: 0, afterSeq: 0, limit: 1000 }, (e, r) => (e ? reject(e) : resolve(r.records))),
    );
    const newest = records.at(-1)!;
    const top = page.locator('#audit tr[data-seq]').first();
    expect(Number(await top.getAttribute('data-seq'))).toBe(newest.seq);
    expect(await top.locator('td').nth(3).textContent()).toBe(newest.action);
  });

  it('updates live when an entry is added and the agent syncs', async () => {
    const before = await num('[data-testid=entries] .num');
    const updates = Number(await page.locator('#live').getAttribute('data-updates'));
    const agent = agents[1]!;
    await createEntry(t, { spiffeId: `spiffe://${TD}/prod/cron`, parentId: agent.agentSvid().spiffeId, selectors: [`unix:uid:${uid}`] });
    await agent.syncNow();
    await page.waitForFunction((n) => Number((globalThis as unknown as { document: Doc }).document.querySelector('[data-testid=entries] .num')?.getAttribute('data-value')) === n, before + 1, { timeout: 10_000 });
    expect(Number(await page.locator('#live').getAttribute('data-updates'))).toBeGreaterThan(updates);
    const row = page.locator(`tr[data-agent-id="${agent.agentSvid().spiffeId}"]`);
    await page.waitForFunction(
      ([id, n]) => Number((globalThis as unknown as { document: Doc }).document.querySelector(`tr[data-agent-id="${id}"] [data-field=workload-svids]`)?.getAttribute('data-value')) === n,
      [agent.agentSvid().spiffeId, agent.cache.entries().length] as const,
      { timeout: 10_000 },
    );
    expect(Number(await row.locator('[data-field=entries]').getAttribute('data-value'))).toBe(agent.cache.entries().length);
  });

  it('colours credentials by remaining life as time passes, and saves screenshots', async () => {
    // Expired after 3 s; red from 17 s to 20 s; yellow from 15.6 s to 22.1 s after minting.
    await page.waitForFunction(
      (s) => {
        const health = (serial: string) => (globalThis as unknown as { document: Doc }).document.querySelector(`tr[data-serial="${serial}"]`)?.getAttribute('data-health');
        return health(s.expired) === 'expired' && health(s.red) === 'red' && health(s.yellow) === 'yellow';
      },
      serials,
      { timeout: 40_000, polling: 200 },
    );
    for (const h of ['green', 'yellow', 'red', 'expired']) expect(await num(`[data-testid=cred-${h}]`), h).toBeGreaterThanOrEqual(1);
    mkdirSync(shots, { recursive: true });
    const full = path.join(shots, 'dashboard.png');
    await page.screenshot({ path: full, fullPage: true });
    const top = path.join(shots, 'dashboard-overview.png');
    await page.screenshot({ path: top, clip: { x: 0, y: 0, width: 1440, height: 900 } });
    expect(statSync(full).size).toBeGreaterThan(50_000);
    expect(statSync(top).size).toBeGreaterThan(30_000);
  });
});
