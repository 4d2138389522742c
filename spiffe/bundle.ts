import { X509Certificate } from 'node:crypto';
import type { JsonWebKey } from 'node:crypto';
import { SpiffeError } from './errors.js';
import { parseTrustDomain } from './id.js';
import { certsToPem, concatDer, pemDecodeAll, splitConcatenatedDer } from './pem.js';

/**
 * X.509 trust bundles for one trust domain, and their SPIFFE bundle format
 * (a JWK Set, spiffe/spiffe standards/SPIFFE_Trust_Domain_and_Bundle.md and
 * X509-SVID.md section 6).
 */

/** One JWK of a SPIFFE bundle. Key parameters (`crv`, `x`, `n`, ...) vary with `kty`. */
export interface SpiffeJwk {
  kty: string;
  use?: string;
  kid?: string;
  x5c?: string[];
  [param: string]: unknown;
}

/** A SPIFFE bundle document. */
export interface SpiffeJwks {
  keys: SpiffeJwk[];
  spiffe_sequence?: number;
  spiffe_refresh_hint?: number;
}

/** What an X509Bundle is built from. */
export interface X509BundleInit {
  trustDomain: string;
  /** DER CA certificates; identical duplicates are dropped, order is kept. */
  authorities: readonly Uint8Array[];
  /** Bundle revision, a non-negative integer that only grows. Default 0. */
  sequence?: number;
  /** How often consumers should refresh, in seconds; absent when unknown. */
  refreshHintSeconds?: number;
}

const X509_SVID_USE = 'x509-svid';
// Parameters that only a private JWK carries: a trust bundle must never hold them.
const PRIVATE_JWK_PARAMS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

/** The X.509 authorities (CA certificates) trusted for one trust domain. Immutable. */
export class X509Bundle {
  readonly trustDomain: string;
  /** DER CA certificates, each a private copy. */
  readonly authorities: readonly Buffer[];
  readonly sequence: number;
  readonly refreshHintSeconds: number | undefined;
  readonly #certificates: readonly X509Certificate[];

  /** Validates every part; throws SpiffeError('BUNDLE_INVALID') or ('INVALID_TRUST_DOMAIN'). */
  constructor(init: X509BundleInit) {
    this.trustDomain = parseTrustDomain(init.trustDomain);
    const sequence = init.sequence ?? 0;
    if (!Number.isSafeInteger(sequence) || sequence < 0) {
      throw invalid(`sequence must be a non-negative integer, got ${String(sequence)}`);
    }
    const hint = init.refreshHintSeconds;
    if (hint !== undefined && (!Number.isSafeInteger(hint) || hint < 0)) {
      throw invalid(`refresh hint must be a non-negative integer number of seconds, got ${String(hint)}`);
    }
    const seen = new Set<string>();
    const authorities: Buffer[] = [];
    const certificates: X509Certificate[] = [];
    init.authorities.forEach((der, i) => {
      const copy = Buffer.from(der);
      const key = copy.toString('base64');
      if (seen.has(key)) return;
      seen.add(key);
      authorities.push(copy);
      certificates.push(parseCertificate(copy, `authority ${i}`));
    });
    this.sequence = sequence;
    this.refreshHintSeconds = hint;
    this.authorities = Object.freeze(authorities);
    this.#certificates = Object.freeze(certificates);
  }

  /** The authorities parsed, in the same order as `authorities`. */
  get certificates(): readonly X509Certificate[] {
    return this.#certificates;
  }

  /** True when `der` is exactly one of the authorities. */
  hasAuthority(der: Uint8Array): boolean {
    return this.authorities.some((a) => a.equals(der));
  }

  /** True when both bundles have the same trust domain, sequence, refresh hint and authorities in order. */
  equals(other: X509Bundle): boolean {
    return (
      this.trustDomain === other.trustDomain &&
      this.sequence === other.sequence &&
      this.refreshHintSeconds === other.refreshHintSeconds &&
      this.authorities.length === other.authorities.length &&
      this.authorities.every((a, i) => a.equals(other.authorities[i]!))
    );
  }
}

/**
 * The bundle in SPIFFE bundle format: one JWK per authority with
 * `use: "x509-svid"`, the public key's parameters and `x5c` holding exactly
 * the DER certificate in standard base64; no `kid`, which the standard forbids
 * on X.509 entries. `spiffe_refresh_hint` is present only when known.
 */
export function toSpiffeJwks(bundle: X509Bundle): SpiffeJwks {
  const keys = bundle.certificates.map((cert, i): SpiffeJwk => {
    const { kty, ...params } = publicJwk(cert, `authority ${i}`);
    return { use: X509_SVID_USE, kty, ...params, x5c: [bundle.authorities[i]!.toString('base64')] };
  });
  const doc: SpiffeJwks = { keys, spiffe_sequence: bundle.sequence };
  if (bundle.refreshHintSeconds !== undefined) doc.spiffe_refresh_hint = bundle.refreshHintSeconds;
  return doc;
}

/**
 * Reads a SPIFFE bundle (JSON text, bytes or an already parsed object) as the
 * X.509 bundle of `trustDomain`. `keys` is required and may be empty. Each
 * `x509-svid` entry must hold exactly one certificate in `x5c` (stricter than
 * X509-SVID.md 6.2, which lets consumers skip empty entries and ignore extra
 * certificates: a producer that does either is broken, and we would rather
 * know) and its key parameters must match that certificate's key (RFC 7517
 * 4.7). Entries with `use: "jwt-svid"` or another use are tolerated and
 * ignored. Throws SpiffeError('BUNDLE_INVALID').
 */
export function fromSpiffeJwks(json: string | Uint8Array | object, trustDomain: string): X509Bundle {
  let doc: unknown = json;
  if (typeof json === 'string' || json instanceof Uint8Array) {
    const text = typeof json === 'string' ? json : Buffer.from(json).toString('utf8');
    try {
      doc = JSON.parse(text);
    } catch (e) {
      throw invalid('SPIFFE bundle is not valid JSON', e);
    }
  }
  if (!isRecord(doc)) throw invalid('SPIFFE bundle must be a JSON object');
  if (!Array.isArray(doc.keys)) throw invalid("SPIFFE bundle must have a 'keys' array");
  const sequence = optionalCount(doc.spiffe_sequence, 'spiffe_sequence');
  const refreshHintSeconds = optionalCount(doc.spiffe_refresh_hint, 'spiffe_refresh_hint');
  const authorities: Buffer[] = [];
  doc.keys.forEach((key: unknown, i: number) => {
    if (!isRecord(key)) throw invalid(`key ${i} is not a JSON object`);
    if (typeof key.kty !== 'string') throw invalid(`key ${i} has no 'kty'`);
    for (const p of PRIVATE_JWK_PARAMS) {
      if (p in key) throw invalid(`key ${i} contains the private key parameter '${p}'`);
    }
    if (key.use !== X509_SVID_USE) return;
    const x5c = key.x5c;
    if (!Array.isArray(x5c) || x5c.length !== 1 || typeof x5c[0] !== 'string') {
      const n = Array.isArray(x5c) ? x5c.length : 0;
      throw invalid(`x509-svid key ${i} must have exactly one certificate in 'x5c', found ${n}`);
    }
    const b64 = x5c[0];
    const der = Buffer.from(b64, 'base64');
    if (b64 === '' || der.toString('base64') !== b64) {
      throw invalid(`x509-svid key ${i} 'x5c' is not standard (padded, not url-safe) base64`);
    }
    const cert = parseCertificate(der, `x509-svid key ${i}`);
    const expected = publicJwk(cert, `x509-svid key ${i}`);
    for (const [param, value] of Object.entries(expected)) {
      if (key[param] !== value) {
        throw invalid(`x509-svid key ${i} parameter '${param}' does not match the public key of its certificate`);
      }
    }
    authorities.push(der);
  });
  return new X509Bundle({
    trustDomain,
    authorities,
    ...(sequence !== undefined && { sequence }),
    ...(refreshHintSeconds !== undefined && { refreshHintSeconds }),
  });
}

/**
 * Reads a bundle from PEM text holding only `CERTIFICATE` blocks. Unlike the
 * JWKS form, no certificate at all is an error: an empty PEM trust file is
 * almost always a mistake.
 */
export function bundleFromPem(
  trustDomain: string,
  pemText: string,
  options: { sequence?: number; refreshHintSeconds?: number } = {},
): X509Bundle {
  let ders: Buffer[];
  try {
    ders = pemDecodeAll(pemText, 'CERTIFICATE');
  } catch (e) {
    throw invalid(`trust bundle PEM: ${(e as Error).message}`, e);
  }
  if (ders.length === 0) throw invalid('trust bundle PEM holds no certificate');
  return new X509Bundle({ trustDomain, authorities: ders, ...options });
}

/** The authorities as consecutive PEM `CERTIFICATE` blocks. */
export function bundleToPem(bundle: X509Bundle): string {
  return certsToPem(bundle.authorities);
}

/** The authorities as concatenated DER, the Workload API's `bundle` encoding. */
export function bundleToDer(bundle: X509Bundle): Buffer {
  return concatDer(bundle.authorities);
}

/** Reads a bundle from concatenated DER certificates (Workload API `bundle` and `bundles` fields). */
export function bundleFromDer(trustDomain: string, der: Uint8Array): X509Bundle {
  let ders: Buffer[];
  try {
    ders = splitConcatenatedDer(der);
  } catch (e) {
    throw invalid(`trust bundle DER: ${(e as Error).message}`, e);
  }
  return new X509Bundle({ trustDomain, authorities: ders });
}

/** The public key of `cert` as a JWK; kty first, then Node's parameters (EC: crv, x, y; RSA: n, e; OKP: crv, x). */
function publicJwk(cert: X509Certificate, what: string): { kty: string; [param: string]: unknown } {
  let jwk: JsonWebKey;
  try {
    jwk = cert.publicKey.export({ format: 'jwk' });
  } catch (e) {
    throw invalid(`${what}: its ${cert.publicKey.asymmetricKeyType ?? 'unknown'} key cannot be expressed as a JWK`, e);
  }
  const { kty, ...params } = jwk;
  if (typeof kty !== 'string') throw invalid(`${what}: its key has no JWK type`);
  return { kty, ...params };
}

function parseCertificate(der: Buffer, what: string): X509Certificate {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(der);
  } catch (e) {
    throw invalid(`${what} is not a DER X.509 certificate`, e);
  }
  // Node ignores bytes after the certificate; a bundle entry must be exactly one.
  if (cert.raw.length !== der.length) throw invalid(`${what} has trailing bytes after the certificate`);
  return cert;
}

function optionalCount(v: unknown, name: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw invalid(`'${name}' must be a non-negative integer`);
  }
  return v;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function invalid(message: string, cause?: unknown): SpiffeError {
  return new SpiffeError('BUNDLE_INVALID', message, cause === undefined ? undefined : { cause });
}
