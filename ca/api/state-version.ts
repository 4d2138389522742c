/**
 * The version of what FetchAuthorizedEntries returns to one agent: a digest
 * of its authorized entries (id and revision: every change to an entry
 * bumps its revision), the bundle, its SSH information and the authority
 * status. An agent that sends back the version it applied gets "unchanged"
 * instead of the whole state while nothing differs, so a fleet polling every
 * few seconds costs the CA a digest per poll rather than an encoding of
 * every entry, and the agents no garbage.
 */
import { createHash } from 'node:crypto';
import type { AuthorityStatus } from '../../proto/gen/brevis/ca/v1/push.js';
import { AgentSSH, Bundle } from '../../proto/gen/brevis/ca/v1/types.js';
import type { EntryRecord } from '../store/store.js';

export function authorizedStateVersion(s: { entries: readonly EntryRecord[]; bundle: Bundle; ssh: AgentSSH | undefined; authorities: AuthorityStatus }): string {
  const h = createHash('sha256');
  for (const e of s.entries) h.update(`${e.id}\u0000${e.revision}\u0000`);
  h.update('\u0001');
  h.update(Bundle.encode(s.bundle).finish());
  h.update('\u0001');
  if (s.ssh) h.update(AgentSSH.encode(s.ssh).finish());
  h.update('\u0001');
  h.update(s.authorities.taintedIds.join('\u0000'));
  return h.digest('base64url').slice(0, 22);
}
