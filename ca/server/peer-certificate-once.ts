/**
 * Reads the TLS peer certificate once per connection. grpc-js answers every
 * `getAuthContext()` with a fresh `TLSSocket.getPeerCertificate()`, which
 * builds the whole parsed certificate object (about 50-70 us here), and a
 * node API call asks three times: the edge's logging and metrics, the rate
 * limiter and the handler's agent authentication. Asking once per call
 * still cost 5.6% of the event loop at 1,168 single mints per second
 * (CPU profile, README "Performance"), on connections that carry thousands
 * of calls each.
 *
 * The peer certificate belongs to the TLS session, fixed at its handshake.
 * Only a TLS 1.2 renegotiation could change it, which HTTP/2 forbids
 * (RFC 9113 section 9.2.1) and Node's HTTP/2 already refuses on its
 * sockets; the first time a connection's certificate is kept,
 * renegotiation is disabled on it here as well, so the cache never rests on
 * that alone: a client that tries is cut off. What the certificate
 * proves (the agent, its SVID still valid, not revoked) is still decided
 * per call by the handlers.
 *
 * As the first server interceptor (closest to the connection) this sees
 * grpc-js's own call object, whose HTTP/2 stream names the connection; if a
 * later grpc-js stops exposing it there, the answer is kept per call, as
 * before, and nothing else changes.
 */
import { TLSSocket } from 'node:tls';
import * as grpc from '@grpc/grpc-js';

type AuthContext = ReturnType<grpc.ServerInterceptingCallInterface['getAuthContext']>;

/** Auth contexts by connection: gone with the socket. */
const byConnection = new WeakMap<TLSSocket, AuthContext>();

/** The TLS socket under a grpc-js call, when grpc-js shows it. */
function connectionOf(call: grpc.ServerInterceptingCallInterface): TLSSocket | undefined {
  const socket = (call as { stream?: { session?: { socket?: unknown } } }).stream?.session?.socket;
  return socket instanceof TLSSocket ? socket : undefined;
}

export function peerCertificateOnceInterceptor(): grpc.ServerInterceptor {
  return (_method, call) => {
    const once = new grpc.ServerInterceptingCall(call);
    let auth: AuthContext | undefined;
    once.getAuthContext = () => {
      if (auth !== undefined) return auth;
      const socket = connectionOf(call);
      if (!socket) return (auth = call.getAuthContext());
      auth = byConnection.get(socket);
      if (auth === undefined) {
        auth = call.getAuthContext();
        // Only a certificate from a completed, verified handshake is kept (grpc-js answers {} before that).
        if (auth.sslPeerCertificate) {
          socket.disableRenegotiation();
          byConnection.set(socket, auth);
        }
      }
      return auth;
    };
    return once;
  };
}
