/**
 * Several CA servers behind one trust domain: the agent talks to one at a
 * time and sticks to it while it works, moving to the next in the list
 * when it cannot be reached. Every server has the same authorities and
 * state (a shared PostgreSQL datastore), so any of them will do.
 */
import * as grpc from '@grpc/grpc-js';
import { NodeApiError } from './errors.js';

const HOST_PORT = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

/**
 * Parses `HOST:PORT,HOST:PORT,...` (spaces around commas are fine). Throws
 * TypeError naming the bad element; duplicates are refused.
 */
export function parseServerList(text: string): string[] {
  const list = text.split(',').map((s) => s.trim());
  for (const a of list) {
    const m = HOST_PORT.exec(a);
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) throw new TypeError(`"${a}" is not HOST:PORT`);
  }
  const seen = new Set<string>();
  for (const a of list) {
    if (seen.has(a.toLowerCase())) throw new TypeError(`${a} is listed twice`);
    seen.add(a.toLowerCase());
  }
  return list;
}

/** The addresses in order, and which one is in use. */
export class ServerList {
  readonly addresses: readonly string[];
  #index = 0;

  constructor(addresses: readonly string[]) {
    if (addresses.length === 0) throw new TypeError('at least one CA address is needed');
    this.addresses = [...addresses];
  }

  get current(): string {
    return this.addresses[this.#index]!;
  }

  get size(): number {
    return this.addresses.length;
  }

  /**
   * Moves to the next address after `failed`, if `failed` is still the one
   * in use (several calls failing together move on once). Returns true
   * when it moved.
   */
  advance(failed: string): boolean {
    if (this.size === 1 || this.current !== failed) return false;
    this.#index = (this.#index + 1) % this.size;
    return true;
  }
}

/**
 * What a failed call means for the choice of server:
 * - 'retry': the server could not be reached or dropped the connection
 *   (UNAVAILABLE): move on and repeat the call on the next one;
 * - 'switch': it did not answer in time (DEADLINE_EXCEEDED): move on for
 *   later calls, but do not spend another deadline on this one;
 * - 'stay': it answered (refused, invalid, ...): the same answer would
 *   come from any server.
 */
export type FailoverVerdict = 'retry' | 'switch' | 'stay';

export function failoverVerdict(e: unknown): FailoverVerdict {
  const code = e instanceof NodeApiError ? e.grpcCode : (e as Partial<grpc.ServiceError> | undefined)?.code;
  if (code === grpc.status.UNAVAILABLE) return 'retry';
  if (code === grpc.status.DEADLINE_EXCEEDED) return 'switch';
  return 'stay';
}
