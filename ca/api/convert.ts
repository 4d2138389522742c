/** Conversions between store records and protobuf messages. */
import { SSHCertificateType, type Agent, type Bundle, type Entry, type EntrySSH, type SSHCertificate, type X509SVID } from '../../proto/gen/brevis/ca/v1/types.js';
import type { IssuedSshCertificate } from '../ssh/ssh-issuer.js';
import type { AgentRecord, EntryRecord, EntrySsh } from '../store/store.js';
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
    ...(e.ssh ? { ssh: entrySshToProto(e.ssh) } : {}),
  };
}

function entrySshToProto(s: EntrySsh): EntrySSH {
  return {
    principals: s.principals,
    ttl: s.ttl,
    // Only entries with user principals have extensions (possibly none).
    ...(s.principals.length > 0 ? { extensions: { names: s.extensions } } : {}),
    forceCommand: s.forceCommand ?? '',
    sourceAddress: s.sourceAddress ?? '',
    hostPrincipals: s.hostPrincipals,
  };
}

export function sshCertificateToProto(c: IssuedSshCertificate): SSHCertificate {
  return {
    certificate: c.line,
    type: c.type === 'user' ? SSHCertificateType.SSH_CERTIFICATE_TYPE_USER : SSHCertificateType.SSH_CERTIFICATE_TYPE_HOST,
    serial: c.serial.toString(10),
    keyId: c.keyId,
    principals: c.principals,
    validAfter: c.validAfter,
    validBefore: c.validBefore,
    caFingerprint: c.caFingerprint,
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
    sshHostPrincipals: a.sshHostPrincipals ?? [],
  };
}
