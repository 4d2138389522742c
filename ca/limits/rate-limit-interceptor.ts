/**
 * Rate limits at the node API's edge, as a gRPC server interceptor: a call
 * over its limit ends with RESOURCE_EXHAUSTED before any handler runs, and
 * carries the trailing metadata `retry-after-ms` (how long until it would
 * pass) which agents honour in their backoff.
 *
 * Keys come from the connection, never the request: the source IP address,
 * and for signing the SPIFFE ID of the client certificate TLS verified (an
 * agent's current SVID or not, the handler decides; the key only needs to
 * be one the caller cannot choose freely). The agent's own bucket is
 * checked first and a refusal there charges nothing else, so one agent
 * flooding the CA spends only its own budget.
 */
import * as grpc from '@grpc/grpc-js';
import type { RateLimits } from './rate-limits.js';
import { KeyedBuckets, type TakeResult } from './token-bucket.js';

/** The trailing metadata key with the retry hint, milliseconds. */
export const RETRY_AFTER_MS = 'retry-after-ms';

type Kind = 'attest' | 'sign';

/** The limited node RPCs, and what one call costs. */
const LIMITED: Readonly<Record<string, { kind: Kind; cost(msg: unknown): number }>> = {
  AttestJoinToken: { kind: 'attest', cost: () => 1 },
  AttestX509Pop: { kind: 'attest', cost: () => 1 },
  RenewAgentSVID: { kind: 'sign', cost: () => 1 },
  BatchMintX509SVID: { kind: 'sign', cost: (m) => Math.max(1, (m as { params?: unknown[] }).params?.length ?? 1) },
  SignSSHUserCertificate: { kind: 'sign', cost: () => 1 },
  SignSSHHostCertificate: { kind: 'sign', cost: () => 1 },
};

export interface RateLimiterOptions {
  limits: RateLimits;
  /** Milliseconds; default Date.now. */
  now?: () => number;
}

/** The source IP address of a call (IPv4-mapped IPv6 written as IPv4). */
export function sourceOf(call: grpc.ServerInterceptingCallInterface): string {
  const addr = call.getConnectionInfo().remoteAddress ?? call.getPeer().replace(/:\d+$/, '');
  return addr.startsWith('::ffff:') ? addr.slice(7) : addr;
}

/** The URI SAN of the TLS-verified client certificate, if any. */
function clientIdOf(call: grpc.ServerInterceptingCallInterface): string | undefined {
  const san = call.getAuthContext()?.sslPeerCertificate?.subjectaltname;
  return san?.split(', ').find((p) => p.startsWith('URI:'))?.slice(4);
}

export function rateLimitInterceptor(o: RateLimiterOptions): grpc.ServerInterceptor {
  const now = o.now ?? Date.now;
  const attest = new KeyedBuckets(o.limits.attestPerSource);
  const signAgent = new KeyedBuckets(o.limits.signPerAgent);
  const signSource = new KeyedBuckets(o.limits.signPerSource);

  /** Charges the call, or says why not (and charges nothing). */
  function decide(kind: Kind, cost: number, call: grpc.ServerInterceptingCallInterface): { ok: true } | { ok: false; retryAfterMs: number; details: string } {
    const t = now();
    const source = sourceOf(call);
    const checks: Array<{ buckets: KeyedBuckets; key: string; what: string }> = [];
    if (kind === 'attest') {
      checks.push({ buckets: attest, key: source, what: `attestations from ${source}` });
    } else {
      // Without a verified client certificate the handler refuses the call at once: nothing to charge.
      const agent = clientIdOf(call);
      if (!agent) return { ok: true };
      checks.push({ buckets: signAgent, key: agent, what: `certificates signed for ${agent}` });
      checks.push({ buckets: signSource, key: source, what: `certificates signed for callers at ${source}` });
    }
    const charged: Array<{ check: (typeof checks)[number]; cost: number }> = [];
    for (const c of checks) {
      // A batch larger than the burst costs the whole burst: it passes once the bucket is full.
      const n = Math.min(cost, c.buckets.limit.burst);
      const r: TakeResult = c.buckets.bucket(c.key, t).check(n, t);
      if (!r.ok) {
        const { ratePerSecond, burst } = c.buckets.limit;
        return { ok: false, retryAfterMs: r.retryAfterMs, details: `rate limit: ${c.what} are limited to ${ratePerSecond} per second (bursts of ${burst}); retry in ${r.retryAfterMs} ms` };
      }
      charged.push({ check: c, cost: n });
    }
    for (const { check, cost: n } of charged) check.buckets.bucket(check.key, t).take(n, t);
    return { ok: true };
  }

  return (method, call) => {
    const limited = LIMITED[method.path.slice(method.path.lastIndexOf('/') + 1)];
    if (!limited || !method.path.startsWith('/brevis.ca.v1.NodeService/')) return new grpc.ServerInterceptingCall(call);
    let decided = false;
    let refused = false;
    return new grpc.ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMessage: (msg, nxt) => {
            if (refused) return;
            if (!decided) {
              decided = true;
              const v = decide(limited.kind, limited.cost(msg), call);
              if (!v.ok) {
                refused = true;
                const md = new grpc.Metadata();
                md.set(RETRY_AFTER_MS, String(v.retryAfterMs));
                call.sendStatus({ code: grpc.status.RESOURCE_EXHAUSTED, details: v.details, metadata: md });
                return;
              }
            }
            nxt(msg);
          },
          onReceiveHalfClose: (nxt) => {
            if (!refused) nxt();
          },
        }),
    });
  };
}
