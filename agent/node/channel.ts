/**
 * The agent's connection to the CA's node API over TLS. The server is
 * verified against the current bundle roots and must be the CA's serving
 * ID; once the agent holds an agent SVID, the "agent" client presents it
 * (mTLS). When the roots or the agent SVID change, new clients are created
 * for later calls, and the old ones close once their calls have finished.
 *
 * Given several CA addresses, the channel uses one at a time and sticks to
 * it; when it cannot be reached the channel moves to the next
 * (failover.ts) and repeats the call there, and a client whose connection
 * is failing is replaced by one to the next address before it is lent.
 *
 * A failed connection is otherwise left to grpc-js, which tries it again
 * after its own reconnect backoff (at most RECONNECT_WAIT_MAX_MS) and fails
 * calls at once meanwhile. That keeps a fleet that lost its CA from
 * dialling it in step with the agents' own retries. Only a retry racing an
 * expiry (redialIfExpiring) dials a new connection at once.
 */
import * as grpc from '@grpc/grpc-js';
import { NodeServiceClient } from '../../proto/gen/brevis/ca/v1/node.js';
import { certsToPem } from '../../spiffe/pem.js';
import { ServerList, failoverVerdict } from './failover.js';
import { caServerId, spiffeServerIdentityCheck } from './server-identity.js';

/** The credentials presented on mTLS calls. */
export interface ChannelIdentity {
  /** DER, leaf first. */
  readonly chain: readonly Buffer[];
  /** PKCS#8 PEM. */
  readonly keyPem: string;
}

/** Which client a call goes through: with the agent SVID, or without any client certificate (attestation). */
export type ChannelKind = 'agent' | 'anonymous';

export interface NodeChannelOptions {
  /** host:port of the node API, or several servers of the same CA (tried in order, failing over). */
  address: string | readonly string[];
  trustDomain: string;
  /** Root certificates, DER. */
  roots: readonly Buffer[];
  /** Told when the channel moves to another CA server (for a log line). */
  onFailover?: (from: string, to: string, reason: string) => void;
}

/** grpc-js's reconnect backoff: 500 ms growing to this (its default grows to 120 s). */
const RECONNECT_BACKOFF_MAX_MS = 5000;
/** The longest grpc-js waits before trying a failed connection again: its backoff plus its 20% jitter. */
export const RECONNECT_WAIT_MAX_MS = RECONNECT_BACKOFF_MAX_MS * 1.2;
/**
 * A retry racing an expiry closer than this dials a new connection. A CA
 * that returns earlier is reached by grpc-js's own reconnect with at least
 * RECONNECT_WAIT_MAX_MS to spare, in which the agent's retries (at most
 * half the time left apart, sync/backoff.ts) still come; one that returns
 * later might not be. The margin covers the handshake and the call.
 */
export const REDIAL_WITHIN_MS = 2 * RECONNECT_WAIT_MAX_MS;

/** Messages of a batch of 500 SVIDs are well below this. */
const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

interface Slot {
  address: string;
  client: NodeServiceClient;
  inFlight: number;
  retired: boolean;
}

export class NodeChannel {
  readonly trustDomain: string;
  readonly #servers: ServerList;
  readonly #onFailover: NodeChannelOptions['onFailover'];
  #roots: readonly Buffer[];
  #identity: ChannelIdentity | null = null;
  readonly #slots = new Map<ChannelKind, Slot>();
  readonly #check: ReturnType<typeof spiffeServerIdentityCheck>;
  #closed = false;

  constructor(options: NodeChannelOptions) {
    if (options.roots.length === 0) throw new TypeError('NodeChannel needs at least one root certificate');
    this.#servers = new ServerList(typeof options.address === 'string' ? [options.address] : options.address);
    this.#onFailover = options.onFailover;
    this.trustDomain = options.trustDomain;
    this.#roots = [...options.roots];
    this.#check = spiffeServerIdentityCheck(caServerId(options.trustDomain));
  }

  /** The CA server in use. */
  get address(): string {
    return this.#servers.current;
  }

  /** Every configured CA server, in order. */
  get addresses(): readonly string[] {
    return this.#servers.addresses;
  }

  get roots(): readonly Buffer[] {
    return this.#roots;
  }

  get hasIdentity(): boolean {
    return this.#identity !== null;
  }

  /** New roots apply to calls started from now on. No-op when unchanged. */
  setRoots(roots: readonly Buffer[]): void {
    if (roots.length === 0) throw new TypeError('NodeChannel needs at least one root certificate');
    if (roots.length === this.#roots.length && roots.every((r, i) => r.equals(this.#roots[i]!))) return;
    this.#roots = [...roots];
    this.#retire('agent');
    this.#retire('anonymous');
  }

  /** The agent SVID presented on "agent" calls from now on. */
  setIdentity(identity: ChannelIdentity | null): void {
    this.#identity = identity;
    this.#retire('agent');
  }

  /**
   * Runs `fn` with a client of the given kind, keeping that client open
   * until `fn` settles even if the credentials change meanwhile. When the
   * server cannot be reached and others are configured, moves on and runs
   * `fn` again on the next one, at most once per server.
   */
  async use<T>(kind: ChannelKind, fn: (client: NodeServiceClient) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      if (this.#closed) throw new Error('the node API channel is closed');
      const slot = this.#slot(kind);
      slot.inFlight++;
      try {
        return await fn(slot.client);
      } catch (e) {
        const verdict = failoverVerdict(e);
        if (verdict === 'stay') throw e;
        // A no-op when there is one server, or another call already moved on.
        this.#moveOn(slot.address, e instanceof Error ? e.message : String(e));
        const moved = this.#servers.current !== slot.address;
        if (!moved || verdict === 'switch' || attempt >= this.#servers.size) throw e;
      } finally {
        slot.inFlight--;
        if (slot.retired && slot.inFlight === 0) slot.client.close();
      }
    }
  }

  /**
   * Before a retry racing `deadlineMs` (the earliest expiry of what the
   * retry would renew, null: none): when it is within REDIAL_WITHIN_MS,
   * clients whose connection is failing are dropped, so that the retry
   * dials at once instead of failing until grpc-js's reconnect backoff
   * ends, which could be after the expiry even though the CA is back.
   * The retries' own jitter spreads these dials. Several servers need
   * nothing here: a failing client is replaced by one to the next server
   * anyway. Returns whether a client was dropped.
   */
  redialIfExpiring(nowMs: number, deadlineMs: number | null): boolean {
    if (deadlineMs === null || deadlineMs - nowMs > REDIAL_WITHIN_MS || this.#servers.size > 1) return false;
    let dropped = false;
    for (const [kind, slot] of [...this.#slots]) {
      if (!connectionFailing(slot)) continue;
      this.#retire(kind);
      dropped = true;
    }
    return dropped;
  }

  close(): void {
    this.#closed = true;
    this.#retire('agent');
    this.#retire('anonymous');
  }

  /** Leaves `failed` for the next server, if it is still the one in use. */
  #moveOn(failed: string, reason: string): void {
    if (!this.#servers.advance(failed)) return;
    this.#retire('agent');
    this.#retire('anonymous');
    this.#onFailover?.(failed, this.#servers.current, reason);
  }

  #slot(kind: ChannelKind): Slot {
    const existing = this.#slots.get(kind);
    // A client whose connection keeps failing (the server is gone) would
    // fail the call at once: move on before lending it.
    if (existing && this.#servers.size > 1 && connectionFailing(existing)) {
      this.#moveOn(existing.address, 'the connection to it is failing');
    }
    const current = this.#slots.get(kind);
    if (current) return current;
    let key: Buffer | null = null;
    let chain: Buffer | null = null;
    if (kind === 'agent') {
      if (!this.#identity) throw new Error('no agent SVID yet: attest before calling the node API with mTLS');
      key = Buffer.from(this.#identity.keyPem);
      chain = Buffer.from(certsToPem(this.#identity.chain));
    }
    const creds = grpc.credentials.createSsl(Buffer.from(certsToPem(this.#roots)), key, chain, {
      checkServerIdentity: this.#check,
    });
    const address = this.#servers.current;
    const client = new NodeServiceClient(address, creds, {
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
      'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
      // grpc-js's own reconnect backoff grows to 120 s by default; keep it
      // below the agent's retry cap so a returning CA is noticed promptly.
      'grpc.initial_reconnect_backoff_ms': 500,
      'grpc.max_reconnect_backoff_ms': RECONNECT_BACKOFF_MAX_MS,
      // No channelz service reads grpc-js's per-call channelz bookkeeping.
      'grpc.enable_channelz': 0,
      // SNI: the trust domain rather than the address (Node refuses an IP
      // as server name); the check above ignores host names anyway.
      'grpc.ssl_target_name_override': this.trustDomain,
    });
    const slot: Slot = { address, client, inFlight: 0, retired: false };
    this.#slots.set(kind, slot);
    return slot;
  }

  #retire(kind: ChannelKind): void {
    const slot = this.#slots.get(kind);
    if (!slot) return;
    this.#slots.delete(kind);
    slot.retired = true;
    if (slot.inFlight === 0) slot.client.close();
  }
}

/** The slot's connection failed and grpc-js is waiting out its reconnect backoff: calls on it fail at once. */
function connectionFailing(slot: Slot): boolean {
  return slot.client.getChannel().getConnectivityState(false) === grpc.connectivityState.TRANSIENT_FAILURE;
}
