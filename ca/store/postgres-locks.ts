/**
 * PostgreSQL advisory lock keys used by Brevis, in one place so that no two
 * uses collide. Keys are the two-int form (class, object): the class is
 * "BRVS" as a 32-bit integer, which keeps them apart from other
 * applications sharing the database.
 */
export const LOCK_CLASS = 0x42525653;

export const LOCKS = {
  /** Held (transaction-scoped) while a migration is applied. */
  migrate: 1,
  /** Held (session-scoped) for the whole of an authority transition, by whichever server runs it. */
  lifecycle: 2,
  /** Held (session-scoped) by the server doing the singleton work (automatic rotation, pruning). */
  singleton: 3,
} as const;

export type LockName = keyof typeof LOCKS;
