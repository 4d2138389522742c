/**
 * Crash points for testing that transitions survive a hard stop. With
 * BREVIS_CRASH_AT=<step> in the CA's environment (for example
 * `prepare:keys-saved` or `activate:in-transaction`), the CA sends itself
 * SIGKILL when a transition reaches that step: no cleanup, no flushing,
 * exactly what a power cut or an OOM kill does. Unset in production.
 */

/** Called at each named step of a transition. */
export type CrashHook = (step: string) => void;

export const CRASH_ENV = 'BREVIS_CRASH_AT';

/** The hook from the environment: a no-op unless BREVIS_CRASH_AT is set. */
export function crashHookFromEnv(env: NodeJS.ProcessEnv = process.env): CrashHook {
  const at = env[CRASH_ENV];
  if (!at) return () => undefined;
  return (step) => {
    if (step !== at) return;
    process.stderr.write(`${CRASH_ENV}: killing the CA at ${step}\n`);
    process.kill(process.pid, 'SIGKILL');
  };
}
