/**
 * The dashboard's stylesheet and script, served from the CA itself (the
 * Content-Security-Policy allows nothing else). The script only swaps in
 * server-rendered sections from server-sent events; EventSource reconnects
 * by itself after the CA restarts.
 */

export const DASHBOARD_JS = `'use strict';
(() => {
  const live = document.getElementById('live');
  const updated = document.getElementById('updated');
  let updates = 0;
  const events = new EventSource('events');
  events.addEventListener('snapshot', (ev) => {
    const d = JSON.parse(ev.data);
    for (const [id, html] of Object.entries(d.sections)) {
      const el = document.getElementById(id);
      if (el && el.innerHTML !== html) el.innerHTML = html;
    }
    updated.textContent = d.updated;
    updated.setAttribute('datetime', d.generatedAt);
    live.dataset.state = 'live';
    live.dataset.updates = String(++updates);
  });
  events.addEventListener('error', () => {
    live.dataset.state = 'reconnecting';
  });
})();
`;

export const DASHBOARD_CSS = `
:root { --bg:#f5f6f8; --panel:#fff; --ink:#1d2330; --muted:#6b7385; --line:#e3e6ec;
  --green:#2e9e5b; --yellow:#e0a400; --red:#d64545; --grey:#9aa1ae; --blue:#3a6fd8; --purple:#8a55c9; --teal:#1b9aa0; --orange:#e07b24; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:var(--ink); background:var(--bg); }
header { display:flex; align-items:baseline; justify-content:space-between; padding:14px 22px; background:#1d2330; color:#fff; }
header h1 { margin:0; font-size:19px; font-weight:600; }
header .td { margin-left:10px; font-weight:400; color:#b8c0d0; font-family:ui-monospace, Menlo, monospace; font-size:15px; }
.live { font-size:13px; color:#b8c0d0; }
.live::before { content:''; display:inline-block; width:9px; height:9px; border-radius:50%; margin-right:7px; background:var(--grey); }
.live[data-state=live]::before { background:#3ddc84; }
.live[data-state=reconnecting]::before { background:var(--orange); }
main { display:grid; grid-template-columns: 1fr; gap:16px; padding:16px 22px; max-width:1500px; }
.panel { background:var(--panel); border:1px solid var(--line); border-radius:8px; padding:12px 16px; min-width:0; overflow-x:auto; }
h2 { margin:0 0 10px; font-size:15px; font-weight:600; }
h3 { margin:10px 0 4px; font-size:13px; font-weight:600; }
#summary { display:grid; grid-template-columns: repeat(6, 1fr); gap:12px; }
.card { border:1px solid var(--line); border-radius:6px; padding:10px 12px; }
.card.warn { border-color:var(--yellow); } .card.bad { border-color:var(--red); background:#fff5f5; } .card.good .num { color:var(--green); }
.card-title { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.03em; }
.card .num { font-size:26px; font-weight:600; margin:2px 0; }
.sub { color:var(--muted); font-size:12px; }
.health-row { display:flex; gap:6px; margin:6px 0 5px; }
.pill { display:inline-block; min-width:38px; text-align:center; padding:3px 8px; border-radius:12px; color:#fff; font-weight:600; }
.pill.h-green, .dot.h-green { background:var(--green); } .pill.h-yellow, .dot.h-yellow { background:var(--yellow); }
.pill.h-red, .dot.h-red { background:var(--red); } .pill.h-expired, .dot.h-expired { background:#7a1f1f; }
.dot { display:inline-block; width:10px; height:10px; border-radius:50%; margin-right:8px; vertical-align:middle; }
.lifebar { vertical-align:middle; } .lifebar .track { fill:#edf0f4; }
.lifebar .h-green { fill:var(--green); } .lifebar .h-yellow { fill:var(--yellow); } .lifebar .h-red, .lifebar .h-expired { fill:var(--red); }
table { width:100%; border-collapse:collapse; font-size:13px; }
th { text-align:left; color:var(--muted); font-weight:500; border-bottom:1px solid var(--line); padding:5px 8px; white-space:nowrap; }
td { border-bottom:1px solid var(--line); padding:5px 8px; vertical-align:middle; }
tr:last-child td { border-bottom:0; }
.mono { font-family:ui-monospace, Menlo, monospace; font-size:12px; word-break:break-all; }
.muted { color:var(--muted); }
.nowrap { white-space:nowrap; }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; color:#fff; background:var(--grey); }
.badge.st-active, .badge.ag-active, .badge.out-success { background:var(--green); }
.badge.st-prepared { background:var(--blue); } .badge.st-retired { background:var(--grey); }
.badge.st-tainted, .badge.ag-expired { background:var(--orange); } .badge.st-revoked, .badge.ag-banned, .badge.out-failure { background:var(--red); }
svg text { font-size:11px; fill:var(--muted); font-family:system-ui, sans-serif; }
svg .label { fill:var(--ink); font-family:ui-monospace, Menlo, monospace; }
svg .bar-label { fill:#fff; font-size:10px; }
.chart, .timeline { width:100%; height:auto; display:block; }
.grid { stroke:var(--line); }
.hit { fill:transparent; }
.k-x509 { fill:var(--blue); } .k-ssh_user { fill:var(--purple); } .k-ssh_host { fill:var(--teal); }
.errors-bar { fill:var(--red); }
.legend { font-size:12px; color:var(--muted); margin-bottom:4px; }
.legend .sw { display:inline-block; width:10px; height:10px; margin:0 4px 0 10px; vertical-align:middle; border-radius:2px; }
.legend .sw.k-x509 { background:var(--blue); } .legend .sw.k-ssh_user { background:var(--purple); } .legend .sw.k-ssh_host { background:var(--teal); }
.legend .sw.errors { background:var(--red); }
.bar { fill:var(--grey); } .bar.st-active { fill:var(--green); } .bar.st-prepared { fill:var(--blue); } .bar.st-tainted { fill:var(--orange); } .bar.st-revoked { fill:var(--red); }
.bar.open { opacity:.85; }
.st-text-active { fill:var(--green); } .st-text-prepared { fill:var(--blue); } .st-text-tainted { fill:var(--orange); } .st-text-revoked { fill:var(--red); }
.now { stroke:var(--red); stroke-dasharray:3 3; } .now-label { fill:var(--red); }
.chain { margin:0 0 8px; } .chain-intact b { color:var(--green); } .chain-broken b { color:var(--red); }
footer { padding:4px 22px 18px; color:var(--muted); font-size:12px; }
footer a { color:var(--muted); }
@media (max-width: 1100px) { #summary { grid-template-columns: repeat(3, 1fr); } }
`;
