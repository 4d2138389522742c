/**
 * Kernel credentials of the peer of a connected Unix socket, read through the
 * small N-API addon in agent/native/peercred.c (SO_PEERCRED and SO_PEERPIDFD).
 *
 * The credentials are the peer's as of connect(): the kernel fixes them then,
 * so a process that later exec()s or changes uid keeps reporting the old
 * values. The pidfd pins the exact process that connected, which is how
 * attestation detects that a pid was reused.
 */
import fs from 'node:fs';
import type net from 'node:net';
import { addonPath, loadAddon } from '../../ca/native/addon.js';
import { AttestationError } from './errors.js';

/** Who is on the other end of a Unix socket, per the kernel. */
export interface PeerCred {
  /** Process id, in the reader's pid namespace. */
  pid: number;
  /** Effective uid at connect time. */
  uid: number;
  /** Effective gid at connect time. */
  gid: number;
  /** A pidfd for the peer process (owned by whoever read it), or -1 when the kernel lacks SO_PEERPIDFD. */
  pidfd: number;
  /**
   * The process start time (field 22 of /proc/<pid>/stat, clock ticks since boot),
   * recorded at connect time only when there is no pidfd: the fallback guard
   * against pid reuse on older kernels.
   */
  startTime?: string;
}

interface NativePeercred {
  peercred(fd: number): { pid: number; uid: number; gid: number; pidfd: number };
  pidfdAlive(pidfd: number): boolean;
  closeFd(fd: number): void;
}

let native: NativePeercred | undefined;

/** Loads the addon on first use, so importing this module never fails by itself. */
function addon(): NativePeercred {
  if (native) return native;
  const file = addonPath('peercred');
  try {
    native = loadAddon<NativePeercred>('peercred');
  } catch (e) {
    throw new AttestationError('PEERCRED_UNAVAILABLE', `cannot load the peercred addon at ${file} (run npm install)`, {
      cause: e,
    });
  }
  return native;
}

/** The file descriptor behind a connected net.Socket (a private field of Node's handle). */
export function socketFd(socket: net.Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) {
    throw new AttestationError('PEERCRED_UNAVAILABLE', 'socket has no file descriptor (closed, or not a Unix socket)');
  }
  return fd;
}

/**
 * Reads the peer credentials of a connected Unix socket file descriptor.
 * The caller owns the returned pidfd and must release it with `closePidfd`.
 */
export function peerCredOfFd(fd: number): PeerCred {
  let raw: ReturnType<NativePeercred['peercred']>;
  try {
    raw = addon().peercred(fd);
  } catch (e) {
    if (e instanceof AttestationError) throw e;
    throw new AttestationError('PEERCRED_UNAVAILABLE', `cannot read peer credentials: ${(e as Error).message}`, {
      cause: e,
    });
  }
  const cred: PeerCred = { pid: raw.pid, uid: raw.uid, gid: raw.gid, pidfd: raw.pidfd };
  // pid 0 means the peer is in another pid namespace we cannot see into.
  if (cred.pid <= 0) {
    closePidfd(cred.pidfd);
    throw new AttestationError('PEERCRED_UNAVAILABLE', 'peer process is not visible from this pid namespace');
  }
  if (cred.pidfd < 0) {
    const startTime = readStartTimeSync(cred.pid);
    if (startTime !== undefined) cred.startTime = startTime;
  }
  return cred;
}

/** Reads the peer credentials of a connected Unix `net.Socket`. See `peerCredOfFd`. */
export function peerCredOf(socket: net.Socket): PeerCred {
  return peerCredOfFd(socketFd(socket));
}

/** True while the process behind `pidfd` has not exited. */
export function pidfdAlive(pidfd: number): boolean {
  return addon().pidfdAlive(pidfd);
}

/** Releases a pidfd from `peerCredOf`; a no-op for -1. */
export function closePidfd(pidfd: number): void {
  if (pidfd >= 0) addon().closeFd(pidfd);
}

/**
 * The start time field of /proc/<pid>/stat. The command name (field 2) is in
 * parentheses and may itself hold spaces or parentheses, so fields are counted
 * after the last ')'.
 */
export function parseStartTime(statText: string): string | undefined {
  const close = statText.lastIndexOf(')');
  if (close < 0) return undefined;
  // After ')': field 3 (state) is index 0, so field 22 is index 19.
  const fields = statText.slice(close + 2).split(' ');
  return fields[19];
}

function readStartTimeSync(pid: number): string | undefined {
  try {
    return parseStartTime(fs.readFileSync(`/proc/${pid}/stat`, 'latin1'));
  } catch {
    return undefined;
  }
}
