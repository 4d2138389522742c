import 'reflect-metadata';
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as x509 from '@peculiar/x509';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { attestUnixProcess } from '../agent/attest/unix.js';
import { startWorkloadApiServer, type WorkloadApiServer } from '../agent/workload-api/server.js';
import {
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthClient,
  type HealthCheckResponse,
} from '../proto/gen/grpc/health/v1/health.js';
import { SpiffeWorkloadAPIClient, type X509BundlesResponse, type X509SVIDResponse } from '../proto/gen/workload.js';
import { MemoryProvider, makeTestPki, type TestPki } from './support/memory-provider.js';

const TD = 'example.org';
const ROOT = path.resolve(import.meta.dirname, '..');
const UID = process.getuid!();
const ME = `spiffe://${TD}/me`;

let pki: TestPki;
let dir: string;
let socketPath: string;
let provider: MemoryProvider;
let server: WorkloadApiServer | undefined;
const clients: grpc.Client[] = [];

beforeAll(async () => {
  pki = await makeTestPki(TD);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'brevis-wapi-'));
  // The setpriv test's unprivileged child must reach the socket and read its script.
  fs.chmodSync(dir, 0o755);
});

beforeEach(async () => {
  socketPath = path.join(dir, `agent-${Math.random().toString(36).slice(2)}.sock`);
  provider = new MemoryProvider(TD, [pki.rootDer]);
  provider.setEntries([{ selectors: [`unix:uid:${UID}`], svid: await pki.issue(ME) }]);
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await server?.close();
  server = undefined;
});

afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

async function start(overrides: Partial<Parameters<typeof startWorkloadApiServer>[0]> = {}): Promise<WorkloadApiServer> {
  server = await startWorkloadApiServer({ socketPath, provider, ...overrides });
  return server;
}

function client(): SpiffeWorkloadAPIClient {
  const c = new SpiffeWorkloadAPIClient(`unix://${socketPath}`, grpc.credentials.createInsecure());
  clients.push(c);
  return c;
}

function healthClient(): HealthClient {
  const c = new HealthClient(`unix://${socketPath}`, grpc.credentials.createInsecure());
  clients.push(c);
  return c;
}

function header(): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('workload.spiffe.io', 'true');
  return md;
}

/** A server stream as a queue of messages, ended by a status. */
class Received<T> {
  readonly messages: T[] = [];
  private waiters: (() => void)[] = [];
  status: grpc.StatusObject | undefined;
  error: grpc.ServiceError | undefined;

  constructor(readonly stream: grpc.ClientReadableStream<T>) {
    stream.on('data', (m: T) => this.push(() => this.messages.push(m)));
    stream.on('error', (e: grpc.ServiceError) => this.push(() => (this.error = e)));
    stream.on('status', (s: grpc.StatusObject) => this.push(() => (this.status = s)));
  }

  private push(apply: () => void): void {
    apply();
    for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves once `n` messages arrived (or fails if the stream ends first). */
  async count(n: number, timeoutMs = 5000): Promise<T[]> {
    await this.until(() => this.messages.length >= n || this.error !== undefined, timeoutMs);
    if (this.messages.length < n) throw new Error(`stream ended after ${this.messages.length} messages: ${this.error?.message}`);
    return this.messages;
  }

  /** Resolves with the error the stream ended with. */
  async ended(timeoutMs = 5000): Promise<grpc.ServiceError> {
    await this.until(() => this.error !== undefined, timeoutMs);
    return this.error!;
  }

  private until(cond: () => boolean, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      if (cond()) return resolve();
      const timer = setTimeout(() => reject(new Error('timed out waiting on stream')), timeoutMs);
      const check = () => {
        if (cond()) {
          clearTimeout(timer);
          resolve();
        } else this.waiters.push(check);
      };
      this.waiters.push(check);
    });
  }
}

function fetchSvids(md = header()): Received<X509SVIDResponse> {
  return new Received(client().fetchX509Svid({}, md));
}

function fetchBundles(md = header()): Received<X509BundlesResponse> {
  return new Received(client().fetchX509Bundles({}, md));
}

function unary<Res>(call: (cb: (e: grpc.ServiceError | null, r: Res) => void) => void): Promise<grpc.ServiceError | Res> {
  return new Promise((resolve) => call((e, r) => resolve(e ?? r)));
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

describe('FetchX509SVID', () => {
  it('sends the caller its SVID chain, PKCS#8 key and the trust domain bundle at once', async () => {
    await start();
    const svid = provider.svidsFor(new Set([`unix:uid:${UID}`]))[0]!;
    const [first] = await fetchSvids().count(1);
    expect(first!.svids).toHaveLength(1);
    const got = first!.svids[0]!;
    expect(got.spiffeId).toBe(ME);
    expect(got.x509Svid.equals(Buffer.concat(svid.chain))).toBe(true);
    expect(got.x509SvidKey.equals(svid.key)).toBe(true);
    expect(got.bundle.equals(pki.rootDer)).toBe(true);
    const leaf = new x509.X509Certificate(got.x509Svid);
    expect(leaf.getExtension(x509.SubjectAlternativeNameExtension)!.names.toJSON()).toEqual([{ type: 'url', value: ME }]);
    // The key really is the leaf's: sign with one, verify with the other.
    const key = await crypto.subtle.importKey('pkcs8', got.x509SvidKey, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
    const sig = await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, key, Buffer.from('proof'));
    const pub = await leaf.publicKey.export({ name: 'ECDSA', namedCurve: 'P-256' }, ['verify']);
    expect(await crypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, pub, sig, Buffer.from('proof'))).toBe(true);
  });

  it('attests the caller from its kernel credentials: uid, gid, user, executable path and digest', async () => {
    await start();
    await fetchSvids().count(1);
    const selectors = provider.asked.at(-1)!;
    const digest = createHash('sha256').update(fs.readFileSync(process.execPath)).digest('hex');
    expect(selectors).toEqual(
      new Set([
        ...selectors,
        `unix:uid:${UID}`,
        `unix:gid:${process.getgid!()}`,
        `unix:user:${os.userInfo().username}`,
        `unix:path:${fs.realpathSync(process.execPath)}`,
        `unix:sha256:${digest}`,
      ]),
    );
    expect([...selectors].filter((s) => /^unix:(uid|gid|user|path|sha256):/.test(s))).toHaveLength(5);
  });

  it('attests every call again, even on the same connection', async () => {
    let attestations = 0;
    await start({ attestor: (cred) => (attestations++, attestUnixProcess(cred)) });
    const c = client();
    const a = new Received(c.fetchX509Svid({}, header()));
    await a.count(1);
    const b = new Received(c.fetchX509Svid({}, header()));
    await b.count(1);
    expect(attestations).toBe(2);
  });

  it('refuses a call without the security header with InvalidArgument', async () => {
    await start();
    const err = await fetchSvids(new grpc.Metadata()).ended();
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toBe('security header missing');
    const md = new grpc.Metadata();
    md.set('workload.spiffe.io', 'false');
    expect((await fetchBundles(md).ended()).code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('answers Unavailable until the agent is ready', async () => {
    provider.setReady(false);
    await start();
    expect((await fetchSvids().ended()).code).toBe(grpc.status.UNAVAILABLE);
    expect((await fetchBundles().ended()).code).toBe(grpc.status.UNAVAILABLE);
    provider.setReady(true);
    expect((await fetchSvids().count(1))[0]!.svids[0]!.spiffeId).toBe(ME);
  });

  it('answers PermissionDenied to a caller that matches no entry', async () => {
    provider.setEntries([{ selectors: [`unix:uid:${UID + 1}`], svid: await pki.issue(`spiffe://${TD}/other`) }]);
    await start();
    const err = await fetchSvids().ended();
    expect(err.code).toBe(grpc.status.PERMISSION_DENIED);
    expect((await fetchBundles().ended()).code).toBe(grpc.status.PERMISSION_DENIED);
  });

  it('answers PermissionDenied when the caller cannot be attested', async () => {
    await start({
      attestor: async () => {
        const { AttestationError } = await import('../agent/attest/errors.js');
        throw new AttestationError('PROCESS_GONE', 'gone');
      },
    });
    expect((await fetchSvids().ended()).code).toBe(grpc.status.PERMISSION_DENIED);
  });

  it('streams a new full message when the caller\'s SVID rotates, and none for changes it cannot see', async () => {
    await start();
    const stream = fetchSvids();
    const [first] = await stream.count(1);
    // Changes that do not affect this caller: another workload's entry, and a bare signal.
    provider.setEntries([
      { selectors: [`unix:uid:${UID}`], svid: provider.svidsFor(new Set([`unix:uid:${UID}`]))[0]! },
      { selectors: ['unix:uid:4242'], svid: await pki.issue(`spiffe://${TD}/someone-else`) },
    ]);
    provider.changed();
    await sleep(100);
    const rotated = await pki.issue(ME);
    provider.setEntries([{ selectors: [`unix:uid:${UID}`], svid: rotated }]);
    const messages = await stream.count(2);
    await sleep(100);
    expect(messages).toHaveLength(2);
    expect(messages[1]!.svids[0]!.x509Svid.equals(rotated.chain[0]!)).toBe(true);
    expect(messages[1]!.svids[0]!.x509Svid.equals(first!.svids[0]!.x509Svid)).toBe(false);
    expect(messages[1]!.svids[0]!.bundle.equals(pki.rootDer)).toBe(true);
  });

  it('sends every identity the caller holds, default first, dropping repeated hints', async () => {
    const a = await pki.issue(`spiffe://${TD}/a`, { hint: 'internal' });
    const b = await pki.issue(`spiffe://${TD}/b`, { hint: 'internal' });
    const c = await pki.issue(`spiffe://${TD}/c`, { hint: 'external' });
    const d = await pki.issue(`spiffe://${TD}/d`);
    const e = await pki.issue(`spiffe://${TD}/e`);
    const mine = [`unix:uid:${UID}`];
    provider.setEntries([a, b, c, d, e].map((svid) => ({ selectors: mine, svid })));
    await start();
    const [msg] = await fetchSvids().count(1);
    expect(msg!.svids.map((s) => [s.spiffeId, s.hint])).toEqual([
      [`spiffe://${TD}/a`, 'internal'],
      [`spiffe://${TD}/c`, 'external'],
      [`spiffe://${TD}/d`, ''],
      [`spiffe://${TD}/e`, ''],
    ]);
  });

  it('answers Internal without crashing when the provider fails, and keeps serving', async () => {
    await start();
    const svidsFor = provider.svidsFor.bind(provider);
    provider.svidsFor = () => {
      throw new Error('cache corrupted');
    };
    const err = await fetchSvids().ended();
    expect(err.code).toBe(grpc.status.INTERNAL);
    expect(err.details).toBe('internal error');
    provider.svidsFor = svidsFor;
    provider.changed();
    expect((await fetchSvids().count(1))[0]!.svids[0]!.spiffeId).toBe(ME);
  });

  it('never sends an expired SVID, even if the provider returns one', async () => {
    provider.filterExpired = false;
    provider.setEntries([{ selectors: [`unix:uid:${UID}`], svid: await pki.issue(ME, { hours: -1 }) }]);
    await start();
    expect((await fetchSvids().ended()).code).toBe(grpc.status.PERMISSION_DENIED);
  });

  it('ends the stream with PermissionDenied when the caller loses its last identity', async () => {
    await start();
    const stream = fetchSvids();
    await stream.count(1);
    provider.setEntries([]);
    const err = await stream.ended();
    expect(err.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(stream.messages).toHaveLength(1);
    await sleep(20);
    expect(server!.openStreams()).toBe(0);
  });

  it('gives a workload running as another uid its own SVID', async () => {
    const nobody = `spiffe://${TD}/nobody`;
    provider.setEntries([
      { selectors: [`unix:uid:${UID}`], svid: await pki.issue(ME) },
      { selectors: ['unix:uid:65534', 'unix:gid:65534'], svid: await pki.issue(nobody) },
    ]);
    await start();
    const script = path.join(dir, 'fetch-id.cjs');
    fs.writeFileSync(script, FETCH_ID_SCRIPT, { mode: 0o644 });
    const out = await new Promise<string>((resolve, reject) =>
      execFile(
        'setpriv',
        ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, script, ROOT, `unix://${socketPath}`],
        { timeout: 20_000 },
        (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)),
      ),
    );
    expect(out.trim()).toBe(nobody);
    expect(provider.asked.some((s) => s.has('unix:uid:65534') && s.has('unix:gid:65534'))).toBe(true);
  });
});

describe('FetchX509Bundles', () => {
  it('sends the bundle keyed by trust domain, and again when it changes', async () => {
    await start();
    const stream = fetchBundles();
    const [first] = await stream.count(1);
    expect(Object.keys(first!.bundles)).toEqual([TD]);
    expect(first!.bundles[TD]!.equals(pki.rootDer)).toBe(true);
    // An SVID rotation does not change the bundles response.
    provider.setEntries([{ selectors: [`unix:uid:${UID}`], svid: await pki.issue(ME) }]);
    await sleep(100);
    expect(stream.messages).toHaveLength(1);
    const other = await makeTestPki(TD);
    provider.setBundle([pki.rootDer, other.rootDer]);
    const messages = await stream.count(2);
    expect(messages[1]!.bundles[TD]!.equals(Buffer.concat([pki.rootDer, other.rootDer]))).toBe(true);
  });
});

describe('JWT RPCs', () => {
  it('answer Unimplemented', async () => {
    await start();
    const c = client();
    const jwt = await unary((cb) => c.fetchJwtsvid({ audience: ['x'], spiffeId: '' }, header(), cb));
    expect((jwt as grpc.ServiceError).code).toBe(grpc.status.UNIMPLEMENTED);
    const validate = await unary((cb) => c.validateJwtsvid({ audience: 'x', svid: 'y' }, header(), cb));
    expect((validate as grpc.ServiceError).code).toBe(grpc.status.UNIMPLEMENTED);
    const bundles = await new Received(c.fetchJwtBundles({}, header())).ended();
    expect(bundles.code).toBe(grpc.status.UNIMPLEMENTED);
    const noHeader = await unary((cb) => c.fetchJwtsvid({ audience: ['x'], spiffeId: '' }, new grpc.Metadata(), cb));
    expect((noHeader as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
  });
});

describe('health', () => {
  it('reports NOT_SERVING until ready, then SERVING, for the server and SpiffeWorkloadAPI', async () => {
    provider.setReady(false);
    await start();
    const h = healthClient();
    const check = (service: string) => unary<HealthCheckResponse>((cb) => h.check({ service }, cb));
    expect(await check('')).toEqual({ status: ServingStatus.NOT_SERVING });
    expect(await check('SpiffeWorkloadAPI')).toEqual({ status: ServingStatus.NOT_SERVING });
    const watch = new Received(h.watch({ service: 'SpiffeWorkloadAPI' }));
    await watch.count(1);
    provider.setReady(true);
    const updates = await watch.count(2);
    expect(updates.map((u) => u.status)).toEqual([ServingStatus.NOT_SERVING, ServingStatus.SERVING]);
    expect(await check('')).toEqual({ status: ServingStatus.SERVING });
    expect(await check('SpiffeWorkloadAPI')).toEqual({ status: ServingStatus.SERVING });
    expect(((await check('nope')) as grpc.ServiceError).code).toBe(grpc.status.NOT_FOUND);
  });
});

describe('server lifecycle', () => {
  it('creates a socket any local user can connect to', async () => {
    await start();
    expect(fs.statSync(socketPath).mode & 0o777).toBe(0o777);
  });

  it('replaces a stale socket file but refuses a live socket or a path that is not a socket', async () => {
    // An agent that is killed leaves its socket file behind; while it lives, the socket is in use.
    const crashed = spawn(process.execPath, ['-e', `require('node:net').createServer().listen(process.argv[1], () => console.log('up'))`, socketPath]);
    await new Promise((resolve) => crashed.stdout.once('data', resolve));
    await expect(startWorkloadApiServer({ socketPath, provider })).rejects.toMatchObject({ code: 'SOCKET_IN_USE' });
    crashed.kill('SIGKILL');
    await new Promise((resolve) => crashed.once('exit', resolve));
    expect(fs.statSync(socketPath).isSocket()).toBe(true);
    await start();
    expect((await fetchSvids().count(1))[0]!.svids[0]!.spiffeId).toBe(ME);

    const file = path.join(dir, 'not-a-socket');
    fs.writeFileSync(file, 'keep me');
    await expect(startWorkloadApiServer({ socketPath: file, provider })).rejects.toMatchObject({ code: 'SOCKET_PATH_INVALID' });
    expect(fs.readFileSync(file, 'utf8')).toBe('keep me');
  });

  it('closes promptly with streams open, ending them with Unavailable and health watches with OK', async () => {
    await start({ shutdownGraceMs: 5000 });
    const streams = [fetchSvids(), fetchSvids(), fetchBundles()];
    for (const s of streams) await s.count(1);
    const watch = new Received(healthClient().watch({ service: '' }));
    await watch.count(1);
    expect(server!.openStreams()).toBe(3);
    const t0 = performance.now();
    await server!.close();
    server = undefined;
    expect(performance.now() - t0).toBeLessThan(1000);
    for (const s of streams) expect((await s.ended()).code).toBe(grpc.status.UNAVAILABLE);
    const deadline = Date.now() + 2000;
    while (watch.status === undefined && Date.now() < deadline) await sleep(10);
    expect(watch.status?.code).toBe(grpc.status.OK);
    expect(fs.existsSync(socketPath)).toBe(false);
    expect(provider.listenerCount).toBe(0);
  });

  it('forgets a stream the client cancels', async () => {
    await start();
    const stream = fetchSvids();
    await stream.count(1);
    expect(server!.openStreams()).toBe(1);
    stream.stream.cancel();
    const deadline = Date.now() + 2000;
    while (server!.openStreams() > 0 && Date.now() < deadline) await sleep(10);
    expect(server!.openStreams()).toBe(0);
  });
});

/**
 * Run as an unprivileged user: fetches its X509-SVIDs with grpc-js and prints
 * the first SPIFFE ID. Plain CommonJS, decoding only the field it needs.
 */
const FETCH_ID_SCRIPT = `
const { createRequire } = require('node:module');
const [root, address] = process.argv.slice(2);
const req = createRequire(root + '/package.json');
const grpc = req('@grpc/grpc-js');
const { BinaryReader } = req('@bufbuild/protobuf/wire');
function firstSpiffeId(buf) {
  const r = new BinaryReader(buf);
  while (r.pos < r.len) {
    const tag = r.uint32();
    if (tag >>> 3 === 1 && (tag & 7) === 2) {
      const svid = new BinaryReader(r.bytes());
      while (svid.pos < svid.len) {
        const t = svid.uint32();
        if (t >>> 3 === 1 && (t & 7) === 2) return svid.string();
        svid.skip(t & 7);
      }
    } else r.skip(tag & 7);
  }
  return '';
}
const Client = grpc.makeGenericClientConstructor({
  fetchX509Svid: {
    path: '/SpiffeWorkloadAPI/FetchX509SVID', requestStream: false, responseStream: true,
    requestSerialize: () => Buffer.alloc(0), requestDeserialize: (b) => b,
    responseSerialize: (b) => b, responseDeserialize: (b) => b,
  },
}, 'SpiffeWorkloadAPI');
const client = new Client(address, grpc.credentials.createInsecure());
const md = new grpc.Metadata();
md.set('workload.spiffe.io', 'true');
const stream = client.fetchX509Svid({}, md);
stream.on('data', (buf) => { process.stdout.write(firstSpiffeId(buf) + '\\n'); stream.cancel(); client.close(); });
stream.on('error', (e) => { if (e.code !== grpc.status.CANCELLED) { console.error(e.message); process.exit(1); } });
`;
