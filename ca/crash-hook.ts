/**
 * Crash points for testing that the CA survives a hard stop. With
 * BREVIS_CRASH_AT=<step> in the CA's environment (for example
 * `prepare:keys-saved`, `activate:in-transaction` or
 * `migrate:4:in-transaction`), the CA sends itself SIGKILL when it reaches
 * that step: no cleanup, no flushing, exactly what a power cut or an OOM
 * kill does. Unset in production.
 *
 * Steps are named where they are reached: authority transitions
 * (ca/rotation/lifecycle.ts) and schema migrations (ca/store/migrations.ts,
 * ca/store/pg-migrations.ts).
 */

/** Called at each named step. */
export type CrashHook = (step: string) => void;

export const CRASH_ENV = 'BREVIS_CRASH_AT';

/** The hook that never crashes. */
export const NO_CRASH: CrashHook = () => undefined;

/** The hook from the environment: a no-op unless BREVIS_CRASH_AT is set. */
export function crashHookFromEnv(env: NodeJS.ProcessEnv = process.env): CrashHook {
  const at = env[CRASH_ENV];
  if (!at) return NO_CRASH;
  return (step) => {
    if (step !== at) return;
    process.stderr.write(`${CRASH_ENV}: killing the CA at ${step}\n`);
    process.kill(process.pid, 'SIGKILL');
  };
}
