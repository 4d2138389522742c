/**
 * Validation of the SSH side of registration entries and join tokens, so
 * that whatever is stored is something the SSH issuer will accept.
 */
import type { EntrySSH } from '../../proto/gen/brevis/ca/v1/types.js';
import { CaError } from '../errors.js';
import { resolveTtl, type TtlPolicy } from '../issue/ttl-policy.js';
import {
  DEFAULT_USER_EXTENSIONS,
  validateExtensions,
  validateForceCommand,
  validatePrincipals,
  validateSourceAddress,
} from '../ssh/options.js';
import type { EntrySsh } from '../store/store.js';

/**
 * Returns the entry's SSH settings, or undefined when it has none. User
 * settings (principals, TTL, extensions, critical options) belong on
 * entries that are issued credentials; host names only on node entries.
 */
export function validateEntrySsh(ssh: EntrySSH | undefined, opts: { nodeEntry: boolean; serverId: string; ttl: TtlPolicy }): EntrySsh | undefined {
  if (!ssh) return undefined;
  const principals = validatePrincipals(ssh.principals, 'user', { allowEmpty: true });
  const hostPrincipals = validatePrincipals(ssh.hostPrincipals, 'host', { allowEmpty: true });
  const userOptions = ssh.ttl !== 0 || ssh.extensions !== undefined || ssh.forceCommand !== '' || ssh.sourceAddress !== '';
  if (hostPrincipals.length > 0 && !opts.nodeEntry) {
    throw new CaError('INVALID_ARGUMENT', `SSH host principals belong on a node entry (parent ${opts.serverId}); for one node, bind them to its join token`);
  }
  if (opts.nodeEntry && (principals.length > 0 || userOptions)) {
    throw new CaError('INVALID_ARGUMENT', 'a node entry is never issued credentials itself: put SSH user settings on the entries parented to it');
  }
  if (principals.length === 0 && userOptions) {
    throw new CaError('INVALID_ARGUMENT', 'SSH TTL, extensions and critical options need at least one SSH principal');
  }
  if (principals.length === 0 && hostPrincipals.length === 0) return undefined;
  if (ssh.ttl !== 0) resolveTtl(opts.ttl, ssh.ttl, 'SSH TTL');
  return {
    principals,
    ttl: ssh.ttl,
    extensions: principals.length === 0 ? [] : ssh.extensions ? validateExtensions(ssh.extensions.names) : [...DEFAULT_USER_EXTENSIONS],
    forceCommand: ssh.forceCommand ? validateForceCommand(ssh.forceCommand) : null,
    sourceAddress: ssh.sourceAddress ? validateSourceAddress(ssh.sourceAddress) : null,
    hostPrincipals,
  };
}
