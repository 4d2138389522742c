/** Failures of the Workload API client, with stable codes. */

export type WorkloadApiErrorCode =
  | 'INVALID_ADDRESS' // the endpoint address is missing or malformed
  | 'UNAVAILABLE' // the agent cannot be reached, is starting, or ended the stream
  | 'PERMISSION_DENIED' // the agent has no identity for this caller (yet)
  | 'INVALID_ARGUMENT' // the agent refused the request itself; retrying cannot help
  | 'INVALID_RESPONSE' // a response does not hold usable SVIDs or bundles
  | 'CANCELLED' // the caller aborted or closed the client
  | 'RPC_FAILED'; // any other gRPC failure

/** A Workload API failure with a stable `code`. Never carries key material. */
export class WorkloadApiError extends Error {
  readonly code: WorkloadApiErrorCode;
  constructor(code: WorkloadApiErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'WorkloadApiError';
    this.code = code;
  }
}
