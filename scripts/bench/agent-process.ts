/**
 * A node agent run as its own process for benchmarks (dist/agent/cli/main.js
 * run, with the node flags of its shebang), attested with a join token and holding `entries` entries. One entry
 * matches the benchmark process itself (its uid and the node executable), so
 * the benchmark can call the Workload API as a workload; the others match no
 * process but are minted and cached all the same, as a real agent does.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, realpathSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { AGENT_NODE_FLAGS } from '../../agent/cli/node-flags.js';
import { certsToPem } from '../../spiffe/pem.js';
import { ROOT, TD, unary, type BenchCa } from './ca-process.js';

export interface BenchAgentProcess {
  proc: ChildProcess;
  agentId: string;
  socketPath: string;
  /** Every entry id, the workload's own first. */
  entryIds: string[];
  /** Log lines (pino JSON) the agent wrote at warn level or above. */
  problems: string[];
  stop(): Promise<void>;
}

export interface AgentSpec {
  entries: number;
  /** X.509-SVID TTL of every entry, seconds. */
  ttlSeconds: number;
  log: (m: string) => void;
}

/** Selectors of the benchmark process as unix attestation sees it. */
export function ownSelectors(): { type: string; value: string }[] {
  return [
    { type: 'unix', value: `uid:${process.getuid!()}` },
    { type: 'unix', value: `path:${realpathSync(process.execPath)}` },
  ];
}

/** Creates entries through the admin API, `concurrency` at a time. */
async function createEntries(ca: BenchCa, parentId: string, count: number, ttlSeconds: number, concurrency = 64): Promise<string[]> {
  const ids: string[] = new Array(count);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < count; i = next++) {
      const selectors = i === 0 ? ownSelectors() : [{ type: 'unix', value: `uid:${100_000 + i}` }];
      const r = await unary<{ entry: { id: string } }>(ca.admin, 'createEntry', {
        entry: { id: '', spiffeId: `spiffe://${TD}/storm/${i}`, parentId, selectors, x509SvidTtl: ttlSeconds, dnsNames: [], hint: '', admin: false, expiresAt: 0, revision: 0, createdAt: 0 },
      });
      ids[i] = r.entry.id;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return ids;
}

/** Registers the agent's entries, then starts it and waits until its Workload API socket exists. */
export async function startBenchAgentProcess(ca: BenchCa, spec: AgentSpec): Promise<BenchAgentProcess> {
  const dir = path.join(ca.dir, 'agent');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tok = await unary<{ token: string; agentId: string }>(ca.admin, 'createJoinToken', { agentId: '', ttlSeconds: 0 });
  const t0 = Date.now();
  const entryIds = await createEntries(ca, tok.agentId, spec.entries, spec.ttlSeconds);
  spec.log(`created ${spec.entries} entries in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
  const bundleFile = path.join(dir, 'bundle.pem');
  writeFileSync(bundleFile, certsToPem(ca.roots));
  const socketPath = path.join(dir, 'workload.sock');
  // BENCH_AGENT_NODE_ARGS profiles the agent alone; BENCH_AGENT_LOG keeps its log in a file.
  const nodeArgs = (process.env.BENCH_AGENT_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const logFile = process.env.BENCH_AGENT_LOG ? createWriteStream(process.env.BENCH_AGENT_LOG) : undefined;
  const proc = spawn(
    process.execPath,
    [
      ...AGENT_NODE_FLAGS,
      ...nodeArgs,
      path.join(ROOT, 'dist/agent/cli/main.js'),
      'run',
      '--server', `127.0.0.1:${ca.port}`,
      '--trust-domain', TD,
      '--trust-bundle', bundleFile,
      '--data-dir', path.join(dir, 'data'),
      '--socket', socketPath,
      '--join-token', tok.token,
      '--log-level', 'info',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const problems: string[] = [];
  let buf = '';
  const running = new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`agent did not start:\n${buf.slice(-4000)}`)), 60_000);
    proc.stderr!.on('data', (d: Buffer) => {
      logFile?.write(d);
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (/"msg":"agent running"/.test(line)) {
          clearTimeout(t);
          resolve();
        }
        const level = /"level":(\d+)/.exec(line);
        if (level && Number(level[1]) >= 40) problems.push(line);
      }
    });
    proc.once('exit', (c) => {
      clearTimeout(t);
      reject(new Error(`agent exited ${c}:\n${buf.slice(-4000)}`));
    });
  });
  await running;
  return {
    proc,
    agentId: tok.agentId,
    socketPath,
    entryIds,
    problems,
    stop: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill('SIGTERM');
      }),
  };
}
