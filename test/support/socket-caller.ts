/**
 * Calls gRPC methods on a Unix socket from another process running as
 * another user (setpriv --reuid), to test what a local user without
 * permission gets. The child prints one JSON outcome per call.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from './processes.js';

export interface PlannedCall {
  path: string;
  /** A server-streaming method: the first message counts as success, then the call is cancelled. */
  stream: boolean;
  body: Buffer;
  /** Send `workload.spiffe.io: true`. */
  workloadHeader: boolean;
}

export interface CallOutcome {
  code: number;
  details: string;
}

const SCRIPT = `
const { createRequire } = require('node:module');
const [root, address, planJson] = process.argv.slice(2);
const grpc = createRequire(root + '/package.json')('@grpc/grpc-js');
const plan = JSON.parse(planJson);
const raw = (b) => b;
const client = new grpc.Client(address, grpc.credentials.createInsecure());
function one(c) {
  return new Promise((resolve) => {
    const md = new grpc.Metadata();
    if (c.workloadHeader) md.set('workload.spiffe.io', 'true');
    const opts = { deadline: Date.now() + 5000 };
    const body = Buffer.from(c.body, 'hex');
    if (!c.stream) {
      client.makeUnaryRequest(c.path, raw, raw, body, md, opts, (err) => resolve(err ? { code: err.code, details: err.details } : { code: 0, details: '' }));
      return;
    }
    const call = client.makeServerStreamRequest(c.path, raw, raw, body, md, opts);
    let got = false;
    call.on('data', () => { got = true; call.cancel(); });
    call.on('error', () => {});
    call.on('status', (s) => resolve(got ? { code: 0, details: '' } : { code: s.code, details: s.details }));
  });
}
(async () => {
  const out = [];
  for (const c of plan) out.push(await one(c));
  process.stdout.write(JSON.stringify(out));
  client.close();
})();
`;

/** Runs `plan` against `address` (`unix:///...`) as uid/gid 65534; `dir` must be readable by that user. */
export function callAsNobody(dir: string, address: string, plan: PlannedCall[]): Promise<CallOutcome[]> {
  const script = path.join(dir, 'socket-caller.cjs');
  writeFileSync(script, SCRIPT, { mode: 0o644 });
  const wire = JSON.stringify(plan.map((c) => ({ ...c, body: c.body.toString('hex') })));
  return new Promise((resolve, reject) =>
    execFile(
      'setpriv',
      ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, script, ROOT, address, wire],
      { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout) as CallOutcome[])),
    ),
  );
}
