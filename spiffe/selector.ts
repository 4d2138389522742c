/**
 * Selectors are facts about a node or a workload, written `type:value`
 * (`unix:uid:1000`, `x509pop:subject:cn:web-1`). The type is everything
 * before the first colon.
 */
export interface Selector {
  type: string;
  value: string;
}

export class SelectorError extends Error {
  readonly code = 'INVALID_SELECTOR';
  constructor(message: string) {
    super(message);
    this.name = 'SelectorError';
  }
}

/** Longest selector accepted, in bytes (type:value). */
export const MAX_SELECTOR_BYTES = 1024;

const TYPE_RE = /^[a-z0-9_]+$/;

/** Parses and validates `type:value`. */
export function parseSelector(text: string): Selector {
  const i = text.indexOf(':');
  if (i <= 0) throw new SelectorError(`invalid selector '${printable(text)}': expected TYPE:VALUE, e.g. unix:uid:1000`);
  return validateSelector({ type: text.slice(0, i), value: text.slice(i + 1) });
}

/** Validates a selector's parts: a lower-case type and a printable, non-empty value. */
export function validateSelector(sel: Selector): Selector {
  if (!TYPE_RE.test(sel.type)) {
    throw new SelectorError(`invalid selector type '${printable(sel.type)}': use lower-case letters, digits and '_'`);
  }
  if (sel.value.length === 0) throw new SelectorError(`selector '${sel.type}:' has an empty value`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(sel.value)) {
    throw new SelectorError(`selector '${sel.type}:…' contains a control character`);
  }
  if (Buffer.byteLength(sel.type) + 1 + Buffer.byteLength(sel.value) > MAX_SELECTOR_BYTES) {
    throw new SelectorError(`selector is longer than ${MAX_SELECTOR_BYTES} bytes`);
  }
  return sel;
}

export function formatSelector(sel: Selector): string {
  return `${sel.type}:${sel.value}`;
}

/** Sorted by type then value, duplicates removed. */
export function normalizeSelectors(sels: Selector[]): Selector[] {
  const seen = new Map<string, Selector>();
  for (const s of sels) seen.set(formatSelector(s), s);
  return [...seen.values()].sort((a, b) => (a.type === b.type ? cmp(a.value, b.value) : cmp(a.type, b.type)));
}

/** True when every one of `required` is among `have` (the matching rule for entries). */
export function selectorsSubset(required: readonly Selector[], have: ReadonlySet<string>): boolean {
  for (const s of required) if (!have.has(formatSelector(s))) return false;
  return true;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function printable(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u001f\u007f]/g, '?').slice(0, 80);
}
