/** Structured JSON logs on stderr. Secrets are redacted by path as a second line of defence. */
import { pino, type Logger } from 'pino';

export function createLogger(level: string, name: string): Logger {
  return pino(
    {
      name,
      level,
      redact: { paths: ['token', 'secret', 'privateKey', 'key', '*.token', '*.privateKey'], censor: '[redacted]' },
      base: { pid: process.pid },
    },
    pino.destination({ fd: 2, sync: false }),
  );
}
