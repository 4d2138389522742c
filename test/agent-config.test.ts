import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentConfigError, buildAgentConfig, mergeAgentConfig, readAgentConfigFile } from '../agent/config/config.js';
import { tempDir } from './support/agent-harness.js';

const base = {
  server: 'ca.example.org:8081',
  trustDomain: 'example.org',
  trustBundle: '/etc/brevis/bundle.pem',
  dataDir: '/var/lib/brevis-agent',
  socket: '/run/brevis/agent.sock',
};

function configError(raw: Record<string, unknown>): AgentConfigError {
  try {
    buildAgentConfig(raw);
  } catch (e) {
    expect(e).toBeInstanceOf(AgentConfigError);
    return e as AgentConfigError;
  }
  throw new Error('expected an AgentConfigError');
}

const cleanups: Array<() => void> = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

describe('agent configuration', () => {
  it('applies the documented defaults and freezes the result', () => {
    const c = buildAgentConfig({ ...base, joinToken: 'tok' });
    expect(c).toEqual({
      serverAddress: 'ca.example.org:8081',
      serverAddresses: ['ca.example.org:8081'],
      trustDomain: 'example.org',
      trustBundleFile: '/etc/brevis/bundle.pem',
      dataDir: '/var/lib/brevis-agent',
      socketPath: '/run/brevis/agent.sock',
      attestation: { method: 'join_token', token: 'tok' },
      syncIntervalSeconds: 5,
      rotation: { fraction: 0.5, jitter: 0.1 },
      logLevel: 'info',
    });
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.rotation)).toBe(true);
  });

  it('reads x509pop files as absolute paths and numbers given as flag strings', () => {
    const c = buildAgentConfig({ ...base, x509popCert: 'node.pem', x509popKey: 'node.key', syncInterval: '1m', rotationFraction: '0.4', rotationJitter: '0' });
    expect(c.attestation).toEqual({ method: 'x509pop', certFile: path.resolve('node.pem'), keyFile: path.resolve('node.key') });
    expect(c.syncIntervalSeconds).toBe(60);
    expect(c.rotation).toEqual({ fraction: 0.4, jitter: 0 });
  });

  it('needs no attestation method (a restart reuses the stored agent SVID)', () => {
    expect(buildAgentConfig(base).attestation).toBeNull();
  });

  it('names the missing flag', () => {
    const { socket: _s, ...noSocket } = base;
    void _s;
    expect(configError(noSocket).message).toMatch(/--socket is required/);
  });

  it('refuses bad values with the flag name in the message', () => {
    expect(configError({ ...base, server: 'no-port' }).message).toMatch(/--server: server must be HOST:PORT/);
    expect(configError({ ...base, trustDomain: 'Example.ORG' }).message).toMatch(/invalid trust domain/);
    expect(configError({ ...base, syncInterval: '5' }).message).toMatch(/--sync-interval/);
    expect(configError({ ...base, syncInterval: '0s' }).message).toMatch(/at least 1s/);
    expect(configError({ ...base, rotationFraction: '1' }).message).toMatch(/--rotation-fraction/);
    expect(configError({ ...base, rotationJitter: '0.5' }).message).toMatch(/--rotation-jitter/);
    expect(configError({ ...base, rotationFraction: 0.05, rotationJitter: 0.2 }).message).toMatch(/after they expire/);
    expect(configError({ ...base, logLevel: 'loud' }).message).toMatch(/--log-level/);
    expect(configError({ ...base, colour: 'blue' }).message).toMatch(/colour/);
  });

  it('refuses two attestation methods, or half of x509pop', () => {
    expect(configError({ ...base, joinToken: 't', x509popCert: 'c', x509popKey: 'k' }).message).toMatch(/choose one attestation method/);
    expect(configError({ ...base, x509popCert: 'c' }).message).toMatch(/both --x509pop-cert and --x509pop-key/);
  });

  it('lets flags win over the config file', () => {
    const { dir, cleanup } = tempDir('brevis-agent-config-');
    cleanups.push(cleanup);
    const file = path.join(dir, 'agent.json');
    writeFileSync(file, JSON.stringify({ ...base, syncInterval: '30s', logLevel: 'debug' }));
    const raw = mergeAgentConfig(readAgentConfigFile(file), { syncInterval: '2s', logLevel: undefined });
    const c = buildAgentConfig(raw);
    expect(c.syncIntervalSeconds).toBe(2);
    expect(c.logLevel).toBe('debug');
  });

  it('says what is wrong with an unreadable or non-object config file', () => {
    const { dir, cleanup } = tempDir('brevis-agent-config-');
    cleanups.push(cleanup);
    expect(() => readAgentConfigFile(path.join(dir, 'missing.json'))).toThrow(/cannot read config file .*ENOENT/);
    writeFileSync(path.join(dir, 'list.json'), '[1]');
    expect(() => readAgentConfigFile(path.join(dir, 'list.json'))).toThrow(/not a JSON object/);
  });
});
