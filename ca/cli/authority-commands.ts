/**
 * `brevis-ca authority show|prepare|activate|rollback|taint|revoke`: the
 * life cycle of the CA's keys. Registered by main.ts.
 */
import { Option, type Command } from 'commander';
import {
  AuthorityServiceClient,
  type ActivateAuthorityResponse,
  type AuthorityInfo,
  type ListAuthoritiesResponse,
  type PrepareAuthorityResponse,
  type RevokeAuthorityResponse,
  type RollbackAuthorityResponse,
  type TaintAuthorityResponse,
} from '../../proto/gen/brevis/ca/v1/authority.js';
import { resolveAdminSocket } from './admin-client.js';
import { paint, withProgress } from './terminal.js';
import { SocketClient } from './socket-client.js';

export interface AuthorityCliHelpers {
  withSocket(cmd: Command): Command;
  out(s: string): void;
  json(v: unknown): void;
}

const KINDS = ['x509-root', 'x509-intermediate', 'ssh-user', 'ssh-host'];
const time = (s: number) => (s ? new Date(s * 1000).toISOString().replace('.000Z', 'Z') : '-');
const NEVER = 253_402_300_799;

function pem(der: Uint8Array): string {
  return `-----BEGIN CERTIFICATE-----\n${Buffer.from(der).toString('base64').replace(/.{1,64}/g, '$&\n')}-----END CERTIFICATE-----\n`;
}

/** The public part as an operator uses it: a PEM certificate, or an SSH public key line. */
function publicText(a: AuthorityInfo): string {
  if (a.kind.startsWith('x509')) return pem(a.publicKey);
  const blob = Buffer.from(a.publicKey);
  const type = blob.subarray(4, 4 + blob.readUInt32BE(0)).toString('ascii');
  return `${type} ${blob.toString('base64')}`;
}

export function authorityJson(a: AuthorityInfo) {
  return {
    kind: a.kind,
    id: a.id,
    state: a.state,
    notBefore: time(a.notBefore),
    notAfter: a.notAfter >= NEVER ? null : time(a.notAfter),
    parentId: a.parentId || null,
    crossSignedBy: a.crossSignedBy,
    trusted: a.trusted,
    trustedSinceSequence: a.trustedSinceSequence || null,
    trustedUntil: a.trustedUntil ? time(a.trustedUntil) : null,
    agents: a.agents,
    acknowledgedAgents: a.acknowledgedAgents,
    unacknowledgedAgents: a.unacknowledgedAgents,
    outstandingCredentials: a.outstandingCredentials,
    public: publicText(a),
  };
}

function authorityLine(a: AuthorityInfo): string {
  const parts = [a.kind.padEnd(17), a.id, a.state.padEnd(8)];
  parts.push(`valid ${time(a.notBefore)} .. ${a.notAfter >= NEVER ? 'no expiry' : time(a.notAfter)}`);
  if (a.parentId) parts.push(`parent ${a.parentId.slice(0, 16)}${a.crossSignedBy.length ? ` (cross-signed by ${a.crossSignedBy.map((c) => c.slice(0, 16)).join(', ')})` : ''}`);
  parts.push(a.trusted ? `trusted since seq ${a.trustedSinceSequence}${a.trustedUntil ? ` until ${time(a.trustedUntil)}` : ''}` : 'not trusted');
  if (a.trusted) parts.push(`acks ${a.acknowledgedAgents}/${a.agents}`);
  parts.push(`outstanding ${a.outstandingCredentials}`);
  if (a.unacknowledgedAgents.length && a.state === 'prepared') parts.push(`missing: ${a.unacknowledgedAgents.slice(0, 5).join(', ')}${a.unacknowledgedAgents.length > 5 ? ', ...' : ''}`);
  return parts.join('  ');
}

const kindOption = () => new Option('--kind <kind>', 'authority kind').choices(KINDS).makeOptionMandatory();

export function registerAuthorityCommands(program: Command, h: AuthorityCliHelpers): void {
  const authority = program.command('authority').description('the life cycle of the CA keys: rotation, rollback, emergencies');
  const withClient = async <T>(opts: { socket?: string }, fn: (c: SocketClient<AuthorityServiceClient>) => Promise<T>): Promise<T> => {
    const c = new SocketClient(resolveAdminSocket(opts.socket), AuthorityServiceClient);
    try {
      return await fn(c);
    } finally {
      c.close();
    }
  };

  h.withSocket(authority.command('show'))
    .description('every authority: kind, id, state, validity, acknowledgements, outstanding credentials')
    .option('--json', 'print a JSON object')
    .action(async (opts: { socket?: string; json?: boolean }) => {
      const r = await withClient(opts, (c) => c.call<object, ListAuthoritiesResponse>('listAuthorities', {}));
      if (opts.json) h.json({ bundleSequence: r.bundleSequence, authorities: r.authorities.map(authorityJson) });
      else h.out([`bundle sequence ${r.bundleSequence}`, ...r.authorities.map(authorityLine)].join('\n'));
    });

  h.withSocket(authority.command('prepare'))
    .description('create a new authority of a kind: trusted and published, not signing yet; prints its id')
    .addOption(kindOption())
    .option('--key-type <type>', 'ec-p256, ec-p384 or ed25519 (X.509); ed25519 or ec-p256 (SSH); default as configured')
    .option('--json', 'print a JSON object')
    .action(async (opts: { socket?: string; kind: string; keyType?: string; json?: boolean }) => {
      const r = await withProgress(`preparing a new ${opts.kind} authority`, () =>
        withClient(opts, (c) => c.call<object, PrepareAuthorityResponse>('prepareAuthority', { kind: opts.kind, keyType: opts.keyType ?? '' })),
      );
      if (opts.json) h.json({ ...authorityJson(r.authority!), alsoPrepared: r.alsoPrepared.map(authorityJson) });
      else h.out(r.authority!.id);
    });

  h.withSocket(authority.command('activate'))
    .description('make a prepared authority the one that signs; the previous one retires')
    .addOption(kindOption())
    .requiredOption('--id <id>', 'the prepared authority (see authority show)')
    .option('--force', 'activate even though some agents have not acknowledged it')
    .action(async (opts: { socket?: string; kind: string; id: string; force?: boolean }) => {
      const r = await withProgress(`activating ${opts.kind} ${opts.id}`, () =>
        withClient(opts, (c) => c.call<object, ActivateAuthorityResponse>('activateAuthority', { kind: opts.kind, id: opts.id, force: Boolean(opts.force) })),
      );
      if (r.unacknowledgedAgents.length) process.stderr.write(`${paint('warning:', 'yellow', process.stderr)} activated without acknowledgement from ${r.unacknowledgedAgents.length} agent(s): ${r.unacknowledgedAgents.join(', ')}\n`);
      h.out(`activated ${opts.kind} ${r.authority!.id}; retired ${r.retiredIds.join(', ') || 'nothing'}`);
    });

  h.withSocket(authority.command('rollback'))
    .description('undo the last prepare or activate of a kind (while the previous authority is still valid)')
    .addOption(kindOption())
    .action(async (opts: { socket?: string; kind: string }) => {
      const r = await withClient(opts, (c) => c.call<object, RollbackAuthorityResponse>('rollbackAuthority', { kind: opts.kind }));
      h.out(`rolled back the ${r.undone} of ${opts.kind} ${r.rolledBackId}; active: ${r.activeId}`);
    });

  h.withSocket(authority.command('taint'))
    .description('distrust a non-active authority: agents replace everything chained to it now')
    .addOption(kindOption())
    .requiredOption('--id <id>', 'the authority')
    .action(async (opts: { socket?: string; kind: string; id: string }) => {
      const r = await withClient(opts, (c) => c.call<object, TaintAuthorityResponse>('taintAuthority', { kind: opts.kind, id: opts.id }));
      h.out(`tainted ${opts.kind} ${r.authority!.id}; ${r.authority!.outstandingCredentials} credentials outstanding (watch authority show)`);
    });

  h.withSocket(authority.command('revoke'))
    .description('remove an authority from trust (refused while credentials chained to it are outstanding)')
    .addOption(kindOption())
    .requiredOption('--id <id>', 'the authority')
    .option('--force', 'revoke even though credentials chained to it are outstanding')
    .action(async (opts: { socket?: string; kind: string; id: string; force?: boolean }) => {
      const r = await withClient(opts, (c) => c.call<object, RevokeAuthorityResponse>('revokeAuthority', { kind: opts.kind, id: opts.id, force: Boolean(opts.force) }));
      if (r.outstandingCredentials > 0) process.stderr.write(`${paint('warning:', 'yellow', process.stderr)} revoked with ${r.outstandingCredentials} credentials outstanding\n`);
      h.out(`revoked ${opts.kind} ${r.authority!.id}`);
    });
}
