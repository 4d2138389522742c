import { createPrivateKey } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { peerCertificateOnceInterceptor } from '../ca/server/peer-certificate-once.js';
import { certsToPem } from '../spiffe/pem.js';
import { makeDomain, type TestDomain, type TestSvid } from './support/mtls-fixtures.js';
import { rawUnary } from './support/raw-grpc.js';

const keyPem = (s: TestSvid) => createPrivateKey({ key: s.keyDer, format: 'der', type: 'pkcs8' }).export({ format: 'pem', type: 'pkcs8' }) as string;

type Seen = { via: 'interceptor' | 'handler'; cert: ReturnType<grpc.ServerUnaryCall<Buffer, Buffer>['getAuthContext']>['sslPeerCertificate'] };

let domain: TestDomain;
let server: grpc.Server;
let port: number;
const seen: Seen[] = [];

beforeAll(async () => {
  domain = await makeDomain('example.org');
  const serverSvid = await domain.svid('/ca');
  // A later interceptor and the handler both ask, as the edge, the rate limiter and agent authentication do.
  const asking: grpc.ServerInterceptor = (_m, call) =>
    new grpc.ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMessage: (msg, nextMsg) => {
            seen.push({ via: 'interceptor', cert: call.getAuthContext().sslPeerCertificate });
            nextMsg(msg);
          },
        }),
    });
  server = new grpc.Server({ interceptors: [peerCertificateOnceInterceptor(), asking] });
  server.register(
    '/test.Echo/Call',
    (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      seen.push({ via: 'handler', cert: call.getAuthContext().sslPeerCertificate });
      cb(null, call.request);
    },
    (b: Buffer) => b,
    (b: Buffer) => b,
    'unary',
  );
  // As the CA's node API: client certificates asked for, not required (attestation calls come without one).
  const provider: grpc.experimental.CertificateProvider = {
    addCaCertificateListener: (l) => queueMicrotask(() => l({ caCertificate: Buffer.from(certsToPem([domain.root.der])) })),
    removeCaCertificateListener: () => undefined,
    addIdentityCertificateListener: (l) =>
      queueMicrotask(() => l({ certificate: Buffer.from(certsToPem(serverSvid.chain)), privateKey: Buffer.from(keyPem(serverSvid)) })),
    removeIdentityCertificateListener: () => undefined,
  };
  const creds = grpc.experimental.createCertificateProviderServerCredentials(provider, provider, false);
  port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', creds, (e, p) => (e ? reject(e) : resolve(p))));
});

afterAll(() => server?.forceShutdown());

function clientWith(svid: TestSvid | null): grpc.Client {
  const creds = grpc.credentials.createSsl(
    Buffer.from(certsToPem([domain.root.der])),
    svid ? Buffer.from(keyPem(svid)) : null,
    svid ? Buffer.from(certsToPem(svid.chain)) : null,
    { checkServerIdentity: () => undefined },
  );
  return new grpc.Client(`127.0.0.1:${port}`, creds);
}

async function call(client: grpc.Client): Promise<Seen[]> {
  const from = seen.length;
  const r = await rawUnary(client, '/test.Echo/Call', Buffer.from('x'));
  expect(r.code).toBe(grpc.status.OK);
  return seen.slice(from);
}

describe('the peer certificate read once per connection', () => {
  it('gives every call on one connection the same certificate, and each connection its own', async () => {
    const [a, b] = [await domain.svid('/agent/a'), await domain.svid('/agent/b')];
    const clientA = clientWith(a);
    const clientB = clientWith(b);
    try {
      const first = await call(clientA);
      const second = await call(clientA);
      expect(first.map((s) => s.via)).toEqual(['interceptor', 'handler']);
      const cert = first[0]!.cert!;
      expect(cert.subjectaltname).toBe(`URI:${a.spiffeId}`);
      expect(cert.raw.equals(a.chain[0]!)).toBe(true);
      for (const s of [...first, ...second]) expect(s.cert).toBe(cert);

      const other = await call(clientB);
      expect(other[0]!.cert!.subjectaltname).toBe(`URI:${b.spiffeId}`);
      expect(other[0]!.cert).not.toBe(cert);
      expect(other[1]!.cert).toBe(other[0]!.cert);

      // A new connection with the same certificate reads it afresh.
      const clientA2 = clientWith(a);
      try {
        const again = await call(clientA2);
        expect(again[0]!.cert!.raw.equals(a.chain[0]!)).toBe(true);
        expect(again[0]!.cert).not.toBe(cert);
      } finally {
        clientA2.close();
      }
    } finally {
      clientA.close();
      clientB.close();
    }
  });

  it('gives a connection without a client certificate none, call after call', async () => {
    const client = clientWith(null);
    try {
      for (let i = 0; i < 2; i++) for (const s of await call(client)) expect(s.cert).toBeUndefined();
    } finally {
      client.close();
    }
  });
});
