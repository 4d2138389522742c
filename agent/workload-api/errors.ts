/**
 * Typed errors of the Workload API server's own setup (the per-call errors
 * are gRPC statuses, decided at the edge in handlers.ts).
 */
export type WorkloadApiErrorCode =
  | 'SOCKET_PATH_INVALID' // the socket path exists and is not a socket
  | 'SOCKET_IN_USE'; // another process is accepting connections on the socket

export class WorkloadApiError extends Error {
  readonly code: WorkloadApiErrorCode;
  constructor(code: WorkloadApiErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'WorkloadApiError';
    this.code = code;
  }
}
