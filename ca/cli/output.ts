/** Human-readable renderings for the admin CLI. */
import type { Agent, Entry } from '../../proto/gen/brevis/ca/v1/types.js';
import { formatDuration } from '../../spiffe/duration.js';
import { entrySshLines } from './ssh-commands.js';

type Out = (s: string) => void;
const time = (s: number) => (s ? new Date(s * 1000).toISOString() : '-');
const sels = (e: { selectors: { type: string; value: string }[] }) => e.selectors.map((s) => `${s.type}:${s.value}`).join(' ');

export function printEntry(e: Entry, out: Out): void {
  out(
    [
      `Entry ID   : ${e.id}`,
      `SPIFFE ID  : ${e.spiffeId}`,
      `Parent ID  : ${e.parentId}`,
      `Selectors  : ${sels(e)}`,
      `X.509 TTL  : ${e.x509SvidTtl ? formatDuration(e.x509SvidTtl) : 'default'}`,
      `DNS names  : ${e.dnsNames.join(', ') || '-'}`,
      `Hint       : ${e.hint || '-'}`,
      `Admin      : ${e.admin}`,
      `Expires    : ${time(e.expiresAt)}`,
      `Revision   : ${e.revision}`,
      `Created    : ${time(e.createdAt)}`,
      ...entrySshLines(e.ssh, formatDuration),
    ].join('\n'),
  );
}

export function printEntries(entries: Entry[], out: Out): void {
  if (entries.length === 0) {
    out('no entries');
    return;
  }
  for (const e of entries) out(`${e.id}  ${e.spiffeId}  parent=${e.parentId}  ${sels(e)}`);
}

export function printAgents(agents: Agent[], out: Out): void {
  if (agents.length === 0) {
    out('no agents');
    return;
  }
  for (const a of agents) {
    out(`${a.agentId}  ${a.attestationType}  svid-expires=${time(a.expiresAt)}  last-seen=${time(a.lastSeenAt)}${a.banned ? '  BANNED' : ''}${a.selectors.length ? `  ${sels(a)}` : ''}${a.sshHostPrincipals.length ? `  ssh-hosts=${a.sshHostPrincipals.join(',')}` : ''}`);
  }
}
