/**
 * Validation of admin input for registration entries and IDs. Every rule
 * lives here so the CLI, the API and (later) other front ends agree.
 */
import { randomUUID } from 'node:crypto';
import type { Entry } from '../../proto/gen/brevis/ca/v1/types.js';
import { CaError } from '../errors.js';
import type { NewEntry } from '../store/store.js';
import { parseSpiffeId, type SpiffeId } from '../../spiffe/id.js';
import { SelectorError, normalizeSelectors, validateSelector } from '../../spiffe/selector.js';
import { resolveTtl, type TtlPolicy } from '../issue/ttl-policy.js';
import { serverId } from '../authz/authorized-entries.js';
import { validateEntrySsh } from './ssh-input.js';
import { echo } from './echo.js';

export const LIMITS = {
  selectorsPerEntry: 64,
  dnsNamesPerEntry: 32,
  hintBytes: 256,
  entryIdBytes: 128,
} as const;

/** Parses a SPIFFE ID that must belong to `trustDomain`; `what` names the field in errors. */
export function requireIdInTrustDomain(s: string, trustDomain: string, what: string, opts: { workload?: boolean } = {}): SpiffeId {
  let id: SpiffeId;
  try {
    id = parseSpiffeId(s);
  } catch (e) {
    throw new CaError('INVALID_ARGUMENT', `${what}: ${(e as Error).message}`);
  }
  if (id.trustDomain !== trustDomain) {
    throw new CaError('INVALID_ARGUMENT', `${what} ${id.toString()} is not in trust domain ${trustDomain}`);
  }
  if (opts.workload && id.path === '') throw new CaError('INVALID_ARGUMENT', `${what} must have a path (spiffe://${trustDomain}/...)`);
  return id;
}

const DNS_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/** A DNS SAN: lower-case host name, optionally a leading `*.` wildcard. */
export function validateDnsName(name: string): string {
  const n = name.toLowerCase();
  const body = n.startsWith('*.') ? n.slice(2) : n;
  if (n.length > 253 || body.split('.').some((l) => !DNS_LABEL.test(l))) {
    throw new CaError('INVALID_ARGUMENT', `invalid DNS name '${echo(name, 80)}'`);
  }
  return n;
}

/** `sshTtl` bounds the entry's SSH user certificate TTL. */
export function validateEntryInput(e: Entry | undefined, trustDomain: string, ttl: TtlPolicy, sshTtl: TtlPolicy): NewEntry {
  if (!e) throw new CaError('INVALID_ARGUMENT', 'entry is required');
  const spiffeId = requireIdInTrustDomain(e.spiffeId, trustDomain, 'SPIFFE ID', { workload: true }).toString();
  const parentId = requireIdInTrustDomain(e.parentId, trustDomain, 'parent ID', { workload: true }).toString();
  if (spiffeId === parentId) throw new CaError('INVALID_ARGUMENT', 'an entry cannot be its own parent');
  if (e.selectors.length === 0) throw new CaError('INVALID_ARGUMENT', 'an entry needs at least one selector');
  if (e.selectors.length > LIMITS.selectorsPerEntry) {
    throw new CaError('INVALID_ARGUMENT', `at most ${LIMITS.selectorsPerEntry} selectors per entry`);
  }
  let selectors;
  try {
    selectors = normalizeSelectors(e.selectors.map((s) => validateSelector({ type: s.type, value: s.value })));
  } catch (err) {
    if (err instanceof SelectorError) throw new CaError('INVALID_ARGUMENT', err.message);
    throw err;
  }
  if (e.x509SvidTtl !== 0) resolveTtl(ttl, e.x509SvidTtl, 'X.509 TTL');
  if (e.dnsNames.length > LIMITS.dnsNamesPerEntry) throw new CaError('INVALID_ARGUMENT', `at most ${LIMITS.dnsNamesPerEntry} DNS names per entry`);
  const dnsNames = [...new Set(e.dnsNames.map(validateDnsName))];
  if (Buffer.byteLength(e.hint) > LIMITS.hintBytes) throw new CaError('INVALID_ARGUMENT', `hint is longer than ${LIMITS.hintBytes} bytes`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(e.hint)) throw new CaError('INVALID_ARGUMENT', 'hint contains a control character');
  if (e.expiresAt < 0) throw new CaError('INVALID_ARGUMENT', 'expiry must not be negative');
  const ssh = validateEntrySsh(e.ssh, { nodeEntry: parentId === serverId(trustDomain), serverId: serverId(trustDomain), ttl: sshTtl });
  return {
    id: e.id ? validateEntryId(e.id) : randomUUID(),
    spiffeId,
    parentId,
    selectors,
    x509SvidTtl: e.x509SvidTtl,
    dnsNames,
    hint: e.hint,
    admin: e.admin,
    expiresAt: e.expiresAt === 0 ? null : e.expiresAt,
    ...(ssh ? { ssh } : {}),
  };
}

export function validateEntryId(id: string): string {
  if (!/^[A-Za-z0-9._-]{1,128}$/.test(id)) throw new CaError('INVALID_ARGUMENT', 'entry id must be 1 to 128 characters of [A-Za-z0-9._-]');
  return id;
}
