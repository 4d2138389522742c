/**
 * The one table that maps internal error codes to gRPC statuses, and the
 * wrappers that apply it at the edge. Handlers throw CaError (or anything);
 * callers see a status and a message that is safe to show. Unexpected errors
 * become INTERNAL with a generic message; their cause is logged.
 */
import * as grpc from '@grpc/grpc-js';
import { CaError, type CaErrorCode } from '../errors.js';
import { StoreError } from '../store/store.js';

const STATUS: Record<CaErrorCode, grpc.status> = {
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  CSR_INVALID: grpc.status.INVALID_ARGUMENT,
  UNSUPPORTED_KEY: grpc.status.INVALID_ARGUMENT,
  NOT_FOUND: grpc.status.NOT_FOUND,
  ALREADY_EXISTS: grpc.status.ALREADY_EXISTS,
  PERMISSION_DENIED: grpc.status.PERMISSION_DENIED,
  ATTESTATION_FAILED: grpc.status.PERMISSION_DENIED,
  POLICY_DENIED: grpc.status.PERMISSION_DENIED,
  CA_NOT_READY: grpc.status.UNAVAILABLE,
  FAILED_PRECONDITION: grpc.status.FAILED_PRECONDITION,
  INTERNAL: grpc.status.INTERNAL,
};

export function statusForCode(code: CaErrorCode): grpc.status {
  return STATUS[code];
}

/** Minimal logger shape (pino-compatible). */
export interface ErrorLogger {
  error(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** Converts anything thrown into a ServiceError for grpc-js. */
export function toServiceError(e: unknown, logger?: ErrorLogger): Partial<grpc.StatusObject> & Error {
  if (e instanceof CaError) {
    if (e.code === 'INTERNAL') logger?.error({ err: e, cause: e.cause }, 'internal error');
    const msg = e.code === 'INTERNAL' ? 'internal error' : e.message;
    return Object.assign(new Error(msg), { code: STATUS[e.code], details: msg });
  }
  if (e instanceof StoreError) {
    logger?.error({ err: e }, 'storage error');
    const msg =
      e.code === 'IO' ? 'the CA cannot write to its database right now; try again later' : 'storage error';
    return Object.assign(new Error(msg), { code: grpc.status.UNAVAILABLE, details: msg });
  }
  logger?.error({ err: e }, 'unexpected error');
  return Object.assign(new Error('internal error'), { code: grpc.status.INTERNAL, details: 'internal error' });
}

/** Wraps an async unary implementation into a grpc-js handler. */
export function unary<Req, Res>(
  fn: (req: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>,
  logger?: ErrorLogger,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    fn(call.request, call).then(
      (res) => callback(null, res),
      (e: unknown) => callback(toServiceError(e, logger)),
    );
  };
}
