/**
 * The dashboard's HTML, rendered on the server from a snapshot: the page,
 * and the sections a live update replaces. Every dynamic value is escaped.
 * Elements carry data-testid / data-value attributes so that tests and
 * scripts read exact numbers rather than the human wording.
 */
import type { CredentialKind } from './credential-tracker.js';
import type { AgentRow, AuthorityRow, DashboardSnapshot } from './dashboard-model.js';
import { authorityTimeline, lifeBar, rateChart } from './charts.js';
import { esc, isoSeconds, relative, shortId } from './html.js';

/** `2026-11-22 05:36` (UTC). */
const shortTime = (atSeconds: number) => isoSeconds(atSeconds).slice(0, 16).replace('T', ' ');

export const SECTION_IDS = ['summary', 'rate', 'authorities', 'agents', 'credentials', 'audit'] as const;
export type SectionId = (typeof SECTION_IDS)[number];

const KIND_LABEL: Record<CredentialKind, string> = { x509: 'X.509 SVID', agent: 'agent SVID', ssh_user: 'SSH user', ssh_host: 'SSH host' };
const AUTHORITY_TITLE: Record<AuthorityRow['kind'], string> = {
  'x509-root': 'X.509 roots',
  'x509-intermediate': 'X.509 intermediates',
  'ssh-user': 'SSH user CA',
  'ssh-host': 'SSH host CA',
};

const card = (testid: string, title: string, value: number | string, sub = '', cls = '') =>
  `<div class="card ${cls}" data-testid="${testid}"><div class="card-title">${esc(title)}</div><div class="num" data-value="${esc(value)}">${esc(value)}</div><div class="sub">${sub}</div></div>`;

function summary(s: DashboardSnapshot): string {
  const { agents, credentials: c, issuedLastHour: i } = s.summary;
  const issued = i.x509 + i.ssh_user + i.ssh_host;
  const chain = s.audit.chain;
  return [
    card('agents-active', 'Active agents', agents.active, `${esc(agents.expired)} expired · ${esc(agents.banned)} banned`),
    card('entries', 'Registration entries', s.summary.entries),
    `<div class="card" data-testid="credentials"><div class="card-title">Credentials by remaining life</div><div class="health-row">` +
      (['green', 'yellow', 'red', 'expired'] as const)
        .map((h) => `<span class="pill h-${h}" data-testid="cred-${h}" data-value="${c[h]}" title="${esc(h)}">${esc(c[h])}</span>`)
        .join('') +
      `</div><div class="sub">green ≥ 40% · yellow ≥ 15% · red &lt; 15% left</div></div>`,
    card('issued-hour', 'Issued, last hour', issued, `${esc(i.x509)} X.509 · ${esc(i.ssh_user)} SSH user · ${esc(i.ssh_host)} SSH host`),
    card('errors-hour', 'Errors, last hour', s.summary.errorsLastHour, 'failed calls and refused items', s.summary.errorsLastHour > 0 ? 'warn' : ''),
    card('audit-chain', 'Audit chain', chain.status, esc(chain.detail), chain.status === 'broken' ? 'bad' : chain.status === 'intact' ? 'good' : ''),
  ].join('');
}

function authorities(s: DashboardSnapshot): string {
  const now = Math.floor(s.generatedAtMs / 1000);
  const groups = (['x509-root', 'x509-intermediate', 'ssh-user', 'ssh-host'] as const).map((kind) => {
    const rows = s.authorities.filter((a) => a.kind === kind);
    return `<div class="kind" data-kind="${kind}"><h3>${esc(AUTHORITY_TITLE[kind])} <span class="muted" data-testid="authorities-${kind}" data-value="${rows.length}">(${rows.length})</span></h3>${authorityTimeline(rows, now)}</div>`;
  });
  const table = s.authorities
    .map(
      (a) =>
        `<tr data-authority-id="${esc(a.id)}"><td class="nowrap">${esc(a.kind)}</td><td class="mono nowrap" title="${esc(a.id)}">${esc(shortId(a.id, 14))}</td>` +
        `<td><span class="badge st-${esc(a.state)}">${esc(a.state)}</span></td><td class="nowrap" title="${esc(isoSeconds(a.notBefore))}">${esc(shortTime(a.notBefore))}</td>` +
        `<td data-value="${a.notAfter ?? ''}" title="${a.notAfter === null ? '' : esc(isoSeconds(a.notAfter))}">${a.notAfter === null ? 'no expiry' : `<span class="nowrap">${esc(shortTime(a.notAfter))}</span> <span class="muted nowrap">(${esc(relative(a.notAfter, now))})</span>`}</td>` +
        `<td>${a.progress.length === 0 ? '<span class="muted">—</span>' : a.progress.map(([k, v]) => `${esc(k)}: <b>${esc(v)}</b>`).join('<br>')}</td></tr>`,
    )
    .join('');
  return (
    groups.join('') +
    `<table><thead><tr><th>kind</th><th>id</th><th>state</th><th>not before</th><th>not after</th><th>rotation</th></tr></thead><tbody>${table}</tbody></table>`
  );
}

function rate(s: DashboardSnapshot): string {
  return (
    `<div class="legend"><span class="sw k-x509"></span>X.509 <span class="sw k-ssh_user"></span>SSH user <span class="sw k-ssh_host"></span>SSH host <span class="sw errors"></span>errors</div>` +
    rateChart(s.rate)
  );
}

function agentRow(a: AgentRow, now: number): string {
  return (
    `<tr data-agent-id="${esc(a.agentId)}"><td class="mono">${esc(a.agentId)}</td><td>${esc(a.attestationType)}</td>` +
    `<td><span class="badge ag-${a.state}">${a.state}</span></td>` +
    `<td data-field="last-sync" data-value="${a.lastSyncAt}" title="${esc(isoSeconds(a.lastSyncAt))}">${esc(relative(a.lastSyncAt, now))}</td>` +
    `<td data-field="svid-expiry" data-value="${a.svidExpiresAt}" title="${esc(isoSeconds(a.svidExpiresAt))}">${esc(relative(a.svidExpiresAt, now))}</td>` +
    `<td data-field="entries" data-value="${a.entries ?? ''}">${a.entries ?? '<span class="muted">—</span>'}</td>` +
    `<td data-field="workload-svids" data-value="${a.workloadSvids}">${a.workloadSvids}</td></tr>`
  );
}

function agents(s: DashboardSnapshot): string {
  const now = Math.floor(s.generatedAtMs / 1000);
  if (s.agents.length === 0) return '<p class="muted">no agents have attested yet</p>';
  return `<table><thead><tr><th>agent</th><th>attestation</th><th>state</th><th>last sync</th><th>agent SVID expires</th><th>entries</th><th>workload SVIDs</th></tr></thead><tbody>${s.agents.map((a) => agentRow(a, now)).join('')}</tbody></table>`;
}

function credentials(s: DashboardSnapshot): string {
  const now = Math.floor(s.generatedAtMs / 1000);
  if (s.credentials.length === 0) return '<p class="muted">no credentials issued recently</p>';
  const rows = s.credentials
    .map(
      (c) =>
        `<tr data-serial="${esc(c.serial)}" data-health="${c.health}"><td><span class="dot h-${c.health}" title="${c.health}"></span>${lifeBar(c.remaining, c.health)}</td>` +
        `<td>${esc(KIND_LABEL[c.kind])}</td><td class="mono">${esc(c.subject)}</td><td class="mono" title="${esc(c.holder)}">${esc(shortId(c.holder, 48))}</td>` +
        `<td class="mono" title="${esc(c.serial)}">${esc(shortId(c.serial, 10))}</td>` +
        `<td data-value="${Math.floor(c.notAfterMs / 1000)}">${esc(relative(Math.floor(c.notAfterMs / 1000), now))}</td><td>${Math.round(c.remaining * 100)}%</td></tr>`,
    )
    .join('');
  return `<table><thead><tr><th>life</th><th>kind</th><th>subject</th><th>holder</th><th>serial</th><th>expires</th><th>left</th></tr></thead><tbody>${rows}</tbody></table>`;
}

function audit(s: DashboardSnapshot): string {
  const chain = s.audit.chain;
  const head = `<p class="chain chain-${chain.status.replace(' ', '-')}" data-testid="audit-chain-status" data-value="${esc(chain.status)}">hash chain: <b>${esc(chain.status)}</b> — ${esc(chain.detail)}${chain.checkedAtMs ? ` <span class="muted">(checked ${esc(relative(Math.floor(chain.checkedAtMs / 1000), Math.floor(s.generatedAtMs / 1000)))})</span>` : ''}</p>`;
  if (s.audit.recent.length === 0) return `${head}<p class="muted">no audit records yet</p>`;
  const rows = s.audit.recent
    .map(
      (r) =>
        `<tr data-seq="${r.seq ?? ''}"><td>${r.seq ?? ''}</td><td class="nowrap">${esc(new Date(r.timeMs).toISOString().slice(0, 19).replace('T', ' '))}</td>` +
        `<td class="mono">${esc(shortId(r.caller, 48))}</td><td>${esc(r.action)}</td><td class="mono">${esc(r.spiffeId ?? '')}</td>` +
        `<td><span class="badge out-${r.outcome}">${r.outcome}</span></td><td>${esc((r.detail ?? '').slice(0, 120))}</td></tr>`,
    )
    .join('');
  return `${head}<table><thead><tr><th>seq</th><th>time (UTC)</th><th>caller</th><th>action</th><th>SPIFFE ID</th><th>outcome</th><th>detail</th></tr></thead><tbody>${rows}</tbody></table>`;
}

/** The HTML of each live section. */
export function renderSections(s: DashboardSnapshot): Record<SectionId, string> {
  return { summary: summary(s), authorities: authorities(s), rate: rate(s), agents: agents(s), credentials: credentials(s), audit: audit(s) };
}

const TITLES: Record<SectionId, string> = {
  summary: 'Overview',
  authorities: 'Authorities',
  rate: 'Issuance and errors per minute, last hour',
  agents: 'Agents',
  credentials: 'Issued credentials by remaining life',
  audit: 'Recent audit records',
};

/** The whole page; the script then keeps the sections current over server-sent events. */
export function renderPage(s: DashboardSnapshot): string {
  const sections = renderSections(s);
  const body = SECTION_IDS.map((id) => `<section class="panel panel-${id}"><h2>${esc(TITLES[id])}</h2><div id="${id}">${sections[id]}</div></section>`).join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Brevis CA · ${esc(s.trustDomain)}</title><link rel="stylesheet" href="app.css"><script src="app.js" defer></script></head>
<body><header><h1>Brevis CA <span class="td">${esc(s.trustDomain)}</span></h1><div id="live" class="live" data-state="static">updated <time id="updated" datetime="${new Date(s.generatedAtMs).toISOString()}">${esc(new Date(s.generatedAtMs).toISOString().slice(11, 19))} UTC</time></div></header>
<main>${body}</main><footer>read-only · refreshed live over server-sent events · <a href="api/snapshot">JSON</a></footer></body></html>`;
}
