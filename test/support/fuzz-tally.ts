/** Counts the cases a hostile-input test tried, per RPC and outcome, and prints them as a table. */
import * as grpc from '@grpc/grpc-js';

export class FuzzTally {
  readonly #rows = new Map<string, Map<string, number>>();

  /** One case of `rpc` that ended with `outcome` (a status name, or e.g. "result INVALID_ARGUMENT"). */
  record(rpc: string, outcome: grpc.status | string): void {
    const name = typeof outcome === 'number' ? (grpc.status[outcome] ?? String(outcome)) : outcome;
    const row = this.#rows.get(rpc) ?? new Map<string, number>();
    row.set(name, (row.get(name) ?? 0) + 1);
    this.#rows.set(rpc, row);
  }

  get total(): number {
    let n = 0;
    for (const row of this.#rows.values()) for (const c of row.values()) n += c;
    return n;
  }

  casesOf(rpc: string): number {
    return [...(this.#rows.get(rpc)?.values() ?? [])].reduce((a, b) => a + b, 0);
  }

  /** A plain-text table: RPC, cases, outcomes. */
  format(title: string): string {
    const lines = [`${title}: ${this.total} cases`];
    const width = Math.max(4, ...[...this.#rows.keys()].map((k) => k.length));
    for (const [rpc, row] of [...this.#rows].sort(([a], [b]) => a.localeCompare(b))) {
      const n = [...row.values()].reduce((a, b) => a + b, 0);
      const outcomes = [...row].sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k} ${v}`).join(', ');
      lines.push(`  ${rpc.padEnd(width)}  ${String(n).padStart(6)}  ${outcomes}`);
    }
    return lines.join('\n');
  }
}
