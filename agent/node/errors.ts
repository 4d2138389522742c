/**
 * Failures talking to the CA's node API, typed with stable codes so that
 * the agent can decide: retry later (UNAVAILABLE), attest again or stop
 * (PERMISSION_DENIED), or give up on one request (the rest).
 */
import * as grpc from '@grpc/grpc-js';
import { retryHintOf } from '../sync/retry-hint.js';

export type NodeApiErrorCode =
  | 'UNAVAILABLE' // the CA cannot be reached, timed out, or is shedding load: retry with backoff
  | 'PERMISSION_DENIED' // the CA refused us: evicted, banned, superseded SVID, or attestation refused
  | 'INVALID_ARGUMENT' // the CA refused the request itself
  | 'FAILED_PRECONDITION' // e.g. x509pop is not configured on the CA
  | 'BAD_RESPONSE' // the CA answered something we cannot use
  | 'RPC_FAILED'; // any other status

export class NodeApiError extends Error {
  readonly code: NodeApiErrorCode;
  /** The gRPC status when the CA answered with one. */
  readonly grpcCode: grpc.status | undefined;
  /** How long the CA asked us to wait before retrying (a rate limit's `retry-after-ms`), when it did. */
  readonly retryAfterMs: number | undefined;
  constructor(code: NodeApiErrorCode, message: string, options?: { cause?: unknown; grpcCode?: grpc.status; retryAfterMs?: number | undefined }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'NodeApiError';
    this.code = code;
    this.grpcCode = options?.grpcCode;
    this.retryAfterMs = options?.retryAfterMs;
  }
}

export function isNodeApiError(e: unknown, code?: NodeApiErrorCode): e is NodeApiError {
  return e instanceof NodeApiError && (code === undefined || e.code === code);
}

const BY_STATUS: Partial<Record<grpc.status, NodeApiErrorCode>> = {
  [grpc.status.UNAVAILABLE]: 'UNAVAILABLE',
  [grpc.status.DEADLINE_EXCEEDED]: 'UNAVAILABLE',
  [grpc.status.RESOURCE_EXHAUSTED]: 'UNAVAILABLE',
  [grpc.status.CANCELLED]: 'UNAVAILABLE',
  [grpc.status.PERMISSION_DENIED]: 'PERMISSION_DENIED',
  [grpc.status.UNAUTHENTICATED]: 'PERMISSION_DENIED',
  [grpc.status.INVALID_ARGUMENT]: 'INVALID_ARGUMENT',
  [grpc.status.FAILED_PRECONDITION]: 'FAILED_PRECONDITION',
};

/** Wraps a grpc-js error; `what` names the RPC for the message. */
export function fromGrpcError(what: string, e: unknown): NodeApiError {
  if (e instanceof NodeApiError) return e;
  const se = e as Partial<grpc.ServiceError>;
  if (typeof se.code === 'number') {
    const code = BY_STATUS[se.code as grpc.status] ?? 'RPC_FAILED';
    const status = grpc.status[se.code] ?? String(se.code);
    return new NodeApiError(code, `${what}: ${status}: ${se.details || se.message || 'no details'}`, { cause: e, grpcCode: se.code, retryAfterMs: retryHintOf(se.metadata) });
  }
  return new NodeApiError('RPC_FAILED', `${what}: ${(e as Error)?.message ?? String(e)}`, { cause: e });
}
