/**
 * What the agent keeps in its data directory so that a restart needs no
 * new join token: its SVID with the key (one file, mode 0600, replaced
 * atomically, so the certificate and key can never be out of step), and the
 * last trust bundle it received, which from then on wins over the
 * bootstrap --trust-bundle file.
 */
import { chmodSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { certsToPem, pemDecodeBlocks, pemEncode } from '../../spiffe/pem.js';
import { writeFileAtomic } from '../../spiffe/svid-files.js';
import { agentSvidFrom, type AgentSvid } from './agent-svid.js';
import { AgentSvidError } from './errors.js';

/** The agent SVID chain (CERTIFICATE blocks, leaf first) followed by its PKCS#8 key. */
export const AGENT_SVID_FILE = 'agent-svid.pem';
/** The trust domain's root certificates as last received from the CA. */
export const AGENT_BUNDLE_FILE = 'bundle.pem';

/** Creates the data directory (0700) if needed. */
export function ensureDataDir(dataDir: string): void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const mode = statSync(dataDir).mode & 0o777;
  if (mode & 0o077) chmodSync(dataDir, 0o700);
}

function readIfExists(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new AgentSvidError('STATE_INVALID', `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
}

/** The stored agent SVID, or null when there is none. Throws AgentSvidError('STATE_INVALID'). */
export function loadAgentSvid(dataDir: string, trustDomain: string): AgentSvid | null {
  const file = path.join(dataDir, AGENT_SVID_FILE);
  const text = readIfExists(file);
  if (text === null) return null;
  let blocks;
  try {
    blocks = pemDecodeBlocks(text);
  } catch (e) {
    throw new AgentSvidError('STATE_INVALID', `${file} is not valid PEM: ${(e as Error).message}`, { cause: e });
  }
  const chain = blocks.filter((b) => b.label === 'CERTIFICATE').map((b) => b.der);
  const keys = blocks.filter((b) => b.label === 'PRIVATE KEY');
  if (keys.length !== 1) throw new AgentSvidError('STATE_INVALID', `${file} must hold exactly one PRIVATE KEY block`);
  return agentSvidFrom({ chain, keyPem: pemEncode('PRIVATE KEY', keys[0]!.der) }, trustDomain, file);
}

export function saveAgentSvid(dataDir: string, svid: AgentSvid): void {
  ensureDataDir(dataDir);
  writeFileAtomic(path.join(dataDir, AGENT_SVID_FILE), certsToPem(svid.chain) + svid.keyPem, 0o600);
}

/** The stored roots (DER), or null when none were stored yet. */
export function loadStoredBundle(dataDir: string): Buffer[] | null {
  const file = path.join(dataDir, AGENT_BUNDLE_FILE);
  const text = readIfExists(file);
  if (text === null) return null;
  let roots: Buffer[];
  try {
    roots = pemDecodeBlocks(text)
      .filter((b) => b.label === 'CERTIFICATE')
      .map((b) => b.der);
  } catch (e) {
    throw new AgentSvidError('STATE_INVALID', `${file} is not valid PEM: ${(e as Error).message}`, { cause: e });
  }
  if (roots.length === 0) throw new AgentSvidError('STATE_INVALID', `${file} holds no certificate`);
  return roots;
}

export function saveBundle(dataDir: string, roots: readonly Buffer[]): void {
  ensureDataDir(dataDir);
  writeFileAtomic(path.join(dataDir, AGENT_BUNDLE_FILE), certsToPem(roots), 0o644);
}
