/**
 * The SSH half of the node API. An agent (mTLS, current agent SVID) may
 * get a user certificate for an entry it is authorized for, with the public
 * key its workload provides, and a host certificate for its node's host
 * key with host names the admin bound to it; nothing else. Every issuance
 * and every refusal after authentication is an audit record.
 */
import type { ServerUnaryCall } from '@grpc/grpc-js';
import type {
  SignSSHHostCertificateRequest,
  SignSSHHostCertificateResponse,
  SignSSHUserCertificateRequest,
  SignSSHUserCertificateResponse,
} from '../../proto/gen/brevis/ca/v1/node.js';
import type { AgentSSH } from '../../proto/gen/brevis/ca/v1/types.js';
import { epochSeconds } from '../../spiffe/clock.js';
import { authorizedEntries } from '../authz/authorized-entries.js';
import { CaError } from '../errors.js';
import { resolveTtl } from '../issue/ttl-policy.js';
import { agentHostPrincipals } from '../ssh/host-principals.js';
import { validatePrincipals } from '../ssh/options.js';
import { parseAuthorizedKey } from '../ssh/public-key.js';
import type { IssuedSshCertificate } from '../ssh/ssh-issuer.js';
import type { AgentRecord } from '../store/store.js';
import { authenticateAgent } from './agent-auth.js';
import type { CaContext } from './context.js';
import { sshCertificateToProto } from './convert.js';
import { unary } from './errors.js';
import { echo } from './echo.js';

/** What FetchAuthorizedEntries tells an agent about SSH. */
export async function agentSshInfo(ctx: CaContext, agent: AgentRecord, nowSeconds: number): Promise<AgentSSH> {
  return {
    userCaKeys: ctx.ssh.trustedKeys('ssh-user'),
    hostCaKeys: ctx.ssh.trustedKeys('ssh-host'),
    hostPrincipals: await agentHostPrincipals(ctx.store, ctx.trustDomain, agent, nowSeconds),
  };
}

export function sshNodeHandlers(ctx: CaContext) {
  const { store, clock, logger, trustDomain } = ctx;

  /** Runs `fn` for an authenticated agent, auditing its outcome under `action`. */
  async function audited(
    call: ServerUnaryCall<unknown, unknown>,
    action: 'ssh.sign.user' | 'ssh.sign.host',
    fn: (agent: AgentRecord, now: Date, subject: { spiffeId: string | null }) => Promise<{ cert: IssuedSshCertificate; detail: string }>,
  ): Promise<IssuedSshCertificate> {
    const now = clock.now();
    const { agent } = await authenticateAgent(call, { store, trustDomain, now });
    const subject: { spiffeId: string | null } = { spiffeId: null };
    const base = { timeMs: now.getTime(), caller: agent.agentId, action };
    try {
      const { cert, detail } = await fn(agent, now, subject);
      // The certificate is returned only once its audit record is stored.
      await store.appendAudit([{ ...base, spiffeId: subject.spiffeId, serial: cert.serial.toString(10), notAfter: cert.validBefore, outcome: 'success', detail }]);
      logger.info({ agentId: agent.agentId, action, serial: cert.serial.toString(10), principals: cert.principals }, 'SSH certificate signed');
      return cert;
    } catch (e) {
      if (e instanceof CaError && e.code !== 'INTERNAL') {
        await store.appendAudit([{ ...base, spiffeId: subject.spiffeId, serial: null, notAfter: null, outcome: 'failure', detail: e.message }]);
      }
      throw e;
    }
  }

  const signUser = async (req: SignSSHUserCertificateRequest, call: ServerUnaryCall<SignSSHUserCertificateRequest, SignSSHUserCertificateResponse>) => {
    const cert = await audited(call, 'ssh.sign.user', async (agent, now, subject) => {
      const entries = await authorizedEntries(store, trustDomain, agent, epochSeconds(now));
      const entry = entries.find((e) => e.id === req.entryId);
      if (!entry) throw new CaError('PERMISSION_DENIED', `entry '${echo(req.entryId)}' is unknown or not authorized for this agent`);
      subject.spiffeId = entry.spiffeId;
      const ssh = entry.ssh;
      if (!ssh || ssh.principals.length === 0) {
        throw new CaError('POLICY_DENIED', `entry ${entry.id} has no SSH principals: it is not allowed SSH user certificates`);
      }
      const publicKey = parseAuthorizedKey(req.publicKey);
      const ttl = resolveTtl(ctx.ssh.userTtl, ssh.ttl, 'entry SSH TTL');
      const cert = await ctx.ssh.issuer.issue({
        type: 'user',
        publicKey,
        principals: ssh.principals,
        ttlSeconds: ttl,
        keyId: (serial) => `${entry.spiffeId} entry=${entry.id} serial=${serial}`,
        criticalOptions: { forceCommand: ssh.forceCommand ?? undefined, sourceAddress: ssh.sourceAddress ?? undefined },
        extensions: ssh.extensions,
      });
      return { cert, detail: `entry ${entry.id}; principals ${cert.principals.join(',')}; key ${cert.subjectFingerprint}` };
    });
    return { certificate: sshCertificateToProto(cert) };
  };

  const signHost = async (req: SignSSHHostCertificateRequest, call: ServerUnaryCall<SignSSHHostCertificateRequest, SignSSHHostCertificateResponse>) => {
    const cert = await audited(call, 'ssh.sign.host', async (agent, now, subject) => {
      subject.spiffeId = agent.agentId;
      const bound = await agentHostPrincipals(store, trustDomain, agent, epochSeconds(now));
      if (bound.length === 0) {
        throw new CaError(
          'PERMISSION_DENIED',
          `no SSH host names are bound to agent ${agent.agentId} (bind them with token create --ssh-host-principal, or on a node entry that matches it)`,
        );
      }
      const wanted = req.principals.length === 0 ? bound : validatePrincipals(req.principals, 'host');
      const foreign = wanted.filter((p) => !bound.includes(p));
      if (foreign.length > 0) {
        throw new CaError('PERMISSION_DENIED', `host names not bound to agent ${agent.agentId}: ${foreign.slice(0, 8).join(', ')}`);
      }
      const publicKey = parseAuthorizedKey(req.publicKey);
      const cert = await ctx.ssh.issuer.issue({
        type: 'host',
        publicKey,
        principals: wanted,
        ttlSeconds: resolveTtl(ctx.ssh.hostTtl, 0, 'host certificate TTL'),
        keyId: (serial) => `${agent.agentId} host serial=${serial}`,
      });
      return { cert, detail: `principals ${cert.principals.join(',')}; key ${cert.subjectFingerprint}` };
    });
    return { certificate: sshCertificateToProto(cert) };
  };

  return {
    signSshUserCertificate: unary(signUser, logger),
    signSshHostCertificate: unary(signHost, logger),
  };
}
