/**
 * Typed errors of the SPIFFE core library. Each carries a stable `code` that
 * callers and tests match on; the wording of messages may change. Messages
 * name the rule that was broken and never carry key material.
 */
export type SpiffeErrorCode =
  | 'INVALID_SPIFFE_ID' // a string is not a valid SPIFFE ID
  | 'INVALID_TRUST_DOMAIN' // a string is not a valid trust domain name
  | 'INVALID_PEM' // PEM text could not be decoded
  | 'INVALID_DER' // concatenated DER is truncated or not a sequence of SEQUENCEs
  | 'SVID_INVALID' // an X509-SVID failed validation against a bundle
  | 'BUNDLE_INVALID'; // a trust bundle (PEM or SPIFFE JWKS) is malformed

export class SpiffeError extends Error {
  readonly code: SpiffeErrorCode;
  constructor(code: SpiffeErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SpiffeError';
    this.code = code;
  }
}

/** True when `e` is a SpiffeError, optionally with the given code. */
export function isSpiffeError(e: unknown, code?: SpiffeErrorCode): e is SpiffeError {
  return e instanceof SpiffeError && (code === undefined || e.code === code);
}
