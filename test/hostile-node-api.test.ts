/**
 * Hostile input against every RPC of the CA's node API, property-based:
 * mutated and forged CSRs, bad join tokens, random x509pop exchanges
 * dropped at random, bad SSH public keys and host names, undecodable and
 * oversize messages. Every case must get the right status and a message a
 * person can act on; the CA keeps serving; nothing stored changes (the
 * audit trail grows by failure records only). Prints how many cases ran.
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AttestJoinTokenRequest,
  AttestX509PopRequest,
  AttestX509PopResponse,
  BatchMintX509SVIDRequest,
  BatchMintX509SVIDResponse,
  NodeServiceService,
  RenewAgentSVIDRequest,
  SignSSHHostCertificateRequest,
  SignSSHUserCertificateRequest,
} from '../proto/gen/brevis/ca/v1/node.js';
import { ReportAgentStatusRequest } from '../proto/gen/brevis/ca/v1/push.js';
import { attestAgent, call, nodeClient, startTestCa, TD, type TestAgent, type TestCa } from './support/ca-harness.js';
import { buildCsrCorpus, type CsrCorpus } from './support/csr-forge.js';
import { FuzzTally } from './support/fuzz-tally.js';
import { hostileCsr, hostileSshKeys, invalidHostPrincipal, isUsefulMessage, nastyString, throws } from './support/hostile-inputs.js';
import { rawBidi, rawServerStream, rawUnary, statusName, type Outcome } from './support/raw-grpc.js';
import { attestWithHosts, createEntry, sshKeyLine, sshOf, type Agent } from './support/ssh-harness.js';
import { expectUnchanged, snapshotStore, type StoreSnapshot } from './support/store-snapshot.js';

const run = promisify(execFile);
const RUNS = Number(process.env.BREVIS_FUZZ_RUNS ?? 150);
const M = NodeServiceService;

let t: TestCa;
let dir: string;
let corpus: CsrCorpus;
let agentA: TestAgent;
let hostAgent: Agent;
let otherAgent: TestAgent;
let entryA: string;
let sshEntryA: string;
let entryOther: string;
let unusedToken: string;
let nodeChain: Buffer[];
let before: StoreSnapshot;
const tally = new FuzzTally();

function expectRefusal(o: Outcome, want: grpc.status, what: string): void {
  expect(statusName(o.code), `${what}: ${o.details}`).toBe(statusName(want));
  expect(isUsefulMessage(o.details), `${what}: unhelpful message ${JSON.stringify(o.details)}`).toBe(true);
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'brevis-hostile-node-'));
  const f = (n: string) => path.join(dir, n);
  const ossl = (...args: string[]) => run('openssl', args);
  await ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('hostca.key'), '-out', f('hostca.pem'), '-days', '2', '-subj', '/CN=hostca', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign');
  await ossl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('node.key'), '-out', f('node.csr'), '-subj', '/CN=web-1');
  await ossl('x509', '-req', '-in', f('node.csr'), '-CA', f('hostca.pem'), '-CAkey', f('hostca.key'), '-CAcreateserial', '-out', f('node.pem'), '-days', '1');
  nodeChain = [new X509Certificate(readFileSync(f('node.pem'))).raw];
  corpus = buildCsrCorpus();
  // Rate limits off: every hostile case must reach the handlers (test/rate-limits.test.ts covers the limits).
  t = await startTestCa({ x509popCaBundle: f('hostca.pem'), attestRatePerSource: 0, signRatePerAgent: 0, signRatePerSource: 0 });
  agentA = await attestAgent(t);
  otherAgent = await attestAgent(t);
  hostAgent = await attestWithHosts(t, ['web-1.example.org']);
  entryA = (await createEntry(t, `spiffe://${TD}/a/web`, agentA.agentId)).id;
  sshEntryA = (await createEntry(t, `spiffe://${TD}/a/deploy`, agentA.agentId, sshOf({ principals: ['deploy'] }))).id;
  entryOther = (await createEntry(t, `spiffe://${TD}/b/web`, otherAgent.agentId, sshOf({ principals: ['deploy'] }))).id;
  unusedToken = (await call<object, { token: string }>(t.admin, 'createJoinToken', { agentId: '', ttlSeconds: 0 })).token;
  before = await snapshotStore(t.ca.store);
}, 120_000);

afterAll(async () => {
  for (const c of [agentA?.client, otherAgent?.client, hostAgent?.client]) c?.close();
  await t?.cleanup();
  rmSync(dir, { recursive: true, force: true });
  console.log(tally.format('node API hostile input'));
});

describe('node API under hostile input', () => {
  it('AttestJoinToken refuses every bad CSR with InvalidArgument before looking at the token, and every bad token with PermissionDenied', async () => {
    const anon = nodeClient(t);
    const badToken = fc.oneof(nastyString(80), fc.stringMatching(/^[A-Za-z0-9_-]{43}$/), fc.constant(''), fc.constant('x'.repeat(10_000)));
    const validCsr = fc.constantFrom(...corpus.valid.map((v) => v.der));
    const cases = fc.oneof(
      fc.record({ csr: hostileCsr(corpus).map((c) => c.der), token: fc.oneof(badToken, fc.constant(unusedToken)), csrOk: fc.constant(false) }),
      fc.record({ csr: validCsr, token: badToken, csrOk: fc.constant(true) }),
    );
    await fc.assert(
      fc.asyncProperty(cases, async ({ csr, token, csrOk }) => {
        const o = await rawUnary(anon, M.attestJoinToken.path, Buffer.from(AttestJoinTokenRequest.encode({ token, csr }).finish()));
        tally.record('AttestJoinToken', o.code);
        expectRefusal(o, csrOk ? grpc.status.PERMISSION_DENIED : grpc.status.INVALID_ARGUMENT, `token ${JSON.stringify(token.slice(0, 20))}`);
      }),
      { numRuns: RUNS * 2 },
    );
    anon.close();
  });

  it('AttestX509Pop refuses random exchanges, bad chains and CSRs, and streams dropped at any point', async () => {
    const anon = nodeClient(t);
    const hello = fc.record({
      certChain: fc.oneof(
        fc.constant(nodeChain),
        fc.array(fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)), { maxLength: 10 }),
        fc.constant([t.roots()[0]!]),
      ),
      csr: fc.oneof(hostileCsr(corpus).map((c) => c.der), fc.constantFrom(...corpus.valid.map((v) => v.der))),
    });
    const step = fc.oneof(
      hello.map((h) => AttestX509PopRequest.encode({ hello: { certChain: [...h.certChain], csr: h.csr } }).finish()),
      fc.uint8Array({ maxLength: 128 }).map((sig) => AttestX509PopRequest.encode({ challengeResponse: Buffer.from(sig) }).finish()),
      fc.constant(AttestX509PopRequest.encode({}).finish()),
    );
    const ending = fc.oneof(fc.constant<'end'>('end'), fc.integer({ min: 0, max: 30 }).map((ms) => ({ cancelAfterMs: ms })));
    await fc.assert(
      fc.asyncProperty(fc.array(step, { maxLength: 4 }), ending, async (steps, end) => {
        const o = await rawBidi(anon, M.attestX509Pop.path, steps.map((s) => Buffer.from(s)), end === 'end' ? { end: true } : { end: false, cancelAfterMs: end.cancelAfterMs });
        tally.record('AttestX509Pop', o.code);
        expect(o.messages.every((m) => AttestX509PopResponse.decode(m).result === undefined), 'an SVID was issued').toBe(true);
        if (o.code === grpc.status.CANCELLED) return; // the client dropped it
        expect(['INVALID_ARGUMENT', 'PERMISSION_DENIED']).toContain(statusName(o.code));
        expect(isUsefulMessage(o.details), o.details).toBe(true);
      }),
      { numRuns: RUNS },
    );
    anon.close();
  });

  it('RenewAgentSVID refuses every bad CSR with InvalidArgument and keeps the agent\'s pinned SVID', async () => {
    await fc.assert(
      fc.asyncProperty(hostileCsr(corpus), async ({ how, der }) => {
        const o = await rawUnary(agentA.client, M.renewAgentSvid.path, Buffer.from(RenewAgentSVIDRequest.encode({ csr: der }).finish()));
        tally.record('RenewAgentSVID', o.code);
        expectRefusal(o, grpc.status.INVALID_ARGUMENT, how);
      }),
      { numRuns: RUNS },
    );
  });

  it('BatchMintX509SVID answers each bad CSR and each foreign or unknown entry with its own status, and refuses empty and oversize batches', async () => {
    const param = fc.oneof(
      fc.record({ entryId: fc.constant(entryA), csr: hostileCsr(corpus).map((c) => c.der), want: fc.constant(grpc.status.INVALID_ARGUMENT) }),
      fc.record({
        entryId: fc.oneof(fc.constant(entryOther), nastyString(64), fc.constant('x'.repeat(5000))),
        csr: fc.oneof(hostileCsr(corpus).map((c) => c.der), fc.constantFrom(...corpus.valid.map((v) => v.der))),
        want: fc.constant(grpc.status.PERMISSION_DENIED),
      }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(param, { minLength: 1, maxLength: 6 }), async (params) => {
        const body = BatchMintX509SVIDRequest.encode({ params: params.map(({ entryId, csr }) => ({ entryId, csr })) }).finish();
        const o = await rawUnary(agentA.client, M.batchMintX509Svid.path, Buffer.from(body));
        expect(statusName(o.code), o.details).toBe('OK');
        const res = BatchMintX509SVIDResponse.decode(o.messages[0]!);
        expect(res.results).toHaveLength(params.length);
        res.results.forEach((r, i) => {
          tally.record('BatchMintX509SVID', `result ${statusName(r.statusCode)}`);
          expect(r.svid).toBeUndefined();
          expect(statusName(r.statusCode), r.statusMessage).toBe(statusName(params[i]!.want));
          expect(isUsefulMessage(r.statusMessage), r.statusMessage).toBe(true);
        });
      }),
      { numRuns: RUNS },
    );
    for (const n of [0, 1001]) {
      const params = Array.from({ length: n }, () => ({ entryId: entryA, csr: Buffer.alloc(0) }));
      const o = await rawUnary(agentA.client, M.batchMintX509Svid.path, Buffer.from(BatchMintX509SVIDRequest.encode({ params }).finish()));
      tally.record('BatchMintX509SVID', o.code);
      expectRefusal(o, grpc.status.INVALID_ARGUMENT, `${n} params`);
    }
  });

  it('SignSSHUserCertificate refuses weak, unsupported and malformed public keys, and entries that are not the agent\'s', async () => {
    const keys = hostileSshKeys();
    const cases = fc.oneof(
      fc.record({ entryId: fc.constant(sshEntryA), publicKey: keys.arbitrary.map((k) => k.line), want: fc.constant(grpc.status.INVALID_ARGUMENT) }),
      fc.record({ entryId: fc.oneof(fc.constant(entryOther), nastyString(64)), publicKey: fc.oneof(keys.arbitrary.map((k) => k.line), fc.constant(sshKeyLine())), want: fc.constant(grpc.status.PERMISSION_DENIED) }),
      fc.record({ entryId: fc.constant(entryA), publicKey: fc.constant(sshKeyLine()), want: fc.constant(grpc.status.PERMISSION_DENIED) }),
    );
    await fc.assert(
      fc.asyncProperty(cases, async ({ entryId, publicKey, want }) => {
        const o = await rawUnary(agentA.client, M.signSshUserCertificate.path, Buffer.from(SignSSHUserCertificateRequest.encode({ entryId, publicKey }).finish()));
        tally.record('SignSSHUserCertificate', o.code);
        expectRefusal(o, want, `${JSON.stringify(entryId.slice(0, 20))} ${JSON.stringify(publicKey.slice(0, 40))}`);
      }),
      { numRuns: RUNS },
    );
  });

  it('SignSSHHostCertificate refuses bad host names, names not bound to the agent and bad public keys', async () => {
    const keys = hostileSshKeys();
    const cases = fc.oneof(
      fc.record({ principals: fc.array(invalidHostPrincipal, { minLength: 1, maxLength: 3 }).chain((bad) => fc.shuffledSubarray(['web-1.example.org', ...bad], { minLength: bad.length + 1 })).filter((p) => p.some((x) => x !== 'web-1.example.org')), publicKey: fc.constant(sshKeyLine('ec')), want: fc.constant(grpc.status.INVALID_ARGUMENT) }),
      fc.record({ principals: fc.constantFrom(['db-1.example.org'], ['web-1.example.org', 'web-2.example.org'], ['10.0.0.1']), publicKey: fc.constant(sshKeyLine('ec')), want: fc.constant(grpc.status.PERMISSION_DENIED) }),
      fc.record({ principals: fc.constantFrom([], ['web-1.example.org']), publicKey: keys.arbitrary.map((k) => k.line), want: fc.constant(grpc.status.INVALID_ARGUMENT) }),
    );
    await fc.assert(
      fc.asyncProperty(cases, async ({ principals, publicKey, want }) => {
        const o = await rawUnary(hostAgent.client, M.signSshHostCertificate.path, Buffer.from(SignSSHHostCertificateRequest.encode({ principals: [...principals], publicKey }).finish()));
        tally.record('SignSSHHostCertificate', o.code);
        expectRefusal(o, want, `${JSON.stringify(principals).slice(0, 80)} ${JSON.stringify(publicKey.slice(0, 40))}`);
      }),
      { numRuns: RUNS },
    );
    // With no host names bound, any request is refused.
    const o = await rawUnary(agentA.client, M.signSshHostCertificate.path, Buffer.from(SignSSHHostCertificateRequest.encode({ principals: [], publicKey: sshKeyLine('ec') }).finish()));
    tally.record('SignSSHHostCertificate', o.code);
    expectRefusal(o, grpc.status.PERMISSION_DENIED, 'agent without host names');
  });

  it('ReportAgentStatus refuses unpublished bundle sequences, malformed authority ids, absurd counts and oversize reports', async () => {
    const goodId = 'ab'.repeat(20);
    const cases = fc.oneof(
      fc.oneof(fc.integer({ min: -(2 ** 40), max: -1 }), fc.integer({ min: 1_000_000, max: 2 ** 40 })).map((bundleSequence) => ({ bundleSequence, holdings: [] as Array<{ authorityId: string; credentials: number }> })),
      fc.oneof(nastyString(80), fc.constant(''), fc.constant('AB'), fc.constant(`SHA256:${'x'.repeat(43)}!`)).filter((id) => !/^(?:[0-9a-f]{2,128}|SHA256:[A-Za-z0-9+/]{43})$/.test(id)).map((authorityId) => ({ bundleSequence: 0, holdings: [{ authorityId, credentials: 1 }] })),
      fc.oneof(fc.integer({ min: -(2 ** 40), max: -1 }), fc.integer({ min: 10_000_001, max: 2 ** 40 })).map((credentials) => ({ bundleSequence: 0, holdings: [{ authorityId: goodId, credentials }] })),
      fc.integer({ min: 257, max: 400 }).map((n) => ({ bundleSequence: 0, holdings: Array.from({ length: n }, () => ({ authorityId: goodId, credentials: 1 })) })),
    );
    await fc.assert(
      fc.asyncProperty(cases, async (r) => {
        const o = await rawUnary(agentA.client, '/brevis.ca.v1.NodeService/ReportAgentStatus', Buffer.from(ReportAgentStatusRequest.encode(r).finish()));
        tally.record('ReportAgentStatus', o.code);
        expectRefusal(o, grpc.status.INVALID_ARGUMENT, JSON.stringify(r).slice(0, 120));
      }),
      { numRuns: RUNS },
    );
  });

  it('WatchChanges streams opened and dropped at random, with and without an agent SVID, end cleanly', async () => {
    const anon = nodeClient(t);
    await fc.assert(
      fc.asyncProperty(fc.array(fc.record({ asAgent: fc.boolean(), cancelAfterMs: fc.integer({ min: 0, max: 40 }) }), { minLength: 1, maxLength: 10 }), async (streams) => {
        const outcomes = await Promise.all(
          streams.map((s) => rawServerStream(s.asAgent ? agentA.client : anon, '/brevis.ca.v1.NodeService/WatchChanges', Buffer.alloc(0), new grpc.Metadata(), { cancelAfterMs: s.cancelAfterMs })),
        );
        outcomes.forEach((o, i) => {
          tally.record('WatchChanges', o.code);
          if (streams[i]!.asAgent) expect(statusName(o.code)).toBe('CANCELLED');
          else expect(['CANCELLED', 'PERMISSION_DENIED']).toContain(statusName(o.code));
        });
      }),
      { numRuns: Math.ceil(RUNS / 5) },
    );
    anon.close();
  });

  it('every node RPC answers an undecodable request with InvalidArgument, for callers with and without an agent SVID', async () => {
    const anon = nodeClient(t);
    const malformed = fc
      .tuple(fc.constantFrom([0x0f], [0x0a, 0x7f, 0x01], [0x12, 0xff, 0xff, 0x03], [0x08, 0xff], [0x0e], [0x13]), fc.uint8Array({ maxLength: 40 }))
      .map(([head, tail]) => Buffer.concat([Buffer.from(head), tail]));
    for (const [name, method] of Object.entries(M)) {
      const bad = malformed.filter((b) => throws(() => method.requestDeserialize(b)));
      await fc.assert(
        fc.asyncProperty(bad, fc.boolean(), async (body, asAgent) => {
          const client = asAgent ? agentA.client : anon;
          const o = method.requestStream
            ? await rawBidi(client, method.path, [body], { end: false, cancelAfterMs: 2000 })
            : await rawUnary(client, method.path, body);
          tally.record(`${method.path.split('/')[2]} (undecodable)`, o.code);
          expectRefusal(o, grpc.status.INVALID_ARGUMENT, `${name} ${body.toString('hex')}`);
          expect(o.details).toMatch(/not a valid .* message/);
        }),
        { numRuns: Math.ceil(RUNS / 5) },
      );
    }
    anon.close();
  });

  it('every node RPC answers a message over the 8 MiB limit with ResourceExhausted', async () => {
    const anon = nodeClient(t);
    const huge = AttestJoinTokenRequest.encode({ token: '', csr: Buffer.alloc(8 * 1024 * 1024 + 1) }).finish();
    for (const method of Object.values(M)) {
      const o = method.requestStream
        ? await rawBidi(agentA.client, method.path, [Buffer.from(huge)], { end: false, cancelAfterMs: 5000 })
        : await rawUnary(method.path.includes('Attest') ? anon : agentA.client, method.path, Buffer.from(huge));
      tally.record(`${method.path.split('/')[2]} (oversize)`, o.code);
      expect(statusName(o.code), `${method.path}: ${o.details}`).toBe('RESOURCE_EXHAUSTED');
      expect(o.details).toMatch(/larger than max/i);
    }
    anon.close();
  });

  it('keeps serving and stored nothing: tables unchanged, audit grew by failure records only, the unused join token still works', async () => {
    const failures = await expectUnchanged(t.ca.store, before);
    expect(failures).toBeGreaterThan(0);
    // The CA still works for a well-behaved caller, and the token never burned by bad CSRs redeems now.
    const anon = nodeClient(t);
    const res = await call<object, { svid: { spiffeId: string } }>(anon, 'attestJoinToken', { token: unusedToken, csr: corpus.valid[0]!.der });
    expect(res.svid.spiffeId).toMatch(new RegExp(`^spiffe://${TD}/brevis/agent/join_token/`));
    anon.close();
    console.log(`node API: ${tally.total} hostile cases, ${failures} failure audit records, no stored change`);
  });
});
