import * as fs from 'node:fs';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import * as tls from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { authorizeAny, authorizeId, authorizeMemberOf, PeerRejectedError, type Authorizer } from '../spiffe/authorize.js';
import {
  createHttpsMtlsAgent,
  createHttpsMtlsServer,
  createMtlsServer,
  tlsClientOptions,
  tlsServerOptions,
} from '../spiffe/mtls.js';
import {
  makeDomain,
  makeSvid,
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
let other: TestDomain;
let serverSvid: TestSvid;
let clientSvid: TestSvid;
/** Trusts example.org only. */
let server: TestWorkload;
/** Trusts example.org, and federates with other.org. */
let federatedServer: TestWorkload;
let client: TestWorkload;
const closers: Array<() => unknown> = [];

beforeAll(async () => {
  dir = tempDir('brevis-mtls-');
  example = await makeDomain('example.org');
  other = await makeDomain('other.org');
  serverSvid = await example.svid('/server');
  clientSvid = await example.svid('/client');
  server = await startWorkload(dir, 'server', x509Response([{ svid: serverSvid, bundle: [example.root.der] }]));
  federatedServer = await startWorkload(
    dir,
    'federated',
    x509Response([{ svid: serverSvid, bundle: [example.root.der] }], { 'other.org': [other.root.der] }),
  );
  client = await startWorkload(dir, 'client', x509Response([{ svid: clientSvid, bundle: [example.root.der] }]));
});

afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

afterAll(async () => {
  await Promise.all([server, federatedServer, client].map((w) => w?.close()));
  fs.rmSync(dir, { recursive: true, force: true });
});

/**
 * A client workload with its own agent, serving `svid` with the bundle of
 * its own trust domain and federated with example.org, where the servers are.
 */
async function clientWith(svid: TestSvid, name: string, ownRoot: Buffer = example.root.der): Promise<TestWorkload> {
  const federated: Record<string, Buffer[]> = ownRoot === example.root.der ? {} : { 'example.org': [example.root.der] };
  const w = await startWorkload(dir, name, x509Response([{ svid, bundle: [ownRoot] }], federated));
  closers.push(() => w.close());
  return w;
}

interface Served {
  port: number;
  rejected: PeerRejectedError[];
  accepted: string[];
}

/** A createMtlsServer whose handler replies `<peer ID>|<peer serial>` and ends. */
async function echoServer(workload: TestWorkload, authorizer: Authorizer): Promise<Served> {
  const rejected: PeerRejectedError[] = [];
  const accepted: string[] = [];
  const srv = createMtlsServer(
    workload.source,
    authorizer,
    (socket, peer) => {
      accepted.push(peer.toString());
      socket.end(`${peer.toString()}|${socket.getPeerCertificate().serialNumber}`);
    },
    { onReject: (e) => rejected.push(e) },
  );
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  closers.push(() => new Promise((resolve) => srv.close(resolve)));
  return { port: (srv.address() as AddressInfo).port, rejected, accepted };
}

interface Talk {
  /** What the server said; empty when it refused us. */
  reply: string;
  /** The serial of the certificate the server presented, when the handshake got that far. */
  serverSerial: string | undefined;
  error: Error | undefined;
}

function talk(port: number, options: tls.ConnectionOptions): Promise<Talk> {
  return new Promise((resolve) => {
    let reply = '';
    let serverSerial: string | undefined;
    let error: Error | undefined;
    const socket = tls.connect({ host: '127.0.0.1', port, ...options }, () => {
      serverSerial = socket.getPeerCertificate().serialNumber;
    });
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (reply += d));
    socket.on('error', (e) => (error = e));
    socket.on('close', () => resolve({ reply, serverSerial, error }));
  });
}

describe('mTLS with tls servers and clients', () => {
  it('connects two workloads, each seeing the other as an authorized SVID', async () => {
    const srv = await echoServer(server, authorizeId(CLIENT_ID));
    const res = await talk(srv.port, tlsClientOptions(client.source, authorizeId(SERVER_ID)));
    expect(res.error).toBeUndefined();
    expect(res.reply).toBe(`${CLIENT_ID}|${clientSvid.serial}`);
    expect(res.serverSerial).toBe(serverSvid.serial);
    expect(srv.rejected).toEqual([]);
  });

  it('refuses a client whose SPIFFE ID the server does not expect', async () => {
    const srv = await echoServer(server, authorizeId('spiffe://example.org/someone-else'));
    const res = await talk(srv.port, tlsClientOptions(client.source, authorizeId(SERVER_ID)));
    expect(res.reply).toBe('');
    expect(srv.accepted).toEqual([]);
    expect(srv.rejected.map((e) => [e.code, e.peerId])).toEqual([['PEER_UNAUTHORIZED', CLIENT_ID]]);
  });

  it('fails the client connection when the server is not the one it expects', async () => {
    const srv = await echoServer(server, authorizeAny());
    const res = await talk(srv.port, tlsClientOptions(client.source, authorizeId('spiffe://example.org/db')));
    expect(res.reply).toBe('');
    expect(res.error).toBeInstanceOf(PeerRejectedError);
    expect((res.error as PeerRejectedError).code).toBe('PEER_UNAUTHORIZED');
    expect((res.error as PeerRejectedError).peerId).toBe(SERVER_ID);
  });

  it('refuses a client from another trust domain whose root the server does not trust', async () => {
    const stranger = await clientWith(await other.svid('/client'), 'stranger', other.root.der);
    const srv = await echoServer(server, authorizeAny());
    const res = await talk(srv.port, tlsClientOptions(stranger.source, authorizeId(SERVER_ID)));
    expect(res.reply).toBe('');
    expect(srv.accepted).toEqual([]);
    expect(srv.rejected.map((e) => e.code)).toEqual(['PEER_SVID_INVALID']);
  });

  it('accepts a client of a federated trust domain when the authorizer allows it', async () => {
    const partner = await clientWith(await other.svid('/partner'), 'partner', other.root.der);
    const srv = await echoServer(federatedServer, authorizeMemberOf('other.org'));
    const res = await talk(srv.port, tlsClientOptions(partner.source, authorizeId(SERVER_ID)));
    expect(res.reply.split('|')[0]).toBe('spiffe://other.org/partner');
  });

  it("refuses a federated CA's certificate that claims our trust domain, which OpenSSL alone accepts", async () => {
    // Signed by other.org's root (no name constraints), claiming an example.org ID.
    const forged = await clientWith(await makeSvid(other.root, CLIENT_ID), 'forged');
    const srv = await echoServer(federatedServer, authorizeAny());
    const res = await talk(srv.port, tlsClientOptions(forged.source, authorizeId(SERVER_ID)));
    expect(res.reply).toBe('');
    expect(srv.rejected).toHaveLength(1);
    expect(srv.rejected[0]!.code).toBe('PEER_SVID_INVALID');
    expect(srv.rejected[0]!.message).toContain('no certification path');
    // The control: the same TLS settings without the SPIFFE check let it in.
    const plain = tls.createServer(tlsServerOptions(federatedServer.source), (s) => s.end('in'));
    await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
    closers.push(() => new Promise((resolve) => plain.close(resolve)));
    const control = await talk((plain.address() as AddressInfo).port, tlsClientOptions(forged.source, authorizeId(SERVER_ID)));
    expect(control.reply).toBe('in');
  });

  it('presents a rotated server SVID to new handshakes without restarting the server', async () => {
    const w = await startWorkload(dir, 'rotating-server', x509Response([{ svid: serverSvid, bundle: [example.root.der] }]));
    closers.push(() => w.close());
    const srv = await echoServer(w, authorizeId(CLIENT_ID));
    const before = await talk(srv.port, tlsClientOptions(client.source, authorizeId(SERVER_ID)));
    expect(before.serverSerial).toBe(serverSvid.serial);

    const rotated = await example.svid('/server');
    await w.push(x509Response([{ svid: rotated, bundle: [example.root.der] }]));
    const after = await talk(srv.port, tlsClientOptions(client.source, authorizeId(SERVER_ID)));
    expect(after.error).toBeUndefined();
    expect(after.serverSerial).toBe(rotated.serial);
    expect(after.reply).toBe(`${CLIENT_ID}|${clientSvid.serial}`);
  });

  it('presents a rotated client SVID on the next connection', async () => {
    const w = await clientWith(clientSvid, 'rotating-client');
    const srv = await echoServer(server, authorizeId(CLIENT_ID));
    expect((await talk(srv.port, tlsClientOptions(w.source, authorizeId(SERVER_ID)))).reply).toBe(`${CLIENT_ID}|${clientSvid.serial}`);
    const rotated = await example.svid('/client');
    await w.push(x509Response([{ svid: rotated, bundle: [example.root.der] }]));
    expect((await talk(srv.port, tlsClientOptions(w.source, authorizeId(SERVER_ID)))).reply).toBe(`${CLIENT_ID}|${rotated.serial}`);
  });

  it('does not resume TLS sessions, so every connection presents its current certificate', async () => {
    const reused = async (options: tls.TlsOptions): Promise<boolean> => {
      const srv = tls.createServer(options, (s) => s.end('x'));
      await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
      closers.push(() => new Promise((resolve) => srv.close(resolve)));
      const port = (srv.address() as AddressInfo).port;
      let session: Buffer | undefined;
      await new Promise<void>((resolve) => {
        const s = tls.connect({ host: '127.0.0.1', port, ...tlsClientOptions(client.source, authorizeAny()) });
        s.on('session', (sess: Buffer) => (session = sess));
        s.resume();
        s.on('close', () => resolve());
      });
      return new Promise<boolean>((resolve) => {
        const s = tls.connect({ host: '127.0.0.1', port, ...tlsClientOptions(client.source, authorizeAny()), ...(session && { session }) }, () =>
          resolve(s.isSessionReused()),
        );
        s.resume();
      });
    };
    expect(await reused({ ...tlsServerOptions(server.source), secureOptions: 0 })).toBe(true);
    expect(await reused(tlsServerOptions(server.source))).toBe(false);
  });
});

describe('mTLS with https', () => {
  async function httpsServer(authorizer: Authorizer): Promise<{ port: number; handled: string[] }> {
    const handled: string[] = [];
    const srv = createHttpsMtlsServer(server.source, authorizer, (req, res, peer) => {
      handled.push(peer.toString());
      res.end(JSON.stringify({ peer: peer.toString(), path: req.url }));
    });
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    closers.push(() => new Promise((resolve) => srv.close(resolve)));
    return { port: (srv.address() as AddressInfo).port, handled };
  }

  function get(port: number, options: https.RequestOptions): Promise<{ body?: string; error?: Error }> {
    return new Promise((resolve) => {
      const req = https.request({ host: '127.0.0.1', port, path: '/hello', ...options }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ body }));
      });
      req.on('error', (error) => resolve({ error }));
      req.end();
    });
  }

  it('serves an authorized client through the mTLS agent', async () => {
    const srv = await httpsServer(authorizeId(CLIENT_ID));
    const agent = createHttpsMtlsAgent(client.source, authorizeId(SERVER_ID));
    closers.push(() => agent.destroy());
    const res = await get(srv.port, { agent });
    expect(res.error).toBeUndefined();
    expect(JSON.parse(res.body!)).toEqual({ peer: CLIENT_ID, path: '/hello' });
  });

  it('works with https.request and tlsClientOptions directly', async () => {
    const srv = await httpsServer(authorizeId(CLIENT_ID));
    const res = await get(srv.port, { ...tlsClientOptions(client.source, authorizeId(SERVER_ID)), agent: false });
    expect(JSON.parse(res.body!).peer).toBe(CLIENT_ID);
  });

  it('never runs the handler for a client the server does not authorize', async () => {
    const srv = await httpsServer(authorizeId('spiffe://example.org/admin'));
    const res = await get(srv.port, { ...tlsClientOptions(client.source, authorizeId(SERVER_ID)), agent: false });
    expect(res.body).toBeUndefined();
    expect(res.error).toBeDefined();
    expect(srv.handled).toEqual([]);
  });

  it('fails the request when the server is not the expected one', async () => {
    const srv = await httpsServer(authorizeAny());
    const agent = createHttpsMtlsAgent(client.source, authorizeId('spiffe://example.org/payments'));
    closers.push(() => agent.destroy());
    const res = await get(srv.port, { agent });
    expect((res.error as PeerRejectedError).code).toBe('PEER_UNAUTHORIZED');
    expect(srv.handled).toEqual([]);
  });

  it('uses a rotated client SVID for new agent connections', async () => {
    const w = await clientWith(clientSvid, 'https-rotating');
    const seen: string[] = [];
    const srv = createHttpsMtlsServer(server.source, authorizeId(CLIENT_ID), (req, res) => {
      seen.push((req.socket as tls.TLSSocket).getPeerCertificate().serialNumber);
      res.end('ok');
    });
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    closers.push(() => new Promise((resolve) => srv.close(resolve)));
    const port = (srv.address() as AddressInfo).port;
    const agent = createHttpsMtlsAgent(w.source, authorizeId(SERVER_ID), { keepAlive: false });
    closers.push(() => agent.destroy());
    await get(port, { agent });
    const rotated = await example.svid('/client');
    await w.push(x509Response([{ svid: rotated, bundle: [example.root.der] }]));
    await get(port, { agent });
    expect(seen).toEqual([clientSvid.serial, rotated.serial]);
  });
});
