/**
 * Durations as operators write them: `90s`, `10m`, `1h`, `1h30m`, `7d`.
 * Parsed once, at the edge, into whole seconds.
 */
const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

export class DurationError extends Error {
  readonly code = 'INVALID_DURATION';
  constructor(message: string) {
    super(message);
    this.name = 'DurationError';
  }
}

/** Parses a duration into whole seconds. Throws DurationError on anything else. */
export function parseDuration(text: string): number {
  const s = text.trim();
  if (!/^(\d+[smhd])+$/.test(s)) {
    throw new DurationError(`invalid duration '${text}': write it like 90s, 10m, 1h or 1h30m`);
  }
  let total = 0;
  for (const m of s.matchAll(/(\d+)([smhd])/g)) {
    total += Number(m[1]) * UNIT_SECONDS[m[2]!]!;
  }
  if (!Number.isSafeInteger(total)) throw new DurationError(`duration '${text}' is too large`);
  return total;
}

/** Formats seconds the way parseDuration reads them (largest units first). */
export function formatDuration(seconds: number): string {
  if (seconds === 0) return '0s';
  let rest = Math.floor(seconds);
  let out = '';
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]] as const) {
    if (rest >= size) {
      out += `${Math.floor(rest / size)}${unit}`;
      rest %= size;
    }
  }
  return out;
}
