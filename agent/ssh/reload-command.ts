/**
 * The operator's command run after a new host certificate is in place
 * (`--ssh-reload-cmd`, e.g. `systemctl reload ssh`: sshd reads
 * HostCertificate only when it starts or reloads). Run with `sh -c`, its
 * output passed through to the agent's own, never twice at once, and
 * killed if it hangs.
 */
import { spawn } from 'node:child_process';

export interface ReloadLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** How long a reload may take before it is killed, in milliseconds. */
export const RELOAD_TIMEOUT_MS = 60_000;

export class ReloadCommand {
  #running: Promise<boolean> | null = null;

  constructor(
    readonly command: string,
    private readonly logger: ReloadLogger,
    private readonly timeoutMs = RELOAD_TIMEOUT_MS,
  ) {}

  /**
   * Runs the command once (after the run in progress, if any). Resolves
   * true when it exited with status 0; never rejects: a failed reload is
   * logged, and the certificate stays written either way.
   */
  async run(): Promise<boolean> {
    while (this.#running) await this.#running;
    const run = this.#spawn();
    this.#running = run;
    try {
      return await run;
    } finally {
      this.#running = null;
    }
  }

  #spawn(): Promise<boolean> {
    const { command, logger } = this;
    return new Promise((resolve) => {
      const child = spawn('sh', ['-c', command], { stdio: ['ignore', 'inherit', 'inherit'] });
      const timer = setTimeout(() => child.kill('SIGKILL'), this.timeoutMs);
      let settled = false;
      const done = (ok: boolean, why?: string) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (ok) logger.info({ command }, 'SSH reload command ran');
        else logger.warn({ command, err: why }, 'SSH reload command failed');
        resolve(ok);
      };
      child.once('error', (e) => done(false, `could not start: ${e.message}`));
      child.once('exit', (code, sig) => done(code === 0, sig ? `killed by ${sig}` : `exited with status ${code}`));
    });
  }
}
