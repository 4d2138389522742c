import { parseSpiffeId, parseTrustDomain, type SpiffeId } from './id.js';

/**
 * Authorizers decide whether a peer whose X509-SVID has already been
 * verified may talk to us, by its SPIFFE ID (as go-spiffe's tlsconfig
 * authorizers do). Verification and authorization are separate steps: an
 * authorizer never sees an unverified ID.
 */

export type PeerRejectedCode =
  | 'NO_PEER_CERTIFICATE' // the peer presented no certificate
  | 'PEER_SVID_INVALID' // the peer's chain is not a valid X509-SVID for any bundle we hold
  | 'PEER_UNAUTHORIZED'; // the peer is a valid SVID, but the authorizer refused its ID

/** Why a TLS peer was refused, with a stable `code`. */
export class PeerRejectedError extends Error {
  readonly code: PeerRejectedCode;
  /** The peer's SPIFFE ID when it was known (verified) at the time of refusal. */
  readonly peerId: string | undefined;
  constructor(code: PeerRejectedCode, message: string, options?: { cause?: unknown; peerId?: string }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PeerRejectedError';
    this.code = code;
    this.peerId = options?.peerId;
  }
}

/** Returns undefined to allow the verified peer `id`, or the error that says why it is refused. */
export type Authorizer = (id: SpiffeId) => PeerRejectedError | undefined;

/** Allows exactly one SPIFFE ID. Throws SpiffeError('INVALID_SPIFFE_ID') for an invalid `expected` at once. */
export function authorizeId(expected: string | SpiffeId): Authorizer {
  const want = typeof expected === 'string' ? parseSpiffeId(expected) : expected;
  return (id) => (id.equals(want) ? undefined : refuse(id, `expected ${want.toString()}`));
}

/** Allows any of the listed SPIFFE IDs. */
export function authorizeOneOf(expected: Iterable<string | SpiffeId>): Authorizer {
  const want = new Set<string>();
  for (const e of expected) want.add((typeof e === 'string' ? parseSpiffeId(e) : e).toString());
  const shown = [...want].join(', ');
  return (id) => (want.has(id.toString()) ? undefined : refuse(id, `expected one of: ${shown}`));
}

/** Allows any SPIFFE ID of trust domain `td` (`example.org` or `spiffe://example.org`). */
export function authorizeMemberOf(td: string): Authorizer {
  const domain = parseTrustDomain(td);
  return (id) => (id.trustDomain === domain ? undefined : refuse(id, `expected a member of ${domain}`));
}

/**
 * Allows every peer with a valid SVID from a trusted bundle. Only for
 * services that authorize later, per request; the verification still runs.
 */
export function authorizeAny(): Authorizer {
  return () => undefined;
}

/**
 * Allows the peers for which `predicate` returns true. A predicate that
 * throws refuses the peer. `description` goes into the refusal message.
 */
export function authorizeIf(predicate: (id: SpiffeId) => boolean, description = 'the predicate refused it'): Authorizer {
  return (id) => {
    try {
      return predicate(id) ? undefined : refuse(id, description);
    } catch (e) {
      return new PeerRejectedError('PEER_UNAUTHORIZED', `peer ${id.toString()} is not authorized: the predicate threw`, {
        cause: e,
        peerId: id.toString(),
      });
    }
  };
}

function refuse(id: SpiffeId, why: string): PeerRejectedError {
  return new PeerRejectedError('PEER_UNAUTHORIZED', `peer ${id.toString()} is not authorized: ${why}`, {
    peerId: id.toString(),
  });
}
