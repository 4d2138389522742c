/**
 * Gauges computed from the store when Prometheus scrapes: agents by state,
 * the worst agent sync lag, and authorities by kind and state with the
 * expiry of the active ones. One store read serves a whole scrape.
 */
import { Gauge, type Registry } from 'prom-client';
import { epochSeconds, type Clock } from '../../spiffe/clock.js';
import type { AgentRecord, AuthorityKind, AuthorityRecord, AuthorityState, Store } from '../store/store.js';

const AUTHORITY_KINDS: readonly AuthorityKind[] = ['x509-root', 'x509-intermediate', 'ssh-user', 'ssh-host'];
const AUTHORITY_STATES: readonly AuthorityState[] = ['prepared', 'active', 'retired', 'tainted', 'revoked'];
const AGENT_STATES = ['active', 'expired', 'banned'] as const;
/** SSH CA keys do not expire; their records say 9999-12-31 (ca/ssh/ssh-authority.ts). */
const NO_EXPIRY_AFTER = 253_402_300_000;

interface Snapshot {
  agents: AgentRecord[];
  authorities: AuthorityRecord[];
  now: number;
}

/** What an agent record says about it at `now` (seconds). */
export function agentState(a: AgentRecord, now: number): (typeof AGENT_STATES)[number] {
  if (a.banned) return 'banned';
  return a.expiresAt <= now ? 'expired' : 'active';
}

export function registerStoreGauges(registry: Registry, deps: { store: Pick<Store, 'listAgents' | 'listAuthorities'>; clock: Clock }): void {
  // prom-client starts every collect of a scrape at once: they share the read in flight.
  let inflight: Promise<Snapshot> | null = null;
  const snapshot = (): Promise<Snapshot> =>
    (inflight ??= Promise.all([deps.store.listAgents(), deps.store.listAuthorities()])
      .then(([agents, authorities]) => ({ agents, authorities, now: epochSeconds(deps.clock.now()) }))
      .finally(() => {
        inflight = null;
      }));
  const registers = [registry];

  new Gauge({
    name: 'brevis_ca_agents',
    help: 'Attested agents by state: active (current SVID unexpired), expired (must renew or attest again), banned.',
    labelNames: ['state'],
    registers,
    async collect() {
      const s = await snapshot();
      const counts = { active: 0, expired: 0, banned: 0 };
      for (const a of s.agents) counts[agentState(a, s.now)]++;
      for (const state of AGENT_STATES) this.set({ state }, counts[state]);
    },
  });

  new Gauge({
    name: 'brevis_ca_agent_sync_lag_max_seconds',
    help: 'Longest time since an active agent last synced with the CA (0 without active agents).',
    registers,
    async collect() {
      const s = await snapshot();
      let lag = 0;
      for (const a of s.agents) if (agentState(a, s.now) === 'active') lag = Math.max(lag, s.now - a.lastSeenAt);
      this.set(lag);
    },
  });

  new Gauge({
    name: 'brevis_ca_authorities',
    help: 'CA keys (authorities) by kind and state.',
    labelNames: ['kind', 'state'],
    registers,
    async collect() {
      const s = await snapshot();
      for (const kind of AUTHORITY_KINDS) {
        for (const state of AUTHORITY_STATES) this.set({ kind, state }, s.authorities.filter((a) => a.kind === kind && a.state === state).length);
      }
    },
  });

  new Gauge({
    name: 'brevis_ca_authority_expiry_timestamp_seconds',
    help: 'notAfter of the active authority of each kind that expires first (kinds whose keys do not expire, such as SSH CAs, have no series).',
    labelNames: ['kind'],
    registers,
    async collect() {
      const s = await snapshot();
      this.reset();
      for (const kind of AUTHORITY_KINDS) {
        const ends = s.authorities.filter((a) => a.kind === kind && a.state === 'active' && a.notAfter < NO_EXPIRY_AFTER).map((a) => a.notAfter);
        if (ends.length > 0) this.set({ kind }, Math.min(...ends));
      }
    },
  });
}
