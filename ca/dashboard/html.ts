/**
 * Small helpers for server-rendered HTML: escaping (every dynamic value
 * goes through `esc` or `attr`) and human-readable times.
 */

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text content, escaped. */
export function esc(v: string | number): string {
  return String(v).replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

/** A duration in seconds as its two largest units: `6d 23h`, `4m 10s`, `12s`. */
export function humanDuration(seconds: number): string {
  let s = Math.max(0, Math.round(seconds));
  const units: Array<[string, number]> = [
    ['d', 86_400],
    ['h', 3_600],
    ['m', 60],
    ['s', 1],
  ];
  const parts: string[] = [];
  for (const [u, n] of units) {
    if (s >= n || (u === 's' && parts.length === 0)) {
      parts.push(`${Math.floor(s / n)}${u}`);
      s %= n;
    }
    if (parts.length === 2) break;
  }
  return parts.join(' ');
}

/** `in 6d 23h` or `3m ago`, relative to `nowSeconds`. */
export function relative(atSeconds: number, nowSeconds: number): string {
  const d = atSeconds - nowSeconds;
  return d >= 0 ? `in ${humanDuration(d)}` : `${humanDuration(-d)} ago`;
}

/** ISO 8601 UTC to the second, for tooltips and tables. */
export function isoSeconds(atSeconds: number): string {
  return new Date(atSeconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** The first `n` characters of an identifier, for narrow columns (the full value goes in a tooltip). */
export function shortId(id: string, n = 12): string {
  return id.length > n ? `${id.slice(0, n)}…` : id;
}
