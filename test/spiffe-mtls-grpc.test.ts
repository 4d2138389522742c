import * as fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import type * as tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  HealthCheckResponse_ServingStatus,
  HealthClient,
  HealthService,
  type HealthServer,
} from '../proto/gen/grpc/health/v1/health.js';
import { authorizeAny, authorizeId, PeerRejectedError, type Authorizer } from '../spiffe/authorize.js';
import { grpcChannelCredentials, grpcPeerSpiffeId, serveGrpcMtls } from '../spiffe/grpc-mtls.js';
import {
  makeDomain,
  startWorkload,
  tempDir,
  x509Response,
  type TestDomain,
  type TestSvid,
  type TestWorkload,
} from './support/mtls-fixtures.js';

const SERVER_ID = 'spiffe://example.org/server';
const CLIENT_ID = 'spiffe://example.org/client';

let dir: string;
let example: TestDomain;
let serverSvid: TestSvid;
let clientSvid: TestSvid;
let server: TestWorkload;
let client: TestWorkload;
const closers: Array<() => unknown> = [];

beforeAll(async () => {
  dir = tempDir('brevis-grpc-mtls-');
  example = await makeDomain('example.org');
  serverSvid = await example.svid('/server');
  clientSvid = await example.svid('/client');
  server = await startWorkload(dir, 'server', x509Response([{ svid: serverSvid, bundle: [example.root.der] }]));
  client = await startWorkload(dir, 'client', x509Response([{ svid: clientSvid, bundle: [example.root.der] }]));
});

afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

afterAll(async () => {
  await Promise.all([server, client].map((w) => w?.close()));
  fs.rmSync(dir, { recursive: true, force: true });
});

interface Calls {
  /** `<peer SPIFFE ID>|<peer certificate serial>` for each call that reached the handler. */
  seen: string[];
  rejected: PeerRejectedError[];
  port: number;
  /** TLS connections accepted so far, to drop them in tests. */
  sockets: tls.TLSSocket[];
}

/** A Health service whose handler records its caller. */
function healthServer(calls: Pick<Calls, 'seen'>): grpc.Server {
  const srv = new grpc.Server();
  const impl: Partial<HealthServer> = {
    check: (call, callback) => {
      let peer: string;
      try {
        peer = grpcPeerSpiffeId(call).toString();
      } catch (e) {
        callback({ code: grpc.status.UNAUTHENTICATED, details: (e as Error).message });
        return;
      }
      calls.seen.push(`${peer}|${call.getAuthContext().sslPeerCertificate!.serialNumber}`);
      callback(null, { status: HealthCheckResponse_ServingStatus.SERVING });
    },
  };
  srv.addService(HealthService, impl as HealthServer);
  closers.push(() => srv.forceShutdown());
  return srv;
}

async function serve(authorizer: Authorizer): Promise<Calls> {
  const calls: Calls = { seen: [], rejected: [], port: 0, sockets: [] };
  const listener = await serveGrpcMtls(healthServer(calls), server.source, authorizer, { host: '127.0.0.1', port: 0 }, {
    onReject: (e) => calls.rejected.push(e),
  });
  listener.tlsServer.on('secureConnection', (s: tls.TLSSocket) => calls.sockets.push(s));
  closers.push(() => listener.close());
  calls.port = (listener.address as AddressInfo).port;
  return calls;
}

function healthClient(port: number, source: TestWorkload['source'], authorizer: Authorizer): HealthClient {
  const c = new HealthClient(`localhost:${port}`, grpcChannelCredentials(source, authorizer));
  closers.push(() => c.close());
  return c;
}

function check(c: HealthClient): Promise<{ status?: HealthCheckResponse_ServingStatus; error?: grpc.ServiceError }> {
  return new Promise((resolve) =>
    c.check({ service: '' }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, (error, res) =>
      resolve(error ? { error } : { status: res.status }),
    ),
  );
}

describe('gRPC over SPIFFE mTLS', () => {
  it('serves a call from an authorized client, whose handler learns its SPIFFE ID', async () => {
    const calls = await serve(authorizeId(CLIENT_ID));
    const res = await check(healthClient(calls.port, client.source, authorizeId(SERVER_ID)));
    expect(res.error).toBeUndefined();
    expect(res.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    expect(calls.seen).toEqual([`${CLIENT_ID}|${clientSvid.serial}`]);
  });

  it('refuses a client with the wrong SPIFFE ID before any handler runs', async () => {
    const calls = await serve(authorizeId('spiffe://example.org/billing'));
    const res = await check(healthClient(calls.port, client.source, authorizeId(SERVER_ID)));
    expect(res.error?.code).toBe(grpc.status.UNAVAILABLE);
    expect(calls.seen).toEqual([]);
    expect(calls.rejected.length).toBeGreaterThan(0);
    expect(calls.rejected.every((e) => e.code === 'PEER_UNAUTHORIZED' && e.peerId === CLIENT_ID)).toBe(true);
  });

  it('fails the call when the server has the wrong SPIFFE ID', async () => {
    const calls = await serve(authorizeAny());
    const res = await check(healthClient(calls.port, client.source, authorizeId('spiffe://example.org/billing')));
    expect(res.error?.code).toBe(grpc.status.UNAVAILABLE);
    expect(res.error?.details).toContain('not authorized');
    expect(calls.seen).toEqual([]);
  });

  it('presents rotated SVIDs on new connections of the same channel and server', async () => {
    const clientW = await startWorkload(dir, 'grpc-client-rot', x509Response([{ svid: clientSvid, bundle: [example.root.der] }]));
    closers.push(() => clientW.close());
    const calls = await serve(authorizeId(CLIENT_ID));
    const channel = healthClient(calls.port, clientW.source, authorizeId(SERVER_ID));
    expect((await check(channel)).status).toBe(HealthCheckResponse_ServingStatus.SERVING);

    const rotated = await example.svid('/client');
    await clientW.push(x509Response([{ svid: rotated, bundle: [example.root.der] }]));
    // The established connection keeps its identity; drop it so the channel reconnects.
    for (const s of calls.sockets) s.destroy();
    let res = await check(channel);
    // A call racing the drop may fail once; the next one reconnects.
    if (res.error) res = await check(channel);
    expect(res.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    expect(calls.seen).toEqual([`${CLIENT_ID}|${clientSvid.serial}`, `${CLIENT_ID}|${rotated.serial}`]);
  });

  it('tells a handler reached over a connection it did not verify that there is no SPIFFE peer', async () => {
    const calls = { seen: [] as string[] };
    const srv = healthServer(calls);
    const port = await new Promise<number>((resolve, reject) =>
      srv.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    const c = new HealthClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    closers.push(() => c.close());
    const res = await check(c);
    expect(res.error?.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(res.error?.details).toContain('verified SPIFFE mTLS');
    expect(calls.seen).toEqual([]);
  });
});
