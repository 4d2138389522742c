/**
 * Terminal niceties for the CLIs, off whenever output is not a terminal
 * (scripts and `--json` consumers get plain, stable text): colour, and a
 * progress line for work that takes more than a second.
 *
 * Colour follows the NO_COLOR convention (https://no-color.org) and
 * TERM=dumb; FORCE_COLOR turns it on for a non-terminal.
 */

import { performance } from 'node:perf_hooks';

/** The part of a stream these helpers use (process.stdout/stderr fit). */
export interface TerminalStream {
  isTTY?: boolean;
  write(s: string): unknown;
}

export type Colour = 'red' | 'green' | 'yellow' | 'dim' | 'bold';
const CODES: Record<Colour, [number, number]> = { red: [31, 39], green: [32, 39], yellow: [33, 39], dim: [2, 22], bold: [1, 22] };

/** Whether to colour what goes to `stream`. */
export function colourEnabled(stream: TerminalStream, env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '0') return true;
  return stream.isTTY === true && env.TERM !== 'dumb';
}

/** `text` in `colour` when `stream` gets colour, else as is. */
export function paint(text: string, colour: Colour, stream: TerminalStream = process.stdout, env: NodeJS.ProcessEnv = process.env): string {
  if (!colourEnabled(stream, env)) return text;
  const [on, off] = CODES[colour];
  return `\u001b[${on}m${text}\u001b[${off}m`;
}

export interface ProgressOptions {
  /** Where the progress line goes (default stderr, so stdout stays clean for pipes). */
  stream?: TerminalStream;
  /** Show nothing for work shorter than this, ms (default 1000). */
  delayMs?: number;
  /** Redraw period, ms (default 100). */
  intervalMs?: number;
  env?: NodeJS.ProcessEnv;
}

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/**
 * Runs `work`; on a terminal, once it has taken `delayMs`, shows a spinner
 * with `label` and the seconds elapsed, erased when the work ends. `work`
 * may change the label as it goes (e.g. "waiting for 3 of 5 agents").
 */
export async function withProgress<T>(label: string, work: (setLabel: (l: string) => void) => Promise<T>, options: ProgressOptions = {}): Promise<T> {
  const stream = options.stream ?? process.stderr;
  let current = label;
  if (stream.isTTY !== true) return work((l) => void (current = l));
  const started = performance.now();
  let frame = 0;
  let shown = false;
  const draw = () => {
    shown = true;
    const secs = Math.floor((performance.now() - started) / 1000);
    const spinner = paint(FRAMES[frame++ % FRAMES.length]!, 'yellow', stream, options.env);
    stream.write(`\r\u001b[2K${spinner} ${current} ${paint(`(${secs}s)`, 'dim', stream, options.env)}`);
  };
  let ticker: NodeJS.Timeout | undefined;
  const delay = setTimeout(() => {
    draw();
    ticker = setInterval(draw, options.intervalMs ?? 100);
  }, options.delayMs ?? 1000);
  try {
    return await work((l) => {
      current = l;
    });
  } finally {
    clearTimeout(delay);
    if (ticker) clearInterval(ticker);
    if (shown) stream.write('\r\u001b[2K');
  }
}
