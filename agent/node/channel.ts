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
    if (existing && this.#servers.size > 1 && existing.client.getChannel().getConnectivityState(false) === grpc.connectivityState.TRANSIENT_FAILURE) {
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
      'grpc.max_reconnect_backoff_ms': 5000,
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
