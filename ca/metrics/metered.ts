/**
 * Issuance measured by decoration: the minter and the SSH issuer are
 * wrapped where the CA is assembled, so every credential is counted and
 * timed whichever API asked for it, and the issuing code knows nothing of
 * metrics. Everything but the measured method passes through untouched.
 */
import { performance } from 'node:perf_hooks';
import type { SvidMinter } from '../api/context.js';
import type { SshIssuer } from '../ssh/ssh-issuer.js';
import type { IssuanceKind } from './activity-history.js';

export interface IssuanceObserver {
  observeIssuance(kind: IssuanceKind, seconds: number, ok: boolean): void;
}

type AsyncMethod<A extends unknown[], R> = (...args: A) => Promise<R>;

/** A proxy of `target` whose `methods` report each call's kind, duration and success. */
function meterMethod<T extends object, K extends keyof T>(
  target: T,
  methods: K | readonly K[],
  kindOf: (args: unknown[]) => IssuanceKind,
  observer: IssuanceObserver,
): T {
  const list: readonly K[] = Array.isArray(methods) ? methods : [methods as K];
  const metered = new Map<PropertyKey, AsyncMethod<unknown[], unknown>>(list.map((m) => [m, meter(target[m] as unknown as AsyncMethod<unknown[], unknown>)]));
  function meter(original: AsyncMethod<unknown[], unknown>) {
    return async (...args: unknown[]) => {
      const t0 = performance.now();
      const kind = kindOf(args);
      try {
        const r = await original.apply(target, args);
        observer.observeIssuance(kind, (performance.now() - t0) / 1000, true);
        return r;
      } catch (e) {
        observer.observeIssuance(kind, (performance.now() - t0) / 1000, false);
        throw e;
      }
    };
  }
  return new Proxy(target, {
    get(t, prop) {
      const m = metered.get(prop);
      if (m) return m;
      const v = Reflect.get(t, prop, t) as unknown;
      // Bound to the real object: classes with #private fields reject a proxy as `this`.
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
    },
  });
}

/** The minter, with each `mint` and `mintFromCsr` counted as an `x509` issuance. */
export function meterMinter<T extends SvidMinter>(minter: T, observer: IssuanceObserver): T {
  return meterMethod(minter, ['mint', 'mintFromCsr'] as (keyof T)[], () => 'x509', observer);
}

/** The SSH issuer, with each `issue` counted as `ssh_user` or `ssh_host`. */
export function meterSshIssuer<T extends Pick<SshIssuer, 'issue'>>(issuer: T, observer: IssuanceObserver): T {
  return meterMethod(issuer, 'issue', (args) => ((args[0] as { type?: string } | undefined)?.type === 'host' ? 'ssh_host' : 'ssh_user'), observer);
}
