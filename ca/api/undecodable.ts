/**
 * Requests that are not valid protobuf get InvalidArgument, not Internal.
 *
 * grpc-js answers a request its deserializer cannot decode with INTERNAL
 * ("Error deserializing request"), which tells clients the server is at
 * fault and invites retries. `guardDecoding` wraps a service's request
 * deserializers so that a decode failure yields a marker instead of a
 * throw, and `undecodableInterceptor` turns the marker into
 * INVALID_ARGUMENT before any handler sees it.
 */
import * as grpc from '@grpc/grpc-js';
import { echo } from './echo.js';

const UNDECODABLE = Symbol('brevis.undecodable');

interface Undecodable {
  /** The decoder's reason (it names no field values). */
  readonly [UNDECODABLE]: string;
}

function isUndecodable(msg: unknown): msg is Undecodable {
  return typeof msg === 'object' && msg !== null && UNDECODABLE in msg;
}

/** The same service definition with request decoding that never throws (see undecodableInterceptor). */
export function guardDecoding<T extends grpc.ServiceDefinition>(definition: T): T {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(definition)) {
    const decode = method.requestDeserialize;
    out[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return decode(bytes);
        } catch (e) {
          return { [UNDECODABLE]: e instanceof Error ? e.message : 'malformed' } satisfies Undecodable;
        }
      },
    };
  }
  return out as T;
}

/** `/pkg.Service/Method` -> `Method`. */
function methodName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/**
 * Ends a call whose request could not be decoded with INVALID_ARGUMENT; the
 * handler never runs. Place it after logging/metrics interceptors in the
 * server's `interceptors` list so that they observe the status.
 */
export function undecodableInterceptor(): grpc.ServerInterceptor {
  return (method, call) => {
    let rejected = false;
    return new grpc.ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMessage: (msg, nxt) => {
            if (rejected) return;
            if (!isUndecodable(msg)) return nxt(msg);
            rejected = true;
            call.sendStatus({
              code: grpc.status.INVALID_ARGUMENT,
              details: `the request is not a valid ${methodName(method.path)} message (protobuf decoding failed: ${echo(msg[UNDECODABLE], 120)})`,
              metadata: new grpc.Metadata(),
            });
          },
          onReceiveHalfClose: (nxt) => {
            if (!rejected) nxt();
          },
        }),
    });
  };
}
