/**
 * Helpers for the agent's end-to-end tests: a real CA (test/support/ca-harness.ts),
 * join tokens and entries made through its admin API, agent configurations
 * in temp directories, and polling.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import { buildAgentConfig, type AgentConfig } from '../../agent/config/config.js';
import { CreateJoinTokenRequest } from '../../proto/gen/brevis/ca/v1/admin.js';
import { Entry, type Selector } from '../../proto/gen/brevis/ca/v1/types.js';
import { TD, call, toPem, type TestCa } from './ca-harness.js';

export { TD };

export function testLogger(): Logger {
  return pino({ level: process.env.BREVIS_TEST_LOG ?? 'silent' });
}

/** A temp directory removed by the returned cleanup. */
export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export async function createJoinToken(t: TestCa, agentId = ''): Promise<{ token: string; agentId: string }> {
  return call<object, { token: string; agentId: string }>(t.admin, 'createJoinToken', CreateJoinTokenRequest.fromPartial({ agentId, ttlSeconds: 0 }));
}

export function sel(text: string): Selector {
  const i = text.indexOf(':');
  return { type: text.slice(0, i), value: text.slice(i + 1) };
}

export async function createEntry(
  t: TestCa,
  e: { spiffeId: string; parentId: string; selectors: string[]; x509SvidTtl?: number; dnsNames?: string[]; hint?: string; id?: string },
): Promise<Entry> {
  // fromPartial: the messages may grow fields (defaults are filled in).
  const res = await call<object, { entry: Entry }>(t.admin, 'createEntry', {
    entry: Entry.fromPartial({
      id: e.id ?? '',
      spiffeId: e.spiffeId,
      parentId: e.parentId,
      selectors: e.selectors.map(sel),
      x509SvidTtl: e.x509SvidTtl ?? 0,
      dnsNames: e.dnsNames ?? [],
      hint: e.hint ?? '',
    }),
  });
  return res.entry;
}

export async function deleteEntry(t: TestCa, id: string): Promise<void> {
  await call(t.admin, 'deleteEntry', { id });
}

/** Writes the CA's roots as the agent's bootstrap bundle and builds a config (raw keys as flags). */
export function agentConfig(t: TestCa, dir: string, raw: Record<string, unknown> = {}): AgentConfig {
  const bundleFile = path.join(dir, 'bootstrap-bundle.pem');
  writeFileSync(bundleFile, toPem(t.roots()));
  return buildAgentConfig({
    server: `127.0.0.1:${t.ca.port}`,
    trustDomain: TD,
    trustBundle: bundleFile,
    dataDir: path.join(dir, 'agent-data'),
    socket: path.join(dir, 'agent.sock'),
    syncInterval: '1s',
    ...raw,
  });
}

/** Polls `probe` until it returns a value other than undefined/false, or fails after `timeoutMs`. */
export async function waitFor<T>(probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
