/**
 * Who the agent accepts as its CA: a TLS server whose chain verifies to the
 * bundle roots (grpc-js/Node check that) and whose certificate carries
 * exactly one URI SAN, the CA's serving ID `spiffe://<td>/brevis/server`.
 * Node's default host name check fails on URI-only certificates, and a
 * host name says nothing about SPIFFE identity anyway.
 */
import type { PeerCertificate } from 'node:tls';

/** The SPIFFE ID the CA serves its node API with. */
export function caServerId(trustDomain: string): string {
  return `spiffe://${trustDomain}/brevis/server`;
}

/** URI SANs from Node's `subjectaltname` text ("DNS:a, URI:spiffe://td/x"). */
export function uriSansOf(subjectAltName: string | undefined): string[] {
  if (!subjectAltName) return [];
  return subjectAltName
    .split(', ')
    .filter((p) => p.startsWith('URI:'))
    .map((p) => p.slice(4));
}

/** A `checkServerIdentity` for tls/grpc-js that accepts only `expectedId`. */
export function spiffeServerIdentityCheck(expectedId: string): (hostname: string, cert: PeerCertificate) => Error | undefined {
  return (_hostname, cert) => {
    const uris = uriSansOf(cert.subjectaltname);
    if (uris.length !== 1) {
      return new Error(`the CA's certificate must carry exactly one URI SAN (found ${uris.length}); expected ${expectedId}`);
    }
    if (uris[0] !== expectedId) return new Error(`the server is ${uris[0]}, not the CA ${expectedId}`);
    return undefined;
  };
}
