/**
 * Keeps the node's sshd host certificate current: obtains one from the CA
 * for the host public key (`--ssh-host-key`) and the node's host names (all
 * of them, or the subset configured), writes it atomically to
 * `--ssh-host-cert`, runs the reload command, and renews it at its rotation
 * point (half-life with jitter, as SVIDs), or at once when the host key,
 * the host names bound to this agent or the trusted host CA keys change.
 *
 * While the CA cannot be reached the current certificate stays in place and
 * requests are retried with backoff, never later than half-way to its
 * expiry. A certificate found on disk at start is reused while it still
 * fits, so a restart does not mint a new one.
 */
import { chmodSync, readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { parseAuthorizedKey, type SshPublicKey } from '../../ca/ssh/public-key.js';
import type { Clock } from '../../spiffe/clock.js';
import { writeFileAtomic } from '../../spiffe/svid-files.js';
import type { RotationPolicy, SshHostConfig } from '../config/config.js';
import type { Mutex } from '../node/mutex.js';
import type { NodeApi } from '../node/node-api.js';
import { randomJitterUnit, rotationPoint } from '../svid/rotation.js';
import { retryDelayMs, type BackoffPolicy } from '../sync/backoff.js';
import { checkCertificate, type CheckedCertificate } from './check-certificate.js';
import { AgentSshError } from './errors.js';
import type { ReloadCommand } from './reload-command.js';

export interface HostCertificateKeeperOptions {
  config: SshHostConfig;
  api: Pick<NodeApi, 'signSshHostCertificate'>;
  /** Shared with the sync loop: one node API operation at a time. */
  lock: Mutex;
  clock: Clock;
  logger: Logger;
  rotation: RotationPolicy;
  backoff: BackoffPolicy;
  reload?: ReloadCommand | undefined;
  random?: () => number;
}

/** What the sync tells the keeper. */
export interface HostSyncInfo {
  /** authorized_keys lines of the host CA keys. */
  hostCaKeys: readonly string[];
  /** The host names the admin bound to this agent. */
  hostPrincipals: readonly string[];
}

/** Longest single timer wait (setTimeout's limit is about 24.8 days). */
const MAX_SLEEP_MS = 2 ** 31 - 1;

export class HostCertificateKeeper {
  readonly #o: HostCertificateKeeperOptions;
  readonly #random: () => number;
  #current: CheckedCertificate | null = null;
  #rotateAt = new Date(0);
  #sync: HostSyncInfo | null = null;
  #synced: () => void = () => undefined;
  readonly #firstSync = new Promise<void>((r) => (this.#synced = r));
  #wake: (() => void) | null = null;
  #failing = false;
  #lastFailure: string | null = null;
  #renewals = 0;

  constructor(options: HostCertificateKeeperOptions) {
    this.#o = options;
    this.#random = options.random ?? Math.random;
  }

  /** The certificate in place, or null before the first one. */
  get current(): CheckedCertificate | null {
    return this.#current;
  }

  /** When the current certificate is due for renewal. */
  get rotateAt(): Date {
    return this.#rotateAt;
  }

  /** How many certificates this keeper obtained and wrote. */
  get renewals(): number {
    return this.#renewals;
  }

  /**
   * Takes in what a sync reported. Wakes the loop when the host names or
   * host CA keys changed (they may call for a new certificate), or on any
   * sync while healthy, so a replaced host key is noticed within a sync
   * interval; never cuts a backoff short otherwise.
   */
  applySync(info: HostSyncInfo): void {
    const changed = !this.#sync || !sameList(this.#sync.hostCaKeys, info.hostCaKeys) || !sameList(this.#sync.hostPrincipals, info.hostPrincipals);
    this.#sync = { hostCaKeys: [...info.hostCaKeys], hostPrincipals: [...info.hostPrincipals] };
    this.#synced();
    if (changed || !this.#failing) this.#wake?.();
  }

  /**
   * Keeps the certificate current until `signal` aborts (then resolves).
   * Starts after the first sync, so the certificate can be checked against
   * the host CA keys and the bound host names. Never rejects: every failure
   * is logged and retried.
   */
  async run(signal: AbortSignal): Promise<void> {
    const { clock, logger, config } = this.#o;
    if (!(await this.#sleepUntil(this.#firstSync, signal))) return;
    this.#adoptExisting();
    let failures = 0;
    while (!signal.aborted) {
      const now = clock.now();
      const why = this.#renewalReason(now);
      let delay: number;
      if (why === null) {
        delay = this.#rotateAt.getTime() - now.getTime();
      } else {
        try {
          await this.#o.lock.run(() => this.#renew(why));
          // Outside the lock: a slow reload must not hold up syncs and SVID renewals.
          await this.#o.reload?.run();
          if (failures > 0) logger.info({ afterFailures: failures }, 'SSH host certificate obtained again');
          failures = 0;
          this.#failing = false;
          this.#lastFailure = null;
          continue;
        } catch (e) {
          failures++;
          this.#failing = true;
          const until = this.#current?.validBefore.getTime() ?? null;
          delay = retryDelayMs(failures, this.#o.backoff, clock.now().getTime(), until, this.#random);
          const message = (e as Error).message;
          // A lasting refusal (names not bound, bad key file) is logged once, not every retry.
          if (message !== this.#lastFailure) {
            logger.warn(
              { err: message, code: (e as { code?: string }).code, certFile: config.certFile, retryInMs: Math.round(delay), ...(until ? { expires: new Date(until).toISOString() } : {}) },
              'could not renew the SSH host certificate; keeping the current one',
            );
            this.#lastFailure = message;
          }
        }
      }
      if (!(await this.#sleep(Math.min(MAX_SLEEP_MS, Math.max(0, delay)), signal))) return;
    }
  }

  /** Why a new certificate is needed now, or null when the current one fits. */
  #renewalReason(now: Date): string | null {
    const cur = this.#current;
    if (!cur) return 'no host certificate yet';
    if (cur.validBefore <= now) return 'the host certificate expired';
    if (this.#rotateAt <= now) return 'the host certificate is due for renewal';
    let key: SshPublicKey;
    try {
      key = readHostPublicKey(this.#o.config.keyFile);
    } catch (e) {
      return (e as Error).message;
    }
    if (!key.blob.equals(cur.subjectKeyBlob)) return 'the host key changed';
    const wanted = this.#wantedPrincipals();
    if (wanted && !sameSet(wanted, cur.principals)) return 'the host names changed';
    const caKeys = this.#sync?.hostCaKeys ?? [];
    if (caKeys.length > 0 && !this.#trusted(cur, now)) return 'the host CA changed';
    return null;
  }

  /** The exact host names the certificate should carry, or null when not known yet. */
  #wantedPrincipals(): readonly string[] | null {
    if (this.#o.config.principals.length > 0) return this.#o.config.principals;
    const bound = this.#sync?.hostPrincipals ?? [];
    return bound.length > 0 ? bound : null;
  }

  async #renew(why: string): Promise<void> {
    const { api, config, clock, logger } = this.#o;
    const key = readHostPublicKey(this.#o.config.keyFile);
    const publicKey = `${key.type} ${key.blob.toString('base64')}`;
    const issued = await api.signSshHostCertificate(publicKey, config.principals);
    const now = clock.now();
    const cert = checkCertificate(issued.certificate, {
      type: 'host',
      subjectKeyBlob: key.blob,
      principals: config.principals.length > 0 ? config.principals : null,
      caKeys: this.#sync?.hostCaKeys ?? [],
      now,
    });
    writeFileAtomic(config.certFile, `${cert.line}\n`, 0o644);
    chmodSync(config.certFile, 0o644);
    this.#adopt(cert, now);
    this.#renewals++;
    logger.info(
      { reason: why, serial: cert.serial, principals: cert.principals, validBefore: cert.validBefore.toISOString(), rotateAt: this.#rotateAt.toISOString(), certFile: config.certFile },
      'SSH host certificate written',
    );
  }

  /** Reuses the certificate already on disk if it is for this host key and still valid. */
  #adoptExisting(): void {
    const { config, clock, logger } = this.#o;
    let text: string;
    try {
      text = readFileSync(config.certFile, 'utf8');
    } catch {
      return;
    }
    try {
      const now = clock.now();
      const cert = checkCertificate(text, { type: 'host', subjectKeyBlob: readHostPublicKey(this.#o.config.keyFile).blob, principals: null, caKeys: [], now });
      // Its arrival time is unknown: the rotation point counts from valid-after (earlier, hence safer).
      this.#adopt(cert, undefined);
      logger.info({ serial: cert.serial, validBefore: cert.validBefore.toISOString(), certFile: config.certFile }, 'reusing the SSH host certificate on disk');
    } catch (e) {
      logger.info({ err: (e as Error).message, certFile: config.certFile }, 'the SSH host certificate on disk cannot be reused; obtaining a new one');
    }
  }

  #adopt(cert: CheckedCertificate, obtainedAt: Date | undefined): void {
    this.#current = cert;
    this.#rotateAt = rotationPoint({ notBefore: cert.validAfter, notAfter: cert.validBefore, obtainedAt }, this.#o.rotation, randomJitterUnit(this.#random));
  }

  #trusted(cert: CheckedCertificate, now: Date): boolean {
    try {
      checkCertificate(cert.line, { type: 'host', subjectKeyBlob: cert.subjectKeyBlob, principals: null, caKeys: this.#sync?.hostCaKeys ?? [], now });
      return true;
    } catch {
      return false;
    }
  }

  async #sleep(ms: number, signal: AbortSignal): Promise<boolean> {
    const woken = new AbortController();
    this.#wake = () => woken.abort();
    try {
      await this.#o.clock.sleep(ms, AbortSignal.any([signal, woken.signal]));
      return true;
    } catch {
      return !signal.aborted;
    } finally {
      this.#wake = null;
    }
  }

  async #sleepUntil(p: Promise<void>, signal: AbortSignal): Promise<boolean> {
    if (signal.aborted) return false;
    let onAbort!: () => void;
    const aborted = new Promise<void>((r) => {
      onAbort = r;
      signal.addEventListener('abort', onAbort, { once: true });
    });
    await Promise.race([p, aborted]);
    signal.removeEventListener('abort', onAbort);
    return !signal.aborted;
  }
}

/**
 * Reads and parses an sshd host public key file. Throws
 * AgentSshError('HOST_KEY_INVALID') naming the file and the problem (a
 * private key is refused without being read further).
 */
export function readHostPublicKey(file: string): SshPublicKey {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new AgentSshError('HOST_KEY_INVALID', `cannot read the SSH host public key ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    return parseAuthorizedKey(text);
  } catch (e) {
    throw new AgentSshError('HOST_KEY_INVALID', `the SSH host public key ${file} is unusable: ${(e as Error).message}`);
  }
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  const sa = new Set(a);
  const sb = new Set(b);
  return sa.size === sb.size && [...sa].every((x) => sb.has(x));
}
