/**
 * `brevis-agent api fetch x509` and `api watch`: the default X509-SVID of
 * the calling process, written as svid.pem, svid.key (0600) and
 * bundle.pem for software that cannot speak the Workload API. Files are
 * replaced atomically (spiffe/svid-files.ts); watch rewrites them on every
 * change and can run a command afterwards (an nginx reload, say).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { CliError } from '../../ca/cli/cli-error.js';
import { withProgress } from '../../ca/cli/terminal.js';
import { writeSvidFiles } from '../../spiffe/svid-files.js';
import { WorkloadApiClient, WorkloadApiError, type X509Context } from '../../spiffe/workload-client.js';

export interface FilesOptions {
  socket?: string;
  outDir: string;
}

function client(socket: string | undefined): WorkloadApiClient {
  try {
    return new WorkloadApiClient(socket !== undefined ? { socketPath: socket } : {});
  } catch (e) {
    if (e instanceof WorkloadApiError) throw new CliError(e.message);
    throw e;
  }
}

/** Writes the default SVID of `ctx`; returns a one-line summary. */
function writeFiles(outDir: string, ctx: X509Context): string {
  const svid = ctx.svids[0]!;
  const bundle = ctx.bundles.get(svid.spiffeId.trustDomain);
  if (!bundle) throw new CliError(`the agent sent no bundle for ${svid.spiffeId.trustDomain}`);
  writeSvidFiles(outDir, { chain: [...svid.chain], key: svid.keyDer, bundle: [...bundle.authorities] });
  return `wrote ${outDir}/svid.pem, svid.key, bundle.pem for ${svid.spiffeId.toString()} (expires ${svid.notAfter.toISOString()})`;
}

/** What the files hold, to tell a real change from a repeated message. */
function fingerprint(ctx: X509Context): string {
  const svid = ctx.svids[0]!;
  const h = createHash('sha256');
  for (const c of svid.chain) h.update(c);
  h.update(svid.keyDer);
  for (const r of ctx.bundles.get(svid.spiffeId.trustDomain)?.authorities ?? []) h.update(r);
  return h.digest('hex');
}

export async function fetchX509Files(o: FilesOptions & { timeoutMs: number }, out: (line: string) => void): Promise<void> {
  const c = client(o.socket);
  try {
    const ctx = await withProgress(`waiting for an SVID from the Workload API on ${c.socketPath}`, () =>
      c.fetchX509Context({ signal: AbortSignal.timeout(o.timeoutMs) }),
    );
    out(writeFiles(o.outDir, ctx));
  } catch (e) {
    if (e instanceof WorkloadApiError) {
      throw new CliError(e.code === 'CANCELLED' ? `no answer from the Workload API on ${c.socketPath} within ${o.timeoutMs / 1000}s` : e.message);
    }
    throw e;
  } finally {
    c.close();
  }
}

/**
 * Keeps the files current until `signal` aborts. `exec` runs via `sh -c`
 * after each change, never twice at once; a change during a run causes
 * one more run after it.
 */
export async function watchX509Files(
  o: FilesOptions & { exec?: string; signal: AbortSignal },
  out: (line: string) => void,
  warn: (line: string) => void,
): Promise<void> {
  const c = client(o.socket);
  let last: string | null = null;
  let running = false;
  let again = false;
  const runExec = (cmd: string) => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    const child = spawn('sh', ['-c', cmd], { stdio: ['ignore', 'inherit', 'inherit'] });
    const done = (why: string | null) => {
      running = false;
      if (why) warn(`--exec '${cmd}' ${why}`);
      if (again && !o.signal.aborted) {
        again = false;
        runExec(cmd);
      }
    };
    child.on('error', (e) => done(`could not start: ${e.message}`));
    child.on('exit', (code, sig) => done(code === 0 ? null : sig ? `was killed by ${sig}` : `exited with status ${code}`));
  };
  try {
    await c.watchX509Context(
      (ctx) => {
        const fp = fingerprint(ctx);
        if (fp === last) return;
        try {
          out(writeFiles(o.outDir, ctx));
        } catch (e) {
          warn(`cannot write the files: ${(e as Error).message}`);
          return;
        }
        last = fp;
        if (o.exec) runExec(o.exec);
      },
      { signal: o.signal, onError: (e) => warn(e.message) },
    );
  } catch (e) {
    if (e instanceof WorkloadApiError) throw new CliError(e.message);
    throw e;
  } finally {
    c.close();
  }
}
