import { X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HealthCheckResponse_ServingStatus, HealthClient } from '../proto/gen/grpc/health/v1/health.js';
import { startTestCa, TD, toPem, type TestCa } from './support/ca-harness.js';

function healthClient(t: TestCa): HealthClient {
  const creds = grpc.credentials.createSsl(Buffer.from(toPem(t.roots())), null, null, {
    checkServerIdentity: (_h, cert) =>
      new X509Certificate(cert.raw).subjectAltName === `URI:spiffe://${TD}/brevis/server` ? undefined : new Error('not the CA'),
  });
  return new HealthClient(`127.0.0.1:${t.ca.port}`, creds, { 'grpc.ssl_target_name_override': TD });
}

describe('gRPC health on the node API port', () => {
  let t: TestCa;
  beforeAll(async () => {
    t = await startTestCa();
  });
  afterAll(async () => {
    await t?.cleanup();
  });

  it('answers the standard Check over TLS without a client certificate, so load balancers can probe it', async () => {
    const c = healthClient(t);
    try {
      const status = await new Promise<HealthCheckResponse_ServingStatus>((resolve, reject) =>
        c.check({ service: '' }, (e, r) => (e ? reject(e) : resolve(r.status))),
      );
      expect(status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    } finally {
      c.close();
    }
  });

  it('stops answering once the CA is closed', async () => {
    await t.stop();
    const c = healthClient(t);
    try {
      const err = await new Promise<grpc.ServiceError>((resolve) =>
        c.check({ service: '' }, new grpc.Metadata(), { deadline: Date.now() + 2000 }, (e) => resolve(e!)),
      );
      expect([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED]).toContain(err.code);
    } finally {
      c.close();
    }
  });
});
