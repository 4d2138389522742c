/**
 * Automatic rotation over time, as SPIRE does it: a new intermediate is
 * prepared once half of the active intermediate's lifetime has passed and
 * activated at five sixths; retired authorities leave trust once the last
 * credential they signed has expired; an intermediate that can no longer
 * sign (the CA was down too long) is replaced at once. The root is
 * rotated by an admin.
 */
import type { Logger } from 'pino';
import type { Clock } from '../../spiffe/clock.js';
import { epochSeconds } from '../../spiffe/clock.js';
import { ROTATOR_CALLER, type AuthorityLifecycle } from './lifecycle.js';
import { acknowledgements } from './fleet.js';
import { activeOf, neededUntil, preparedOf, type LifecycleAuthority, type LifecycleSnapshot } from './model.js';

/** When an intermediate's successor is prepared and activated (seconds since the epoch). */
export function intermediateSchedule(inter: Pick<LifecycleAuthority, 'notBefore' | 'notAfter'>): { prepareAt: number; activateAt: number } {
  const life = inter.notAfter - inter.notBefore;
  return { prepareAt: inter.notBefore + Math.floor(life / 2), activateAt: inter.notBefore + Math.floor((life * 5) / 6) };
}

/** The next moment (seconds) anything time-driven is due, or null. */
export function nextDue(s: LifecycleSnapshot, nowS: number): number | null {
  const times: number[] = [];
  const root = activeOf(s, 'x509-root');
  const inter = activeOf(s, 'x509-intermediate');
  if (inter) {
    const { prepareAt, activateAt } = intermediateSchedule(inter);
    const prepared = root ? preparedOf(s, 'x509-intermediate', root.id).length > 0 : false;
    times.push(prepared ? activateAt : prepareAt, inter.notAfter - 60);
  }
  for (const a of s.authorities) {
    if (a.state !== 'retired' || a.untrustedAt !== null) continue;
    const end = neededUntil(s, a);
    if (end !== null) times.push(end);
  }
  const future = times.filter((t) => t > nowS);
  return future.length ? Math.min(...future) : null;
}

/** Scheduled SSH CA rotation (seconds). */
export interface SshSchedule {
  /** A new key is prepared once the active one is this old. */
  everySeconds: number;
  /** It is activated this long after it was prepared, once every live agent acknowledged it. */
  overlapSeconds: number;
}

export interface RotatorOptions {
  lifecycle: AuthorityLifecycle;
  clock: Clock;
  logger: Logger;
  /** Off when absent: SSH CAs are then rotated by an admin only. */
  ssh?: SshSchedule;
  /** Longest wait between checks, milliseconds (the clock may jump). Default 60 s. */
  maxWaitMs?: number;
}

export class Rotator {
  /** SSH kinds whose scheduled activation waits for acknowledgements: how many agents were missing (logged on change). */
  readonly #waitingFor = new Map<string, number>();

  constructor(private readonly o: RotatorOptions) {}

  /** One pass over everything time-driven. Returns the steps taken, e.g. ['prepare x509-intermediate 1a2b...']. */
  async tick(): Promise<string[]> {
    const { lifecycle } = this.o;
    const steps: string[] = [];
    steps.push(...(await this.#sshTick()));
    if (await lifecycle.repairIntermediate(ROTATOR_CALLER)) steps.push(`replace x509-intermediate ${activeOf(lifecycle.snapshot, 'x509-intermediate')?.id}`);
    const expired = await lifecycle.expireRetired(ROTATOR_CALLER);
    if (expired > 0) steps.push(`expire ${expired}`);
    const s = lifecycle.snapshot;
    const nowS = epochSeconds(this.o.clock.now());
    const root = activeOf(s, 'x509-root');
    const inter = activeOf(s, 'x509-intermediate');
    if (!root || !inter) return steps;
    const { prepareAt, activateAt } = intermediateSchedule(inter);
    const prepared = preparedOf(s, 'x509-intermediate', root.id)[0];
    if (!prepared && nowS >= prepareAt) {
      const r = await lifecycle.prepare('x509-intermediate', { caller: ROTATOR_CALLER });
      steps.push(`prepare x509-intermediate ${r.prepared.id}`);
    } else if (prepared && nowS >= activateAt) {
      await lifecycle.activate('x509-intermediate', prepared.id, { caller: ROTATOR_CALLER });
      steps.push(`activate x509-intermediate ${prepared.id}`);
    }
    return steps;
  }

  /** Scheduled SSH CA rotation: prepare when the active key is old enough, activate after the overlap once acknowledged. */
  async #sshTick(): Promise<string[]> {
    const sched = this.o.ssh;
    if (!sched) return [];
    const { lifecycle, logger } = this.o;
    const steps: string[] = [];
    const nowS = epochSeconds(this.o.clock.now());
    for (const kind of ['ssh-user', 'ssh-host'] as const) {
      const s = lifecycle.snapshot;
      const active = activeOf(s, kind);
      const prepared = preparedOf(s, kind)[0];
      if (!active) continue;
      if (!prepared) {
        if (nowS - active.createdAt >= sched.everySeconds) {
          const r = await lifecycle.prepare(kind, { caller: ROTATOR_CALLER });
          steps.push(`prepare ${kind} ${r.prepared.id}`);
        }
        continue;
      }
      if (nowS - prepared.createdAt < sched.overlapSeconds) continue;
      const acks = acknowledgements(prepared, await lifecycle.fleet());
      if (acks.missing.length > 0) {
        if (this.#waitingFor.get(kind) !== acks.missing.length) {
          logger.warn({ kind, authority: prepared.id, missing: acks.missing.slice(0, 10), count: acks.missing.length }, 'scheduled SSH CA rotation waits for agents to acknowledge the new key');
          this.#waitingFor.set(kind, acks.missing.length);
        }
        continue;
      }
      this.#waitingFor.delete(kind);
      await lifecycle.activate(kind, prepared.id, { caller: ROTATOR_CALLER });
      steps.push(`activate ${kind} ${prepared.id}`);
    }
    return steps;
  }

  /** Ticks until `signal` aborts; a failed tick is logged and retried at the next wake-up. */
  async run(signal: AbortSignal): Promise<void> {
    const { clock, logger, lifecycle } = this.o;
    const maxWait = this.o.maxWaitMs ?? 60_000;
    while (!signal.aborted) {
      try {
        const steps = await this.tick();
        if (steps.length) {
          logger.debug({ steps }, 'automatic rotation');
          // Each step moves the state on: look again at once (the clock may have passed several points).
          continue;
        }
      } catch (e) {
        logger.error({ err: e }, 'automatic rotation step failed; retrying');
      }
      const nowMs = clock.now().getTime();
      const due = nextDue(lifecycle.snapshot, Math.floor(nowMs / 1000));
      const wait = due === null ? maxWait : Math.min(maxWait, Math.max(1000, due * 1000 - nowMs));
      try {
        await clock.sleep(wait, signal);
      } catch {
        return;
      }
    }
  }
}
