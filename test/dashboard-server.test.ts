import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCaConfig, ConfigError } from '../ca/config/config.js';
import { startDashboard } from '../ca/dashboard/dashboard-server.js';
import type { DashboardSnapshot } from '../ca/dashboard/dashboard-model.js';
import { startTestCa, TD, type TestCa } from './support/ca-harness.js';
import { tempDir, waitFor } from './support/agent-harness.js';

const base = { dataDir: '/tmp/x', trustDomain: TD, listen: '127.0.0.1:0' };

function configError(raw: Record<string, unknown>): ConfigError {
  try {
    buildCaConfig({ ...base, ...raw });
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('expected a ConfigError');
}

interface Got {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function get(url: string, opts: { method?: string; host?: string } & https.RequestOptions = {}): Promise<Got> {
  return new Promise((resolve, reject) => {
    const lib = url.startsWith('https:') ? https : http;
    const { host, ...rest } = opts;
    const req = lib.request(url, { method: opts.method ?? 'GET', ...rest, headers: host ? { host } : {} }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('dashboard configuration', () => {
  it('is off by default', () => {
    expect(buildCaConfig(base).dashboard).toBeNull();
  });

  it('accepts loopback addresses without client certificates', () => {
    for (const listen of ['127.0.0.1:8080', 'localhost:0', '[::1]:9000', '127.10.0.1:1']) {
      expect(buildCaConfig({ ...base, dashboard: listen }).dashboard).toEqual({ listen, tls: null });
    }
  });

  it('refuses any other address without an admin client certificate CA, saying how to fix it', () => {
    for (const listen of ['0.0.0.0:8080', '10.0.0.5:8080', '[::]:8080', 'ca.example.org:8080']) {
      const e = configError({ dashboard: listen });
      expect(e.message).toContain(`--dashboard ${listen}`);
      expect(e.message).toMatch(/loopback only/);
      expect(e.message).toMatch(/--dashboard-client-ca/);
    }
  });

  it('requires the certificate, key and client CA together, and a dashboard address for them', () => {
    expect(configError({ dashboard: '0.0.0.0:1', dashboardClientCa: 'ca.pem' }).message).toMatch(/all three/);
    expect(configError({ dashboardTlsCert: 'c.pem' }).message).toMatch(/need --dashboard/);
    expect(configError({ dashboard: 'nope' }).message).toMatch(/dashboard must be HOST:PORT/);
    const c = buildCaConfig({ ...base, dashboard: '0.0.0.0:8443', dashboardTlsCert: 'c.pem', dashboardTlsKey: 'k.pem', dashboardClientCa: 'ca.pem' });
    expect(c.dashboard).toEqual({ listen: '0.0.0.0:8443', tls: { certFile: path.resolve('c.pem'), keyFile: path.resolve('k.pem'), clientCaFile: path.resolve('ca.pem') } });
  });

  it('refuses a non-loopback plain-HTTP listener even if the config layer were bypassed', async () => {
    await expect(startDashboard({ config: { listen: '0.0.0.0:0', tls: null }, model: { snapshot: () => Promise.reject(new Error('unused')) }, logger: console })).rejects.toThrow(/loopback only/);
  });
});

describe('dashboard over HTTP on loopback', () => {
  let t: TestCa;
  let url: string;
  beforeAll(async () => {
    t = await startTestCa({ dashboard: '127.0.0.1:0' });
    url = `http://127.0.0.1:${t.ca.dashboardPort}/`;
  });
  afterAll(async () => {
    await t?.cleanup();
  });

  it('serves the page with a strict content security policy and only same-origin assets', async () => {
    const res = await get(url);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(res.headers['content-security-policy']).toContain("default-src 'none'");
    expect(res.headers['content-security-policy']).toContain("script-src 'self'");
    expect(res.headers['x-frame-options']).toBe('DENY');
    expect(res.body).toContain(`<span class="td">${TD}</span>`);
    // No external network: every URL in the page is relative.
    expect(res.body).not.toMatch(/(src|href)="(https?:)?\/\//);
    expect((await get(`${url}app.js`)).body).toContain("new EventSource('events')");
    expect((await get(`${url}app.css`)).headers['content-type']).toBe('text/css; charset=utf-8');
  });

  it('is read-only and refuses a Host header that is not loopback (DNS rebinding)', async () => {
    expect((await get(url, { method: 'POST' })).status).toBe(405);
    expect((await get(url, { method: 'DELETE' })).status).toBe(405);
    expect((await get(url, { host: 'attacker.example:80' })).status).toBe(421);
    expect((await get(url, { host: `localhost:${t.ca.dashboardPort}` })).status).toBe(200);
    expect((await get(`${url}nothing`)).status).toBe(404);
  });

  it('gives the state as JSON, matching the store', async () => {
    const snap = JSON.parse((await get(`${url}api/snapshot`)).body) as DashboardSnapshot;
    const auths = await t.ca.store.listAuthorities();
    expect(snap.trustDomain).toBe(TD);
    expect(snap.authorities.map((a) => a.id).sort()).toEqual(auths.map((a) => a.id).sort());
    expect(snap.authorities.find((a) => a.kind === 'ssh-user')!.notAfter).toBeNull();
    expect(snap.rate).toHaveLength(60);
    await waitFor(async () => (JSON.parse((await get(`${url}api/snapshot`)).body) as DashboardSnapshot).audit.chain.status === 'intact', 5000, 'the audit chain check');
  });

  it('pushes rendered sections as server-sent events', async () => {
    const first = await new Promise<string>((resolve, reject) => {
      http
        .get(`${url}events`, (res) => {
          expect(res.headers['content-type']).toBe('text/event-stream');
          let buf = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            buf += c;
            const m = /event: snapshot\ndata: (.*)\n\n/.exec(buf);
            if (m) {
              res.destroy();
              resolve(m[1]!);
            }
          });
        })
        .on('error', reject);
    });
    const msg = JSON.parse(first) as { sections: Record<string, string>; generatedAt: string };
    expect(Object.keys(msg.sections).sort()).toEqual(['agents', 'audit', 'authorities', 'credentials', 'rate', 'summary']);
    expect(msg.sections.summary).toContain('data-testid="agents-active"');
    expect(Date.parse(msg.generatedAt)).toBeGreaterThan(0);
  });
});

describe('dashboard over HTTPS with admin client certificates', () => {
  const tmp = tempDir('brevis-dash-tls-');
  const f = (n: string) => path.join(tmp.dir, n);
  let t: TestCa;
  let url: string;

  beforeAll(async () => {
    const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
    ssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '1', '-subj', '/CN=Brevis test admin CA');
    writeFileSync(f('server.ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
    ssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=dashboard');
    ssl('x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.pem'), '-days', '1', '-extfile', f('server.ext'));
    writeFileSync(f('client.ext'), 'extendedKeyUsage=clientAuth\n');
    ssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('admin.key'), '-out', f('admin.csr'), '-subj', '/CN=alice');
    ssl('x509', '-req', '-in', f('admin.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('admin.pem'), '-days', '1', '-extfile', f('client.ext'));
    ssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('stranger.key'), '-out', f('stranger.pem'), '-days', '1', '-subj', '/CN=stranger');
    t = await startTestCa({ dashboard: '0.0.0.0:0', dashboardTlsCert: f('server.pem'), dashboardTlsKey: f('server.key'), dashboardClientCa: f('ca.pem') });
    url = `https://127.0.0.1:${t.ca.dashboardPort}/`;
  });
  afterAll(async () => {
    await t?.cleanup();
    tmp.cleanup();
  });

  it('serves an admin with a client certificate from the configured CA', async () => {
    const res = await get(url, { ca: readFileSync(f('ca.pem')), cert: readFileSync(f('admin.pem')), key: readFileSync(f('admin.key')) });
    expect(res.status).toBe(200);
    expect(res.body).toContain('Brevis CA');
  });

  it('refuses a client without a certificate, or with one from another CA', async () => {
    await expect(get(url, { ca: readFileSync(f('ca.pem')) })).rejects.toThrow();
    await expect(get(url, { ca: readFileSync(f('ca.pem')), cert: readFileSync(f('stranger.pem')), key: readFileSync(f('stranger.key')) })).rejects.toThrow();
  });
});
