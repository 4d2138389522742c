/**
 * ECDSA verification through the `ecdsa` addon (ca/native/ecdsa.c): OpenSSL's
 * ECDSA_verify on a point decoded with the on-curve check, without the
 * full public-key validation (a multiplication by the group order) that
 * every node:crypto import of an EC key performs. For P-256 and P-384
 * (cofactor 1) that multiplication proves nothing more, and it costs as much
 * as the verification itself: the addon halves the cost of checking a CSR's
 * proof of possession (README "Performance").
 *
 * When the addon cannot be loaded (it is built at install), callers fall
 * back to node:crypto, which accepts and refuses the same signatures.
 */
import { loadAddon } from './addon.js';

interface EcdsaAddon {
  verify(curveBits: number, digestBits: number, point: Uint8Array, data: Uint8Array, signature: Uint8Array): boolean;
}

export type EcdsaCurve = 'P-256' | 'P-384';
export type EcdsaDigest = 'sha256' | 'sha384' | 'sha512';

const CURVE_BITS: Readonly<Record<EcdsaCurve, number>> = { 'P-256': 256, 'P-384': 384 };
const DIGEST_BITS: Readonly<Record<EcdsaDigest, number>> = { sha256: 256, sha384: 384, sha512: 512 };

let addon: EcdsaAddon | null | undefined;

/** The addon, loaded on first use; null when it is not there. */
function load(): EcdsaAddon | null {
  if (addon === undefined) {
    try {
      addon = loadAddon<EcdsaAddon>('ecdsa');
    } catch {
      addon = null;
    }
  }
  return addon;
}

/** Whether ECDSA verification runs through the addon in this process. */
export function nativeEcdsaAvailable(): boolean {
  return load() !== null;
}

/** Thrown when the point is not on the curve. */
export class InvalidEcPointError extends Error {
  constructor() {
    super('the public key is not a point on the curve');
    this.name = 'InvalidEcPointError';
  }
}

/**
 * Verifies an ECDSA signature (DER Ecdsa-Sig-Value) over `data` with the
 * public key `point` (uncompressed: 04 || x || y). Returns undefined when
 * the addon is not loaded (the caller verifies with node:crypto instead);
 * throws InvalidEcPointError for a point off the curve.
 */
export function verifyEcdsa(curve: EcdsaCurve, digest: EcdsaDigest, point: Uint8Array, data: Uint8Array, signature: Uint8Array): boolean | undefined {
  const a = load();
  if (!a) return undefined;
  try {
    return a.verify(CURVE_BITS[curve], DIGEST_BITS[digest], point, data, signature);
  } catch (e) {
    if ((e as { code?: unknown }).code === 'ERR_INVALID_KEY') throw new InvalidEcPointError();
    throw e;
  }
}
