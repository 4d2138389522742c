/**
 * The rotation storm, observed from the CA's side: its audit log holds one
 * `x509.mint` record per SVID minted, with the time and the entry. The
 * benchmark reads the CA's database read-only (WAL lets it read while the
 * CA writes) and finds, for each entry, its first mint (the agent's
 * initial sync) and its second (the renewal).
 */
import sqlite3 from 'sqlite3';

interface MintRow {
  time_ms: number;
  outcome: 'success' | 'failure';
  detail: string | null;
}

export class AuditReader {
  private constructor(private readonly db: sqlite3.Database) {}

  static open(file: string): Promise<AuditReader> {
    return new Promise((resolve, reject) => {
      const db = new sqlite3.Database(file, sqlite3.OPEN_READONLY, (err) => (err ? reject(err) : resolve(new AuditReader(db))));
    });
  }

  /** x509.mint records of `caller`, oldest first. */
  mints(caller: string): Promise<MintRow[]> {
    return new Promise((resolve, reject) => {
      this.db.all<MintRow>(
        "SELECT time_ms, outcome, detail FROM audit WHERE caller = ? AND action = 'x509.mint' ORDER BY seq",
        [caller],
        (err, rows) => (err ? reject(err) : resolve(rows)),
      );
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.db.close(() => resolve()));
  }
}

export interface Generations {
  /** Per entry, the times of its successful mints, oldest first. */
  byEntry: Map<string, number[]>;
  failures: number;
}

export function generations(rows: MintRow[]): Generations {
  const byEntry = new Map<string, number[]>();
  let failures = 0;
  for (const r of rows) {
    if (r.outcome !== 'success') {
      failures++;
      continue;
    }
    const entry = r.detail?.replace(/^entry /, '') ?? '';
    let times = byEntry.get(entry);
    if (!times) byEntry.set(entry, (times = []));
    times.push(r.time_ms);
  }
  return { byEntry, failures };
}

export interface Wave {
  /** From the first to the last mint of the wave, seconds. */
  seconds: number;
  firstMs: number;
  lastMs: number;
  /** Most mints in any one-second bucket of the wave. */
  peakPerSecond: number;
}

/** The `n`-th mint (0: initial, 1: first renewal) of every entry, as a wave; undefined until all have it. */
export function wave(g: Generations, entries: readonly string[], n: number): Wave | undefined {
  const times: number[] = [];
  for (const id of entries) {
    const t = g.byEntry.get(id)?.[n];
    if (t === undefined) return undefined;
    times.push(t);
  }
  const firstMs = Math.min(...times);
  const lastMs = Math.max(...times);
  const buckets = new Map<number, number>();
  for (const t of times) {
    const b = Math.floor((t - firstMs) / 1000);
    buckets.set(b, (buckets.get(b) ?? 0) + 1);
  }
  return { seconds: (lastMs - firstMs) / 1000, firstMs, lastMs, peakPerSecond: Math.max(...buckets.values()) };
}
