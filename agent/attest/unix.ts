/**
 * Unix workload attestation: facts about the process on the other end of a
 * Workload API connection, written as selectors.
 *
 * | selector                        | source                                             |
 * |---------------------------------|----------------------------------------------------|
 * | `unix:uid:<n>`, `unix:gid:<n>`  | kernel peer credentials (SO_PEERCRED), never /proc |
 * | `unix:user:<name>`              | /etc/passwd entry of that uid                      |
 * | `unix:group:<name>`             | /etc/group entry of that gid                       |
 * | `unix:supplementary_gid:<n>`    | `Groups:` of /proc/<pid>/status                    |
 * | `unix:supplementary_group:<n>`  | /etc/group names of those gids                     |
 * | `unix:path:<path>`              | readlink /proc/<pid>/exe                           |
 * | `unix:sha256:<hex>`             | SHA-256 of the executable (cached by file identity)|
 *
 * Path and sha256 name the executable: for an interpreter (node, python) they
 * identify the interpreter, not the script.
 */
import fs from 'node:fs';
import { type Clock, realClock } from '../../spiffe/clock.js';
import { fileSha256 } from './digest.js';
import { AttestationError } from './errors.js';
import { idNames } from './names.js';
import { type PeerCred, parseStartTime, pidfdAlive } from './peercred.js';

export { entryMatches } from './match.js';

/** The slice of a logger attestation uses; pino's logger fits. */
export interface AttestLogger {
  warn(obj: object, msg: string): void;
}

export interface UnixAttestOptions {
  /** Drives the TTL of the user/group name cache. */
  clock?: Clock;
  /** Told why a process could only be partly inspected. */
  logger?: AttestLogger;
  /** Where procfs is mounted; default `/proc`. */
  procDir?: string;
  /** Default `/etc/passwd`. */
  passwdFile?: string;
  /** Default `/etc/group`. */
  groupFile?: string;
}

/** The facts parsed from /proc/<pid>/status that attestation needs. */
export interface ProcStatus {
  /** Real, effective, saved and filesystem uids. */
  uids: number[];
  /** Supplementary group ids. */
  groups: number[];
}

/** Parses the `Uid:` and `Groups:` lines of /proc/<pid>/status. */
export function parseProcStatus(text: string): ProcStatus {
  const out: ProcStatus = { uids: [], groups: [] };
  for (const line of text.split('\n')) {
    if (line.startsWith('Uid:')) out.uids = numbers(line.slice(4));
    else if (line.startsWith('Groups:')) out.groups = numbers(line.slice(7));
  }
  return out;
}

/**
 * Attests the process described by `cred` and returns its selectors as
 * `type:value` strings.
 *
 * The /proc facts are read first, then the process is checked to still be the
 * one that connected (its pidfd has not exited, or its start time is unchanged
 * when there is no pidfd, and its effective uid is still the peer uid), so the
 * facts returned can never be another process's. Throws an AttestationError
 * (`PROCESS_GONE`, `ATTESTATION_FAILED`) when that check fails. When the
 * process is alive but cannot be inspected (another user's process and no
 * CAP_SYS_PTRACE, procfs mounted with hidepid), returns the credential-based
 * selectors only and tells the logger why.
 */
export async function attestUnixProcess(cred: PeerCred, opts: UnixAttestOptions = {}): Promise<string[]> {
  const clock = opts.clock ?? realClock;
  const base = `${opts.procDir ?? '/proc'}/${cred.pid}`;
  // procfs reads are synchronous: they cost microseconds and no disk I/O, and a
  // round trip through libuv's thread pool per read would dominate a call.
  const status = attempt(() => parseProcStatus(fs.readFileSync(`${base}/status`, 'utf8')));
  const exePath = attempt(() => fs.readlinkSync(`${base}/exe`));
  const [exeDigest, users, groups] = await Promise.allSettled([
    fileSha256(`${base}/exe`),
    idNames(opts.passwdFile ?? '/etc/passwd', clock),
    idNames(opts.groupFile ?? '/etc/group', clock),
  ]);

  ensureSameProcess(cred, base, status);

  const userNames = users.status === 'fulfilled' ? users.value : undefined;
  const groupNames = groups.status === 'fulfilled' ? groups.value : undefined;
  const selectors = [`unix:uid:${cred.uid}`];
  const user = userNames?.get(cred.uid);
  if (user !== undefined) selectors.push(`unix:user:${user}`);
  selectors.push(`unix:gid:${cred.gid}`);
  const group = groupNames?.get(cred.gid);
  if (group !== undefined) selectors.push(`unix:group:${group}`);
  if (status.status === 'fulfilled') {
    for (const gid of new Set(status.value.groups)) {
      selectors.push(`unix:supplementary_gid:${gid}`);
      const name = groupNames?.get(gid);
      if (name !== undefined) selectors.push(`unix:supplementary_group:${name}`);
    }
  }
  if (exePath.status === 'fulfilled') selectors.push(`unix:path:${exePath.value}`);
  if (exeDigest.status === 'fulfilled') selectors.push(`unix:sha256:${exeDigest.value}`);

  const failed: Record<string, string> = {};
  for (const [what, r] of [
    ['status', status],
    ['exe', exePath],
    ['sha256', exeDigest],
    ['passwd', users],
    ['group', groups],
  ] as const) {
    if (r.status === 'rejected') failed[what] = errorCode(r.reason);
  }
  if (Object.keys(failed).length > 0) {
    opts.logger?.warn(
      { pid: cred.pid, uid: cred.uid, failed },
      'workload process could only be partly inspected; some selectors are missing',
    );
  }
  return selectors;
}

/**
 * Throws unless the process at `cred.pid` is still the one that connected.
 * Called after the /proc reads: if the check passes, the pid could not have
 * been reused while they ran, since a pid is only reused after its process
 * exits and is reaped.
 */
function ensureSameProcess(cred: PeerCred, base: string, status: PromiseSettledResult<ProcStatus>): void {
  if (cred.pidfd >= 0) {
    if (!pidfdAlive(cred.pidfd)) throw gone(cred);
  } else if (cred.startTime !== undefined) {
    const now = attempt(() => parseStartTime(fs.readFileSync(`${base}/stat`, 'latin1')));
    if (now.status === 'rejected' || now.value !== cred.startTime) throw gone(cred);
  } else if (status.status === 'rejected' && errorCode(status.reason) === 'ENOENT') {
    throw gone(cred);
  }
  if (status.status === 'fulfilled') {
    const euid = status.value.uids[1];
    if (euid !== cred.uid) {
      throw new AttestationError(
        'ATTESTATION_FAILED',
        `process ${cred.pid} now runs as uid ${euid ?? '?'}, not uid ${cred.uid} it connected with`,
      );
    }
  }
}

function gone(cred: PeerCred): AttestationError {
  return new AttestationError('PROCESS_GONE', `process ${cred.pid} exited or was replaced during attestation`);
}

function attempt<T>(fn: () => T): PromiseSettledResult<T> {
  try {
    return { status: 'fulfilled', value: fn() };
  } catch (reason) {
    return { status: 'rejected', reason };
  }
}

function numbers(text: string): number[] {
  return text
    .trim()
    .split(/\s+/)
    .filter((t) => /^\d+$/.test(t))
    .map(Number);
}

function errorCode(e: unknown): string {
  const code = (e as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : 'ERROR';
}
