/**
 * The public API for services: `import { X509Source, createMtlsServer,
 * authorizeId } from 'brevis/spiffe'`. Get an identity from the Workload API,
 * talk mTLS with it, and authorize peers by SPIFFE ID.
 */

// Identities, bundles and SVID checks.
export { SpiffeError, isSpiffeError, type SpiffeErrorCode } from './errors.js';
export {
  SpiffeId,
  parseSpiffeId,
  isValidSpiffeId,
  requireWorkloadId,
  parseTrustDomain,
  isValidTrustDomain,
  trustDomainId,
} from './id.js';
export { X509Bundle, bundleFromDer, bundleFromPem, bundleToPem, fromSpiffeJwks, toSpiffeJwks } from './bundle.js';
export { verifyX509Svid, parseSvidLeaf, getUriSans, type VerifiedX509Svid, type SvidLeaf } from './svid.js';
export { realClock, type Clock } from './clock.js';

// The Workload API.
export {
  WorkloadApiClient,
  WorkloadApiError,
  parseWorkloadApiAddress,
  SPIFFE_ENDPOINT_SOCKET,
  type WorkloadApiErrorCode,
  type WorkloadApiClientOptions,
  type WatchOptions,
  type BackoffOptions,
  type X509Context,
  type X509Svid,
} from './workload-client.js';
export {
  X509Source,
  pickSvidById,
  pickSvidByHint,
  type X509SourceOptions,
  type X509SourceEvents,
  type X509SvidSource,
  type SvidPicker,
} from './x509-source.js';

// Authorization.
export {
  authorizeId,
  authorizeOneOf,
  authorizeMemberOf,
  authorizeAny,
  authorizeIf,
  PeerRejectedError,
  type Authorizer,
  type PeerRejectedCode,
} from './authorize.js';

// mTLS for tls, https and grpc-js.
export {
  tlsServerOptions,
  tlsClientOptions,
  attachRotation,
  verifyTlsPeer,
  verifyPeerCertificate,
  spiffeServerCheck,
  createMtlsServer,
  createHttpsMtlsServer,
  createHttpsMtlsAgent,
  type MtlsOptions,
  type MtlsServerOptions,
} from './mtls.js';
export { grpcChannelCredentials, serveGrpcMtls, grpcPeerSpiffeId, type GrpcMtlsListener } from './grpc-mtls.js';
