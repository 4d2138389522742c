/**
 * Inline SVG charts, rendered on the server: no script library, no CDN.
 * Colours come from CSS classes (the page's stylesheet), tooltips from
 * SVG <title> elements.
 */
import type { MinuteCounts } from '../metrics/activity-history.js';
import type { AuthorityRow } from './dashboard-model.js';
import { esc, isoSeconds, relative, shortId } from './html.js';

/** Drawing width in SVG units; the charts scale to the panel's width. */
const W = 1200;

/** A round number at or above `v` (1, 2, 5 × 10^n). */
function niceCeil(v: number): number {
  if (v <= 1) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** Issuances per minute (stacked by kind) and errors per minute, over the minutes given (oldest first). */
export function rateChart(rate: readonly MinuteCounts[]): string {
  const H = 170;
  const left = 44;
  const right = 10;
  const top = 12;
  const bottom = 26;
  const plotW = W - left - right;
  const plotH = H - top - bottom;
  const max = niceCeil(Math.max(1, ...rate.map((m) => Math.max(m.issued.x509 + m.issued.ssh_user + m.issued.ssh_host, m.errors))));
  const slot = plotW / Math.max(1, rate.length);
  const barW = Math.max(1, slot - 2);
  const y = (v: number) => top + plotH - (v / max) * plotH;
  const parts: string[] = [];
  for (const frac of [0, 0.5, 1]) {
    const v = max * frac;
    parts.push(`<line class="grid" x1="${left}" x2="${W - right}" y1="${y(v)}" y2="${y(v)}"/>`);
    parts.push(`<text class="axis" x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${esc(Number.isInteger(v) ? v : v.toFixed(1))}</text>`);
  }
  rate.forEach((m, i) => {
    const x = left + i * slot + 1;
    let base = 0;
    const title = `${new Date(m.startMs).toISOString().slice(11, 16)} UTC: ${m.issued.x509} X.509, ${m.issued.ssh_user} SSH user, ${m.issued.ssh_host} SSH host, ${m.errors} errors`;
    const segs: string[] = [];
    for (const kind of ['x509', 'ssh_user', 'ssh_host'] as const) {
      const n = m.issued[kind];
      if (n === 0) continue;
      segs.push(`<rect class="k-${kind}" x="${x.toFixed(1)}" y="${y(base + n).toFixed(1)}" width="${barW.toFixed(1)}" height="${(y(base) - y(base + n)).toFixed(1)}"/>`);
      base += n;
    }
    // Errors: a narrow red bar over the right third of the minute's slot.
    if (m.errors > 0) {
      const ew = Math.max(1.5, barW / 3);
      segs.push(`<rect class="errors-bar" x="${(x + barW - ew).toFixed(1)}" y="${y(m.errors).toFixed(1)}" width="${ew.toFixed(1)}" height="${(y(0) - y(m.errors)).toFixed(1)}"/>`);
    }
    // A transparent full-height target carries the tooltip for every minute.
    parts.push(`<g><title>${esc(title)}</title><rect class="hit" x="${x.toFixed(1)}" y="${top}" width="${barW.toFixed(1)}" height="${plotH}"/>${segs.join('')}</g>`);
  });
  const n = rate.length;
  for (const back of [60, 45, 30, 15, 0]) {
    if (back >= n && back !== 0) continue;
    const x = left + (n - 1 - back) * slot + slot / 2;
    parts.push(`<text class="axis" x="${x.toFixed(1)}" y="${H - 8}" text-anchor="middle">${back === 0 ? 'now' : `-${back}m`}</text>`);
  }
  return `<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="issuance and errors per minute over the last hour">${parts.join('')}</svg>`;
}

/**
 * One timeline per authority kind: a bar from notBefore to notAfter per
 * authority, coloured by state, with a line at now. Keys that do not
 * expire run off the right edge.
 */
export function authorityTimeline(rows: readonly AuthorityRow[], nowSeconds: number): string {
  if (rows.length === 0) return '<p class="muted">no authorities</p>';
  const rowH = 26;
  const top = 6;
  const axisH = 22;
  const labelW = 170;
  const right = 12;
  const plotW = W - labelW - right;
  const start = Math.min(nowSeconds, ...rows.map((r) => r.notBefore));
  const finite = rows.map((r) => r.notAfter).filter((v): v is number => v !== null);
  const end = Math.max(nowSeconds + Math.max(3600, (nowSeconds - start) * 0.25), ...finite);
  const x = (t: number) => labelW + ((Math.min(Math.max(t, start), end) - start) / (end - start)) * plotW;
  const H = top + rows.length * rowH + axisH;
  const parts: string[] = [];
  rows.forEach((r, i) => {
    const yy = top + i * rowH;
    const x0 = x(r.notBefore);
    const x1 = r.notAfter === null ? W - right : x(r.notAfter);
    const life = r.notAfter === null ? 'no expiry' : `expires ${relative(r.notAfter, nowSeconds)} (${isoSeconds(r.notAfter)})`;
    parts.push(
      `<g data-authority="${esc(r.id)}"><title>${esc(`${r.kind} ${r.id} ${r.state}: from ${isoSeconds(r.notBefore)}, ${life}`)}</title>` +
        `<text class="label" x="0" y="${yy + 16}">${esc(shortId(r.id, 14))} <tspan class="st-text-${esc(r.state)}">${esc(r.state)}</tspan></text>` +
        `<rect class="bar st-${esc(r.state)}${r.notAfter === null ? ' open' : ''}" x="${x0.toFixed(1)}" y="${yy + 4}" width="${Math.max(2, x1 - x0).toFixed(1)}" height="${rowH - 9}" rx="3"/>` +
        `<text class="bar-label" x="${Math.min(x0 + 6, W - 140).toFixed(1)}" y="${yy + 16}">${esc(life.replace(/ \(.*\)$/, ''))}</text></g>`,
    );
  });
  const nowX = x(nowSeconds);
  const axisY = top + rows.length * rowH + 4;
  parts.push(`<line class="now" x1="${nowX.toFixed(1)}" x2="${nowX.toFixed(1)}" y1="${top}" y2="${axisY}"/>`);
  // Date labels at both ends, unless the "now" label sits on one of them.
  if (nowX - labelW > 80) parts.push(`<text class="axis" x="${labelW}" y="${axisY + 14}">${esc(isoSeconds(start).slice(0, 10))}</text>`);
  parts.push(`<text class="axis now-label" x="${nowX.toFixed(1)}" y="${axisY + 14}" text-anchor="${nowX - labelW < 20 ? 'start' : 'middle'}">now</text>`);
  if (W - right - nowX > 80) parts.push(`<text class="axis" x="${W - right}" y="${axisY + 14}" text-anchor="end">${esc(isoSeconds(end).slice(0, 10))}</text>`);
  return `<svg class="timeline" viewBox="0 0 ${W} ${H}" role="img" aria-label="authority lifetimes">${parts.join('')}</svg>`;
}

/** A small horizontal gauge of remaining life (0..1), coloured by health. */
export function lifeBar(remaining: number, health: string): string {
  const w = 90;
  return `<svg class="lifebar" viewBox="0 0 ${w} 10" width="${w}" height="10"><rect class="track" x="0" y="0" width="${w}" height="10" rx="2"/><rect class="h-${esc(health)}" x="0" y="0" width="${(Math.max(0, Math.min(1, remaining)) * w).toFixed(1)}" height="10" rx="2"/></svg>`;
}
