import { SpiffeError } from './errors.js';

/**
 * SPIFFE IDs and trust domain names, validated against every rule of the
 * SPIFFE ID standard (spiffe/spiffe standards/SPIFFE-ID.md).
 *
 * Input is never silently repaired: an uppercase trust domain is an error,
 * not lowered. The one normalization is the scheme, which the standard makes
 * case-insensitive: `SPIFFE://td/x` is accepted and printed as `spiffe://td/x`.
 */

/** Upper bound on a trust domain name, in bytes. */
export const MAX_TRUST_DOMAIN_BYTES = 255;
/** Upper bound on a whole SPIFFE ID, in bytes: we accept up to it and never generate longer. */
export const MAX_SPIFFE_ID_BYTES = 2048;

const SCHEME_PREFIX = 'spiffe://';
const TRUST_DOMAIN_CHAR = /^[a-z0-9._-]$/;
const PATH_CHAR = /^[a-zA-Z0-9._-]$/;

/** A parsed, valid SPIFFE ID. Immutable; compare with `equals`, not `===`. */
export class SpiffeId {
  /** The trust domain name, e.g. `example.org`. */
  readonly trustDomain: string;
  /** The path, either empty (the trust domain's own ID) or `/seg/seg...`. */
  readonly path: string;

  /**
   * Builds an ID from its parts, validating both. Most callers want
   * `parseSpiffeId`; this suits code that composes a path for a known domain.
   */
  constructor(trustDomain: string, path: string) {
    checkTrustDomain(trustDomain, 'INVALID_SPIFFE_ID');
    checkPath(path);
    const whole = SCHEME_PREFIX.length + Buffer.byteLength(trustDomain) + Buffer.byteLength(path);
    if (whole > MAX_SPIFFE_ID_BYTES) {
      throw new SpiffeError('INVALID_SPIFFE_ID', `SPIFFE ID is longer than ${MAX_SPIFFE_ID_BYTES} bytes (${whole})`);
    }
    this.trustDomain = trustDomain;
    this.path = path;
  }

  /** The canonical form, `spiffe://<trust domain><path>`. */
  toString(): string {
    return `${SCHEME_PREFIX}${this.trustDomain}${this.path}`;
  }

  /** Same as `toString`, so IDs serialize as strings. */
  toJSON(): string {
    return this.toString();
  }

  /** True when `other` names the same ID (the path is case-sensitive). */
  equals(other: SpiffeId | string): boolean {
    if (typeof other === 'string') {
      const parsed = tryParse(other);
      return parsed !== undefined && this.equals(parsed);
    }
    return this.trustDomain === other.trustDomain && this.path === other.path;
  }

  /**
   * True when this ID belongs to trust domain `td`, given as a bare name or in
   * `spiffe://td` form. An invalid `td` is a member of nothing: false, not a throw.
   */
  isMemberOf(td: string): boolean {
    try {
      return parseTrustDomain(td) === this.trustDomain;
    } catch {
      return false;
    }
  }

  /** True for the trust domain's own ID (`spiffe://td`, empty path), which names the CA. */
  get isTrustDomainId(): boolean {
    return this.path === '';
  }
}

/**
 * Parses and validates a SPIFFE ID. Throws SpiffeError('INVALID_SPIFFE_ID')
 * whose message names the broken rule.
 */
export function parseSpiffeId(s: string): SpiffeId {
  if (typeof s !== 'string') throw new TypeError('SPIFFE ID must be a string');
  if (s === '') throw invalidId('SPIFFE ID is empty');
  const bytes = Buffer.byteLength(s);
  if (bytes > MAX_SPIFFE_ID_BYTES) {
    throw invalidId(`SPIFFE ID is longer than ${MAX_SPIFFE_ID_BYTES} bytes (${bytes})`);
  }
  if (s.slice(0, SCHEME_PREFIX.length).toLowerCase() !== SCHEME_PREFIX) {
    const sep = s.indexOf('://');
    if (sep > 0) throw invalidId(`scheme must be 'spiffe', got '${s.slice(0, sep)}'`);
    throw invalidId("SPIFFE ID must start with 'spiffe://'");
  }
  const rest = s.slice(SCHEME_PREFIX.length);
  // Query and fragment are named explicitly: '?' and '#' would also fail the
  // character rules, but "query is not allowed" says what is actually wrong.
  if (rest.includes('#')) throw invalidId('fragment is not allowed');
  if (rest.includes('?')) throw invalidId('query is not allowed');
  const slash = rest.indexOf('/');
  const td = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash);
  return new SpiffeId(td, path);
}

/** True when `s` is a valid SPIFFE ID (with or without a path). */
export function isValidSpiffeId(s: string): boolean {
  return tryParse(s) !== undefined;
}

/**
 * Parses a SPIFFE ID that names a workload: valid and with a non-empty path.
 * Accepts an already-parsed ID too. Throws SpiffeError('INVALID_SPIFFE_ID').
 */
export function requireWorkloadId(s: string | SpiffeId): SpiffeId {
  const id = typeof s === 'string' ? parseSpiffeId(s) : s;
  if (id.isTrustDomainId) {
    throw invalidId(`'${id.toString()}' names a trust domain, not a workload: the path must not be empty`);
  }
  return id;
}

/**
 * Validates a trust domain name and returns it. Accepts a bare name
 * (`example.org`) or the trust domain's ID (`spiffe://example.org`); an ID
 * with a path is refused, since a config value that carries one is a mistake.
 * Throws SpiffeError('INVALID_TRUST_DOMAIN').
 */
export function parseTrustDomain(s: string): string {
  if (typeof s !== 'string') throw new TypeError('trust domain must be a string');
  if (s.includes('://')) {
    let id: SpiffeId;
    try {
      id = parseSpiffeId(s);
    } catch (e) {
      throw new SpiffeError('INVALID_TRUST_DOMAIN', (e as Error).message, { cause: e });
    }
    if (!id.isTrustDomainId) {
      throw new SpiffeError('INVALID_TRUST_DOMAIN', `expected a trust domain, got a SPIFFE ID with path '${id.path}'`);
    }
    return id.trustDomain;
  }
  checkTrustDomain(s, 'INVALID_TRUST_DOMAIN');
  return s;
}

/** True when `s` is a valid bare trust domain name or `spiffe://td`. */
export function isValidTrustDomain(s: string): boolean {
  try {
    parseTrustDomain(s);
    return true;
  } catch {
    return false;
  }
}

/** The trust domain's own SPIFFE ID as a string, `spiffe://td`. Validates `td`. */
export function trustDomainId(td: string): string {
  return `${SCHEME_PREFIX}${parseTrustDomain(td)}`;
}

function tryParse(s: string): SpiffeId | undefined {
  try {
    return parseSpiffeId(s);
  } catch {
    return undefined;
  }
}

function invalidId(message: string): SpiffeError {
  return new SpiffeError('INVALID_SPIFFE_ID', message);
}

/** Printable ASCII is quoted as is; anything else is shown as a code point. */
function describeChar(c: string): string {
  const cp = c.codePointAt(0) ?? 0;
  return cp >= 0x21 && cp <= 0x7e ? `'${c}'` : `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;
}

function checkTrustDomain(td: string, code: 'INVALID_SPIFFE_ID' | 'INVALID_TRUST_DOMAIN'): void {
  const fail = (m: string) => new SpiffeError(code, m);
  if (td === '') throw fail('trust domain is missing');
  const bytes = Buffer.byteLength(td);
  if (bytes > MAX_TRUST_DOMAIN_BYTES) {
    throw fail(`trust domain is longer than ${MAX_TRUST_DOMAIN_BYTES} bytes (${bytes})`);
  }
  // Checked before the character loop so `user:pw@host` reports userinfo, not a port.
  if (td.includes('@')) throw fail('userinfo is not allowed in the trust domain');
  for (const c of td) {
    if (TRUST_DOMAIN_CHAR.test(c)) continue;
    if (c === ':') throw fail('port is not allowed in the trust domain');
    if (c === '%') throw fail('percent-encoding is not allowed in the trust domain');
    if (c >= 'A' && c <= 'Z') {
      throw fail(`trust domain contains an uppercase letter '${c}': trust domain names are lowercase`);
    }
    throw fail(
      `trust domain contains an invalid character ${describeChar(c)}: only lowercase letters, digits, '.', '-' and '_' are allowed`,
    );
  }
}

function checkPath(path: string): void {
  if (path === '') return;
  if (!path.startsWith('/')) throw invalidId("path must be empty or start with '/'");
  if (path.endsWith('/')) throw invalidId('path must not have a trailing slash');
  for (const segment of path.slice(1).split('/')) {
    if (segment === '') throw invalidId('path contains an empty segment');
    if (segment === '.' || segment === '..') throw invalidId(`path contains a dot segment '${segment}'`);
    for (const c of segment) {
      if (!PATH_CHAR.test(c)) {
        const why = c === '%' ? ' (percent-encoding is not allowed)' : '';
        throw invalidId(`path segment contains an invalid character ${describeChar(c)}${why}`);
      }
    }
  }
}
