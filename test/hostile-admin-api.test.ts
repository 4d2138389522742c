/**
 * Hostile input against every RPC of the admin socket (AdminService,
 * AuditService), property-based: SPIFFE IDs that break each rule of the
 * standard, bad selectors, DNS names, hints, TTLs (zero, negative, absurd),
 * CSRs, SSH keys and options, unknown enum values, undecodable and
 * oversize messages. Each request has at least one bad field, so each must
 * be refused with the right status and a useful message, and nothing
 * stored may change. Prints how many cases ran.
 */
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AdminServiceService,
  BanAgentRequest,
  CreateEntryRequest,
  CreateJoinTokenRequest,
  DeleteEntryRequest,
  EvictAgentRequest,
  GetEntryRequest,
  GetSSHCAKeysRequest,
  MintX509SVIDRequest,
  SignSSHCertificateRequest,
} from '../proto/gen/brevis/ca/v1/admin.js';
import { AuditServiceService, ListAuditRequest } from '../proto/gen/brevis/ca/v1/audit.js';
import { BackupServiceService } from '../proto/gen/brevis/ca/v1/backup.js';
import { Entry, type EntrySSH } from '../proto/gen/brevis/ca/v1/types.js';
import { attestAgent, startTestCa, TD, type TestAgent, type TestCa } from './support/ca-harness.js';
import { buildCsrCorpus, type CsrCorpus } from './support/csr-forge.js';
import { FuzzTally } from './support/fuzz-tally.js';
import {
  hostileCsr,
  hostileSshKeys,
  hugeString,
  invalidDnsName,
  invalidHostPrincipal,
  invalidSelector,
  invalidSpiffeId,
  invalidTtl,
  invalidUserPrincipal,
  isUsefulMessage,
  nastyString,
  throws,
} from './support/hostile-inputs.js';
import { rawUnary, statusName, type Outcome } from './support/raw-grpc.js';
import { createEntry, sshKeyLine } from './support/ssh-harness.js';
import { expectUnchanged, snapshotStore, type StoreSnapshot } from './support/store-snapshot.js';

const RUNS = Number(process.env.BREVIS_FUZZ_RUNS ?? 150);
const A = AdminServiceService;
const SERVER = `spiffe://${TD}/brevis/server`;
const DAY = 24 * 3600;

let t: TestCa;
let corpus: CsrCorpus;
let agent: TestAgent;
let existingEntry: string;
let before: StoreSnapshot;
let admin: grpc.Client;
const tally = new FuzzTally();

function expectRefusal(o: Outcome, want: grpc.status | grpc.status[], what: string): void {
  const wanted = (Array.isArray(want) ? want : [want]).map(statusName);
  expect(wanted, `${what}: got ${statusName(o.code)} ${o.details}`).toContain(statusName(o.code));
  expect(isUsefulMessage(o.details), `${what}: unhelpful message ${JSON.stringify(o.details)}`).toBe(true);
}

async function refused(rpc: keyof typeof A, body: Uint8Array, want: grpc.status | grpc.status[], what: string): Promise<void> {
  const o = await rawUnary(admin, A[rpc].path, Buffer.from(body));
  tally.record(A[rpc].path.split('/')[2]!, o.code);
  expectRefusal(o, want, what);
}

const validPath = fc.array(fc.stringMatching(/^[a-z0-9]{1,8}$/), { minLength: 1, maxLength: 3 }).map((s) => `/${s.join('/')}`);
const validId = validPath.map((p) => `spiffe://${TD}/fuzz${p}`);
const okSsh: EntrySSH = { principals: [], ttl: 0, forceCommand: '', sourceAddress: '', hostPrincipals: [] };

beforeAll(async () => {
  corpus = buildCsrCorpus();
  t = await startTestCa();
  agent = await attestAgent(t);
  existingEntry = (await createEntry(t, `spiffe://${TD}/existing`, agent.agentId)).id;
  admin = t.admin;
  before = await snapshotStore(t.ca.store);
}, 120_000);

afterAll(async () => {
  agent?.client.close();
  await t?.cleanup();
  console.log(tally.format('admin API hostile input'));
});

describe('admin API under hostile input', () => {
  it('CreateJoinToken refuses bad agent IDs, TTLs and SSH host names', async () => {
    const badAgentId = fc.oneof(
      invalidSpiffeId(TD).map((x) => x.id).filter((id) => id !== ''),
      validId, // not under /brevis/agent/
    );
    const cases = fc.oneof(
      fc.record({ agentId: badAgentId, ttlSeconds: fc.constant(0), hosts: fc.constant<string[]>([]) }),
      fc.record({ agentId: fc.constant(''), ttlSeconds: invalidTtl(DAY), hosts: fc.constant<string[]>([]) }),
      fc.record({ agentId: fc.constant(''), ttlSeconds: fc.constant(0), hosts: fc.array(invalidHostPrincipal, { minLength: 1, maxLength: 3 }) }),
      fc.record({ agentId: fc.constant(''), ttlSeconds: fc.constant(0), hosts: fc.integer({ min: 257, max: 400 }).map((n) => Array.from({ length: n }, (_, i) => `h${i}.example`)) }),
    );
    await fc.assert(
      fc.asyncProperty(cases, async ({ agentId, ttlSeconds, hosts }) => {
        const body = CreateJoinTokenRequest.encode({ agentId, ttlSeconds, ...(hosts.length ? { ssh: { hostPrincipals: hosts } } : {}) }).finish();
        await refused('createJoinToken', body, grpc.status.INVALID_ARGUMENT, `${JSON.stringify(agentId.slice(0, 60))} ttl ${ttlSeconds} hosts ${JSON.stringify(hosts).slice(0, 60)}`);
      }),
      { numRuns: RUNS },
    );
  });

  it('CreateEntry refuses an entry with any bad field: IDs, selectors, TTL, DNS names, hint, expiry, id, SSH settings', async () => {
    const base = (over: Partial<Entry>): Entry =>
      Entry.fromPartial({ spiffeId: `spiffe://${TD}/fuzz/ok`, parentId: agent.agentId, selectors: [{ type: 'unix', value: 'uid:1000' }], ...over });
    const bad = fc.oneof(
      invalidSpiffeId(TD).map((x) => ({ why: `spiffe id: ${x.rule}`, e: base({ spiffeId: x.id }) })),
      invalidSpiffeId(TD).map((x) => ({ why: `parent id: ${x.rule}`, e: base({ parentId: x.id }) })),
      fc.constant({ why: 'own parent', e: base({ spiffeId: agent.agentId }) }),
      fc.constant({ why: 'no selectors', e: base({ selectors: [] }) }),
      invalidSelector.map((s) => ({ why: `selector: ${s.rule}`, e: base({ selectors: [{ type: 'unix', value: 'uid:1' }, { type: s.type, value: s.value }] }) })),
      fc.integer({ min: 65, max: 200 }).map((n) => ({ why: `${n} selectors`, e: base({ selectors: Array.from({ length: n }, (_, i) => ({ type: 'unix', value: `uid:${i}` })) }) })),
      fc.oneof(fc.integer({ min: -(2 ** 31), max: -1 }), fc.integer({ min: DAY + 1, max: 2 ** 31 - 1 })).map((ttl) => ({ why: `ttl ${ttl}`, e: base({ x509SvidTtl: ttl }) })),
      invalidDnsName.map((d) => ({ why: `dns ${JSON.stringify(d).slice(0, 40)}`, e: base({ dnsNames: ['ok.example', d] }) })),
      fc.integer({ min: 33, max: 100 }).map((n) => ({ why: `${n} dns names`, e: base({ dnsNames: Array.from({ length: n }, (_, i) => `h${i}.example`) }) })),
      fc.oneof(hugeString, fc.constantFrom('a\u0000b', 'line\nbreak', 'esc\u001b[31m', 'del\u007f')).map((hint) => ({ why: 'hint', e: base({ hint }) })),
      fc.integer({ min: -(2 ** 40), max: -1 }).map((expiresAt) => ({ why: `expires ${expiresAt}`, e: base({ expiresAt }) })),
      fc.oneof(nastyString(40).filter((s) => s !== '' && !/^[A-Za-z0-9._-]{1,128}$/.test(s)), fc.constant('x'.repeat(129))).map((id) => ({ why: `id ${JSON.stringify(id).slice(0, 40)}`, e: base({ id }) })),
      invalidUserPrincipal.map((p) => ({ why: `ssh principal ${JSON.stringify(p).slice(0, 30)}`, e: base({ ssh: { ...okSsh, principals: [p] } }) })),
      invalidTtl(DAY).filter((n) => n >= -(2 ** 31) && n < 2 ** 31).map((ttl) => ({ why: `ssh ttl ${ttl}`, e: base({ ssh: { ...okSsh, principals: ['deploy'], ttl } }) })),
      fc.constantFrom('', ' ', 'rm\n-rf', 'x\u0000').map((forceCommand) => ({ why: 'force-command', e: base({ ssh: { ...okSsh, principals: ['deploy'], forceCommand: forceCommand || ' ' } }) })),
      fc.constantFrom('10.0.0.1/8', '300.0.0.0/8', 'example.org', '::/129', '10.0.0.0/8/1', 'a,b').map((sourceAddress) => ({ why: `source ${sourceAddress}`, e: base({ ssh: { ...okSsh, principals: ['deploy'], sourceAddress } }) })),
      fc.constantFrom('permit-everything', 'x@', '@y', 'a b@c').map((n) => ({ why: `extension ${n}`, e: base({ ssh: { ...okSsh, principals: ['deploy'], extensions: { names: [n] } } }) })),
      fc.constant({ why: 'host names on a workload entry', e: base({ ssh: { ...okSsh, hostPrincipals: ['web.example'] } }) }),
      fc.constant({ why: 'user settings on a node entry', e: base({ parentId: SERVER, selectors: [{ type: 'x509pop', value: 'subject:cn:web' }], ssh: { ...okSsh, principals: ['deploy'] } }) }),
      fc.constant({ why: 'ttl without principals', e: base({ ssh: { ...okSsh, ttl: 60 } }) }),
      invalidHostPrincipal.map((h) => ({ why: `node host ${JSON.stringify(h).slice(0, 30)}`, e: base({ parentId: SERVER, selectors: [{ type: 'x509pop', value: 'subject:cn:web' }], ssh: { ...okSsh, hostPrincipals: [h] } }) })),
    );
    await fc.assert(
      fc.asyncProperty(bad, async ({ why, e }) => {
        await refused('createEntry', CreateEntryRequest.encode({ entry: e }).finish(), grpc.status.INVALID_ARGUMENT, why);
      }),
      { numRuns: RUNS * 2 },
    );
    await refused('createEntry', CreateEntryRequest.encode({}).finish(), grpc.status.INVALID_ARGUMENT, 'no entry');
    await refused('createEntry', CreateEntryRequest.encode({ entry: base({ id: existingEntry }) }).finish(), grpc.status.ALREADY_EXISTS, 'existing id');
  });

  it('GetEntry and DeleteEntry refuse malformed ids and answer NotFound for unknown ones, deleting nothing', async () => {
    const id = fc.oneof(nastyString(40), fc.stringMatching(/^[A-Za-z0-9._-]{1,128}$/), fc.constant('x'.repeat(5000))).filter((s) => s !== existingEntry);
    await fc.assert(
      fc.asyncProperty(id, fc.boolean(), async (s, del) => {
        const want = /^[A-Za-z0-9._-]{1,128}$/.test(s) ? grpc.status.NOT_FOUND : grpc.status.INVALID_ARGUMENT;
        if (del) await refused('deleteEntry', DeleteEntryRequest.encode({ id: s }).finish(), want, JSON.stringify(s.slice(0, 40)));
        else await refused('getEntry', GetEntryRequest.encode({ id: s }).finish(), want, JSON.stringify(s.slice(0, 40)));
      }),
      { numRuns: RUNS },
    );
  });

  it('EvictAgent and BanAgent refuse bad agent IDs and answer NotFound for unknown agents', async () => {
    const cases = fc.oneof(
      invalidSpiffeId(TD).map((x) => ({ id: x.id, want: grpc.status.INVALID_ARGUMENT })),
      validId.map((id) => ({ id, want: grpc.status.INVALID_ARGUMENT })),
      validPath.map((p) => ({ id: `spiffe://${TD}/brevis/agent${p}`, want: grpc.status.NOT_FOUND })),
    );
    await fc.assert(
      fc.asyncProperty(cases, fc.boolean(), async ({ id, want }, ban) => {
        if (ban) await refused('banAgent', BanAgentRequest.encode({ agentId: id }).finish(), want, JSON.stringify(id.slice(0, 60)));
        else await refused('evictAgent', EvictAgentRequest.encode({ agentId: id }).finish(), want, JSON.stringify(id.slice(0, 60)));
      }),
      { numRuns: RUNS },
    );
  });

  it('MintX509SVID refuses bad SPIFFE IDs, CSRs, TTLs and DNS names', async () => {
    const goodCsr = corpus.valid[0]!.der;
    const cases = fc.oneof(
      invalidSpiffeId(TD).map((x) => ({ why: x.rule, r: { spiffeId: x.id, csr: goodCsr, ttlSeconds: 0, dnsNames: [] as string[] } })),
      hostileCsr(corpus).map((c) => ({ why: c.how, r: { spiffeId: `spiffe://${TD}/fuzz/mint`, csr: c.der, ttlSeconds: 0, dnsNames: [] as string[] } })),
      invalidTtl(DAY).map((ttl) => ({ why: `ttl ${ttl}`, r: { spiffeId: `spiffe://${TD}/fuzz/mint`, csr: goodCsr, ttlSeconds: ttl, dnsNames: [] as string[] } })),
      invalidDnsName.map((d) => ({ why: `dns ${JSON.stringify(d).slice(0, 30)}`, r: { spiffeId: `spiffe://${TD}/fuzz/mint`, csr: goodCsr, ttlSeconds: 0, dnsNames: [d] } })),
      fc.integer({ min: 33, max: 80 }).map((n) => ({ why: `${n} dns`, r: { spiffeId: `spiffe://${TD}/fuzz/mint`, csr: goodCsr, ttlSeconds: 0, dnsNames: Array.from({ length: n }, (_, i) => `h${i}.example`) } })),
    );
    await fc.assert(
      fc.asyncProperty(cases, async ({ why, r }) => {
        await refused('mintX509Svid', MintX509SVIDRequest.encode(r).finish(), grpc.status.INVALID_ARGUMENT, why);
      }),
      { numRuns: RUNS * 2 },
    );
  });

  it('SignSSHCertificate refuses unknown types, bad keys, principals, TTLs, key ids and critical options', async () => {
    const keys = hostileSshKeys();
    const ok = { type: 1, publicKey: sshKeyLine(), principals: ['alice'], ttlSeconds: 0, keyId: '', forceCommand: '', sourceAddress: '' };
    const cases = fc.oneof(
      fc.constantFrom(0, 3, 99, -1, 2 ** 31 - 1).map((type) => ({ why: `type ${type}`, r: { ...ok, type } })),
      keys.arbitrary.map((k) => ({ why: k.how, r: { ...ok, publicKey: k.line } })),
      fc.constant({ why: 'no principals', r: { ...ok, principals: [] as string[] } }),
      invalidUserPrincipal.map((p) => ({ why: `principal ${JSON.stringify(p).slice(0, 30)}`, r: { ...ok, principals: ['alice', p] } })),
      invalidHostPrincipal.map((p) => ({ why: `host principal ${JSON.stringify(p).slice(0, 30)}`, r: { ...ok, type: 2, principals: [p] } })),
      invalidTtl(DAY).map((ttl) => ({ why: `ttl ${ttl}`, r: { ...ok, ttlSeconds: ttl } })),
      fc.oneof(fc.constantFrom('a\nb', 'é', '\u0000', 'x'.repeat(4097)), nastyString(20).filter((s) => s !== '' && !/^[\x20-\x7e]+$/.test(s))).map((keyId) => ({ why: `key id ${JSON.stringify(keyId).slice(0, 20)}`, r: { ...ok, keyId } })),
      fc.constantFrom(' ', 'x\u0000', 'x'.repeat(4097)).map((forceCommand) => ({ why: 'force-command', r: { ...ok, forceCommand } })),
      fc.constantFrom('10.0.0.1/8', 'nope', '::/129', Array.from({ length: 70 }, (_, i) => `10.0.${i}.0/24`).join(',')).map((sourceAddress) => ({ why: `source ${sourceAddress.slice(0, 20)}`, r: { ...ok, sourceAddress } })),
      fc.constant({ why: 'host with force-command', r: { ...ok, type: 2, principals: ['web.example'], forceCommand: 'true' } }),
    );
    await fc.assert(
      fc.asyncProperty(cases, async ({ why, r }) => {
        await refused('signSshCertificate', SignSSHCertificateRequest.encode(r as SignSSHCertificateRequest).finish(), grpc.status.INVALID_ARGUMENT, why);
      }),
      { numRuns: RUNS * 2 },
    );
    for (const type of [0, 3, -5]) await refused('getSshcaKeys', GetSSHCAKeysRequest.encode({ type }).finish(), grpc.status.INVALID_ARGUMENT, `ca keys type ${type}`);
  });

  it('ListAudit refuses negative bounds', async () => {
    const neg = fc.integer({ min: -(2 ** 31), max: -1 });
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.record({ sinceMs: neg, afterSeq: fc.constant(0), limit: fc.constant(0) }), fc.record({ sinceMs: fc.constant(0), afterSeq: neg, limit: fc.constant(0) }), fc.record({ sinceMs: fc.constant(0), afterSeq: fc.constant(0), limit: neg })), async (r) => {
        const o = await rawUnary(admin, AuditServiceService.listAudit.path, Buffer.from(ListAuditRequest.encode(r).finish()));
        tally.record('ListAudit', o.code);
        expectRefusal(o, grpc.status.INVALID_ARGUMENT, JSON.stringify(r));
      }),
      { numRuns: Math.ceil(RUNS / 3) },
    );
  });

  it('every admin-socket RPC answers an undecodable request with InvalidArgument and an oversize one with ResourceExhausted', async () => {
    const malformed = fc
      .tuple(fc.constantFrom([0x0f], [0x0a, 0x7f, 0x01], [0x12, 0xff, 0xff, 0x03], [0x08, 0xff], [0x0e], [0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]), fc.uint8Array({ maxLength: 40 }))
      .map(([head, tail]) => Buffer.concat([Buffer.from(head), tail]));
    for (const service of [A, AuditServiceService, BackupServiceService]) {
      for (const [name, method] of Object.entries(service)) {
        const bad = malformed.filter((b) => throws(() => method.requestDeserialize(b)));
        await fc.assert(
          fc.asyncProperty(bad, async (body) => {
            const o = await rawUnary(admin, method.path, body);
            tally.record(`${method.path.split('/')[2]} (undecodable)`, o.code);
            expectRefusal(o, grpc.status.INVALID_ARGUMENT, `${name} ${body.toString('hex')}`);
          }),
          { numRuns: Math.ceil(RUNS / 10) },
        );
        const o = await rawUnary(admin, method.path, Buffer.alloc(8 * 1024 * 1024 + 16, 0x30));
        tally.record(`${method.path.split('/')[2]} (oversize)`, o.code);
        expect(statusName(o.code), o.details).toBe('RESOURCE_EXHAUSTED');
      }
    }
  });

  it('keeps serving and stored nothing: every table unchanged and no audit record added', async () => {
    const added = await expectUnchanged(t.ca.store, before);
    expect(added).toBe(0);
    const o = await rawUnary(admin, A.listEntries.path, Buffer.alloc(0));
    expect(statusName(o.code)).toBe('OK');
    console.log(`admin API: ${tally.total} hostile cases, no stored change`);
  });
});
