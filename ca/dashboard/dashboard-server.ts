/**
 * The read-only web dashboard's HTTP listener. Plain HTTP on a loopback
 * address only; anywhere else it must be HTTPS that requires a client
 * certificate from the configured admin CA. GET only; a strict
 * Content-Security-Policy (nothing but this origin); on loopback the Host
 * header must name a loopback host too, so a web page cannot reach it by
 * DNS rebinding. Live updates are server-sent events: one snapshot per
 * refresh, rendered once and sent to every open page.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { DashboardConfig } from '../config/config.js';
import { formatHostPort, isLoopbackHost, parseListenAddress } from '../metrics/listen-address.js';
import { DASHBOARD_CSS, DASHBOARD_JS } from './assets.js';
import type { DashboardSnapshot } from './dashboard-model.js';
import { renderPage, renderSections } from './render.js';

export interface DashboardServerOptions {
  config: DashboardConfig;
  model: { snapshot(): Promise<DashboardSnapshot> };
  logger: Pick<Logger, 'info' | 'warn'>;
  /** How often open pages get a new snapshot, ms (default 2000). */
  refreshMs?: number;
}

export interface DashboardServer {
  readonly port: number;
  /** e.g. `http://127.0.0.1:8080/`. */
  readonly url: string;
  close(): Promise<void>;
}

const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cache-control': 'no-store',
};

/** Refuses what the dashboard must never do, whatever the config layer let through. */
export class DashboardConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
}

export async function startDashboard(opts: DashboardServerOptions): Promise<DashboardServer> {
  const { config, model, logger } = opts;
  const { host, port } = parseListenAddress(config.listen);
  if (!config.tls && !isLoopbackHost(host)) {
    throw new DashboardConfigError(`the dashboard listens on loopback only unless admin client certificates are required (got ${config.listen})`);
  }
  const clients = new Set<http.ServerResponse>();
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    void route(req, res).catch((e: unknown) => {
      logger.warn({ err: (e as Error).message }, 'dashboard request failed');
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8', ...SECURITY_HEADERS });
      res.end('the dashboard could not read the CA state\n');
    });
  };

  async function route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', ...SECURITY_HEADERS }).end();
      return;
    }
    if (!config.tls && !loopbackHostHeader(req.headers.host)) {
      res.writeHead(421, { 'content-type': 'text/plain; charset=utf-8', ...SECURITY_HEADERS }).end('use a loopback address (127.0.0.1, [::1] or localhost)\n');
      return;
    }
    const path = (req.url ?? '/').split('?')[0];
    const send = (type: string, body: string) => {
      res.writeHead(200, { 'content-type': type, ...SECURITY_HEADERS });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    switch (path) {
      case '/':
        return send('text/html; charset=utf-8', renderPage(await model.snapshot()));
      case '/app.js':
        return send('text/javascript; charset=utf-8', DASHBOARD_JS);
      case '/app.css':
        return send('text/css; charset=utf-8', DASHBOARD_CSS);
      case '/api/snapshot':
        return send('application/json', JSON.stringify(await model.snapshot()));
      case '/events':
        res.writeHead(200, { 'content-type': 'text/event-stream', connection: 'keep-alive', ...SECURITY_HEADERS });
        if (req.method === 'HEAD') return void res.end();
        res.write('retry: 2000\n\n');
        clients.add(res);
        req.on('close', () => clients.delete(res));
        await push([res]);
        schedule();
        return;
      default:
        res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', ...SECURITY_HEADERS }).end('not found\n');
    }
  }

  /** Sends one rendered snapshot to `to`. */
  async function push(to: Iterable<http.ServerResponse>): Promise<void> {
    const s = await model.snapshot();
    const data = JSON.stringify({
      sections: renderSections(s),
      generatedAt: new Date(s.generatedAtMs).toISOString(),
      updated: `${new Date(s.generatedAtMs).toISOString().slice(11, 19)} UTC`,
    });
    for (const res of to) if (!res.writableEnded) res.write(`event: snapshot\ndata: ${data}\n\n`);
  }

  let timer: NodeJS.Timeout | null = null;
  let closed = false;
  function schedule(): void {
    if (timer || closed || clients.size === 0) return;
    timer = setTimeout(() => {
      timer = null;
      push(clients)
        .catch((e: unknown) => logger.warn({ err: (e as Error).message }, 'dashboard update failed'))
        .finally(schedule);
    }, opts.refreshMs ?? 2000);
  }

  const server = config.tls
    ? https.createServer(
        {
          cert: readTlsFile(config.tls.certFile, 'dashboard TLS certificate'),
          key: readTlsFile(config.tls.keyFile, 'dashboard TLS key'),
          ca: readTlsFile(config.tls.clientCaFile, 'dashboard client CA'),
          requestCert: true,
          rejectUnauthorized: true,
          minVersion: 'TLSv1.2',
        },
        handler,
      )
    : http.createServer(handler);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => reject(new Error(`cannot listen on ${config.listen} for the dashboard: ${e.code ?? e.message}`)));
    server.listen(port, host, () => resolve());
  });
  const bound = (server.address() as AddressInfo).port;
  const url = `${config.tls ? 'https' : 'http'}://${formatHostPort(host, bound)}/`;
  logger.info({ url, clientCertificates: config.tls !== null }, 'dashboard serving');
  return {
    port: bound,
    url,
    close: () =>
      new Promise<void>((resolve) => {
        closed = true;
        if (timer) clearTimeout(timer);
        for (const res of clients) res.end();
        clients.clear();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** True when the Host header names a loopback host (any port). */
function loopbackHostHeader(host: string | undefined): boolean {
  if (!host) return false;
  const m = /^(\[[^\]]+\]|[^:]+)(?::\d+)?$/.exec(host);
  if (!m) return false;
  const name = m[1]!.startsWith('[') ? m[1]!.slice(1, -1) : m[1]!;
  return isLoopbackHost(name);
}

function readTlsFile(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new DashboardConfigError(`cannot read the ${what} ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}
