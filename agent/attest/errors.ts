/**
 * Typed errors of workload attestation. Each carries a stable `code` that the
 * Workload API edge maps to a gRPC status; messages name what failed and are
 * safe to log (they hold pids and paths, never key material).
 */
export type AttestationErrorCode =
  | 'PEERCRED_UNAVAILABLE' // the kernel credentials of a socket peer could not be read
  | 'PROCESS_GONE' // the calling process exited, or its pid now names another process
  | 'ATTESTATION_FAILED'; // the caller could not be attested for another reason

export class AttestationError extends Error {
  readonly code: AttestationErrorCode;
  constructor(code: AttestationErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AttestationError';
    this.code = code;
  }
}

/** True when `e` is an AttestationError, optionally with the given code. */
export function isAttestationError(e: unknown, code?: AttestationErrorCode): e is AttestationError {
  return e instanceof AttestationError && (code === undefined || e.code === code);
}
