/**
 * Workload API clients for benchmarks, on raw HTTP/2 sessions: grpc-js
 * shares one connection per address, and a workload fleet is many
 * processes with a connection each. A fetch is one FetchX509SVID call,
 * timed from the request to its first complete response message, then
 * cancelled (as a workload that only wanted its SVID).
 */
import http2 from 'node:http2';
import net from 'node:net';
import { percentile } from './stats.js';

const PATH = '/SpiffeWorkloadAPI/FetchX509SVID';
/** A gRPC frame holding an empty X509SVIDRequest. */
const EMPTY_REQUEST = Buffer.from([0, 0, 0, 0, 0]);

export class WorkloadConnection {
  private constructor(private readonly session: http2.ClientHttp2Session) {}

  static async open(socketPath: string): Promise<WorkloadConnection> {
    const socket = await connectUnix(socketPath);
    return new Promise((resolve, reject) => {
      const session = http2.connect('http://localhost', { createConnection: () => socket });
      session.once('error', reject);
      session.once('connect', () => {
        session.off('error', reject);
        session.on('error', () => undefined);
        resolve(new WorkloadConnection(session));
      });
    });
  }

  /**
   * One FetchX509SVID: resolves with the milliseconds to the first response
   * message and its size, or rejects with the gRPC status it ended with.
   * `hold` keeps the stream open (a watching workload) instead of cancelling it.
   */
  fetch(hold = false): Promise<{ ms: number; bytes: number }> {
    return new Promise((resolve, reject) => {
      const t0 = performance.now();
      const stream = this.session.request({
        ':method': 'POST',
        ':path': PATH,
        'content-type': 'application/grpc',
        te: 'trailers',
        'workload.spiffe.io': 'true',
      });
      let buf: Buffer = Buffer.alloc(0);
      let done = false;
      stream.on('data', (d: Buffer) => {
        if (done) return;
        buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
        if (buf.length < 5 || buf.length < 5 + buf.readUInt32BE(1)) return;
        done = true;
        const ms = performance.now() - t0;
        if (!hold) stream.close(http2.constants.NGHTTP2_CANCEL);
        resolve({ ms, bytes: buf.readUInt32BE(1) });
      });
      const fail = (status: string) => {
        if (done) return;
        done = true;
        reject(new Error(`FetchX509SVID ended with grpc-status ${status}`));
      };
      stream.on('trailers', (t) => fail(String(t['grpc-status'] ?? '?')));
      stream.on('response', (h) => {
        if (h['grpc-status'] !== undefined) fail(String(h['grpc-status']));
      });
      stream.on('error', (e) => fail(e.message));
      stream.on('close', () => fail('(stream closed)'));
      stream.end(EMPTY_REQUEST);
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.session.closed || this.session.destroyed) return resolve();
      this.session.close(() => resolve());
      setTimeout(() => {
        this.session.destroy();
        resolve();
      }, 1000).unref();
    });
  }
}

/**
 * Connects to a Unix socket, retrying while its accept queue is full
 * (EAGAIN: a busy agent has not accepted the previous connections yet).
 */
async function connectUnix(socketPath: string): Promise<net.Socket> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await new Promise<net.Socket>((resolve, reject) => {
        const s = net.connect(socketPath);
        s.once('error', reject);
        s.once('connect', () => {
          s.off('error', reject);
          resolve(s);
        });
      });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN' || attempt >= 200) throw e;
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

/** Retries a fetch until the agent answers with an SVID (it is Unavailable until its first sync). */
export async function waitForSvid(socketPath: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const c = await WorkloadConnection.open(socketPath);
      try {
        await c.fetch();
        return;
      } finally {
        await c.close();
      }
    } catch (e) {
      last = e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  throw new Error(`the agent served no SVID within ${timeoutMs} ms: ${(last as Error)?.message}`);
}

/** Cancelled fetches per probe connection before it is replaced. */
const PROBES_PER_CONNECTION = 500;

export interface FetchLatency {
  p50: number;
  p99: number;
  samples: number;
  /** All connections fetching at once: time until the last one had its first response, ms. */
  burstMs: number;
  errors: number;
}

/**
 * Opens `connections` workload connections, each holding an open
 * FetchX509SVID stream as a watching workload does; measures the burst of
 * all of them opening their stream at once, then probes new fetches one at
 * a time, round robin over the connections, for `seconds`.
 */
export async function fetchLatency(socketPath: string, connections: number, seconds: number): Promise<FetchLatency> {
  const conns: WorkloadConnection[] = [];
  try {
    for (let i = 0; i < connections; i += 50) {
      conns.push(...(await Promise.all(Array.from({ length: Math.min(50, connections - i) }, () => WorkloadConnection.open(socketPath)))));
    }
    let errors = 0;
    const t0 = performance.now();
    await Promise.all(conns.map((c) => c.fetch(true).catch(() => void errors++)));
    const burstMs = performance.now() - t0;
    const lat: number[] = [];
    const used = new Array<number>(conns.length).fill(0);
    const deadline = performance.now() + seconds * 1000;
    for (let i = 0; performance.now() < deadline; i++) {
      const k = i % conns.length;
      // HTTP/2 servers cut a connection whose client resets streams too fast
      // (rapid-reset protection: nghttp2 allows a burst of 1,000), and every
      // probe ends with a cancel: a busy probe connection is replaced, untimed.
      if (++used[k]! > PROBES_PER_CONNECTION) {
        await conns[k]!.close();
        conns[k] = await WorkloadConnection.open(socketPath);
        used[k] = 1;
      }
      try {
        lat.push((await conns[k]!.fetch()).ms);
      } catch {
        errors++;
      }
    }
    lat.sort((a, b) => a - b);
    return { p50: percentile(lat, 50), p99: percentile(lat, 99), samples: lat.length, burstMs, errors };
  } finally {
    await Promise.all(conns.map((c) => c.close()));
  }
}
