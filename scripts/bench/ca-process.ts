/**
 * A CA run as its own process for benchmarks (so its CPU and memory are its
 * own), plus an agent-like mTLS client: attested with a join token, holding
 * entries it may mint for.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { AdminServiceClient } from '../../proto/gen/brevis/ca/v1/admin.js';
import { NodeServiceClient } from '../../proto/gen/brevis/ca/v1/node.js';
import { newKeyWithCsr } from '../../agent/svid/new-key.js';
import { CA_NODE_FLAGS } from '../../ca/cli/node-flags.js';
import { certsToPem, pemEncode } from '../../spiffe/pem.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const TD = 'bench.example';

export function unary<Res>(client: grpc.Client, method: string, req: unknown, timeoutMs = 60_000): Promise<Res> {
  return new Promise((resolve, reject) => {
    const fn = (client as unknown as Record<string, (...a: unknown[]) => void>)[method]!;
    fn.call(client, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (e: grpc.ServiceError | null, r: Res) => (e ? reject(e) : resolve(r)));
  });
}

const EMPTY = Buffer.alloc(0);

/** A unary call with an empty request, its answer ignored: the cheapest round trip a channel makes. Settles true. */
export function emptyUnary(client: grpc.Client, method: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(method, () => EMPTY, (b: Buffer) => b, {}, (e) => (e ? reject(e) : resolve(true)));
  });
}

export interface BenchCa {
  dir: string;
  proc: ChildProcess;
  port: number;
  admin: AdminServiceClient;
  roots: Buffer[];
  /** Log lines (pino JSON) the CA wrote at warn level or above, after it started. */
  problems: string[];
  stop(): Promise<void>;
}

export async function startBenchCa(extraArgs: string[] = []): Promise<BenchCa> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'brevis-bench-'));
  const configFile = path.join(dir, 'ca.json');
  const { writeFileSync } = await import('node:fs');
  writeFileSync(configFile, JSON.stringify({ ...JSON.parse(process.env.BENCH_CA_CONFIG ?? '{}'), x509SvidMinTtl: '30s', logLevel: 'warn', attestRatePerSource: 0, signRatePerAgent: 0, signRatePerSource: 0 }) /* limits off: measure capacity */);
  // BENCH_CA_NODE_ARGS profiles the CA alone, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
  const nodeArgs = (process.env.BENCH_CA_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const proc = spawn(process.execPath, [...CA_NODE_FLAGS, ...nodeArgs, path.join(ROOT, 'dist/ca/cli/main.js'), 'run', '--data-dir', path.join(dir, 'ca'), '--trust-domain', TD, '--listen', '127.0.0.1:0', '--config', configFile, '--log-level', 'info', ...extraArgs], { stdio: ['ignore', 'ignore', 'pipe'] });
  const problems: string[] = [];
  const port = await new Promise<number>((resolve, reject) => {
    let buf = '';
    let started = false;
    const t = setTimeout(() => reject(new Error(`CA did not start:\n${buf}`)), 30_000);
    proc.stderr!.on('data', (d) => {
      buf += d;
      if (!started) {
        const m = /"port":(\d+).*"msg":"CA serving"/.exec(buf);
        if (!m) return;
        started = true;
        clearTimeout(t);
        resolve(Number(m[1]));
        buf = buf.slice(buf.indexOf('\n', m.index) + 1);
      }
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const level = /"level":(\d+)/.exec(line);
        if (level && Number(level[1]) >= 40) problems.push(line);
      }
    });
    proc.on('exit', (c) => reject(new Error(`CA exited ${c}:\n${buf}`)));
  });
  const admin = new AdminServiceClient(`unix://${path.join(dir, 'ca', 'admin.sock')}`, grpc.credentials.createInsecure());
  const b = await unary<{ bundle: { x509Authorities: Buffer[] } }>(admin, 'getBundle', {});
  return {
    dir,
    proc,
    port,
    admin,
    roots: b.bundle.x509Authorities,
    problems,
    async stop() {
      admin.close();
      await new Promise<void>((r) => {
        proc.once('exit', () => r());
        proc.kill('SIGTERM');
      });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function checkServer(_host: string, cert: { raw?: Buffer }): Error | undefined {
  return cert.raw ? undefined : new Error('no server certificate');
}

export interface BenchAgent {
  agentId: string;
  client: NodeServiceClient;
  entryIds: string[];
}

/** Attests an agent and registers `entries` entries for it. */
export async function benchAgent(ca: BenchCa, entries: number, channels = 1): Promise<BenchAgent & { clients: NodeServiceClient[] }> {
  const tok = await unary<{ token: string }>(ca.admin, 'createJoinToken', { agentId: '', ttlSeconds: 0 });
  const k = await newCsr();
  const roots = Buffer.from(certsToPem(ca.roots));
  const anon = new NodeServiceClient(`127.0.0.1:${ca.port}`, grpc.credentials.createSsl(roots, null, null, { checkServerIdentity: checkServer }));
  const res = await unary<{ svid: { spiffeId: string; certChain: Buffer[] } }>(anon, 'attestJoinToken', { token: tok.token, csr: k.csr });
  anon.close();
  const keyPem = Buffer.from(pemEncode('PRIVATE KEY', k.pkcs8));
  const chainPem = Buffer.from(certsToPem(res.svid.certChain));
  // Separate channels (distinct channel options) so load spreads over several HTTP/2 connections.
  const clients = Array.from({ length: channels }, (_, i) =>
    new NodeServiceClient(`127.0.0.1:${ca.port}`, grpc.credentials.createSsl(roots, keyPem, chainPem, { checkServerIdentity: checkServer }), {
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
      'grpc.enable_channelz': 0, // as the agent's channel (agent/node/channel.ts)
      'bench.channel': i,
    }),
  );
  const entryIds: string[] = [];
  for (let i = 0; i < entries; i++) {
    const r = await unary<{ entry: { id: string } }>(ca.admin, 'createEntry', {
      entry: { id: '', spiffeId: `spiffe://${TD}/svc/${i}`, parentId: res.svid.spiffeId, selectors: [{ type: 'unix', value: `uid:${1000 + i}` }], x509SvidTtl: 3600, dnsNames: [], hint: '', admin: false, expiresAt: 0, revision: 0, createdAt: 0 },
    });
    entryIds.push(r.entry.id);
  }
  return { agentId: res.svid.spiffeId, client: clients[0]!, clients, entryIds };
}

/**
 * A fresh P-256 key and its CSR, made as the agent makes them: never through
 * generateKeyPairSync's KeyObjects, which can deadlock Node 20 when read while
 * the garbage collector finalizes their generation job (agent/svid/new-key.ts).
 */
export async function newCsr(): Promise<{ privateKey: KeyObject; pkcs8: Buffer; csr: Buffer }> {
  const k = await newKeyWithCsr();
  return { privateKey: k.privateKey, pkcs8: k.pkcs8, csr: k.csr };
}
