import { execFile } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AttestX509PopResponse } from '../proto/gen/brevis/ca/v1/node.js';
import { signX509PopPayload, x509popPayload } from '../ca/attest/x509pop.js';
import { attestAgent, call, newKey, nodeClient, startTestCa, TD, type TestCa } from './support/ca-harness.js';

const run = promisify(execFile);

/** Runs the x509pop exchange; `sign` may tamper with the signature. */
function x509pop(t: TestCa, chainPem: string, keyPem: string, csr: Buffer, sign = true): Promise<AttestX509PopResponse['result']> {
  const chain = chainPem.split(/(?=-----BEGIN CERTIFICATE-----)/).map((p) => new X509Certificate(p).raw);
  const key = createPrivateKey(keyPem);
  const client = nodeClient(t);
  return new Promise((resolve, reject) => {
    const stream = client.attestX509Pop();
    stream.on('data', (msg: AttestX509PopResponse) => {
      if (msg.challenge) {
        const sig = signX509PopPayload(key, x509popPayload(msg.challenge, csr));
        if (!sign) sig[sig.length - 1]! ^= 1;
        stream.write({ challengeResponse: sig });
      } else if (msg.result) {
        resolve(msg.result);
        stream.end();
      }
    });
    stream.on('error', (e) => {
      client.close();
      reject(e);
    });
    stream.on('end', () => client.close());
    stream.write({ hello: { certChain: chain, csr } });
  });
}

describe('x509pop node attestation', () => {
  let dir: string;
  let t: TestCa;
  let nodeCert: string;
  let nodeKey: string;
  let strangerCert: string;
  let strangerKey: string;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'brevis-x509pop-'));
    const f = (n: string) => path.join(dir, n);
    const ossl = (...args: string[]) => run('openssl', args);
    // An existing host PKI: a CA and a node certificate it issued; and a stranger's self-made CA.
    for (const who of ['hostca', 'otherca']) {
      await ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f(`${who}.key`), '-out', f(`${who}.pem`), '-days', '2', '-subj', `/CN=${who}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign');
    }
    for (const [node, ca] of [['node', 'hostca'], ['stranger', 'otherca']]) {
      await ossl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f(`${node}.key`), '-out', f(`${node}.csr`), '-subj', `/CN=web-1`);
      writeFileSync(f(`${node}.ext`), 'subjectAltName=DNS:web-1.internal,DNS:web.internal\nbasicConstraints=CA:FALSE\n');
      await ossl('x509', '-req', '-in', f(`${node}.csr`), '-CA', f(`${ca}.pem`), '-CAkey', f(`${ca}.key`), '-CAcreateserial', '-out', f(`${node}.pem`), '-days', '1', '-extfile', f(`${node}.ext`));
    }
    nodeCert = readFileSync(f('node.pem'), 'utf8');
    nodeKey = readFileSync(f('node.key'), 'utf8');
    strangerCert = readFileSync(f('stranger.pem'), 'utf8');
    strangerKey = readFileSync(f('stranger.key'), 'utf8');
    t = await startTestCa({ x509popCaBundle: f('hostca.pem') });
  });
  afterAll(async () => {
    await t?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it('gives a node that proves possession of its host certificate an agent ID from its fingerprint and node selectors', async () => {
    const k = await newKey();
    const result = await x509pop(t, nodeCert, nodeKey, k.csr);
    const leaf = new X509Certificate(nodeCert);
    const fp = leaf.fingerprint256.replace(/:/g, '').toLowerCase();
    expect(result!.svid!.spiffeId).toBe(`spiffe://${TD}/brevis/agent/x509pop/${fp}`);
    const agents = await call<object, { agents: { agentId: string; attestationType: string; selectors: { type: string; value: string }[] }[] }>(t.admin, 'listAgents', {});
    const me = agents.agents.find((a) => a.agentId === result!.svid!.spiffeId)!;
    expect(me.attestationType).toBe('x509pop');
    const caFp = new X509Certificate(readFileSync(path.join(dir, 'hostca.pem'))).fingerprint256.replace(/:/g, '').toLowerCase();
    expect(me.selectors.map((s) => `${s.type}:${s.value}`).sort()).toEqual(
      ['x509pop:ca:fingerprint:' + caFp, 'x509pop:san:dns:web-1.internal', 'x509pop:san:dns:web.internal', 'x509pop:subject:cn:web-1'].sort(),
    );

    // A node entry matching those selectors authorizes its children for this agent, and not for a join-token agent.
    const mk = (spiffeId: string, parentId: string, selectors: { type: string; value: string }[]) =>
      call<object, { entry: { id: string } }>(t.admin, 'createEntry', { entry: { id: '', spiffeId, parentId, selectors, x509SvidTtl: 0, dnsNames: [], hint: '', admin: false, expiresAt: 0, revision: 0, createdAt: 0 } });
    await mk(`spiffe://${TD}/web-nodes`, `spiffe://${TD}/brevis/server`, [{ type: 'x509pop', value: 'subject:cn:web-1' }]);
    const child = (await mk(`spiffe://${TD}/web-frontend`, `spiffe://${TD}/web-nodes`, [{ type: 'unix', value: 'uid:1000' }])).entry.id;
    const agentClient = nodeClient(t, { chain: result!.svid!.certChain, key: k.privateKey });
    const fetched = await call<object, { entries: { id: string }[] }>(agentClient, 'fetchAuthorizedEntries', {});
    expect(fetched.entries.map((e) => e.id)).toContain(child);
    agentClient.close();
    const other = await attestAgent(t);
    const theirs = await call<object, { entries: { id: string }[] }>(other.client, 'fetchAuthorizedEntries', {});
    expect(theirs.entries.map((e) => e.id)).not.toContain(child);
    other.client.close();
  });

  it('lets an x509pop node attest again (e.g. after its agent SVID expired)', async () => {
    const a = await x509pop(t, nodeCert, nodeKey, (await newKey()).csr);
    const b = await x509pop(t, nodeCert, nodeKey, (await newKey()).csr);
    expect(a!.svid!.spiffeId).toBe(b!.svid!.spiffeId);
    expect(a!.svid!.serial).not.toBe(b!.svid!.serial);
  });

  it('refuses a certificate from an untrusted CA and a bad proof of possession, and records them', async () => {
    const before = (await t.ca.store.listAudit()).filter((r) => r.action === 'attest.x509pop' && r.outcome === 'failure').length;
    await expect(x509pop(t, strangerCert, strangerKey, (await newKey()).csr)).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED, details: expect.stringMatching(/not issued by a trusted CA/) });
    await expect(x509pop(t, nodeCert, nodeKey, (await newKey()).csr, false)).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED, details: expect.stringMatching(/signature/) });
    const after = (await t.ca.store.listAudit()).filter((r) => r.action === 'attest.x509pop' && r.outcome === 'failure').length;
    expect(after - before).toBe(2);
  });
});

describe('CA key types and key custody', () => {
  for (const keyType of ['ec-p384', 'ed25519'] as const) {
    it(`issues SVIDs that openssl verifies with a ${keyType} CA key`, async () => {
      const t = await startTestCa({ keyType });
      const work = mkdtempSync(path.join(os.tmpdir(), 'brevis-kt-'));
      try {
        const agent = await attestAgent(t);
        const leaf = agent.chain;
        const pem = (ders: Uint8Array[]) => ders.map((d) => new X509Certificate(Buffer.from(d)).toString()).join('');
        writeFileSync(path.join(work, 'root.pem'), pem(t.roots()));
        writeFileSync(path.join(work, 'inter.pem'), pem([leaf[1]!]));
        writeFileSync(path.join(work, 'leaf.pem'), pem([leaf[0]!]));
        const { stdout } = await run('openssl', ['verify', '-x509_strict', '-purpose', 'sslclient', '-CAfile', path.join(work, 'root.pem'), '-untrusted', path.join(work, 'inter.pem'), path.join(work, 'leaf.pem')]);
        expect(stdout).toMatch(/leaf\.pem: OK/);
        const { stdout: text } = await run('openssl', ['x509', '-in', path.join(work, 'root.pem'), '-noout', '-text']);
        expect(text).toMatch(keyType === 'ed25519' ? /Signature Algorithm: ED25519/ : /ecdsa-with-SHA384/);
        agent.client.close();
      } finally {
        await t.cleanup();
        rmSync(work, { recursive: true, force: true });
      }
    });
  }

  it('encrypts CA keys at rest when a key-encryption key file is configured, and reloads them', async () => {
    const kdir = mkdtempSync(path.join(os.tmpdir(), 'brevis-kek-'));
    const kekFile = path.join(kdir, 'kek');
    writeFileSync(kekFile, 'a'.repeat(64), { mode: 0o600 });
    const t = await startTestCa({ kekFile });
    try {
      const keyDir = path.join(t.dir, 'keys');
      const files = readdirSync(keyDir).filter((f) => f.endsWith('.key'));
      // Root, intermediate and the two SSH CAs: all encrypted.
      expect(files.map((f) => f.replace(/-[0-9a-f]+\.key$/, '')).sort()).toEqual(['ssh-host', 'ssh-user', 'x509-intermediate', 'x509-root']);
      for (const f of files) {
        const body = readFileSync(path.join(keyDir, f));
        expect(body.toString('latin1')).not.toContain('PRIVATE KEY');
      }
      const root = t.roots()[0]!.toString('base64');
      await t.restart();
      expect(t.roots()[0]!.toString('base64')).toBe(root);
      const agent = await attestAgent(t);
      expect(agent.agentId).toMatch(/^spiffe:\/\/example\.org\/brevis\/agent\/join_token\//);
      agent.client.close();
    } finally {
      await t.cleanup();
      rmSync(kdir, { recursive: true, force: true });
    }
  });
});
