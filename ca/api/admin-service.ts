/**
 * The local admin API. It is served only on a Unix socket with mode 0600
 * inside the data directory: whoever can open it is an administrator.
 * Every change is an audit record.
 */
import type { AdminServiceServer } from '../../proto/gen/brevis/ca/v1/admin.js';
import { CaError } from '../errors.js';
import type { AuditRecord } from '../store/store.js';
import { parseCsr } from '../x509/csr.js';
import { epochSeconds } from '../../spiffe/clock.js';
import { newJoinToken } from '../attest/join-token.js';
import { resolveTtl } from '../issue/ttl-policy.js';
import type { CaContext } from './context.js';
import { agentToProto, bundleToProto, entryToProto, svidToProto } from './convert.js';
import { requireIdInTrustDomain, validateDnsName, validateEntryId, validateEntryInput, LIMITS } from './entry-input.js';
import { unary } from './errors.js';
import { AGENT_PATH_PREFIX } from './agent-auth.js';
import { StoreError } from '../store/store.js';
import { validatePrincipals } from '../ssh/options.js';
import { sshAdminHandlers } from './ssh-admin.js';

export const ADMIN_CALLER = 'admin:local';

export function createAdminService(ctx: CaContext): AdminServiceServer {
  const { store, clock, logger, trustDomain } = ctx;
  const audit = (rec: Omit<AuditRecord, 'timeMs' | 'caller'>) =>
    store.appendAudit([{ timeMs: clock.now().getTime(), caller: ADMIN_CALLER, ...rec }]);

  const requireAgentId = (id: string) => {
    const parsed = requireIdInTrustDomain(id, trustDomain, 'agent ID', { workload: true });
    if (!parsed.path.startsWith(AGENT_PATH_PREFIX)) {
      throw new CaError('INVALID_ARGUMENT', `agent IDs live under spiffe://${trustDomain}${AGENT_PATH_PREFIX}`);
    }
    return parsed.toString();
  };

  return {
    createJoinToken: unary(async (req) => {
      const agentId = req.agentId ? requireAgentId(req.agentId) : undefined;
      const ttl = resolveTtl(ctx.joinTokenTtl, req.ttlSeconds, 'token TTL');
      const hosts = validatePrincipals(req.ssh?.hostPrincipals ?? [], 'host', { allowEmpty: true });
      const now = epochSeconds(clock.now());
      const t = newJoinToken({ trustDomain, agentId, nowSeconds: now, ttlSeconds: ttl });
      const record = hosts.length > 0 ? { ...t.record, sshHostPrincipals: hosts } : t.record;
      await store.createJoinToken(record);
      const hostDetail = hosts.length > 0 ? `; ssh host principals ${hosts.join(',')}` : '';
      await audit({ action: 'token.create', spiffeId: record.agentId, serial: null, notAfter: record.expiresAt, outcome: 'success', detail: `token ${record.id}${hostDetail}` });
      logger.info({ tokenId: record.id, agentId: record.agentId, sshHostPrincipals: hosts }, 'join token created');
      return { token: t.secret, tokenId: record.id, agentId: record.agentId, expiresAt: record.expiresAt, sshHostPrincipals: hosts };
    }, logger),

    createEntry: unary(async (req) => {
      const input = validateEntryInput(req.entry, trustDomain, ctx.svidTtl, ctx.ssh.userTtl);
      let entry;
      try {
        entry = await store.createEntry(input, epochSeconds(clock.now()));
      } catch (e) {
        if (e instanceof StoreError && e.code === 'CONFLICT') throw new CaError('ALREADY_EXISTS', `an entry with id ${input.id} already exists`);
        throw e;
      }
      await audit({ action: 'entry.create', spiffeId: entry.spiffeId, serial: null, notAfter: null, outcome: 'success', detail: `entry ${entry.id}` });
      ctx.push.hub.publish('entries');
      return { entry: entryToProto(entry) };
    }, logger),

    listEntries: unary(async () => ({ entries: (await store.listEntries()).map(entryToProto) }), logger),

    getEntry: unary(async (req) => {
      const e = await store.getEntry(validateEntryId(req.id));
      if (!e) throw new CaError('NOT_FOUND', `no entry with id ${req.id}`);
      return { entry: entryToProto(e) };
    }, logger),

    deleteEntry: unary(async (req) => {
      const id = validateEntryId(req.id);
      const existing = await store.getEntry(id);
      if (!existing || !(await store.deleteEntry(id))) throw new CaError('NOT_FOUND', `no entry with id ${req.id}`);
      await audit({ action: 'entry.delete', spiffeId: existing.spiffeId, serial: null, notAfter: null, outcome: 'success', detail: `entry ${id}` });
      ctx.push.hub.publish('entries');
      return {};
    }, logger),

    listAgents: unary(async () => ({ agents: (await store.listAgents()).map(agentToProto) }), logger),

    evictAgent: unary(async (req) => {
      const id = requireAgentId(req.agentId);
      if (!(await store.deleteAgent(id))) throw new CaError('NOT_FOUND', `no agent ${id}`);
      await audit({ action: 'agent.evict', spiffeId: id, serial: null, notAfter: null, outcome: 'success', detail: null });
      ctx.push.hub.publish('agent');
      return {};
    }, logger),

    banAgent: unary(async (req) => {
      const id = requireAgentId(req.agentId);
      if (!(await store.banAgent(id))) throw new CaError('NOT_FOUND', `no agent ${id}`);
      await audit({ action: 'agent.ban', spiffeId: id, serial: null, notAfter: null, outcome: 'success', detail: null });
      ctx.push.hub.publish('agent');
      return {};
    }, logger),

    getBundle: unary(async () => ({ bundle: bundleToProto(ctx.bundle()) }), logger),

    mintX509Svid: unary(async (req) => {
      const spiffeId = requireIdInTrustDomain(req.spiffeId, trustDomain, 'SPIFFE ID', { workload: true }).toString();
      if (req.dnsNames.length > LIMITS.dnsNamesPerEntry) throw new CaError('INVALID_ARGUMENT', `at most ${LIMITS.dnsNamesPerEntry} DNS names`);
      const dnsNames = [...new Set(req.dnsNames.map(validateDnsName))];
      const ttl = resolveTtl(ctx.svidTtl, req.ttlSeconds, 'TTL');
      const csr = parseCsr(req.csr);
      const svid = await ctx.minter.mint({ spiffeId, dnsNames, publicKey: csr.publicKey, subjectSpkiDer: csr.spkiDer, ttlSeconds: ttl });
      await audit({ action: 'x509.mint', spiffeId, serial: svid.serialHex, notAfter: epochSeconds(svid.notAfter), outcome: 'success', detail: 'admin mint' });
      return { svid: svidToProto(svid) };
    }, logger),

    ...sshAdminHandlers(ctx, audit),
  };
}
