/**
 * The floors under the single-mint latency, measured in the same run at the
 * same offered rate: what this machine's stack costs before Brevis does any
 * work. A child process serves
 *  - a plain grpc-js server (no TLS, no interceptors, no CA) with one no-op
 *    unary method: the latency of grpc-js and node:http2 themselves;
 *  - a raw TCP echo server: the latency of the kernel's loopback and of two
 *    Node event loops waking.
 * The benchmark calls both from its own process, as it calls the CA.
 *
 * Run as a script (`node floor-servers.js serve`) it is the child; imported,
 * it starts that child and gives the two call functions.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { emptyUnary } from './ca-process.js';

const NOOP = '/brevis.bench.Floor/Noop';
const FRAME = 8;

export interface FloorServers {
  /** One no-op unary call through a plain grpc-js channel; settles true. */
  grpcNoop(): Promise<boolean>;
  /** One 8-byte round trip through the TCP echo server; settles true. */
  tcpEcho(n: number): Promise<boolean>;
  stop(): Promise<void>;
}

export async function startFloorServers(): Promise<FloorServers> {
  const proc: ChildProcess = spawn(process.execPath, [fileURLToPath(import.meta.url), 'serve'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const ports = await new Promise<{ grpc: number; tcp: number }>((resolve, reject) => {
    let buf = '';
    proc.stdout!.on('data', (d) => {
      buf += d;
      const m = /^floor (\d+) (\d+)\n/.exec(buf);
      if (m) resolve({ grpc: Number(m[1]), tcp: Number(m[2]) });
    });
    proc.once('exit', (c) => reject(new Error(`the floor servers exited with ${c}`)));
  });

  const client = new grpc.Client(`127.0.0.1:${ports.grpc}`, grpc.credentials.createInsecure(), { 'grpc.enable_channelz': 0 });
  const grpcNoop = () => emptyUnary(client, NOOP);

  const socket = net.connect(ports.tcp, '127.0.0.1');
  socket.setNoDelay(true);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const waiting = new Map<number, (ok: boolean) => void>();
  let pending: Buffer = Buffer.alloc(0);
  socket.on('data', (d: Buffer) => {
    pending = pending.length ? Buffer.concat([pending, d]) : d;
    let at = 0;
    for (; at + FRAME <= pending.length; at += FRAME) {
      const n = pending.readUInt32LE(at);
      waiting.get(n)?.(true);
      waiting.delete(n);
    }
    pending = pending.subarray(at);
  });
  const tcpEcho = (n: number) =>
    new Promise<boolean>((resolve) => {
      waiting.set(n, resolve);
      const b = Buffer.alloc(FRAME);
      b.writeUInt32LE(n >>> 0);
      socket.write(b);
    });

  return {
    grpcNoop,
    tcpEcho,
    async stop() {
      client.close();
      socket.destroy();
      for (const r of waiting.values()) r(false);
      await new Promise<void>((r) => {
        if (proc.exitCode !== null) return r();
        proc.once('exit', () => r());
        proc.kill('SIGTERM');
      });
    },
  };
}

async function serve() {
  const server = new grpc.Server({ 'grpc.enable_channelz': 0 });
  server.register(NOOP, (_call: unknown, cb: (e: null, r: Buffer) => void) => cb(null, Buffer.alloc(0)), (b: Buffer) => b, (b: Buffer) => b, 'unary');
  const grpcPort = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, port) => (e ? reject(e) : resolve(port))),
  );
  const tcp = net.createServer((s) => {
    s.setNoDelay(true);
    s.on('data', (d) => s.write(d));
    s.on('error', () => s.destroy());
  });
  await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
  const tcpPort = (tcp.address() as net.AddressInfo).port;
  process.stdout.write(`floor ${grpcPort} ${tcpPort}\n`);
  process.on('SIGTERM', () => process.exit(0));
  // The benchmark holds this pipe open: if it dies without stopping us, we go too.
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === 'serve') {
  serve().catch((e: unknown) => {
    process.stderr.write(`floor servers: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
}
