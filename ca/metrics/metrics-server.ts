/**
 * The Prometheus scrape endpoint: plain HTTP, GET /metrics only. Used by the
 * CA and the agent, each with its own Registry (never prom-client's global
 * one, so that two components in one process do not mix their series).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { formatHostPort, parseListenAddress } from './listen-address.js';

export interface MetricsServerOptions {
  /** `host:port`; port 0 picks a free one. */
  listen: string;
  registry: Registry;
  logger: { warn(obj: object, msg: string): void };
}

export interface MetricsServer {
  /** The port actually bound. */
  readonly port: number;
  /** e.g. `http://127.0.0.1:9090/metrics`. */
  readonly url: string;
  close(): Promise<void>;
}

export async function startMetricsServer(opts: MetricsServerOptions): Promise<MetricsServer> {
  const { host, port } = parseListenAddress(opts.listen);
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found: scrape /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    opts.registry.metrics().then(
      (text) => {
        res.writeHead(200, { 'content-type': opts.registry.contentType, 'cache-control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      (e: unknown) => {
        opts.logger.warn({ err: (e as Error).message }, 'collecting metrics failed');
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('collecting metrics failed\n');
      },
    );
  });
  // Scrapers keep connections open; they must not hold close() up.
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => reject(new Error(`cannot listen on ${opts.listen} for metrics: ${e.code ?? e.message}`)));
    server.listen(port, host, () => resolve());
  });
  const bound = (server.address() as AddressInfo).port;
  return {
    port: bound,
    url: `http://${formatHostPort(host, bound)}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
