import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { fileSha256 } from '../agent/attest/digest.js';
import { isAttestationError } from '../agent/attest/errors.js';
import { NAME_CACHE_TTL_MS, idNames, parseIdFile } from '../agent/attest/names.js';
import { closePidfd, parseStartTime, peerCredOf, pidfdAlive, type PeerCred } from '../agent/attest/peercred.js';
import { attestUnixProcess, entryMatches, parseProcStatus } from '../agent/attest/unix.js';
import type { Clock } from '../spiffe/clock.js';

let dir: string;
let server: net.Server;
let socketPath: string;
const accepted: net.Socket[] = [];
const creds: PeerCred[] = [];
const children: ChildProcess[] = [];

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'brevis-attest-'));
  // Traversable by the unprivileged child of the setpriv test.
  fs.chmodSync(dir, 0o755);
  socketPath = path.join(dir, 'peer.sock');
  server = net.createServer((s) => accepted.push(s));
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  fs.chmodSync(socketPath, 0o777);
});

afterEach(() => {
  for (const c of creds.splice(0)) closePidfd(c.pidfd);
  for (const s of accepted.splice(0)) s.destroy();
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  fs.rmSync(dir, { recursive: true, force: true });
});

/** The server side of the next accepted connection, and its peer credentials. */
async function nextPeer(): Promise<{ socket: net.Socket; cred: PeerCred }> {
  const socket = await new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const cred = peerCredOf(socket);
  creds.push(cred);
  return { socket, cred };
}

/** Connects from this very process. */
async function selfPeer(): Promise<PeerCred> {
  const peer = nextPeer();
  const client = net.connect(socketPath);
  accepted.push(client);
  return (await peer).cred;
}

/** Connects from a child `node` process that exits when sent a byte. */
async function childPeer(prefix: string[] = []): Promise<{ child: ChildProcess; socket: net.Socket; cred: PeerCred }> {
  const peer = nextPeer();
  const script = "const s=require('node:net').connect(process.argv[1]);s.on('data',()=>process.exit(0));";
  const argv = [...prefix, process.execPath, '-e', script, socketPath];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: 'ignore' });
  children.push(child);
  return { child, ...(await peer) };
}

function sha256File(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** The kernel's supplementary groups of `pid` (Node's getgroups() adds the egid, so it will not do). */
function supplementaryGroups(pid: number): string[] {
  const line = /^Groups:(.*)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]!;
  return line.split(/\s+/).filter(Boolean);
}

function getent(db: 'passwd' | 'group', id: number): string {
  return execFileSync('getent', [db, String(id)], { encoding: 'utf8' }).split(':')[0]!;
}

describe('peer credentials', () => {
  it('come from the kernel and name this process when it is the peer', async () => {
    const cred = await selfPeer();
    expect(cred).toMatchObject({ pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });
    expect(cred.pidfd).toBeGreaterThanOrEqual(0);
    expect(pidfdAlive(cred.pidfd)).toBe(true);
  });
});

describe('attestUnixProcess', () => {
  it('returns the uid, gid, names, supplementary groups, path and sha256 of the calling process', async () => {
    const cred = await selfPeer();
    const selectors = await attestUnixProcess(cred);
    const uid = process.getuid!();
    const gid = process.getgid!();
    const expected = [
      `unix:uid:${uid}`,
      `unix:user:${os.userInfo().username}`,
      `unix:gid:${gid}`,
      `unix:group:${getent('group', gid)}`,
      `unix:path:${fs.realpathSync(process.execPath)}`,
      `unix:sha256:${sha256File(process.execPath)}`,
      ...supplementaryGroups(cred.pid).map((g) => `unix:supplementary_gid:${g}`),
    ];
    expect(new Set(selectors)).toEqual(new Set([...expected, ...selectors.filter((s) => s.startsWith('unix:supplementary_group:'))]));
    for (const s of expected) expect(selectors).toContain(s);
  });

  it('attests a process running as another user with that user\'s credentials and supplementary groups', async () => {
    const { cred } = await childPeer(['setpriv', '--reuid=65534', '--regid=65534', '--groups=4,27']);
    expect(cred.uid).toBe(65534);
    const selectors = await attestUnixProcess(cred);
    expect(selectors).toEqual(
      expect.arrayContaining([
        'unix:uid:65534',
        'unix:gid:65534',
        `unix:user:${getent('passwd', 65534)}`,
        `unix:group:${getent('group', 65534)}`,
        `unix:path:${fs.realpathSync(process.execPath)}`,
      ]),
    );
    expect(selectors.filter((s) => s.startsWith('unix:supplementary_'))).toEqual([
      'unix:supplementary_gid:4',
      `unix:supplementary_group:${getent('group', 4)}`,
      'unix:supplementary_gid:27',
      `unix:supplementary_group:${getent('group', 27)}`,
    ]);
  });

  it('fails rather than describe another process when the peer exited before attestation', async () => {
    const { child, socket, cred } = await childPeer();
    const exited = new Promise((resolve) => child.once('exit', resolve));
    socket.write('x');
    await exited;
    expect(pidfdAlive(cred.pidfd)).toBe(false);
    const err = await attestUnixProcess(cred).catch((e: unknown) => e);
    expect(isAttestationError(err, 'PROCESS_GONE')).toBe(true);
  });

  it('without a pidfd, detects a replaced process by its start time', async () => {
    const cred = await selfPeer();
    const startTime = parseStartTime(fs.readFileSync(`/proc/${cred.pid}/stat`, 'latin1'));
    expect(startTime).toMatch(/^\d+$/);
    const same = await attestUnixProcess({ ...cred, pidfd: -1, startTime });
    expect(same).toContain(`unix:uid:${cred.uid}`);
    const err = await attestUnixProcess({ ...cred, pidfd: -1, startTime: `${startTime}1` }).catch((e: unknown) => e);
    expect(isAttestationError(err, 'PROCESS_GONE')).toBe(true);
  });

  it('fails when the process no longer runs as the uid it connected with', async () => {
    const cred = await selfPeer();
    const err = await attestUnixProcess({ ...cred, uid: cred.uid + 4242 }).catch((e: unknown) => e);
    expect(isAttestationError(err, 'ATTESTATION_FAILED')).toBe(true);
  });

  it('returns the credential-based selectors and logs why when the process cannot be inspected', async () => {
    const cred = await selfPeer();
    // A procfs where the executable cannot be read (as for another user's process without CAP_SYS_PTRACE).
    const procDir = path.join(dir, 'proc');
    fs.mkdirSync(path.join(procDir, String(cred.pid)), { recursive: true });
    fs.writeFileSync(
      path.join(procDir, String(cred.pid), 'status'),
      `Name:\tnode\nUid:\t${cred.uid}\t${cred.uid}\t${cred.uid}\t${cred.uid}\nGroups:\t4 27 \n`,
    );
    const warnings: { obj: object; msg: string }[] = [];
    const selectors = await attestUnixProcess(cred, { procDir, logger: { warn: (obj, msg) => warnings.push({ obj, msg }) } });
    expect(selectors).toContain(`unix:uid:${cred.uid}`);
    expect(selectors).toContain(`unix:gid:${cred.gid}`);
    expect(selectors).toContain('unix:supplementary_gid:4');
    expect(selectors).toContain('unix:supplementary_gid:27');
    expect(selectors.some((s) => s.startsWith('unix:path:') || s.startsWith('unix:sha256:'))).toBe(false);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.obj).toMatchObject({ pid: cred.pid, failed: { exe: 'ENOENT', sha256: 'ENOENT' } });
  });

  it('uses the kernel gid even when /proc says otherwise', async () => {
    const cred = await selfPeer();
    const selectors = await attestUnixProcess({ ...cred, gid: 4242 });
    expect(selectors).toContain('unix:gid:4242');
    expect(selectors).not.toContain(`unix:gid:${cred.gid}`);
  });
});

describe('executable digests', () => {
  it('are cached by file identity, so an unchanged identity is not hashed again', async () => {
    const file = path.join(dir, 'exe.bin');
    fs.writeFileSync(file, 'first version');
    const mtime = new Date('2024-01-01T00:00:00Z');
    fs.utimesSync(file, mtime, mtime);
    expect(await fileSha256(file)).toBe(sha256File(file));
    const firstDigest = sha256File(file);
    // Same size, same inode, mtime restored: the identity is unchanged, so the cached digest is returned.
    fs.writeFileSync(file, 'other version');
    fs.utimesSync(file, mtime, mtime);
    expect(await fileSha256(file)).toBe(firstDigest);
    // A new mtime is a new identity.
    fs.utimesSync(file, new Date(), new Date());
    expect(await fileSha256(file)).toBe(sha256File(file));
    expect(sha256File(file)).not.toBe(firstDigest);
  });
});

describe('user and group names', () => {
  it('parse passwd and group files, skipping comments, NIS lines and malformed lines, first id wins', () => {
    const names = parseIdFile(
      ['# comment', 'root:x:0:0:root:/root:/bin/bash', '+nis', 'broken:x', 'bad:x:abc:1', 'toor:x:0:0::/:/bin/sh', 'web:x:1000:1000::/:/bin/sh', ''].join('\n'),
    );
    expect([...names]).toEqual([
      [0, 'root'],
      [1000, 'web'],
    ]);
    expect(parseIdFile('docker:x:999:alice,bob\n').get(999)).toBe('docker');
  });

  it('are re-read only after the cache TTL', async () => {
    let nowMs = Date.parse('2025-01-01T00:00:00Z');
    const clock: Clock = { now: () => new Date(nowMs), sleep: async () => {} };
    const file = path.join(dir, 'passwd');
    fs.writeFileSync(file, 'alice:x:1000:1000::/:/bin/sh\n');
    expect((await idNames(file, clock)).get(1000)).toBe('alice');
    fs.writeFileSync(file, 'bob:x:1000:1000::/:/bin/sh\n');
    nowMs += NAME_CACHE_TTL_MS - 1;
    expect((await idNames(file, clock)).get(1000)).toBe('alice');
    nowMs += 1;
    expect((await idNames(file, clock)).get(1000)).toBe('bob');
  });
});

describe('parseProcStatus', () => {
  it('reads the four uids and the supplementary groups, which may be empty', () => {
    expect(parseProcStatus('Name:\tx\nUid:\t1\t2\t3\t4\nGid:\t5\t5\t5\t5\nGroups:\t10 20 \n')).toEqual({
      uids: [1, 2, 3, 4],
      groups: [10, 20],
    });
    expect(parseProcStatus('Uid:\t0\t0\t0\t0\nGroups:\t\n').groups).toEqual([]);
  });

  it('finds the start time after a command name holding spaces and parentheses', () => {
    const fields = Array.from({ length: 50 }, (_, i) => String(i + 3));
    expect(parseStartTime(`123 (a) b (c) ${fields.join(' ')}`)).toBe('22');
  });
});

describe('entryMatches', () => {
  const workload = new Set(['unix:uid:1000', 'unix:gid:1000', 'unix:path:/usr/bin/node']);

  it('matches when all of the entry\'s selectors are among the workload\'s', () => {
    expect(entryMatches(['unix:uid:1000'], workload)).toBe(true);
    expect(entryMatches(['unix:uid:1000', 'unix:path:/usr/bin/node'], workload)).toBe(true);
  });

  it('does not match when any selector is missing, or when the entry has none', () => {
    expect(entryMatches(['unix:uid:1000', 'unix:gid:0'], workload)).toBe(false);
    expect(entryMatches(['unix:uid:100'], workload)).toBe(false);
    expect(entryMatches([], workload)).toBe(false);
  });
});
