import { constants as cryptoConstants } from 'node:crypto';
import type * as http from 'node:http';
import * as https from 'node:https';
import type * as net from 'node:net';
import * as tls from 'node:tls';
import { PeerRejectedError, type Authorizer } from './authorize.js';
import { realClock, type Clock } from './clock.js';
import type { SpiffeId } from './id.js';
import { certsToPem, pemEncode } from './pem.js';
import { MAX_CHAIN_LENGTH, parseSvidLeaf, verifyX509Svid } from './svid.js';
import type { X509SvidSource } from './x509-source.js';

/**
 * Mutual TLS between SPIFFE workloads with Node's `tls` and `https`: each
 * side presents the current SVID of an X509Source, trusts the source's
 * bundles, and checks the peer twice: OpenSSL's chain check against the
 * bundle roots, then verifyX509Svid (the peer must be a valid X509-SVID of
 * the trust domain it claims) and the authorizer. A rotation reaches every
 * new handshake without a restart; established connections keep theirs.
 */

/** Settings shared by the server and client helpers. */
export interface MtlsOptions {
  /** Time for SVID validity checks. Default the real clock. */
  clock?: Clock;
}

/** Settings of the mTLS servers. */
export interface MtlsServerOptions extends MtlsOptions {
  /** Told about every refused peer, after its socket was destroyed. Never sees key material. */
  onReject?: (err: PeerRejectedError, socket: tls.TLSSocket) => void;
  /**
   * Extra TLS settings such as ALPNProtocols or ciphers. The identity,
   * trust and client-certificate settings always come from the helpers.
   */
  tls?: Omit<tls.TlsOptions, 'key' | 'cert' | 'ca' | 'pfx' | 'requestCert' | 'rejectUnauthorized'>;
}

/**
 * The TLS settings a server presenting `source`'s current SVID needs: its
 * key and chain, every bundle authority as `ca`, a required and verified
 * client certificate. Session resumption is off, so every connection
 * proves its current certificate. A snapshot: keep it current with
 * attachRotation, and check peers with verifyTlsPeer (createMtlsServer and
 * createHttpsMtlsServer do both). Authorization cannot live in options:
 * Node has no per-handshake verification hook on servers.
 */
export function tlsServerOptions(source: X509SvidSource): tls.TlsOptions {
  return { ...secureContextOptions(source), requestCert: true, rejectUnauthorized: true };
}

/**
 * Keeps `server`'s certificate and trusted roots current: on every source
 * update, new handshakes get the new SVID and bundles (server.setSecureContext).
 * `extra` are the context settings to keep (ciphers, versions). Returns a
 * function that stops it; it also stops when the server closes. A failed
 * update keeps the previous context, which stays valid until it expires.
 */
export function attachRotation(
  server: tls.Server,
  source: X509SvidSource,
  options: { extra?: tls.SecureContextOptions; onError?: (err: unknown) => void } = {},
): () => void {
  const onUpdate = () => {
    try {
      server.setSecureContext({ ...options.extra, ...secureContextOptions(source) });
    } catch (e) {
      options.onError?.(e);
    }
  };
  const detach = () => {
    source.off('update', onUpdate);
    server.off('close', detach);
  };
  source.on('update', onUpdate);
  server.on('close', detach);
  return detach;
}

/**
 * Verifies the peer of an established TLS connection: its presented chain
 * must be a valid X509-SVID for the bundle of the trust domain it claims,
 * and the authorizer must allow its SPIFFE ID. Returns that ID; throws
 * PeerRejectedError.
 */
export function verifyTlsPeer(
  socket: tls.TLSSocket,
  source: X509SvidSource,
  authorizer: Authorizer,
  options: MtlsOptions = {},
): SpiffeId {
  if (!socket.authorized) {
    throw new PeerRejectedError('PEER_SVID_INVALID', `the peer's certificate was not trusted: ${String(socket.authorizationError)}`);
  }
  return verifyPeerCertificate(socket.getPeerCertificate(true), source, authorizer, options);
}

/**
 * Verifies a peer certificate as Node reports it (with `issuerCertificate`
 * links, from getPeerCertificate(true) or a checkServerIdentity callback).
 * Throws PeerRejectedError; returns the authorized SPIFFE ID.
 */
export function verifyPeerCertificate(
  cert: tls.PeerCertificate | undefined,
  source: X509SvidSource,
  authorizer: Authorizer,
  options: MtlsOptions = {},
): SpiffeId {
  if (!cert?.raw) throw new PeerRejectedError('NO_PEER_CERTIFICATE', 'the peer presented no certificate');
  const chain = chainOf(cert as tls.DetailedPeerCertificate);
  let claimed: SpiffeId;
  try {
    claimed = parseSvidLeaf(chain[0]!).spiffeId;
  } catch (e) {
    throw new PeerRejectedError('PEER_SVID_INVALID', `the peer's certificate is not an X509-SVID: ${(e as Error).message}`, {
      cause: e,
    });
  }
  const bundle = source.getBundle(claimed.trustDomain);
  if (!bundle) {
    throw new PeerRejectedError('PEER_SVID_INVALID', `no bundle for the peer's trust domain ${claimed.trustDomain}`, {
      peerId: claimed.toString(),
    });
  }
  // Node appends the root it found in our trust store; the path is built to the bundle anyway.
  const presented = [chain[0]!, ...chain.slice(1).filter((der) => !bundle.hasAuthority(der))];
  try {
    verifyX509Svid(presented, bundle, { now: (options.clock ?? realClock).now() });
  } catch (e) {
    throw new PeerRejectedError('PEER_SVID_INVALID', `the peer's X509-SVID is invalid: ${(e as Error).message}`, {
      cause: e,
      peerId: claimed.toString(),
    });
  }
  const refusal = authorizer(claimed);
  if (refusal) throw refusal;
  return claimed;
}

/**
 * A TLS server that requires client SVIDs, destroys connections whose peer
 * fails verification or authorization, and hands the others to `handler`
 * with the peer's SPIFFE ID. Rotation is attached.
 */
export function createMtlsServer(
  source: X509SvidSource,
  authorizer: Authorizer,
  handler: (socket: tls.TLSSocket, peer: SpiffeId) => void,
  options: MtlsServerOptions = {},
): tls.Server {
  const server = tls.createServer({ ...options.tls, ...tlsServerOptions(source) });
  guard(server, source, authorizer, options, (socket, peer) => handler(socket, peer));
  return server;
}

/**
 * An HTTPS server like createMtlsServer: requests only reach `handler`, with
 * the peer's SPIFFE ID, over connections whose client passed verification
 * and authorization.
 */
export function createHttpsMtlsServer(
  source: X509SvidSource,
  authorizer: Authorizer,
  handler: (req: http.IncomingMessage, res: http.ServerResponse, peer: SpiffeId) => void,
  options: MtlsServerOptions = {},
): https.Server {
  const peers = new WeakMap<net.Socket, SpiffeId>();
  const server = https.createServer({ ...options.tls, ...tlsServerOptions(source) });
  // Prepended so that the verdict exists before the HTTP layer reads a byte.
  guard(server, source, authorizer, options, (socket, peer) => peers.set(socket, peer), true);
  server.on('request', (req, res) => {
    const peer = peers.get(req.socket);
    if (!peer) {
      req.socket.destroy();
      return;
    }
    handler(req, res, peer);
  });
  return server;
}

/**
 * Options for tls.connect or https.request that present `source`'s current
 * SVID (read now, so call this per connection to pick up rotations), trust
 * its bundles, and replace the hostname check (which fails on URI-only
 * certificates) with SPIFFE verification and `authorizer`: an unauthorized
 * server fails the connection with a PeerRejectedError.
 */
export function tlsClientOptions(source: X509SvidSource, authorizer: Authorizer, options: MtlsOptions = {}): tls.ConnectionOptions {
  return {
    ...secureContextOptions(source),
    rejectUnauthorized: true,
    checkServerIdentity: spiffeServerCheck(source, authorizer, options),
  };
}

/**
 * The checkServerIdentity callback of tlsClientOptions on its own, for APIs
 * that take it separately (grpc-js channel credentials).
 */
export function spiffeServerCheck(
  source: X509SvidSource,
  authorizer: Authorizer,
  options: MtlsOptions = {},
): (host: string, cert: tls.PeerCertificate) => Error | undefined {
  return (_host, cert) => {
    try {
      verifyPeerCertificate(cert, source, authorizer, options);
      return undefined;
    } catch (e) {
      return e instanceof Error ? e : new PeerRejectedError('PEER_SVID_INVALID', String(e));
    }
  };
}

/**
 * An https.Agent whose every new connection presents the source's current
 * SVID and checks the server with `authorizer`. Pooled connections are
 * reused across rotations, as they stay authenticated; new ones use the
 * new SVID. Use a separate agent per authorizer: the pool does not know it.
 */
export function createHttpsMtlsAgent(
  source: X509SvidSource,
  authorizer: Authorizer,
  options: https.AgentOptions & MtlsOptions = {},
): https.Agent {
  const agent = new https.Agent(options);
  // Not the default createConnection: it caches TLS sessions, and a resumed
  // session would skip presenting (and checking) the current certificates.
  agent.createConnection = (connectOptions) =>
    tls.connect({ ...(connectOptions as tls.ConnectionOptions), ...tlsClientOptions(source, authorizer, options) });
  return agent;
}

function guard(
  server: tls.Server,
  source: X509SvidSource,
  authorizer: Authorizer,
  options: MtlsServerOptions,
  admit: (socket: tls.TLSSocket, peer: SpiffeId) => void,
  prepend = false,
): void {
  attachRotation(server, source, { ...(options.tls && { extra: options.tls }) });
  const onSecureConnection = (socket: tls.TLSSocket) => {
    let peer: SpiffeId;
    try {
      peer = verifyTlsPeer(socket, source, authorizer, options);
    } catch (e) {
      socket.destroy();
      const err = e instanceof PeerRejectedError ? e : new PeerRejectedError('PEER_SVID_INVALID', String(e), { cause: e });
      options.onReject?.(err, socket);
      return;
    }
    admit(socket, peer);
  };
  if (prepend) server.prependListener('secureConnection', onSecureConnection);
  else server.on('secureConnection', onSecureConnection);
  // A client refused by OpenSSL itself (unknown root, expired, no certificate) never reaches 'secureConnection'.
  server.on('tlsClientError', (e, socket) => {
    options.onReject?.(new PeerRejectedError('PEER_SVID_INVALID', `TLS handshake failed: ${e.message}`, { cause: e }), socket);
  });
}

/** Key, chain and trusted roots of the current context, as PEM for tls.createSecureContext. */
function secureContextOptions(source: X509SvidSource): tls.SecureContextOptions {
  const svid = source.getX509Svid();
  const roots: Buffer[] = [];
  for (const bundle of source.getBundles().values()) roots.push(...bundle.authorities);
  return {
    key: pemEncode('PRIVATE KEY', svid.keyDer),
    cert: certsToPem(svid.chain),
    ca: certsToPem(roots),
    minVersion: 'TLSv1.2',
    // TLS 1.2 tickets and TLS 1.3 stateless resumption would let a peer skip
    // presenting its (possibly since expired or rotated) certificate.
    secureOptions: cryptoConstants.SSL_OP_NO_TICKET,
  };
}

/** The DER chain Node reports, leaf first, following issuerCertificate links (the last one links to itself). */
function chainOf(cert: tls.DetailedPeerCertificate): Buffer[] {
  const chain: Buffer[] = [];
  const seen = new Set<tls.DetailedPeerCertificate>();
  let c: tls.DetailedPeerCertificate | undefined = cert;
  while (c?.raw && !seen.has(c) && chain.length <= MAX_CHAIN_LENGTH) {
    seen.add(c);
    chain.push(c.raw);
    c = c.issuerCertificate;
  }
  return chain;
}
