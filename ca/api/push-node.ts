/**
 * The push half of the node API (mTLS, current agent SVID): WatchChanges
 * streams change notifications to connected agents, and ReportAgentStatus
 * takes each agent's report of the bundle it applied and the credentials
 * it holds per authority (acknowledgements, taint progress).
 */
import type * as grpc from '@grpc/grpc-js';
import type { ReportAgentStatusRequest, WatchChangesRequest, WatchChangesResponse } from '../../proto/gen/brevis/ca/v1/push.js';
import { CaError } from '../errors.js';
import type { PushContext } from '../push/push-context.js';
import type { Store } from '../store/store.js';
import type { Clock } from '../../spiffe/clock.js';
import { authenticateAgent } from './agent-auth.js';
import { toServiceError, unary, type ErrorLogger } from './errors.js';
import { echo } from './echo.js';

/** Most authority ids one report may carry. */
export const MAX_HOLDINGS = 256;

export interface PushNodeDeps {
  push: PushContext;
  store: Pick<Store, 'getAgent'>;
  trustDomain: string;
  clock: Clock;
  logger: ErrorLogger;
}

export function pushNodeHandlers(d: PushNodeDeps) {
  const auth = (call: Parameters<typeof authenticateAgent>[0]) => authenticateAgent(call, { store: d.store, trustDomain: d.trustDomain, now: d.clock.now() });

  function watchChanges(call: grpc.ServerWritableStream<WatchChangesRequest, WatchChangesResponse>): void {
    let unsubscribe: () => void = () => undefined;
    let done = false;
    const finish = (err?: unknown) => {
      if (done) return;
      done = true;
      unsubscribe();
      if (err) call.emit('error', toServiceError(err, d.logger));
      else call.end();
    };
    call.on('cancelled', () => finish());
    call.on('error', () => finish());
    auth(call).then(
      () => {
        if (done) return;
        unsubscribe = d.push.hub.subscribe(
          (n) => {
            // The caller is checked again on every change: an evicted or banned
            // agent's stream ends, and so does one opened with a superseded SVID
            // (the agent reconnects with its current one).
            auth(call).then(
              () => {
                if (!done) call.write({ bundleSequence: n.bundleSequence, reason: n.reason });
              },
              (e: unknown) => finish(e),
            );
          },
          () => finish(),
        );
        call.write({ bundleSequence: d.push.hub.bundleSequence, reason: 'hello' });
      },
      (e: unknown) => finish(e),
    );
  }

  const reportAgentStatus = unary(async (req: ReportAgentStatusRequest, call: grpc.ServerUnaryCall<ReportAgentStatusRequest, object>) => {
    const { agent } = await auth(call);
    const current = d.push.hub.bundleSequence;
    if (!Number.isSafeInteger(req.bundleSequence) || req.bundleSequence < 0 || req.bundleSequence > current) {
      throw new CaError('INVALID_ARGUMENT', `bundle sequence ${req.bundleSequence} is not one this CA has published (current: ${current})`);
    }
    if (req.holdings.length > MAX_HOLDINGS) throw new CaError('INVALID_ARGUMENT', `at most ${MAX_HOLDINGS} authority holdings per report`);
    const holdings: Record<string, number> = {};
    for (const h of req.holdings) {
      if (!/^(?:[0-9a-f]{2,128}|SHA256:[A-Za-z0-9+/]{43})$/.test(h.authorityId)) {
        throw new CaError('INVALID_ARGUMENT', `authority id '${echo(h.authorityId, 80)}' is neither a key identifier (hex) nor an SSH fingerprint`);
      }
      if (!Number.isSafeInteger(h.credentials) || h.credentials < 0 || h.credentials > 10_000_000) {
        throw new CaError('INVALID_ARGUMENT', `credential count ${h.credentials} for ${h.authorityId} is out of range`);
      }
      if (h.credentials > 0) holdings[h.authorityId] = (holdings[h.authorityId] ?? 0) + h.credentials;
    }
    await d.push.report(agent.agentId, req.bundleSequence, holdings, d.clock.now());
    return {};
  }, d.logger);

  return { watchChanges, reportAgentStatus };
}
