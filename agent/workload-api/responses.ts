/**
 * Encoded Workload API responses, cached per selector set until the provider
 * signals a change. Many workloads share a selector set (every replica of a
 * service), so a burst of calls, or a fan-out to every open stream after a
 * rotation, encodes each distinct response once.
 */
import { type Clock } from '../../spiffe/clock.js';
import { concatDer } from '../../spiffe/pem.js';
import { X509BundlesResponse, X509SVIDResponse, type X509SVID } from '../../proto/gen/workload.js';
import type { WorkloadIdentityProvider, WorkloadSvid } from './provider.js';

/** Selector sets remembered between changes; past this the oldest is dropped. */
const MAX_VIEWS = 4096;

/** What one selector set sees, as of one provider state. */
export interface WorkloadView {
  /** False when the workload has no SVID: the API answers PermissionDenied. */
  readonly hasIdentity: boolean;
  /** The SPIFFE IDs served, default first (for logs). */
  readonly spiffeIds: readonly string[];
  /** The encoded X509SVIDResponse (full state). */
  x509SvidResponse(): Buffer;
  /** The encoded X509BundlesResponse (full state). */
  x509BundlesResponse(): Buffer;
}

/** Tells about provider data that had to be corrected. */
export interface ResponseLogger {
  warn(obj: object, msg: string): void;
}

export class ResponseCache {
  private readonly views = new Map<string, CachedView>();
  private bundleDer: Buffer | undefined;
  private bundlesResponse: Buffer | undefined;

  constructor(
    private readonly provider: WorkloadIdentityProvider,
    private readonly clock: Clock,
    private readonly logger?: ResponseLogger,
  ) {}

  /** Forgets everything; call when the provider signals a change. */
  invalidate(): void {
    this.views.clear();
    this.bundleDer = undefined;
    this.bundlesResponse = undefined;
  }

  /**
   * The view for a workload with these selectors. The same object (and the
   * same encoded buffers) is returned until `invalidate()` or until one of its
   * SVIDs expires, so callers can compare responses by identity first.
   */
  viewFor(selectors: readonly string[]): WorkloadView {
    const key = [...selectors].sort().join('\n');
    const nowMs = this.clock.now().getTime();
    const hit = this.views.get(key);
    if (hit && nowMs < hit.expiresAtMs) return hit;
    const view = this.build(new Set(selectors), nowMs);
    if (this.views.size >= MAX_VIEWS) {
      const oldest = this.views.keys().next().value;
      if (oldest !== undefined) this.views.delete(oldest);
    }
    this.views.delete(key);
    this.views.set(key, view);
    return view;
  }

  private build(selectors: ReadonlySet<string>, nowMs: number): CachedView {
    const svids = uniqueHints(
      this.provider.svidsFor(selectors).filter((s) => s.notAfter.getTime() > nowMs),
      this.logger,
    );
    const expiresAtMs = svids.reduce((min, s) => Math.min(min, s.notAfter.getTime()), Number.POSITIVE_INFINITY);
    return new CachedView(svids, expiresAtMs, () => this.bundle(), () => this.bundles());
  }

  private bundle(): Buffer {
    this.bundleDer ??= concatDer(this.provider.bundle());
    return this.bundleDer;
  }

  private bundles(): Buffer {
    this.bundlesResponse ??= encode(
      X509BundlesResponse.encode({ crl: [], bundles: { [this.provider.trustDomain()]: this.bundle() } }).finish(),
    );
    return this.bundlesResponse;
  }
}

class CachedView implements WorkloadView {
  readonly hasIdentity: boolean;
  readonly spiffeIds: readonly string[];
  private svidResponse: Buffer | undefined;

  constructor(
    private readonly svids: readonly WorkloadSvid[],
    readonly expiresAtMs: number,
    private readonly bundle: () => Buffer,
    readonly x509BundlesResponse: () => Buffer,
  ) {
    this.hasIdentity = svids.length > 0;
    this.spiffeIds = svids.map((s) => s.spiffeId);
  }

  x509SvidResponse(): Buffer {
    if (this.svidResponse) return this.svidResponse;
    const bundle = this.bundle();
    const svids: X509SVID[] = this.svids.map((s) => ({
      spiffeId: s.spiffeId,
      x509Svid: concatDer(s.chain),
      x509SvidKey: s.key,
      bundle,
      hint: s.hint,
    }));
    this.svidResponse = encode(X509SVIDResponse.encode({ svids, crl: [], federatedBundles: {} }).finish());
    return this.svidResponse;
  }
}

/**
 * Drops SVIDs whose non-empty hint repeats an earlier one: hints must be
 * unique within a response, and the first (the default identity) wins.
 */
function uniqueHints(svids: WorkloadSvid[], logger?: ResponseLogger): WorkloadSvid[] {
  const seen = new Set<string>();
  const out: WorkloadSvid[] = [];
  for (const s of svids) {
    if (s.hint !== '') {
      if (seen.has(s.hint)) {
        logger?.warn({ spiffeId: s.spiffeId, entryId: s.entryId, hint: s.hint }, 'dropped SVID with a duplicate hint');
        continue;
      }
      seen.add(s.hint);
    }
    out.push(s);
  }
  return out;
}

/** A Buffer view of encoder output, without copying. */
function encode(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
