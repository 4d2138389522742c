/** Helpers to run the compiled programs as real processes. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CA_BIN = path.join(ROOT, 'dist/ca/cli/main.js');
export const AGENT_BIN = path.join(ROOT, 'dist/agent/cli/main.js');

export function requireBuilt(): void {
  if (!existsSync(CA_BIN)) throw new Error('dist/ is missing: run `npm run build` (npm test does it for you)');
}

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
}

export function runCli(bin: string, args: string[], env: NodeJS.ProcessEnv = {}): CliResult {
  const r = spawnSync(process.execPath, [bin, ...args], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export function runCliAsync(bin: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [bin, ...args], { env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ status: code ?? -1, stdout, stderr }));
  });
}

export interface Daemon {
  proc: ChildProcess;
  output: () => string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts a long-running program and resolves once `ready` matches its stderr/stdout. */
export function startDaemon(bin: string, args: string[], ready: RegExp, env: NodeJS.ProcessEnv = {}, timeoutMs = 30_000): Promise<Daemon> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [bin, ...args], { env: { ...process.env, ...env } });
    let out = '';
    const d: Daemon = {
      proc,
      output: () => out,
      stop: (signal = 'SIGTERM') =>
        new Promise((res) => {
          if (proc.exitCode !== null || proc.signalCode !== null) return res(proc.exitCode);
          proc.once('exit', (code) => res(code));
          proc.kill(signal);
        }),
    };
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`timed out waiting for ${ready} from ${path.basename(bin)}; output:\n${out}`));
    }, timeoutMs);
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      if (ready.test(out)) {
        clearTimeout(timer);
        resolve(d);
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      if (!ready.test(out)) reject(new Error(`${path.basename(bin)} exited with ${code} before it was ready:\n${out}`));
    });
  });
}
