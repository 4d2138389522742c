/**
 * The request a piece of code is running for, carried through async calls
 * (AsyncLocalStorage) so that every log line written while serving a call
 * carries its request id, without threading a logger through the logic.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';

export interface RequestContext {
  /** Unique within this process's lifetime; random prefix so ids from restarts do not collide. */
  readonly reqId: string;
  /** The gRPC method path, e.g. `/brevis.ca.v1.NodeService/AttestJoinToken`. */
  readonly rpc: string;
}

const storage = new AsyncLocalStorage<RequestContext>();
const prefix = randomBytes(3).toString('hex');
let counter = 0;

/** A new request id: `<6 hex of this process>-<base36 counter>`, cheap enough for every call. */
export function newRequestId(): string {
  counter = (counter + 1) % Number.MAX_SAFE_INTEGER;
  return `${prefix}-${counter.toString(36)}`;
}

/** Runs `fn` (and everything it starts) as part of `ctx`. */
export function runInRequest<T>(ctx: RequestContext, fn: () => T): T {
  return storage.run(ctx, fn);
}

/** The request being served, if any. */
export function currentRequest(): RequestContext | undefined {
  return storage.getStore();
}

/** A pino `mixin`: adds `reqId` to lines logged while serving a request. */
export function requestLogFields(): { reqId?: string } {
  const ctx = storage.getStore();
  return ctx ? { reqId: ctx.reqId } : {};
}
