/**
 * The gRPC edge, observed in one place: a server interceptor that gives
 * each call a request id (carried to every log line written while serving
 * it), times it, counts its final status, and logs one line with the
 * caller's identity and the outcome. Handlers stay free of measurement.
 */
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { newRequestId, runInRequest, type RequestContext } from './request-context.js';

/** Receives what the edge measures; CaMetrics and AgentMetrics implement it. */
export interface RpcObserver {
  /** One finished call: its method path, final status and duration. */
  observeRpc(path: string, code: grpc.status, seconds: number): void;
  /** One response message sent: a unary reply, or a push on a server stream (`streaming`). */
  observeResponse?(path: string, message: unknown, streaming: boolean): void;
}

export type CallInfo = grpc.ServerInterceptingCallInterface;

export interface EdgeOptions {
  /** One line per finished call; none without a logger. */
  logger?: Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>;
  observer?: RpcObserver;
  /** Who is calling, from the connection (TLS peer, socket), never from the request. Evaluated once per call, when it ends. */
  caller?(call: CallInfo): string;
  /** Level of the line for a successful call (default debug: agents poll often). */
  okLevel?: 'debug' | 'info';
}

const SERVER_FAULTS = new Set([grpc.status.INTERNAL, grpc.status.UNKNOWN, grpc.status.DATA_LOSS, grpc.status.UNIMPLEMENTED]);
const REFUSALS = new Set([grpc.status.PERMISSION_DENIED, grpc.status.UNAUTHENTICATED, grpc.status.UNAVAILABLE, grpc.status.RESOURCE_EXHAUSTED]);

const HEALTH_PREFIX = '/grpc.health.v1.Health/';

/** `/pkg.Service/Method` -> `Service/Method`, for log lines. */
export function shortRpcName(path: string): string {
  const slash = path.lastIndexOf('/');
  const service = path.slice(1, slash);
  return `${service.slice(service.lastIndexOf('.') + 1)}/${path.slice(slash + 1)}`;
}

/** The interceptor to pass in a grpc.Server's `interceptors` option. */
export function edgeInterceptor(opts: EdgeOptions): grpc.ServerInterceptor {
  const { logger, observer } = opts;
  const okLevel = opts.okLevel ?? 'debug';
  const onResponse = observer?.observeResponse?.bind(observer);
  return (method, call) => {
    const path = method.path;
    const ctx: RequestContext = { reqId: newRequestId(), rpc: path };
    const t0 = performance.now();
    let finished = false;
    const finish = (code: grpc.status, details: string | undefined) => {
      if (finished) return;
      finished = true;
      const seconds = (performance.now() - t0) / 1000;
      observer?.observeRpc(path, code, seconds);
      if (!logger) return;
      const line: Record<string, unknown> = {
        reqId: ctx.reqId,
        rpc: shortRpcName(path),
        caller: opts.caller ? safeCaller(opts.caller, call) : 'unknown',
        code: grpc.status[code] ?? String(code),
        durationMs: Math.round(seconds * 10_000) / 10,
      };
      // Health probes come every few seconds from orchestrators: keep them out of info.
      if (code === grpc.status.OK) return logger[path.startsWith(HEALTH_PREFIX) ? 'debug' : okLevel](line, 'call served');
      line.details = details;
      if (SERVER_FAULTS.has(code)) logger.error(line, 'call failed');
      else if (REFUSALS.has(code)) logger.warn(line, 'call refused');
      else logger.info(line, 'call rejected');
    };
    const inRequest = <T>(fn: () => T) => runInRequest(ctx, fn);
    return new grpc.ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (md, nxt) => inRequest(() => nxt(md)),
          onReceiveMessage: (msg, nxt) => inRequest(() => nxt(msg)),
          onReceiveHalfClose: (nxt) => inRequest(() => nxt()),
          onCancel: () => finish(grpc.status.CANCELLED, 'cancelled by the client'),
        }),
      ...(onResponse
        ? {
            sendMessage: (msg: unknown, next: (m: unknown) => void) => {
              onResponse(path, msg, method.responseStream);
              next(msg);
            },
          }
        : {}),
      sendStatus: (status, next) => {
        finish(status.code ?? grpc.status.UNKNOWN, status.details);
        next(status);
      },
    });
  };
}

function safeCaller(caller: (call: CallInfo) => string, call: CallInfo): string {
  try {
    return caller(call);
  } catch {
    return 'unknown';
  }
}

/**
 * The SPIFFE ID of the TLS client certificate's URI SAN as TLS verified it
 * (chain to our roots), or `anonymous` without one. Whether that agent is
 * still current is the handler's business (ca/api/agent-auth.ts).
 */
export function tlsPeerCaller(call: CallInfo): string {
  const san = call.getAuthContext()?.sslPeerCertificate?.subjectaltname;
  if (!san) return 'anonymous';
  const uri = san.split(', ').find((p) => p.startsWith('URI:'));
  return uri ? uri.slice(4) : 'certificate without URI SAN';
}
