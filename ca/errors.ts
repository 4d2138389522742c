/**
 * Typed errors used inside the CA. Each carries a stable `code`; the gRPC
 * edge (ca/api/errors.ts) maps codes to statuses. Messages are safe to show
 * to the caller: never put key material or token secrets in them.
 */
export type CaErrorCode =
  | 'INVALID_ARGUMENT' // malformed input: bad CSR, bad SPIFFE ID, TTL out of range
  | 'CSR_INVALID' // CSR could not be parsed or its signature does not verify
  | 'UNSUPPORTED_KEY' // subject key type not accepted
  | 'NOT_FOUND' // unknown entry, agent or token
  | 'ALREADY_EXISTS'
  | 'PERMISSION_DENIED' // caller not authorized for this
  | 'ATTESTATION_FAILED' // node attestation refused
  | 'POLICY_DENIED' // request valid but refused by policy
  | 'CA_NOT_READY' // keys not loaded yet
  | 'FAILED_PRECONDITION'
  | 'INTERNAL'; // a bug or an unexpected failure: details are logged, not returned

export class CaError extends Error {
  readonly code: CaErrorCode;
  constructor(code: CaErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CaError';
    this.code = code;
  }
}

export function isCaError(e: unknown, code?: CaErrorCode): e is CaError {
  return e instanceof CaError && (code === undefined || e.code === code);
}
