import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from '../agent/agent.js';
import { HealthClient } from '../proto/gen/grpc/health/v1/health.js';
import { WorkloadApiClient } from '../spiffe/workload-client.js';
import { startTestCa, type TestCa } from './support/ca-harness.js';
import { agentConfig, createEntry, createJoinToken, tempDir, testLogger, waitFor } from './support/agent-harness.js';
import { parseSamples, scrape, valueOf } from './support/prometheus.js';

const uid = process.getuid!();

describe('agent metrics endpoint', () => {
  let t: TestCa;
  let agent: RunningAgent;
  let agentId: string;
  let tmp: { dir: string; cleanup: () => void };
  const get = async () => (await scrape(`http://127.0.0.1:${agent.metricsPort}/metrics`)).text;

  beforeAll(async () => {
    t = await startTestCa();
    tmp = tempDir('brevis-agent-metrics-');
    const tok = await createJoinToken(t);
    agentId = tok.agentId;
    await createEntry(t, { id: 'a-web', spiffeId: 'spiffe://example.org/metrics/web', parentId: agentId, selectors: [`unix:uid:${uid}`] });
    agent = await startAgent(agentConfig(t, tmp.dir, { joinToken: tok.token, metrics: '127.0.0.1:0' }), { logger: testLogger() });
    await waitFor(() => agent.cache.isReady(), 10_000, 'the first sync');
  });
  afterAll(async () => {
    await agent?.close();
    await t?.cleanup();
    tmp?.cleanup();
  });

  it('is off unless a metrics address is configured', () => {
    expect(agentConfig(t, tmp.dir).metricsListen).toBeUndefined();
    expect(agent.metricsPort).toBeGreaterThan(0);
  });

  it('reports the cache, the agent SVID and the last sync', async () => {
    const text = await get();
    const svid = agent.cache.svidOf('a-web')!;
    expect(valueOf(text, 'brevis_agent_entries')).toBe(1);
    expect(valueOf(text, 'brevis_agent_workload_svids')).toBe(1);
    expect(valueOf(text, 'brevis_agent_workload_svid_soonest_expiry_timestamp_seconds')).toBe(Math.floor(svid.notAfter.getTime() / 1000));
    expect(valueOf(text, 'brevis_agent_svid_expiry_timestamp_seconds')).toBe(Math.floor(agent.agentSvid().notAfter.getTime() / 1000));
    expect(valueOf(text, 'brevis_agent_workload_svids_minted_total')).toBeGreaterThanOrEqual(1);
    expect(valueOf(text, 'brevis_agent_node_api_requests_total', { method: 'fetchAuthorizedEntries', code: 'OK' })).toBeGreaterThanOrEqual(1);
    expect(valueOf(text, 'brevis_agent_node_api_requests_total', { method: 'attestJoinToken', code: 'OK' })).toBe(1);
    expect(valueOf(text, 'brevis_agent_node_api_request_duration_seconds_count', { method: 'attestJoinToken' })).toBe(1);
    const last = valueOf(text, 'brevis_agent_sync_last_success_timestamp_seconds')!;
    expect(Math.abs(last - Date.now() / 1000)).toBeLessThan(5);
    expect(valueOf(text, 'brevis_agent_sync_lag_seconds')).toBeLessThan(5);
  });

  it('counts Workload API connections, open streams and pushes, and new entries show up', async () => {
    const before = await get();
    const client = new WorkloadApiClient({ socketPath: agent.socketPath });
    const stop = new AbortController();
    const updates: number[] = [];
    const watching = client.watchX509Context((ctx) => updates.push(ctx.svids.length), { signal: stop.signal });
    try {
      await waitFor(() => updates.length >= 1, 10_000, 'the first X.509 context');
      let text = await get();
      expect(valueOf(text, 'brevis_agent_workload_api_connections')).toBeGreaterThanOrEqual(1);
      expect(valueOf(text, 'brevis_agent_workload_api_connections_total')! - (valueOf(before, 'brevis_agent_workload_api_connections_total') ?? 0)).toBeGreaterThanOrEqual(1);
      expect(valueOf(text, 'brevis_agent_workload_api_open_streams')).toBe(1);
      const pushes = (s: string) => valueOf(s, 'brevis_agent_workload_api_stream_pushes_total', { grpc_method: 'FetchX509SVID' }) ?? 0;
      expect(pushes(text) - pushes(before)).toBe(1);

      await createEntry(t, { id: 'b-api', spiffeId: 'spiffe://example.org/metrics/api', parentId: agentId, selectors: [`unix:uid:${uid}`] });
      await waitFor(() => updates.at(-1) === 2, 10_000, 'the stream update with the new SVID');
      text = await get();
      expect(pushes(text) - pushes(before)).toBe(2);
      expect(valueOf(text, 'brevis_agent_entries')).toBe(2);
      expect(valueOf(text, 'brevis_agent_workload_svids')).toBe(2);
    } finally {
      stop.abort();
      await watching;
      client.close();
    }
    await waitFor(async () => valueOf(await get(), 'brevis_agent_workload_api_open_streams') === 0, 5_000, 'the stream to close');
  });

  it('counts finished calls by service, method and status code', async () => {
    const before = await get();
    const health = new HealthClient(`unix://${agent.socketPath}`, grpc.credentials.createInsecure());
    await new Promise<void>((resolve, reject) => health.check({ service: '' }, (e) => (e ? reject(e) : resolve())));
    health.close();
    await waitFor(async () => {
      const text = await get();
      const d = (v: number | undefined, w: number | undefined) => (v ?? 0) - (w ?? 0);
      const labels = { grpc_service: 'grpc.health.v1.Health', grpc_method: 'Check', grpc_code: 'OK' };
      return d(valueOf(text, 'brevis_agent_workload_api_requests_total', labels), valueOf(before, 'brevis_agent_workload_api_requests_total', labels)) === 1;
    }, 5_000, 'the health check to be counted');
  });

  it('shows the sync lag growing and failed calls counted while the CA is down', async () => {
    await t.stop();
    try {
      await waitFor(async () => (valueOf(await get(), 'brevis_agent_sync_lag_seconds') ?? 0) >= 1.5, 15_000, 'the sync lag to grow');
      const text = await get();
      expect(valueOf(text, 'brevis_agent_node_api_requests_total', { method: 'fetchAuthorizedEntries', code: 'UNAVAILABLE' })).toBeGreaterThanOrEqual(1);
    } finally {
      await t.restart();
    }
  });

  it('never labels a series with a SPIFFE ID, serial or other unbounded value', async () => {
    const text = await get();
    expect(text).not.toContain('spiffe://');
    expect(text).not.toContain(agent.agentSvid().serial);
    const allowed = new Set(['method', 'code', 'grpc_service', 'grpc_method', 'grpc_code', 'le']);
    for (const s of parseSamples(text).filter((x) => x.name.startsWith('brevis_'))) {
      for (const label of Object.keys(s.labels)) expect(allowed.has(label), `${s.name} has label ${label}`).toBe(true);
    }
  });
});
