/**
 * Reads the TLS peer certificate once per call. grpc-js answers every
 * `getAuthContext()` with a fresh `TLSSocket.getPeerCertificate()`, which
 * builds the whole parsed certificate object (about 70 us here), and a node
 * API call asks three times: the edge's logging and metrics, the rate
 * limiter and the handler's agent authentication. As the first server
 * interceptor (closest to the connection), this makes the later ones and
 * the handler share the first answer. The certificate cannot change during
 * a call: it belongs to the TLS session, fixed at its handshake.
 */
import * as grpc from '@grpc/grpc-js';

export function peerCertificateOnceInterceptor(): grpc.ServerInterceptor {
  return (_method, call) => {
    const once = new grpc.ServerInterceptingCall(call);
    let auth: ReturnType<grpc.ServerInterceptingCallInterface['getAuthContext']> | undefined;
    once.getAuthContext = () => (auth === undefined ? (auth = call.getAuthContext()) : auth);
    return once;
  };
}
