/**
 * What the Workload API needs from the rest of the agent, and nothing more.
 * The agent core (sync with the CA, SVID cache, rotation) implements it; the
 * server only reads through it, so tests can serve from memory.
 */

/** One X509-SVID a workload is entitled to, with its private key. */
export interface WorkloadSvid {
  /** The SPIFFE ID in the leaf's URI SAN. */
  spiffeId: string;
  /** The registration entry this SVID was issued for (log correlation; never sent to workloads). */
  entryId: string;
  /** The certificate chain, DER, leaf first (intermediates after it, no root). */
  chain: Buffer[];
  /** The leaf's private key, PKCS#8 DER. */
  key: Buffer;
  /** The entry's hint for workloads holding several identities; '' for none. */
  hint: string;
  /** The leaf's notAfter. */
  notAfter: Date;
}

/**
 * The agent's view of identities, as the Workload API server reads it.
 *
 * Every method is called on the hot path of a workload call and must be
 * synchronous and cheap: return what is already in memory, never fetch.
 * Returned objects and buffers are treated as immutable: replace them, do not
 * mutate them in place, then call the `onChange` listeners.
 */
export interface WorkloadIdentityProvider {
  /**
   * False until the agent has attested and done its first sync: the API then
   * answers Unavailable (clients back off and retry). Once true it is expected
   * to stay true; fire `onChange` when it becomes true.
   */
  isReady(): boolean;
  /** The agent's trust domain name, e.g. `example.org` (no scheme). */
  trustDomain(): string;
  /** Root certificates of the trust domain, DER. */
  bundle(): Buffer[];
  /**
   * The SVIDs for a workload with these attested selectors (`type:value`
   * strings): those of every entry whose selectors are all among them (see
   * agent/attest/match.ts `entryMatches`), default identity first. Never
   * expired ones: filter by the agent clock's now. An empty list means the
   * workload has no identity (PermissionDenied).
   */
  svidsFor(selectors: ReadonlySet<string>): WorkloadSvid[];
  /**
   * Registers `listener`, called after any change a workload could observe:
   * an SVID rotated or was added or removed, the bundle changed, entries
   * changed, readiness became true. Listeners run synchronously; the server
   * coalesces bursts. Returns a function that unsubscribes.
   */
  onChange(listener: () => void): () => void;
}
