/**
 * The agent's own identity over its life: load it from the data directory
 * or attest, renew it ahead of expiry, and attest again when it is lost.
 *
 * - A stored agent SVID that is still valid is reused (a restart needs no token).
 * - Renewal (RenewAgentSVID over mTLS) happens at the rotation point; failures
 *   are retried with backoff, never later than half-way to expiry.
 * - Expired, or refused by the CA (evicted): an x509pop agent attests again;
 *   a join-token agent uses its configured token if it has not used it in
 *   this run, else stops with AgentSvidError('JOIN_TOKEN_REQUIRED') telling
 *   the operator what to do.
 */
import type { Logger } from 'pino';
import type { Bundle } from '../../proto/gen/brevis/ca/v1/types.js';
import type { Clock } from '../../spiffe/clock.js';
import { pemEncode } from '../../spiffe/pem.js';
import type { AttestationConfig, RotationPolicy } from '../config/config.js';
import { isNodeApiError, NodeApiError } from '../node/errors.js';
import type { Mutex } from '../node/mutex.js';
import type { AttestationResult, NodeApi } from '../node/node-api.js';
import { backoffDelayMs, retryDelayMs, type BackoffPolicy } from '../sync/backoff.js';
import { honourRetryHint } from '../sync/retry-hint.js';
import { agentSvidFrom, type AgentSvid } from './agent-svid.js';
import { clockSkewProblem } from './clock-skew.js';
import { AgentSvidError, joinTokenAdvice } from './errors.js';
import { newKeyWithCsr } from './new-key.js';
import { randomJitterUnit, rotationPoint } from './rotation.js';
import { loadAgentSvid, saveAgentSvid } from './storage.js';
import { loadX509PopCredentials } from './x509pop-credentials.js';

export interface AgentIdentityOptions {
  dataDir: string;
  trustDomain: string;
  attestation: AttestationConfig | null;
  api: NodeApi;
  /** Shared with the sync loop: one node API operation at a time. */
  lock: Mutex;
  clock: Clock;
  logger: Logger;
  rotation: RotationPolicy;
  backoff: BackoffPolicy;
  /** Told about the bundle every attestation returns, before the new SVID is used. */
  onBundle: (bundle: Bundle) => void;
  random?: () => number;
}

/** Longest single timer wait (setTimeout's limit is about 24.8 days). */
const MAX_SLEEP_MS = 2 ** 31 - 1;

const X509POP_PATH = '/brevis/agent/x509pop/';

export class AgentIdentity {
  readonly #o: AgentIdentityOptions;
  readonly #random: () => number;
  #current: AgentSvid | null = null;
  #rotateAt = new Date(0);
  #tokenUsed = false;
  /** Ends run()'s current wait (renewSoon). */
  #wake: (() => void) | null = null;
  readonly #listeners = new Set<(svid: AgentSvid) => void>();

  constructor(options: AgentIdentityOptions) {
    this.#o = options;
    this.#random = options.random ?? Math.random;
  }

  /** The current agent SVID. Throws before start() succeeded. */
  get current(): AgentSvid {
    if (!this.#current) throw new Error('the agent has no identity yet: call start() first');
    return this.#current;
  }

  /** When the current agent SVID is due for renewal. */
  get rotateAt(): Date {
    return this.#rotateAt;
  }

  /** Renews the agent SVID as soon as possible (its chain was tainted). */
  renewSoon(): void {
    this.#rotateAt = new Date(0);
    this.#wake?.();
  }

  /** Called with every new agent SVID (renewed or attested). Returns an unsubscribe function. */
  onChange(listener: (svid: AgentSvid) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Establishes the identity: the stored SVID if still valid, else an
   * attestation, retried with backoff while the CA cannot be reached.
   * Rejects with AgentSvidError when the operator must act, or with the
   * signal's reason when aborted.
   */
  async start(signal?: AbortSignal): Promise<void> {
    const { dataDir, trustDomain, clock, logger } = this.#o;
    const stored = loadAgentSvid(dataDir, trustDomain);
    if (stored && stored.notAfter > clock.now()) {
      this.#adopt(stored, false);
      logger.info({ agentId: stored.spiffeId, serial: stored.serial, expires: stored.notAfter.toISOString() }, 'reusing the stored agent SVID');
      return;
    }
    const why = stored ? `the stored agent SVID ${stored.spiffeId} expired at ${stored.notAfter.toISOString()}` : null;
    if (stored) logger.warn({ agentId: stored.spiffeId, expired: stored.notAfter.toISOString() }, 'the stored agent SVID has expired');
    for (let failures = 1; ; failures++) {
      try {
        await this.#o.lock.run(() => this.#attest(why, stored?.spiffeId));
        return;
      } catch (e) {
        if (!isNodeApiError(e)) throw e;
        const delay = honourRetryHint(backoffDelayMs(failures, this.#o.backoff, this.#random), e);
        logger.warn({ err: e.message, retryInMs: Math.round(delay) }, 'attestation failed; retrying');
        await clock.sleep(delay, signal);
      }
    }
  }

  /**
   * Keeps the SVID fresh until `signal` aborts (then resolves). Rejects
   * with AgentSvidError when the identity is lost for good.
   */
  async run(signal: AbortSignal): Promise<void> {
    const { clock, logger } = this.#o;
    let failures = 0;
    while (!signal.aborted) {
      const now = clock.now();
      if (failures === 0 && now < this.#rotateAt) {
        if (!(await this.#sleep(Math.min(MAX_SLEEP_MS, this.#rotateAt.getTime() - now.getTime()), signal))) return;
        continue;
      }
      // A CA that is back must be reached before the SVID lapses (NodeChannel.redialIfExpiring).
      if (failures > 0) this.#o.api.channel.redialIfExpiring(now.getTime(), this.current.notAfter.getTime());
      try {
        await this.#o.lock.run(() => this.#renewOrAttest());
        failures = 0;
      } catch (e) {
        if (!isNodeApiError(e)) throw e;
        failures++;
        const delay = honourRetryHint(retryDelayMs(failures, this.#o.backoff, clock.now().getTime(), this.current.notAfter.getTime(), this.#random), e);
        logger.warn({ err: e.message, retryInMs: Math.round(delay), expires: this.current.notAfter.toISOString() }, 'agent SVID renewal failed; retrying');
        if (!(await this.#sleep(delay, signal))) return;
      }
    }
  }

  /**
   * The CA refused a call made with the SVID whose serial is `deniedSerial`
   * (evicted, or the CA lost track of it): attest again if this agent can.
   * A no-op when the SVID changed since. Throws AgentSvidError when the
   * identity cannot be recovered, NodeApiError when the CA is unreachable.
   */
  recover(deniedSerial: string, reason: string): Promise<void> {
    return this.#o.lock.run(async () => {
      if (this.current.serial !== deniedSerial) return;
      this.#o.logger.warn({ agentId: this.current.spiffeId, reason }, 'the CA refused the agent SVID');
      await this.#attest(`the CA refused the agent SVID (${reason})`, this.current.spiffeId);
    });
  }

  async #renewOrAttest(): Promise<void> {
    const cur = this.current;
    if (cur.notAfter <= this.#o.clock.now()) {
      await this.#attest(`the agent SVID ${cur.spiffeId} expired at ${cur.notAfter.toISOString()}`, cur.spiffeId);
      return;
    }
    const key = await newKeyWithCsr();
    let issued;
    try {
      issued = await this.#o.api.renewAgentSvid(key.csr);
    } catch (e) {
      if (isNodeApiError(e, 'PERMISSION_DENIED')) {
        await this.#attest(`the CA refused to renew the agent SVID (${e.message})`, cur.spiffeId);
        return;
      }
      throw e;
    }
    const svid = this.#parse(issued.certChain, key.pkcs8, 'the renewed agent SVID');
    this.#adopt(svid, true);
    this.#o.logger.info({ agentId: svid.spiffeId, serial: svid.serial, expires: svid.notAfter.toISOString() }, 'agent SVID renewed');
  }

  /**
   * One attestation attempt with the configured method. `why` says why the
   * identity was lost (null on a first start); `previousId` is the ID it had.
   */
  async #attest(why: string | null, previousId?: string): Promise<void> {
    const { attestation, api, dataDir } = this.#o;
    const lost = why ? `${why}; ` : '';
    if (attestation?.method === 'x509pop') {
      const node = loadX509PopCredentials(attestation.certFile, attestation.keyFile);
      const key = await newKeyWithCsr();
      const res = await this.#refusalIsFatal('x509pop', () => api.attestX509Pop(node, key.csr));
      this.#attested(res, key.pkcs8, 'x509pop');
      return;
    }
    if (attestation?.method === 'join_token' && !this.#tokenUsed) {
      const key = await newKeyWithCsr();
      const res = await this.#refusalIsFatal('join_token', () => api.attestJoinToken(attestation.token, key.csr), lost);
      this.#attested(res, key.pkcs8, 'join_token');
      return;
    }
    if (why === null) {
      throw new AgentSvidError(
        'NO_ATTESTATION',
        `no agent SVID in ${dataDir}: attest with --join-token TOKEN (create one with brevis-ca token create) or with --x509pop-cert FILE --x509pop-key FILE`,
      );
    }
    if (previousId && new URL(previousId).pathname.startsWith(X509POP_PATH)) {
      throw new AgentSvidError('NO_ATTESTATION', `${lost}restart the agent with --x509pop-cert FILE --x509pop-key FILE so it can attest again`);
    }
    throw new AgentSvidError('JOIN_TOKEN_REQUIRED', `${lost}${joinTokenAdvice(dataDir)}`);
  }

  async #refusalIsFatal(method: 'x509pop' | 'join_token', attempt: () => Promise<AttestationResult>, lost = ''): Promise<AttestationResult> {
    try {
      const res = await attempt();
      if (method === 'join_token') this.#tokenUsed = true;
      return res;
    } catch (e) {
      if (!(e instanceof NodeApiError) || !['PERMISSION_DENIED', 'INVALID_ARGUMENT', 'FAILED_PRECONDITION'].includes(e.code)) throw e;
      // The CA answered: a join token is spent or refused either way.
      if (method === 'join_token') {
        this.#tokenUsed = true;
        throw new AgentSvidError('JOIN_TOKEN_REQUIRED', `${lost}the CA refused the join token (${e.message}): ${joinTokenAdvice(this.#o.dataDir)}`, { cause: e });
      }
      throw new AgentSvidError('ATTESTATION_FAILED', `the CA refused x509pop attestation: ${e.message}`, { cause: e });
    }
  }

  #attested(res: AttestationResult, pkcs8: Buffer, method: string): void {
    const svid = this.#parse(res.svid.certChain, pkcs8, `the agent SVID from ${method} attestation`);
    this.#o.onBundle(res.bundle);
    this.#adopt(svid, true);
    this.#o.logger.info({ agentId: svid.spiffeId, method, serial: svid.serial, expires: svid.notAfter.toISOString() }, 'node attested');
  }

  #parse(chain: Buffer[], pkcs8: Buffer, what: string): AgentSvid {
    const now = this.#o.clock.now();
    let svid: AgentSvid;
    try {
      svid = agentSvidFrom({ chain, keyPem: pemEncode('PRIVATE KEY', pkcs8), obtainedAt: now }, this.#o.trustDomain, what);
    } catch (e) {
      // The CA sent something unusable: not the operator's problem, retry later.
      throw new NodeApiError('BAD_RESPONSE', (e as Error).message, { cause: e });
    }
    // Adopting it would mean attesting again at once, in a loop (expired), or
    // presenting a certificate the CA itself would not accept yet.
    const skew = clockSkewProblem(svid.notBefore, svid.notAfter, now);
    if (skew) throw new NodeApiError('BAD_RESPONSE', `${what}: ${skew}`);
    return svid;
  }

  #adopt(svid: AgentSvid, persist: boolean): void {
    this.#current = svid;
    this.#rotateAt = rotationPoint(svid, this.#o.rotation, randomJitterUnit(this.#random));
    this.#o.api.channel.setIdentity({ chain: svid.chain, keyPem: svid.keyPem });
    if (persist) {
      try {
        saveAgentSvid(this.#o.dataDir, svid);
      } catch (e) {
        // Keep running with it: the CA already pins this serial. A restart
        // would find the previous SVID and have to attest again.
        this.#o.logger.error({ err: (e as Error).message, dataDir: this.#o.dataDir }, 'cannot store the agent SVID');
      }
    }
    for (const l of this.#listeners) l(svid);
  }

  /** False when aborted. */
  async #sleep(ms: number, signal: AbortSignal): Promise<boolean> {
    const woken = new AbortController();
    this.#wake = () => woken.abort();
    try {
      await this.#o.clock.sleep(Math.max(0, ms), AbortSignal.any([signal, woken.signal]));
      return true;
    } catch {
      return !signal.aborted;
    } finally {
      this.#wake = null;
    }
  }
}
