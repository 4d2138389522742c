#!/usr/bin/env node
/**
 * `npm start`: the whole of Brevis on one machine, as real processes:
 * a CA on embedded SQLite, a node agent, and two services that talk mTLS
 * with SVIDs that rotate every minute or so. State lives in .brevis-demo/
 * (delete it to start over). Ctrl-C stops everything cleanly.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AGENT_NODE_FLAGS } from '../agent/cli/node-flags.js';
import { CA_NODE_FLAGS } from '../ca/cli/node-flags.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const STATE = path.resolve(process.env.BREVIS_DEMO_DIR ?? path.join(ROOT, '.brevis-demo'));
const TD = 'demo.brevis.internal';
const CA_PORT = Number(process.env.BREVIS_DEMO_CA_PORT ?? 8443);
const SERVICE_PORT = Number(process.env.BREVIS_DEMO_SERVICE_PORT ?? 8444);
const CA_BIN = path.join(ROOT, 'dist/ca/cli/main.js');
const AGENT_BIN = path.join(ROOT, 'dist/agent/cli/main.js');
const SERVICE_BIN = path.join(ROOT, 'dist/scripts/demo-service.js');
const ADMIN_SOCK = path.join(STATE, 'ca', 'admin.sock');
const WORKLOAD_SOCK = path.join(STATE, 'agent', 'workload.sock');
const SERVER_ID = `spiffe://${TD}/demo/server`;
const CLIENT_ID = `spiffe://${TD}/demo/client`;
const AGENT_ID = `spiffe://${TD}/brevis/agent/demo-node`;

const children: ChildProcess[] = [];
let stopping = false;

function banner(msg: string) {
  process.stdout.write(`\n\x1b[1m== ${msg}\x1b[0m\n`);
}

/** Runs a brevis-ca admin command and returns its stdout; exits the demo on failure. */
function ca(...args: string[]): string {
  const r = spawnSync(process.execPath, [CA_BIN, ...args, '--socket', ADMIN_SOCK], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`brevis-ca ${args.slice(0, 2).join(' ')} failed: ${r.stderr.trim()}`);
  return r.stdout;
}

/** Starts a child whose output lines are prefixed; resolves when `ready` shows up. */
function start(name: string, args: string[], ready: RegExp, env: NodeJS.ProcessEnv = {}, pretty?: (line: string) => string | null): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(p);
    let seen = false;
    const onLine = (line: string) => {
      if (!line.trim()) return;
      const shown = pretty ? pretty(line) : line;
      if (shown !== null) process.stdout.write(`[${name.padEnd(6)}] ${shown}\n`);
      if (!seen && ready.test(line)) {
        seen = true;
        resolve(p);
      }
    };
    for (const s of [p.stdout!, p.stderr!]) {
      let buf = '';
      s.on('data', (d: Buffer) => {
        buf += d.toString();
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          onLine(buf.slice(0, i));
          buf = buf.slice(i + 1);
        }
      });
    }
    p.on('exit', (code, sig) => {
      if (!seen) reject(new Error(`${name} exited (${code ?? sig}) before it was ready`));
      else if (!stopping) process.stdout.write(`[${name.padEnd(6)}] exited (${code ?? sig})\n`);
    });
  });
}

/** Shows pino JSON lines as "level msg key=value". */
function prettyJson(line: string): string | null {
  try {
    const o = JSON.parse(line) as Record<string, unknown>;
    const lvl = ({ 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' } as Record<number, string>)[o.level as number] ?? String(o.level);
    const extra = Object.entries(o)
      .filter(([k]) => !['level', 'time', 'pid', 'hostname', 'name', 'msg'].includes(k))
      .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
      .join(' ');
    return `${lvl} ${String(o.msg)}${extra ? `  ${extra}` : ''}`;
  } catch {
    return line;
  }
}

async function waitFor(check: () => boolean, what: string, ms = 30_000) {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function stopAll(code: number) {
  if (stopping) return;
  stopping = true;
  banner('stopping');
  // Services first, then the agent, then the CA.
  const order = [...children].reverse();
  let i = 0;
  const next = () => {
    const c = order[i++];
    if (!c) process.exit(code);
    if (c.exitCode !== null || c.signalCode !== null) return next();
    const t = setTimeout(() => c.kill('SIGKILL'), 5000);
    c.once('exit', () => {
      clearTimeout(t);
      next();
    });
    c.kill('SIGTERM');
  };
  next();
}

async function main() {
  mkdirSync(STATE, { recursive: true, mode: 0o700 });
  const fresh = !existsSync(path.join(STATE, 'ca', 'brevis.db'));
  banner(`1. CA for trust domain ${TD} on 127.0.0.1:${CA_PORT}, state in ${path.relative(process.cwd(), STATE) || STATE}/ca (${fresh ? 'new: creating root and intermediate' : 'existing: reusing its root'})`);
  await start('ca', [...CA_NODE_FLAGS, CA_BIN, 'run', '--data-dir', path.join(STATE, 'ca'), '--trust-domain', TD, '--listen', `127.0.0.1:${CA_PORT}`], /CA serving/, {}, prettyJson);

  const bundleFile = path.join(STATE, 'bundle.pem');
  writeFileSync(bundleFile, ca('bundle', 'show'));
  const uid = os.userInfo().uid;
  const existing = ca('entry', 'list', '--json');
  if (!existing.includes(SERVER_ID)) {
    banner('2. registering two services: same node, told apart by their hint (a real deployment would use distinct uids or binaries)');
    for (const [id, hint] of [[SERVER_ID, 'server'], [CLIENT_ID, 'client']] as const) {
      const entryId = ca('entry', 'create', '--spiffe-id', id, '--parent-id', AGENT_ID, '--selector', `unix:uid:${uid}`, '--selector', `unix:path:${process.execPath}`, '--x509-ttl', '2m', '--hint', hint).trim();
      process.stdout.write(`  entry ${entryId}: ${id} for workloads with unix:uid:${uid} and unix:path:${process.execPath}, SVID lifetime 2 minutes\n`);
    }
  } else {
    banner('2. the entries for the two services already exist');
  }

  const agentDir = path.join(STATE, 'agent');
  const agentArgs = [...AGENT_NODE_FLAGS, AGENT_BIN, 'run', '--server', `127.0.0.1:${CA_PORT}`, '--trust-domain', TD, '--trust-bundle', bundleFile, '--data-dir', agentDir, '--socket', WORKLOAD_SOCK, '--sync-interval', '2s'];
  if (!existsSync(path.join(agentDir, 'agent-svid.pem'))) {
    const token = ca('token', 'create', '--agent-id', AGENT_ID, '--ttl', '10m').trim();
    banner(`3. agent attests with a one-time join token (${AGENT_ID}) and serves the Workload API on ${path.relative(process.cwd(), WORKLOAD_SOCK)}`);
    agentArgs.push('--join-token', token);
  } else {
    banner(`3. agent restarts with its stored agent SVID (no new join token needed)`);
  }
  await start('agent', agentArgs, /agent running/, {}, prettyJson);
  await waitFor(() => existsSync(WORKLOAD_SOCK), 'the Workload API socket');

  banner(`4. two services fetch SVIDs from the Workload API and call each other over mTLS every 3 s; SVIDs rotate about every minute`);
  const env = { SPIFFE_ENDPOINT_SOCKET: `unix://${WORKLOAD_SOCK}` };
  await start('server', [SERVICE_BIN, 'server', SERVER_ID, CLIENT_ID, String(SERVICE_PORT)], /listening/, env);
  await start('client', [SERVICE_BIN, 'client', SERVER_ID, CLIENT_ID, String(SERVICE_PORT)], /got SVID/, env);
  process.stdout.write('\nWatch the serial numbers change as the agent rotates the SVIDs, with no failed call. Ctrl-C stops everything.\n\n');
}

process.once('SIGINT', () => stopAll(0));
process.once('SIGTERM', () => stopAll(0));
main().catch((e) => {
  process.stderr.write(`demo: ${e instanceof Error ? e.message : String(e)}\n`);
  stopAll(1);
});
