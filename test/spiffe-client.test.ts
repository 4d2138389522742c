import { sign, verify, X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { SpiffeWorkloadAPIClient, type X509SVIDResponse } from '../proto/gen/workload.js';
import {
  parseWorkloadApiAddress,
  WorkloadApiClient,
  WorkloadApiError,
  type X509Context,
} from '../spiffe/workload-client.js';
import { pickSvidByHint, pickSvidById, X509Source } from '../spiffe/x509-source.js';
import { FakeWorkloadApi, makeDomain, tempDir, x509Response, type TestDomain, type TestSvid } from './support/mtls-fixtures.js';

let example: TestDomain;
let other: TestDomain;
let web: TestSvid;
let db: TestSvid;

beforeAll(async () => {
  example = await makeDomain('example.org');
  other = await makeDomain('other.org');
  web = await example.svid('/web');
  db = await example.svid('/db');
});

function responseFor(...svids: TestSvid[]): X509SVIDResponse {
  return x509Response(
    svids.map((svid, i) => ({ svid, bundle: [example.root.der], hint: `hint-${i}` })),
    { 'spiffe://other.org': [other.root.der] },
  );
}

async function eventually(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function rejection(p: Promise<unknown>): Promise<WorkloadApiError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(WorkloadApiError);
  return err as WorkloadApiError;
}

function thrown(fn: () => unknown): WorkloadApiError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(WorkloadApiError);
    return e as WorkloadApiError;
  }
  throw new Error('expected a throw');
}

describe('Workload API address', () => {
  it('accepts unix:///abs, unix:/abs and a bare absolute path', () => {
    expect(parseWorkloadApiAddress('unix:///run/agent.sock')).toBe('/run/agent.sock');
    expect(parseWorkloadApiAddress('unix:/run/agent.sock')).toBe('/run/agent.sock');
    expect(parseWorkloadApiAddress('UNIX:///run/a%20b.sock')).toBe('/run/a b.sock');
    expect(parseWorkloadApiAddress('/run/agent.sock')).toBe('/run/agent.sock');
  });

  it.each([
    ['', 'empty'],
    ['run/agent.sock', 'URI'],
    ['tcp://127.0.0.1:8081', "scheme 'tcp'"],
    ['unix://host/run/agent.sock', 'authority'],
    ['unix:run/agent.sock', 'absolute'],
    ['unix:///run/agent.sock?x=1', 'query'],
    ['unix:///run/agent.sock#f', 'fragment'],
    ['unix:///run/%zz', 'percent'],
  ])('refuses %j with a message about the %s', (address, word) => {
    const err = thrown(() => parseWorkloadApiAddress(address));
    expect(err.code).toBe('INVALID_ADDRESS');
    expect(err.message).toContain(word);
  });

  it('requires the environment variable to be a URI, not a bare path', () => {
    expect(thrown(() => parseWorkloadApiAddress('/run/agent.sock', false)).code).toBe('INVALID_ADDRESS');
  });

  describe('from SPIFFE_ENDPOINT_SOCKET', () => {
    const saved = process.env.SPIFFE_ENDPOINT_SOCKET;
    afterEach(() => {
      if (saved === undefined) delete process.env.SPIFFE_ENDPOINT_SOCKET;
      else process.env.SPIFFE_ENDPOINT_SOCKET = saved;
    });

    it('uses the variable when no address is given', () => {
      process.env.SPIFFE_ENDPOINT_SOCKET = 'unix:///tmp/brevis-test/agent.sock';
      const client = new WorkloadApiClient();
      expect(client.socketPath).toBe('/tmp/brevis-test/agent.sock');
      client.close();
    });

    it('says how to configure the address when there is none', () => {
      delete process.env.SPIFFE_ENDPOINT_SOCKET;
      const err = thrown(() => new WorkloadApiClient());
      expect(err.code).toBe('INVALID_ADDRESS');
      expect(err.message).toContain('SPIFFE_ENDPOINT_SOCKET');
    });
  });
});

describe('WorkloadApiClient against a real Workload API server', () => {
  let dir: string;
  let api: FakeWorkloadApi;
  const clients: WorkloadApiClient[] = [];
  const newClient = (socketPath = `unix://${api.socketPath}`) => {
    const c = new WorkloadApiClient({ socketPath, backoff: { initialMs: 20, maxMs: 100 } });
    clients.push(c);
    return c;
  };

  beforeEach(async () => {
    dir = tempDir('brevis-wlclient-');
    api = new FakeWorkloadApi(path.join(dir, 'agent.sock'));
    await api.start();
  });

  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
    api.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('sends the security header and parses SVIDs, keys and bundles', async () => {
    api.setX509(responseFor(web, db));
    const ctx = await newClient().fetchX509Context();

    expect(api.headers).toEqual(['true']);
    expect(ctx.svids.map((s) => s.spiffeId.toString())).toEqual(['spiffe://example.org/web', 'spiffe://example.org/db']);
    const [first] = ctx.svids;
    expect(first!.chain.map((c) => c.toString('hex'))).toEqual(web.chain.map((c) => c.toString('hex')));
    expect(first!.hint).toBe('hint-0');
    expect(first!.keyDer.equals(web.keyDer)).toBe(true);
    const leaf = new X509Certificate(web.chain[0]!);
    expect(first!.notAfter.getTime()).toBe(new Date(leaf.validTo).getTime());
    const sig = sign(null, Buffer.from('hello'), first!.key);
    expect(verify(null, Buffer.from('hello'), leaf.publicKey, sig)).toBe(true);

    expect([...ctx.bundles.keys()].sort()).toEqual(['example.org', 'other.org']);
    expect(ctx.bundles.get('example.org')!.authorities.map((a) => a.toString('hex'))).toEqual([example.root.der.toString('hex')]);
    expect(ctx.bundles.get('other.org')!.hasAuthority(other.root.der)).toBe(true);
  });

  it('is refused with InvalidArgument by the server when the header is missing', async () => {
    const raw = new SpiffeWorkloadAPIClient(api.address, grpc.credentials.createInsecure());
    const status = await new Promise<grpc.status>((resolve) => {
      const call = raw.fetchX509Svid({});
      call.on('data', () => resolve(grpc.status.OK));
      call.on('error', (e: grpc.ServiceError) => resolve(e.code));
    });
    raw.close();
    expect(status).toBe(grpc.status.INVALID_ARGUMENT);
    expect(api.headers).toEqual([undefined]);
  });

  it('fetches the X.509 bundles', async () => {
    api.setBundles({ crl: [], bundles: { 'example.org': example.root.der, 'spiffe://other.org': other.root.der } });
    const bundles = await newClient().fetchX509Bundles();
    expect([...bundles.keys()].sort()).toEqual(['example.org', 'other.org']);
    expect(bundles.get('other.org')!.hasAuthority(other.root.der)).toBe(true);
    expect(api.headers).toEqual(['true']);
  });

  it('fails a one-shot fetch with UNAVAILABLE when no agent listens', async () => {
    const err = await rejection(newClient(`unix://${path.join(dir, 'nobody.sock')}`).fetchX509Context());
    expect(err.code).toBe('UNAVAILABLE');
  });

  it('refuses a response whose spiffe_id does not match the leaf', async () => {
    const res = responseFor(web);
    res.svids[0]!.spiffeId = 'spiffe://example.org/not-web';
    api.setX509(res);
    const err = await rejection(newClient().fetchX509Context());
    expect(err.code).toBe('INVALID_RESPONSE');
    expect(err.message).toContain('does not match');
  });

  it('refuses a response whose key belongs to another SVID, without quoting the key', async () => {
    const res = responseFor(web);
    res.svids[0]!.x509SvidKey = db.keyDer;
    api.setX509(res);
    const err = await rejection(newClient().fetchX509Context());
    expect(err.code).toBe('INVALID_RESPONSE');
    expect(err.message).not.toContain(db.keyDer.toString('base64').slice(0, 20));
    expect(err.message).not.toContain(db.keyDer.toString('hex').slice(0, 20));
  });

  it('delivers every stream message to a watcher', async () => {
    api.setX509(responseFor(web));
    const seen: X509Context[] = [];
    const stop = new AbortController();
    const watching = newClient().watchX509Context((ctx) => seen.push(ctx), { signal: stop.signal });
    await eventually(() => seen.length === 1, 'the first context');
    api.setX509(responseFor(db, web));
    await eventually(() => seen.length === 2, 'the second context');
    expect(seen[1]!.svids[0]!.spiffeId.toString()).toBe('spiffe://example.org/db');
    stop.abort();
    await expect(watching).resolves.toBeUndefined();
    await eventually(() => api.openStreams === 0, 'the stream to close');
  });

  it('reconnects after the agent restarts and delivers the new state', async () => {
    api.setX509(responseFor(web));
    const seen: X509Context[] = [];
    const errors: WorkloadApiError[] = [];
    const stop = new AbortController();
    const watching = newClient().watchX509Context((ctx) => seen.push(ctx), {
      signal: stop.signal,
      onError: (e) => errors.push(e),
    });
    await eventually(() => seen.length === 1, 'the first context');

    api.stop();
    await eventually(() => errors.length >= 1, 'the watch to notice');
    api = new FakeWorkloadApi(api.socketPath);
    api.setX509(responseFor(db));
    await api.start();

    await eventually(() => seen.length === 2, 'the context from the restarted agent');
    expect(seen[1]!.svids[0]!.spiffeId.toString()).toBe('spiffe://example.org/db');
    expect(errors.every((e) => e.code === 'UNAVAILABLE')).toBe(true);
    stop.abort();
    await watching;
  });

  it('reconnects when the agent ends the stream', async () => {
    api.setX509(responseFor(web));
    let updates = 0;
    const stop = new AbortController();
    const watching = newClient().watchX509Context(() => updates++, { signal: stop.signal });
    await eventually(() => updates === 1, 'the first context');
    api.endStreams();
    await eventually(() => updates === 2 && api.headers.length === 2, 'a second stream');
    stop.abort();
    await watching;
  });

  it('keeps retrying while the agent says PermissionDenied, then delivers', async () => {
    api.failWith = { code: grpc.status.PERMISSION_DENIED, details: 'no identity issued' };
    api.setX509(responseFor(web));
    const errors: string[] = [];
    let ctx: X509Context | undefined;
    const stop = new AbortController();
    const watching = newClient().watchX509Context((c) => (ctx = c), {
      signal: stop.signal,
      onError: (e) => errors.push(e.code),
    });
    await eventually(() => errors.length >= 3, 'several refusals');
    expect(ctx).toBeUndefined();
    api.failWith = undefined;
    await eventually(() => ctx !== undefined, 'the context');
    expect(new Set(errors)).toEqual(new Set(['PERMISSION_DENIED']));
    stop.abort();
    await watching;
  });

  it('never retries InvalidArgument', async () => {
    api.failWith = { code: grpc.status.INVALID_ARGUMENT, details: 'bad request' };
    const err = await rejection(newClient().watchX509Context(() => undefined));
    expect(err.code).toBe('INVALID_ARGUMENT');
    await new Promise((r) => setTimeout(r, 200));
    expect(api.headers).toHaveLength(1);
  });

  it('reports an unusable message and keeps the stream for the next one', async () => {
    const bad = responseFor(web);
    bad.svids[0]!.x509Svid = Buffer.from([0x30, 0x82, 0x01]);
    api.setX509(bad);
    const errors: WorkloadApiError[] = [];
    let ctx: X509Context | undefined;
    const stop = new AbortController();
    const watching = newClient().watchX509Context((c) => (ctx = c), {
      signal: stop.signal,
      onError: (e) => errors.push(e),
    });
    await eventually(() => errors.length === 1, 'the parse error');
    expect(errors[0]!.code).toBe('INVALID_RESPONSE');
    api.setX509(responseFor(db));
    await eventually(() => ctx !== undefined, 'the valid context');
    expect(ctx!.svids[0]!.spiffeId.toString()).toBe('spiffe://example.org/db');
    expect(api.headers).toHaveLength(1);
    stop.abort();
    await watching;
  });
});

describe('X509Source', () => {
  let dir: string;
  let api: FakeWorkloadApi;
  const sources: X509Source[] = [];
  const create = async (opts: Parameters<typeof X509Source.create>[0] = {}) => {
    const s = await X509Source.create({ socketPath: api.socketPath, backoff: { initialMs: 20, maxMs: 100 }, ...opts });
    sources.push(s);
    return s;
  };

  beforeEach(async () => {
    dir = tempDir('brevis-x509source-');
    api = new FakeWorkloadApi(path.join(dir, 'agent.sock'));
    await api.start();
  });

  afterEach(async () => {
    for (const s of sources.splice(0)) await s.close();
    api.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('resolves with the first context and serves the default SVID and bundles', async () => {
    api.setX509(responseFor(web, db));
    const source = await create();
    expect(source.getX509Svid().spiffeId.toString()).toBe('spiffe://example.org/web');
    expect(source.getX509Svids()).toHaveLength(2);
    expect(source.getBundle('example.org')!.hasAuthority(example.root.der)).toBe(true);
    expect(source.getBundle('spiffe://other.org')!.hasAuthority(other.root.der)).toBe(true);
    expect(source.getBundle('nowhere.org')).toBeUndefined();
  });

  it('picks an SVID by SPIFFE ID or by hint', async () => {
    api.setX509(responseFor(web, db));
    expect((await create({ picker: pickSvidById('spiffe://example.org/db') })).getX509Svid().spiffeId.path).toBe('/db');
    expect((await create({ picker: pickSvidByHint('hint-1') })).getX509Svid().spiffeId.path).toBe('/db');
    const none = await create({ picker: pickSvidByHint('absent') });
    expect(() => none.getX509Svid()).toThrow(WorkloadApiError);
  });

  it("emits 'update' and holds the new SVID after the agent pushes a rotation", async () => {
    api.setX509(responseFor(web));
    const source = await create();
    const rotated = await example.svid('/web');
    const updated = new Promise<X509Context>((resolve) => source.once('update', resolve));
    api.setX509(responseFor(rotated));
    const ctx = await updated;
    expect(ctx.svids[0]!.chain[0]!.equals(rotated.chain[0]!)).toBe(true);
    expect(source.getX509Svid().chain[0]!.equals(rotated.chain[0]!)).toBe(true);
    expect(source.getX509Svid().chain[0]!.equals(web.chain[0]!)).toBe(false);
  });

  it('waits for an agent that starts late', async () => {
    api.stop();
    const creating = create();
    await new Promise((r) => setTimeout(r, 100));
    api = new FakeWorkloadApi(api.socketPath);
    api.setX509(responseFor(db));
    await api.start();
    expect((await creating).getX509Svid().spiffeId.path).toBe('/db');
  });

  it('gives up with CANCELLED when creation is aborted, naming the last failure', async () => {
    api.stop();
    const err = await rejection(create({ signal: AbortSignal.timeout(200) }));
    expect(err.code).toBe('CANCELLED');
    expect((err.cause as WorkloadApiError).code).toBe('UNAVAILABLE');
  });

  it('stops watching on close and refuses reads afterwards', async () => {
    api.setX509(responseFor(web));
    const source = await create();
    expect(api.openStreams).toBe(1);
    await source.close();
    await eventually(() => api.openStreams === 0, 'the stream to close');
    expect(() => source.getX509Svid()).toThrow(/closed/);
  });
});

describe('spiffe/index', () => {
  it('exports what services import', async () => {
    const api = await import('../spiffe/index.js');
    for (const name of ['X509Source', 'WorkloadApiClient', 'createMtlsServer', 'createHttpsMtlsServer', 'tlsClientOptions', 'grpcChannelCredentials', 'serveGrpcMtls', 'authorizeId', 'verifyX509Svid'] as const) {
      expect(typeof api[name], name).toBe('function');
    }
  });
});
