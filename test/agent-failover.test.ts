/**
 * The agent's node API channel with several CA addresses: it moves on
 * when a server cannot be reached, repeats the call there, sticks to the
 * one that works, and does not move when a server answers with a refusal.
 */
import net from 'node:net';
import { generateKeyPairSync } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { parseServerList, ServerList, failoverVerdict } from '../agent/node/failover.js';
import { NodeApi, type AuthorizedEntries, type UnchangedEntries } from '../agent/node/node-api.js';
import { NodeChannel, REDIAL_WITHIN_MS } from '../agent/node/channel.js';
import { NodeApiError } from '../agent/node/errors.js';
import { createCsr } from '../ca/x509/csr.js';
import { call, startTestCa, TD, type TestCa } from './support/ca-harness.js';
import { createEntry, createJoinToken } from './support/agent-harness.js';

function spiffeIdsOf(r: AuthorizedEntries | UnchangedEntries): string[] {
  if (r.unchanged) throw new Error('a fetch without a known version must return the whole state');
  return r.entries.map((e) => e.spiffeId);
}

/** A loopback port nothing listens on (connections are refused). */
async function deadPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

async function attest(api: NodeApi, t: TestCa): Promise<string> {
  const { token } = await createJoinToken(t);
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const res = await api.attestJoinToken(token, await createCsr(privateKey, publicKey));
  api.channel.setIdentity({ chain: res.svid.certChain.map((c) => Buffer.from(c)), keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string });
  return res.svid.spiffeId;
}

describe('agent failover between CA servers', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  function channel(t: TestCa, addresses: string[], moves: string[]): NodeChannel {
    const ch = new NodeChannel({ address: addresses, trustDomain: TD, roots: t.roots(), onFailover: (from, to) => moves.push(`${from} -> ${to}`) });
    cleanups.push(() => ch.close());
    return ch;
  }

  it('parses HOST:PORT lists and refuses bad or repeated elements', () => {
    expect(parseServerList('ca1.example.org:8081, ca2.example.org:8081,[::1]:9')).toEqual(['ca1.example.org:8081', 'ca2.example.org:8081', '[::1]:9']);
    expect(() => parseServerList('ca1:8081,ca1:8081')).toThrow(/twice/);
    expect(() => parseServerList('ca1:8081,,ca2:1')).toThrow(/not HOST:PORT/);
    expect(() => parseServerList('ca1:0')).toThrow(/not HOST:PORT/);
    const list = new ServerList(['a:1', 'b:2', 'c:3']);
    expect(list.advance('b:2')).toBe(false); // not the one in use: nothing moves
    expect(list.advance('a:1')).toBe(true);
    expect(list.advance('a:1')).toBe(false); // a second failure report of the same server moves once
    expect(list.current).toBe('b:2');
    expect(failoverVerdict(new NodeApiError('PERMISSION_DENIED', 'x', { grpcCode: 7 }))).toBe('stay');
    expect(failoverVerdict(new NodeApiError('UNAVAILABLE', 'x', { grpcCode: 14 }))).toBe('retry');
    expect(failoverVerdict(new NodeApiError('UNAVAILABLE', 'x', { grpcCode: 4 }))).toBe('switch');
  });

  it('moves past a server that refuses connections, repeats the call there and sticks to it', async () => {
    const t = await startTestCa();
    cleanups.push(() => t.cleanup());
    const dead = `127.0.0.1:${await deadPort()}`;
    const live = `127.0.0.1:${t.ca.port}`;
    const moves: string[] = [];
    const api = new NodeApi(channel(t, [dead, live], moves));
    const agentId = await attest(api, t);
    expect(agentId).toMatch(new RegExp(`^spiffe://${TD}/`));
    expect(api.channel.address).toBe(live);
    expect(moves).toEqual([`${dead} -> ${live}`]);
    for (let i = 0; i < 5; i++) await api.fetchAuthorizedEntries();
    expect(moves).toHaveLength(1);
    expect(api.channel.address).toBe(live);
  });

  it('follows the CA to the next address when the server it used stops, without the caller seeing an error', async () => {
    let t = await startTestCa();
    const dir = t.dir;
    cleanups.push(() => t.cleanup());
    const first = `127.0.0.1:${t.ca.port}`;
    const secondPort = await deadPort();
    const second = `127.0.0.1:${secondPort}`;
    const moves: string[] = [];
    const api = new NodeApi(channel(t, [first, second], moves));
    const agentId = await attest(api, t);
    await createEntry(t, { spiffeId: `spiffe://${TD}/w/db`, parentId: agentId, selectors: ['unix:uid:1000'] });
    expect(spiffeIdsOf(await api.fetchAuthorizedEntries())).toEqual([`spiffe://${TD}/w/db`]);

    // The same CA (same state) comes back on the second address only.
    await t.stop();
    t = await startTestCa({ listen: second }, dir);
    expect(spiffeIdsOf(await api.fetchAuthorizedEntries())).toEqual([`spiffe://${TD}/w/db`]);
    expect(api.channel.address).toBe(second);
    expect(moves).toEqual([`${first} -> ${second}`]);
  });

  it('stays on a server that refuses the agent: another server would refuse it too', async () => {
    const t = await startTestCa();
    cleanups.push(() => t.cleanup());
    const live = `127.0.0.1:${t.ca.port}`;
    const other = `127.0.0.1:${await deadPort()}`;
    const moves: string[] = [];
    const api = new NodeApi(channel(t, [live, other], moves));
    const agentId = await attest(api, t);
    await call(t.admin, 'banAgent', { agentId });
    await expect(api.fetchAuthorizedEntries()).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
    expect(api.channel.address).toBe(live);
    expect(moves).toEqual([]);
  });

  it('reports UNAVAILABLE once every server was tried, and with a single address as before', async () => {
    const t = await startTestCa();
    cleanups.push(() => t.cleanup());
    const a = `127.0.0.1:${await deadPort()}`;
    const b = `127.0.0.1:${await deadPort()}`;
    const moves: string[] = [];
    const both = new NodeApi(channel(t, [a, b], moves));
    await expect(both.attestJoinToken('x', Buffer.from('csr'))).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    expect(moves).toEqual([`${a} -> ${b}`, `${b} -> ${a}`]);
    const single = new NodeApi(channel(t, [a], []));
    await expect(single.attestJoinToken('x', Buffer.from('csr'))).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    expect(single.channel.address).toBe(a);
  });

  it('with a single address, a retry racing an expiry reaches a CA that came back at once, not after grpc-js\'s reconnect backoff', async () => {
    let t = await startTestCa();
    const dir = t.dir;
    cleanups.push(() => t.cleanup());
    const only = `127.0.0.1:${t.ca.port}`;
    const moves: string[] = [];
    const api = new NodeApi(channel(t, [only], moves));
    const agentId = await attest(api, t);
    await createEntry(t, { spiffeId: `spiffe://${TD}/w/api`, parentId: agentId, selectors: ['unix:uid:1000'] });
    await t.stop();
    // Five seconds of failed calls: grpc-js's backoff (500 ms growing by 1.6) has its next attempt about 3 s away.
    const until = Date.now() + 5_000;
    while (Date.now() < until) {
      await expect(api.fetchAuthorizedEntries()).rejects.toMatchObject({ code: 'UNAVAILABLE' });
      await new Promise((r) => setTimeout(r, 250));
    }
    // Far from any expiry, or with nothing to race, the failing connection is left to grpc-js.
    expect(api.channel.redialIfExpiring(Date.now(), Date.now() + REDIAL_WITHIN_MS + 1_000)).toBe(false);
    expect(api.channel.redialIfExpiring(Date.now(), null)).toBe(false);
    t = await startTestCa({ listen: only }, dir);
    // An SVID lapses in 5 s: the retry dials now and gets through.
    expect(api.channel.redialIfExpiring(Date.now(), Date.now() + 5_000)).toBe(true);
    expect(spiffeIdsOf(await api.fetchAuthorizedEntries())).toEqual([`spiffe://${TD}/w/api`]);
    // A working connection is kept.
    expect(api.channel.redialIfExpiring(Date.now(), Date.now() + 5_000)).toBe(false);
    expect(api.channel.address).toBe(only);
    expect(moves).toEqual([]);
  });
});
