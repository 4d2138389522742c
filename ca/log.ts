/**
 * Logs on stderr: JSON lines (pino) for machines, or pino-pretty's coloured
 * lines when stderr is a terminal. Lines written while serving a gRPC call
 * carry its request id (ca/metrics/request-context.ts). Secrets are redacted
 * by path as a second line of defence.
 */
import { pino, type DestinationStream, type Logger } from 'pino';
import PinoPretty from 'pino-pretty';
import { requestLogFields } from './metrics/request-context.js';

export interface LoggerOptions {
  /** Human-readable lines instead of JSON; default: when stderr is a terminal. */
  pretty?: boolean;
  /** Colours in human-readable lines; default: when stderr is a terminal. */
  colorize?: boolean;
  /** Where lines go; default stderr. */
  destination?: DestinationStream;
}

export function createLogger(level: string, name: string, options: LoggerOptions = {}): Logger {
  const tty = process.stderr.isTTY === true;
  const pretty = options.pretty ?? tty;
  const destination = pretty
    ? PinoPretty({
        destination: options.destination ?? 2,
        colorize: options.colorize ?? tty,
        translateTime: 'SYS:HH:MM:ss.l',
        ignore: 'pid,hostname',
        sync: true,
      })
    : (options.destination ?? pino.destination({ fd: 2, sync: false }));
  return pino(
    {
      name,
      level,
      redact: { paths: ['token', 'secret', 'privateKey', 'key', '*.token', '*.privateKey'], censor: '[redacted]' },
      base: { pid: process.pid },
      mixin: requestLogFields,
    },
    destination,
  );
}
