/**
 * Rotation progress for the dashboard, from the authority life cycle: the
 * same facts `brevis-ca authority show` prints (trust, acknowledgements by
 * the fleet, credentials still chained to the authority), as label/value
 * pairs per authority id.
 */
import { authorityInfo } from '../api/authority-service.js';
import type { AuthorityLifecycle } from '../rotation/lifecycle.js';
import { isoSeconds, shortId } from './html.js';

export type RotationProgress = ReadonlyMap<string, ReadonlyArray<readonly [string, string]>>;

export function lifecycleProgress(lifecycle: Pick<AuthorityLifecycle, 'snapshot' | 'fleet'>): () => Promise<RotationProgress> {
  return async () => {
    const s = lifecycle.snapshot;
    const fleet = await lifecycle.fleet();
    const out = new Map<string, Array<readonly [string, string]>>();
    for (const a of s.authorities) {
      const info = authorityInfo(a, s, fleet);
      const rows: Array<readonly [string, string]> = [];
      if (info.trusted) {
        rows.push(['acknowledged', `${info.acknowledgedAgents}/${info.agents} agents`]);
        if (info.trustedUntil) rows.push(['trusted until', isoSeconds(info.trustedUntil)]);
      } else {
        rows.push(['trusted', 'no']);
      }
      if (a.state !== 'revoked') rows.push(['outstanding credentials', String(info.outstandingCredentials)]);
      if (info.crossSignedBy.length > 0) rows.push(['cross-signed by', info.crossSignedBy.map((id) => shortId(id, 12)).join(', ')]);
      out.set(a.id, rows);
    }
    return out;
  };
}
