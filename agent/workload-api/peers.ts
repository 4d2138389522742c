/**
 * Kernel credentials of Workload API connections, found again from inside a
 * gRPC handler. grpc-js does not hand handlers the socket, but its
 * `call.getPeer()` returns the socket's `remoteAddress` when there is no
 * `remotePort` (the case for Unix sockets). So each accepted socket gets a
 * synthetic, unique `remoteAddress` that is the key into this registry.
 */
import type net from 'node:net';
import { closePidfd, type PeerCred } from '../attest/peercred.js';

interface Peer {
  cred: PeerCred;
  /** Attestations in flight: the pidfd is only closed once none are. */
  uses: number;
  disconnected: boolean;
}

/** The prefix of synthetic peer addresses; nothing real starts with it. */
const PREFIX = 'brevis-workload-peer:';

export class PeerRegistry {
  private readonly peers = new Map<string, Peer>();
  private next = 0;

  /**
   * Remembers `cred` for `socket` until the socket closes, and tags the socket
   * so that `call.getPeer()` returns the key. Takes ownership of the pidfd.
   */
  add(socket: net.Socket, cred: PeerCred): string {
    const id = `${PREFIX}${++this.next}`;
    // An own property shadows net.Socket's remoteAddress getter; http2's
    // socket proxy reads through to it.
    Object.defineProperty(socket, 'remoteAddress', { value: id, configurable: true });
    const peer: Peer = { cred, uses: 0, disconnected: false };
    this.peers.set(id, peer);
    socket.once('close', () => {
      peer.disconnected = true;
      this.peers.delete(id);
      if (peer.uses === 0) closePidfd(cred.pidfd);
    });
    return id;
  }

  /** Live connections. */
  get size(): number {
    return this.peers.size;
  }

  /**
   * Runs `fn` with the credentials of the connection `peerId` (from
   * `call.getPeer()`), keeping its pidfd open until `fn` settles: closing it
   * mid-attestation could let the fd number be reused for an unrelated file.
   * Returns undefined when the id is unknown (the connection already closed).
   */
  async use<T>(peerId: string, fn: (cred: PeerCred) => Promise<T>): Promise<T | undefined> {
    const peer = this.peers.get(peerId);
    if (!peer) return undefined;
    peer.uses++;
    try {
      return await fn(peer.cred);
    } finally {
      peer.uses--;
      if (peer.uses === 0 && peer.disconnected) closePidfd(peer.cred.pidfd);
    }
  }
}
