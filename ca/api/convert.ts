/** Conversions between store records and protobuf messages. */
import type { Agent, Bundle, Entry, X509SVID } from '../../proto/gen/brevis/ca/v1/types.js';
import type { AgentRecord, EntryRecord } from '../store/store.js';
import type { BundleView, MintedSvid } from './context.js';

export function svidToProto(s: MintedSvid): X509SVID {
  return {
    spiffeId: s.spiffeId,
    certChain: s.chain,
    expiresAt: Math.floor(s.notAfter.getTime() / 1000),
    serial: s.serialHex,
  };
}

export function bundleToProto(b: BundleView): Bundle {
  return {
    trustDomain: b.trustDomain,
    x509Authorities: b.roots,
    sequence: b.sequence,
    refreshHintSeconds: b.refreshHintSeconds,
  };
}

export function entryToProto(e: EntryRecord): Entry {
  return {
    id: e.id,
    spiffeId: e.spiffeId,
    parentId: e.parentId,
    selectors: e.selectors.map((s) => ({ type: s.type, value: s.value })),
    x509SvidTtl: e.x509SvidTtl,
    dnsNames: e.dnsNames,
    hint: e.hint,
    admin: e.admin,
    expiresAt: e.expiresAt ?? 0,
    revision: e.revision,
    createdAt: e.createdAt,
  };
}

export function agentToProto(a: AgentRecord): Agent {
  return {
    agentId: a.agentId,
    attestationType: a.attestationType,
    serial: a.serial,
    expiresAt: a.expiresAt,
    selectors: a.selectors.map((s) => ({ type: s.type, value: s.value })),
    banned: a.banned,
    createdAt: a.createdAt,
    lastSeenAt: a.lastSeenAt,
  };
}
