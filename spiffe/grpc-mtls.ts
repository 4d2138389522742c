import type * as net from 'node:net';
import type * as tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { PeerRejectedError, type Authorizer } from './authorize.js';
import type { SpiffeId } from './id.js';
import { createMtlsServer, spiffeServerCheck, type MtlsOptions, type MtlsServerOptions } from './mtls.js';
import { certsToPem, pemEncode } from './pem.js';
import { parseSvidLeaf } from './svid.js';
import type { X509SvidSource } from './x509-source.js';

/**
 * Mutual TLS with SPIFFE identities for grpc-js.
 *
 * Client: grpcChannelCredentials rotates with the source (grpc-js'
 * certificate-provider credentials build each new connection's context from
 * the latest update) and checks the server as tlsClientOptions does.
 *
 * Server: grpc-js shows handlers only the peer's leaf certificate, never the
 * chain, so an X509-SVID cannot be verified there (a leaf with an
 * intermediate has no path without it, and across federated bundles
 * OpenSSL alone does not bind the trust domain a leaf claims to the root it
 * chained to). serveGrpcMtls therefore terminates TLS itself with
 * createMtlsServer, verifies and authorizes each peer at the handshake, and
 * injects only accepted connections into the grpc.Server.
 */

/**
 * Channel credentials presenting the source's SVID and verifying the server
 * with verifyX509Svid and `authorizer`. Rotations reach new connections of
 * the same channel without recreating it.
 */
export function grpcChannelCredentials(
  source: X509SvidSource,
  authorizer: Authorizer,
  options: MtlsOptions = {},
): grpc.ChannelCredentials {
  const provider = new SourceCertificateProvider(source);
  return grpc.experimental.createCertificateProviderChannelCredentials(provider, provider, {
    checkServerIdentity: spiffeServerCheck(source, authorizer, options),
  });
}

/** A running mTLS listener of a grpc.Server. */
export interface GrpcMtlsListener {
  /** The bound address: a port (AddressInfo) or a Unix socket path. */
  readonly address: net.AddressInfo | string;
  /** The TLS server underneath, for its events. */
  readonly tlsServer: tls.Server;
  /** Stops accepting, closes the gRPC sessions of this listener, and resolves once all are gone. */
  close(): Promise<void>;
}

/**
 * Serves `server` over mTLS on `listen` (for example `{ host: '127.0.0.1',
 * port: 0 }` or `{ path }`): every client must present an X509-SVID valid
 * for one of the source's bundles that `authorizer` allows, or its
 * connection is destroyed before any RPC. Rotation is attached. The server
 * needs no bindAsync; handlers read the caller with grpcPeerSpiffeId.
 */
export async function serveGrpcMtls(
  server: grpc.Server,
  source: X509SvidSource,
  authorizer: Authorizer,
  listen: net.ListenOptions,
  options: MtlsServerOptions = {},
): Promise<GrpcMtlsListener> {
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const tlsServer = createMtlsServer(
    source,
    authorizer,
    (socket) => {
      const key = leafKey(socket.getPeerCertificate().raw);
      verifiedLeaves.set(key, (verifiedLeaves.get(key) ?? 0) + 1);
      socket.once('close', () => {
        const n = (verifiedLeaves.get(key) ?? 1) - 1;
        if (n === 0) verifiedLeaves.delete(key);
        else verifiedLeaves.set(key, n);
      });
      injector.injectConnection(socket);
    },
    // HTTP/2 over TLS needs ALPN 'h2': Node's HTTP/2 server drops TLS sockets without it.
    { ...options, tls: { ...options.tls, ALPNProtocols: ['h2'] } },
  );
  await new Promise<void>((resolve, reject) => {
    tlsServer.once('error', reject);
    tlsServer.listen(listen, () => {
      tlsServer.off('error', reject);
      resolve();
    });
  });
  const address = tlsServer.address();
  if (address === null) throw new Error('the gRPC mTLS listener has no address after listening');
  return {
    address,
    tlsServer,
    close: () =>
      new Promise<void>((resolve) => {
        tlsServer.close(() => resolve());
        injector.destroy();
      }),
  };
}

/**
 * The SPIFFE ID of the caller of a gRPC handler on a server served with
 * serveGrpcMtls, whose connection was verified and authorized at the
 * handshake. Throws PeerRejectedError('NO_PEER_CERTIFICATE') for a call
 * that did not come over such a connection, so that a handler never trusts
 * an unverified certificate.
 */
export function grpcPeerSpiffeId(call: { getAuthContext(): { sslPeerCertificate?: tls.PeerCertificate } }): SpiffeId {
  const raw = call.getAuthContext().sslPeerCertificate?.raw;
  if (!raw || !verifiedLeaves.has(leafKey(raw))) {
    throw new PeerRejectedError('NO_PEER_CERTIFICATE', 'the call did not come over a verified SPIFFE mTLS connection');
  }
  return parseSvidLeaf(raw).spiffeId;
}

/** Leaves of live connections accepted by serveGrpcMtls (DER as base64 -> open connection count). */
const verifiedLeaves = new Map<string, number>();

function leafKey(raw: Buffer): string {
  return raw.toString('base64');
}

type CaListener = grpc.experimental.CaCertificateUpdateListener;
type IdentityListener = grpc.experimental.IdentityCertificateUpdateListener;

/** A grpc-js CertificateProvider fed by an X509Source: the current SVID and every bundle's authorities. */
class SourceCertificateProvider implements grpc.experimental.CertificateProvider {
  readonly #source: X509SvidSource;
  readonly #ca = new Set<CaListener>();
  readonly #identity = new Set<IdentityListener>();
  readonly #onUpdate = () => {
    for (const l of this.#ca) l(this.#caUpdate());
    for (const l of this.#identity) l(this.#identityUpdate());
  };

  constructor(source: X509SvidSource) {
    this.#source = source;
  }

  addCaCertificateListener(listener: CaListener): void {
    this.#add(this.#ca, listener);
    listener(this.#caUpdate());
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.#remove(this.#ca, listener);
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.#add(this.#identity, listener);
    listener(this.#identityUpdate());
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.#remove(this.#identity, listener);
  }

  #add<L>(set: Set<L>, listener: L): void {
    if (this.#ca.size + this.#identity.size === 0) this.#source.on('update', this.#onUpdate);
    set.add(listener);
  }

  #remove<L>(set: Set<L>, listener: L): void {
    set.delete(listener);
    if (this.#ca.size + this.#identity.size === 0) this.#source.off('update', this.#onUpdate);
  }

  // null tells grpc-js the credentials are unusable: new connections fail until the next update.
  #caUpdate(): grpc.experimental.CaCertificateUpdate | null {
    try {
      const roots: Buffer[] = [];
      for (const b of this.#source.getBundles().values()) roots.push(...b.authorities);
      return { caCertificate: Buffer.from(certsToPem(roots)) };
    } catch {
      return null;
    }
  }

  #identityUpdate(): grpc.experimental.IdentityCertificateUpdate | null {
    try {
      const svid = this.#source.getX509Svid();
      return {
        certificate: Buffer.from(certsToPem(svid.chain)),
        privateKey: Buffer.from(pemEncode('PRIVATE KEY', svid.keyDer)),
      };
    } catch {
      return null;
    }
  }
}
