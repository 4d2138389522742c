import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { colourEnabled, paint, withProgress, type TerminalStream } from '../ca/cli/terminal.js';
import { startTestCa, type TestCa } from './support/ca-harness.js';
import { CA_BIN, requireBuilt } from './support/processes.js';

function stream(isTTY: boolean): TerminalStream & { out: string[] } {
  const out: string[] = [];
  return { isTTY, out, write: (s: string) => out.push(s) };
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('terminal colour', () => {
  it('colours a terminal only, honouring NO_COLOR, TERM=dumb and FORCE_COLOR', () => {
    expect(colourEnabled(stream(true), {})).toBe(true);
    expect(colourEnabled(stream(false), {})).toBe(false);
    expect(colourEnabled(stream(true), { NO_COLOR: '1' })).toBe(false);
    expect(colourEnabled(stream(true), { TERM: 'dumb' })).toBe(false);
    expect(colourEnabled(stream(false), { FORCE_COLOR: '1' })).toBe(true);
    expect(paint('serving', 'green', stream(true), {})).toBe('\u001b[32mserving\u001b[39m');
    expect(paint('serving', 'green', stream(false), {})).toBe('serving');
  });
});

describe('progress for slow work', () => {
  it('shows nothing off a terminal, however long the work takes', async () => {
    const s = stream(false);
    expect(await withProgress('attesting', async () => (await sleep(80), 42), { stream: s, delayMs: 10 })).toBe(42);
    expect(s.out).toEqual([]);
  });

  it('shows nothing for work quicker than the delay', async () => {
    const s = stream(true);
    await withProgress('attesting', () => sleep(5), { stream: s, delayMs: 200 });
    expect(s.out).toEqual([]);
  });

  it('draws a spinner with the current label and elapsed seconds once the delay has passed, then erases it', async () => {
    const s = stream(true);
    await withProgress(
      'waiting for acknowledgements',
      async (setLabel) => {
        await sleep(60);
        setLabel('waiting for 2 of 3 agents');
        await sleep(60);
      },
      { stream: s, delayMs: 20, intervalMs: 10, env: {} },
    );
    expect(s.out.some((l) => l.includes('waiting for acknowledgements') && l.includes('(0s)'))).toBe(true);
    expect(s.out.some((l) => l.includes('waiting for 2 of 3 agents'))).toBe(true);
    expect(s.out.at(-1)).toBe('\r\u001b[2K');
  });

  it('erases the line and passes the error on when the work fails', async () => {
    const s = stream(true);
    await expect(withProgress('x', async () => (await sleep(50), Promise.reject(new Error('boom'))), { stream: s, delayMs: 10 })).rejects.toThrow('boom');
    expect(s.out.at(-1)).toBe('\r\u001b[2K');
  });
});

describe('the CLIs on a terminal and in a pipe', () => {
  let t: TestCa;
  beforeAll(async () => {
    requireBuilt();
    t = await startTestCa();
  });
  afterAll(async () => {
    await t?.cleanup();
  });

  /** The test runner's environment without colour overrides (vitest sets FORCE_COLOR). */
  function plainEnv(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...process.env, TERM: 'xterm' };
    delete env.NO_COLOR;
    delete env.FORCE_COLOR;
    return env;
  }

  /** Runs the CA CLI with stdout and stderr piped. Async: the CA under test runs in this process and must keep answering. */
  async function piped(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return promisify(execFile)(process.execPath, [CA_BIN, ...args], { encoding: 'utf8', env: plainEnv() }).then(
      (r) => ({ code: 0, ...r }),
      (e: { code: number; stdout: string; stderr: string }) => e,
    );
  }

  /** Runs the CA CLI under a pseudo-terminal (util-linux `script`), so stdout and stderr are TTYs; resolves with what it wrote. */
  async function onTerminal(args: string[]): Promise<string> {
    const cmd = [process.execPath, CA_BIN, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
    // Async: the CA under test runs in this process and must keep answering.
    const r = await promisify(execFile)('script', ['-qec', cmd, '/dev/null'], { encoding: 'utf8', env: plainEnv() }).catch(
      (e: { stdout: string }) => e,
    );
    return r.stdout;
  }

  it('colours the healthcheck and the error prefix on a terminal only', async () => {
    expect(await onTerminal(['healthcheck', '--socket', t.ca.adminSocket])).toContain('\u001b[32mserving\u001b[39m');
    expect((await piped(['healthcheck', '--socket', t.ca.adminSocket])).stdout).toBe('serving\n');
    const failed = await piped(['entry', 'show', 'nope', '--socket', t.ca.adminSocket]);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/^brevis-ca: no entry/);
    expect(await onTerminal(['entry', 'show', 'nope', '--socket', t.ca.adminSocket])).toMatch(/^\u001b\[31mbrevis-ca:\u001b\[39m no entry/);
  });
});
