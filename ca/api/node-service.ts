/**
 * The node API: attestation (no client certificate needed) and, over mTLS
 * with the agent's current SVID, renewal, entry sync and batched minting.
 */
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type {
  AttestJoinTokenRequest,
  AttestJoinTokenResponse,
  AttestX509PopRequest,
  AttestX509PopResponse,
  MintX509SVIDResult,
  NodeServiceServer,
} from '../../proto/gen/brevis/ca/v1/node.js';
import { CaError } from '../errors.js';
import type { AgentRecord, AuditRecord } from '../store/store.js';
import { parseCsr } from '../x509/csr.js';
import { epochSeconds } from '../../spiffe/clock.js';
import { normalizeSelectors } from '../../spiffe/selector.js';
import { hashJoinToken, looksLikeJoinToken } from '../attest/join-token.js';
import {
  X509POP_NONCE_BYTES,
  verifyX509PopChain,
  verifyX509PopSignature,
  x509popAgentId,
  x509popPayload,
  x509popSelectors,
} from '../attest/x509pop.js';
import { authorizedEntries, authorizedEntriesById } from '../authz/authorized-entries.js';
import { authenticateAgent } from './agent-auth.js';
import type { CaContext, MintedSvid } from './context.js';
import { bundleToProto, entryToProto, svidToProto } from './convert.js';
import { authorizedStateVersion } from './state-version.js';
import { statusForCode, toServiceError, unary } from './errors.js';
import { resolveTtl } from '../issue/ttl-policy.js';
import { agentSshInfo, sshNodeHandlers } from './ssh-node.js';
import { pushNodeHandlers } from './push-node.js';
import { echo } from './echo.js';

/** Largest batch accepted by BatchMintX509SVID. */
export const MAX_MINT_BATCH = 1000;
/** Time a node has to answer the x509pop challenge. */
const X509POP_TIMEOUT_MS = 30_000;

export function createNodeService(ctx: CaContext): NodeServiceServer {
  const { store, clock, logger } = ctx;

  function audit(rec: Omit<AuditRecord, 'timeMs'>): Promise<void> {
    return store.appendAudit([{ timeMs: clock.now().getTime(), ...rec }]);
  }

  async function issueAgentSvid(
    agentId: string,
    csrDer: Uint8Array,
    attestationType: AgentRecord['attestationType'],
    selectors: AgentRecord['selectors'],
    sshHostPrincipals: string[] = [],
  ): Promise<AttestJoinTokenResponse> {
    const csr = parseCsr(csrDer);
    const svid = await ctx.minter.mint({ spiffeId: agentId, dnsNames: [], publicKey: csr.publicKey, subjectSpkiDer: csr.spkiDer, ttlSeconds: ctx.agentSvidTtlSeconds });
    const now = epochSeconds(clock.now());
    await store.upsertAgent({
      agentId,
      attestationType,
      serial: svid.serialHex,
      expiresAt: epochSeconds(svid.notAfter),
      selectors: normalizeSelectors(selectors),
      banned: false,
      createdAt: now,
      lastSeenAt: now,
      ...(sshHostPrincipals.length > 0 ? { sshHostPrincipals } : {}),
    });
    await audit({
      caller: agentId,
      action: `attest.${attestationType}`,
      spiffeId: agentId,
      serial: svid.serialHex,
      notAfter: epochSeconds(svid.notAfter),
      outcome: 'success',
      detail: null,
    });
    logger.info({ agentId, method: attestationType, serial: svid.serialHex }, 'agent attested');
    return { svid: svidToProto(svid), bundle: bundleToProto(ctx.bundle()) };
  }

  async function refuseIfBanned(agentId: string): Promise<void> {
    const existing = await store.getAgent(agentId);
    if (existing?.banned) throw new CaError('ATTESTATION_FAILED', `agent ${agentId} is banned`);
  }

  async function attestJoinToken(req: AttestJoinTokenRequest): Promise<AttestJoinTokenResponse> {
    // Validate everything that does not change state before burning the token.
    parseCsr(req.csr);
    const fail = async (detail: string, msg: string) => {
      await audit({ caller: 'anonymous', action: 'attest.join_token', spiffeId: null, serial: null, notAfter: null, outcome: 'failure', detail });
      logger.warn({ reason: detail }, 'join token attestation refused');
      return new CaError('ATTESTATION_FAILED', msg);
    };
    if (!looksLikeJoinToken(req.token)) throw await fail('malformed token', 'join token is malformed');
    const res = await store.consumeJoinToken(hashJoinToken(req.token), epochSeconds(clock.now()));
    if (!res.ok) throw await fail(`${res.reason} token`, `join token is ${res.reason === 'unknown' ? 'unknown' : res.reason === 'used' ? 'already used' : 'expired'}`);
    await refuseIfBanned(res.token.agentId);
    return issueAgentSvid(res.token.agentId, req.csr, 'join_token', [], res.token.sshHostPrincipals);
  }

  function attestX509Pop(call: grpc.ServerDuplexStream<AttestX509PopRequest, AttestX509PopResponse>): void {
    let nonce: Buffer | null = null;
    let hello: { chain: Buffer[]; csr: Buffer } | null = null;
    let done = false;
    const timer = setTimeout(() => finish(new CaError('ATTESTATION_FAILED', 'x509pop: challenge not answered in time')), X509POP_TIMEOUT_MS);
    const finish = (err: unknown, result?: AttestJoinTokenResponse) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) {
        if (err instanceof CaError && err.code === 'ATTESTATION_FAILED') {
          void audit({ caller: 'anonymous', action: 'attest.x509pop', spiffeId: null, serial: null, notAfter: null, outcome: 'failure', detail: err.message }).catch(() => {});
        }
        call.emit('error', toServiceError(err, logger));
        return;
      }
      call.write({ result });
      call.end();
    };
    call.on('data', (msg: AttestX509PopRequest) => {
      if (done) return;
      void (async () => {
        if (!ctx.x509popCas) throw new CaError('FAILED_PRECONDITION', 'x509pop attestation is not configured on this CA');
        if (msg.hello && !hello) {
          parseCsr(msg.hello.csr);
          hello = { chain: msg.hello.certChain, csr: msg.hello.csr };
          nonce = randomBytes(X509POP_NONCE_BYTES);
          call.write({ challenge: nonce });
          return;
        }
        if (msg.challengeResponse && hello && nonce) {
          const r = verifyX509PopChain(hello.chain, ctx.x509popCas, clock.now());
          if (!verifyX509PopSignature(r.leaf, x509popPayload(nonce, hello.csr), msg.challengeResponse)) {
            throw new CaError('ATTESTATION_FAILED', 'x509pop: the challenge signature does not verify');
          }
          const agentId = x509popAgentId(ctx.trustDomain, r.leaf);
          await refuseIfBanned(agentId);
          finish(null, await issueAgentSvid(agentId, hello.csr, 'x509pop', x509popSelectors(r)));
          return;
        }
        throw new CaError('INVALID_ARGUMENT', 'x509pop: expected a hello, then a challenge response');
      })().catch((e: unknown) => finish(e));
    });
    call.on('end', () => finish(new CaError('ATTESTATION_FAILED', 'x509pop: stream closed before attestation completed')));
    call.on('cancelled', () => {
      done = true;
      clearTimeout(timer);
    });
  }

  return {
    attestJoinToken: unary(attestJoinToken, logger),
    attestX509Pop,

    renewAgentSvid: unary(async (req, call) => {
      const { agent } = await authenticateAgent(call, { store, trustDomain: ctx.trustDomain, now: clock.now() });
      const csr = parseCsr(req.csr);
      const svid = await ctx.minter.mint({ spiffeId: agent.agentId, dnsNames: [], publicKey: csr.publicKey, subjectSpkiDer: csr.spkiDer, ttlSeconds: ctx.agentSvidTtlSeconds });
      await store.updateAgentSvid(agent.agentId, svid.serialHex, epochSeconds(svid.notAfter), epochSeconds(clock.now()));
      await audit({ caller: agent.agentId, action: 'agent.renew', spiffeId: agent.agentId, serial: svid.serialHex, notAfter: epochSeconds(svid.notAfter), outcome: 'success', detail: null });
      return { svid: svidToProto(svid) };
    }, logger),

    fetchAuthorizedEntries: unary(async (req, call) => {
      const now = clock.now();
      const { agent } = await authenticateAgent(call, { store, trustDomain: ctx.trustDomain, now });
      const entries = await authorizedEntries(store, ctx.trustDomain, agent, epochSeconds(now));
      await store.touchAgent(agent.agentId, epochSeconds(now));
      const ssh = await agentSshInfo(ctx, agent, epochSeconds(now));
      const bundle = bundleToProto(ctx.bundle());
      const authorities = { taintedIds: ctx.push.untrustedIds() };
      const version = authorizedStateVersion({ entries, bundle, ssh, authorities });
      if (req.knownVersion === version) return { entries: [], version, unchanged: true };
      return { entries: entries.map(entryToProto), bundle, ssh, authorities, version, unchanged: false };
    }, logger),

    batchMintX509Svid: unary(async (req, call) => {
      const now = clock.now();
      const { agent } = await authenticateAgent(call, { store, trustDomain: ctx.trustDomain, now });
      if (req.params.length === 0) throw new CaError('INVALID_ARGUMENT', 'no SVIDs requested');
      if (req.params.length > MAX_MINT_BATCH) {
        throw new CaError('INVALID_ARGUMENT', `at most ${MAX_MINT_BATCH} SVIDs per batch (got ${req.params.length})`);
      }
      const entries = await authorizedEntriesById(store, ctx.trustDomain, agent, epochSeconds(now));
      // CSRs are verified and certificates built and signed by the mint workers (or
      // on libuv's pool), all of the batch at once; audit records keep the order of the request.
      const records: AuditRecord[] = new Array(req.params.length);
      const results: MintX509SVIDResult[] = await Promise.all(
        req.params.map(async (p, i): Promise<MintX509SVIDResult> => {
          const entry = entries.get(p.entryId);
          try {
            if (!entry) throw new CaError('PERMISSION_DENIED', `entry '${echo(p.entryId)}' is unknown or not authorized for this agent`);
            const ttl = resolveTtl(ctx.svidTtl, entry.x509SvidTtl, 'entry TTL');
            const svid: MintedSvid = await ctx.minter.mintFromCsr({ csr: p.csr, spiffeId: entry.spiffeId, dnsNames: entry.dnsNames, ttlSeconds: ttl });
            records[i] = { timeMs: now.getTime(), caller: agent.agentId, action: 'x509.mint', spiffeId: entry.spiffeId, serial: svid.serialHex, notAfter: epochSeconds(svid.notAfter), outcome: 'success', detail: `entry ${entry.id}` };
            return { svid: svidToProto(svid), statusCode: grpc.status.OK, statusMessage: '' };
          } catch (e) {
            if (!(e instanceof CaError) || e.code === 'INTERNAL') throw e;
            records[i] = { timeMs: now.getTime(), caller: agent.agentId, action: 'x509.mint', spiffeId: entry?.spiffeId ?? null, serial: null, notAfter: null, outcome: 'failure', detail: e.message };
            return { statusCode: statusForCode(e.code), statusMessage: e.message };
          }
        }),
      );
      // The certificates are returned only once their audit records are stored.
      await store.appendAudit(records);
      return { results };
    }, logger),

    ...sshNodeHandlers(ctx),
    ...pushNodeHandlers({ push: ctx.push, store, trustDomain: ctx.trustDomain, clock, logger }),
  };
}
