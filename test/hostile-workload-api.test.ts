/**
 * Hostile input against every RPC on the agent's Workload API socket
 * (SpiffeWorkloadAPI, brevis.agent.v1.SSHCertificateService, Health), with
 * a real agent and a real CA: missing or wrong security headers, bad SSH
 * public keys and SPIFFE IDs, hostile service names, undecodable and
 * oversize messages, and streams opened and dropped at random. Each case
 * gets the right status and a useful message; the agent keeps serving;
 * the CA's store does not change. Prints how many cases ran.
 */
import fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from '../agent/agent.js';
import { SSHCertificateServiceService, SignUserCertificateRequest } from '../proto/gen/brevis/agent/v1/ssh.js';
import { HealthCheckRequest, HealthService as HealthDef } from '../proto/gen/grpc/health/v1/health.js';
import { JWTSVIDRequest, SpiffeWorkloadAPIService, ValidateJWTSVIDRequest, X509SVIDResponse } from '../proto/gen/workload.js';
import { agentConfig, createJoinToken, tempDir, testLogger, waitFor } from './support/agent-harness.js';
import { startTestCa, TD, type TestCa } from './support/ca-harness.js';
import { FuzzTally } from './support/fuzz-tally.js';
import { hostileSshKeys, invalidSpiffeId, isUsefulMessage, nastyString, throws } from './support/hostile-inputs.js';
import { header, rawServerStream, rawUnary, statusName, type Outcome } from './support/raw-grpc.js';
import { createEntry, sshOf } from './support/ssh-harness.js';
import { expectUnchanged, snapshotStore, type StoreSnapshot } from './support/store-snapshot.js';

const RUNS = Number(process.env.BREVIS_FUZZ_RUNS ?? 150);
const W = SpiffeWorkloadAPIService;
const S = SSHCertificateServiceService;
const ME = `spiffe://${TD}/fuzz/me`;
const UID = process.getuid!();

let t: TestCa;
let tmp: { dir: string; cleanup: () => void };
let agent: RunningAgent;
let client: grpc.Client;
let before: StoreSnapshot;
const tally = new FuzzTally();

const ok = () => header({ 'workload.spiffe.io': 'true' });

/** Metadata that is not exactly one `workload.spiffe.io: true`. */
const badHeader = fc.oneof(
  fc.constant(new grpc.Metadata()),
  fc.constantFrom('false', 'TRUE', 'True', 'yes', '1', 'true ', ' true', 'truee', '').map((v) => header({ 'workload.spiffe.io': v })),
  fc.constant(
    (() => {
      const md = ok();
      md.add('workload.spiffe.io', 'true');
      return md;
    })(),
  ),
  fc.constant(header({ 'workload-spiffe-io': 'true' })),
);

function expectRefusal(o: Outcome, want: grpc.status, what: string): void {
  expect(statusName(o.code), `${what}: ${o.details}`).toBe(statusName(want));
  expect(isUsefulMessage(o.details), `${what}: unhelpful message ${JSON.stringify(o.details)}`).toBe(true);
}

beforeAll(async () => {
  t = await startTestCa();
  tmp = tempDir('brevis-hostile-wapi-');
  const tok = await createJoinToken(t);
  const config = agentConfig(t, tmp.dir, { joinToken: tok.token });
  agent = await startAgent(config, { logger: testLogger() });
  await createEntry(t, ME, tok.agentId, sshOf({ principals: ['deploy'] }), [{ type: 'unix', value: `uid:${UID}` }]);
  await agent.syncNow();
  await waitFor(() => agent.cache.isReady(), 10_000, 'the agent to sync');
  client = new grpc.Client(`unix://${agent.socketPath}`, grpc.credentials.createInsecure());
  // The workload can get its SVID: the agent is up and the caller is registered.
  const first = await rawServerStream(client, W.fetchX509Svid.path, Buffer.alloc(0), ok(), { cancelAfterMessages: 1 });
  expect(X509SVIDResponse.decode(first.messages[0]!).svids[0]!.spiffeId).toBe(ME);
  before = await snapshotStore(t.ca.store);
}, 60_000);

afterAll(async () => {
  client?.close();
  await agent?.close();
  await t?.cleanup();
  tmp?.cleanup();
  console.log(tally.format('Workload API socket hostile input'));
});

describe('Workload API socket under hostile input', () => {
  it('every SpiffeWorkloadAPI RPC refuses a call without exactly one "workload.spiffe.io: true" with InvalidArgument', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...Object.values(W)), badHeader, async (method, md) => {
        const o = method.responseStream
          ? await rawServerStream(client, method.path, Buffer.alloc(0), md)
          : await rawUnary(client, method.path, Buffer.alloc(0), md);
        tally.record(`${method.path.split('/')[2]} (bad header)`, o.code);
        expectRefusal(o, grpc.status.INVALID_ARGUMENT, method.path);
        expect(o.details).toMatch(/security header/);
      }),
      { numRuns: RUNS },
    );
  });

  it('the JWT RPCs answer Unimplemented whatever the audience, SPIFFE ID or token', async () => {
    const cases = fc.oneof(
      fc.record({ audience: fc.array(nastyString(40), { maxLength: 5 }), spiffeId: fc.oneof(nastyString(60), invalidSpiffeId(TD).map((x) => x.id)) }).map((r) => ({ m: W.fetchJwtsvid, body: JWTSVIDRequest.encode(r).finish() })),
      fc.record({ audience: nastyString(60), svid: nastyString(400) }).map((r) => ({ m: W.validateJwtsvid, body: ValidateJWTSVIDRequest.encode(r).finish() })),
      fc.constant({ m: W.fetchJwtBundles, body: new Uint8Array() }),
    );
    await fc.assert(
      fc.asyncProperty(cases, async ({ m, body }) => {
        const o = m.responseStream ? await rawServerStream(client, m.path, Buffer.from(body), ok()) : await rawUnary(client, m.path, Buffer.from(body), ok());
        tally.record(m.path.split('/')[2]!, o.code);
        expectRefusal(o, grpc.status.UNIMPLEMENTED, m.path);
      }),
      { numRuns: RUNS },
    );
  });

  it('SignUserCertificate refuses bad public keys with InvalidArgument and SPIFFE IDs the caller does not hold with PermissionDenied', async () => {
    const keys = hostileSshKeys();
    const cases = fc.oneof(
      fc.record({ publicKey: keys.arbitrary.map((k) => k.line), spiffeId: fc.constantFrom('', ME), want: fc.constant(grpc.status.INVALID_ARGUMENT) }),
      fc.record({
        publicKey: fc.oneof(keys.arbitrary.map((k) => k.line), fc.constant(keys.lines[0]!)),
        spiffeId: fc.oneof(invalidSpiffeId(TD).map((x) => x.id).filter((s) => s !== ''), nastyString(60).filter((s) => s !== '' && s !== ME), fc.constant(`spiffe://${TD}/fuzz/other`)),
        want: fc.constant(grpc.status.PERMISSION_DENIED),
      }),
    );
    await fc.assert(
      fc.asyncProperty(cases, fc.boolean(), async ({ publicKey, spiffeId, want }, withHeader) => {
        const o = await rawUnary(client, S.signUserCertificate.path, Buffer.from(SignUserCertificateRequest.encode({ publicKey, spiffeId }).finish()), withHeader ? ok() : new grpc.Metadata());
        tally.record('SignUserCertificate', o.code);
        expectRefusal(o, withHeader ? want : grpc.status.INVALID_ARGUMENT, `${JSON.stringify(spiffeId.slice(0, 40))} ${JSON.stringify(publicKey.slice(0, 40))}`);
      }),
      { numRuns: RUNS * 2 },
    );
  });

  it('Health answers NotFound for unknown service names, however hostile, and Watch streams can be dropped at any time', async () => {
    await fc.assert(
      fc.asyncProperty(nastyString(200).filter((s) => !['', 'SpiffeWorkloadAPI'].includes(s)), fc.integer({ min: 0, max: 20 }), async (service, ms) => {
        const body = Buffer.from(HealthCheckRequest.encode({ service }).finish());
        const o = await rawUnary(client, HealthDef.check.path, body);
        tally.record('Health/Check', o.code);
        expectRefusal(o, grpc.status.NOT_FOUND, JSON.stringify(service.slice(0, 40)));
        const w = await rawServerStream(client, HealthDef.watch.path, body, new grpc.Metadata(), { cancelAfterMs: ms });
        tally.record('Health/Watch', w.code);
        expect(statusName(w.code)).toBe('CANCELLED');
      }),
      { numRuns: RUNS },
    );
  });

  it('FetchX509SVID and FetchX509Bundles streams opened and dropped at random, many at once, leave the agent serving', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ bundles: fc.boolean(), cancelAfterMs: fc.integer({ min: 0, max: 50 }), unknownField: fc.boolean() }), { minLength: 1, maxLength: 20 }),
        async (streams) => {
          const outcomes = await Promise.all(
            streams.map((s) => {
              // An unknown field of a known wire type (field 15, varint) is ignored, as proto3 requires.
              const body = s.unknownField ? Buffer.from([0x78, 0x05]) : Buffer.alloc(0);
              return rawServerStream(client, (s.bundles ? W.fetchX509Bundles : W.fetchX509Svid).path, body, ok(), { cancelAfterMs: s.cancelAfterMs });
            }),
          );
          for (const o of outcomes) {
            tally.record('FetchX509SVID/Bundles (dropped)', o.code);
            expect(statusName(o.code), o.details).toBe('CANCELLED');
          }
        },
      ),
      { numRuns: Math.ceil(RUNS / 5) },
    );
    const o = await rawServerStream(client, W.fetchX509Svid.path, Buffer.alloc(0), ok(), { cancelAfterMessages: 1 });
    expect(X509SVIDResponse.decode(o.messages[0]!).svids[0]!.spiffeId).toBe(ME);
  });

  it('every RPC on the socket answers an undecodable request with InvalidArgument and one over 64 KiB with ResourceExhausted', async () => {
    const malformed = fc
      .tuple(fc.constantFrom([0x0f], [0x0a, 0x7f, 0x01], [0x12, 0xff, 0xff, 0x03], [0x08, 0xff], [0x0e]), fc.uint8Array({ maxLength: 40 }))
      .map(([head, tail]) => Buffer.concat([Buffer.from(head), tail]));
    for (const service of [W, S, HealthDef]) {
      for (const method of Object.values(service)) {
        const bad = malformed.filter((b) => throws(() => method.requestDeserialize(b)));
        await fc.assert(
          fc.asyncProperty(bad, async (body) => {
            const o = method.responseStream ? await rawServerStream(client, method.path, body, ok()) : await rawUnary(client, method.path, body, ok());
            tally.record(`${method.path.split('/')[2]} (undecodable)`, o.code);
            expectRefusal(o, grpc.status.INVALID_ARGUMENT, `${method.path} ${body.toString('hex')}`);
          }),
          { numRuns: Math.ceil(RUNS / 10) },
        );
        const big = Buffer.alloc(64 * 1024 + 1, 0x30);
        const o = method.responseStream ? await rawServerStream(client, method.path, big, ok()) : await rawUnary(client, method.path, big, ok());
        tally.record(`${method.path.split('/')[2]} (oversize)`, o.code);
        expect(statusName(o.code), o.details).toBe('RESOURCE_EXHAUSTED');
      }
    }
  });

  it('the agent still serves, and the CA stored nothing (failure audit records at most)', async () => {
    const o = await rawServerStream(client, W.fetchX509Svid.path, Buffer.alloc(0), ok(), { cancelAfterMessages: 1 });
    expect(X509SVIDResponse.decode(o.messages[0]!).svids[0]!.spiffeId).toBe(ME);
    expect(fs.existsSync(agent.socketPath)).toBe(true);
    await expectUnchanged(t.ca.store, before);
    console.log(`Workload API socket: ${tally.total} hostile cases, the agent kept serving, no stored change`);
  });
});
