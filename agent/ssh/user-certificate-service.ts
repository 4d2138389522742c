/**
 * The gRPC edge of `brevis.agent.v1.SSHCertificateService` on the Workload
 * API socket: the same admission as the Workload API (the
 * `workload.spiffe.io: true` header, then per-call attestation from the
 * caller's kernel credentials), then UserCertificateSigner, with its typed
 * errors mapped to statuses here and nowhere else.
 */
import * as grpc from '@grpc/grpc-js';
import {
  SSHCertificateServiceService,
  type SignUserCertificateRequest,
  type SignUserCertificateResponse,
} from '../../proto/gen/brevis/agent/v1/ssh.js';
import { isAttestationError } from '../attest/errors.js';
import { SECURITY_HEADER, type WorkloadApiLogger } from '../workload-api/handlers.js';
import type { CallAttestor, ExtraServiceFactory } from '../workload-api/server.js';
import { isAgentSshError, type AgentSshErrorCode } from './errors.js';
import type { UserCertificateSigner } from './user-certificates.js';

/** The fully qualified service name, as health checks and reflection know it. */
export const SSH_CERTIFICATE_SERVICE = 'brevis.agent.v1.SSHCertificateService';

const STATUS: Record<AgentSshErrorCode, grpc.status> = {
  NOT_READY: grpc.status.UNAVAILABLE,
  NO_SSH_ENTRY: grpc.status.PERMISSION_DENIED,
  INVALID_KEY: grpc.status.INVALID_ARGUMENT,
  CA_UNAVAILABLE: grpc.status.UNAVAILABLE,
  CA_REFUSED: grpc.status.PERMISSION_DENIED,
  BAD_CERTIFICATE: grpc.status.INTERNAL,
  HOST_KEY_INVALID: grpc.status.INTERNAL,
};

/** Messages of these codes describe the agent or the CA, not the caller: they stay in the log. */
const HIDDEN: ReadonlySet<AgentSshErrorCode> = new Set(['BAD_CERTIFICATE', 'HOST_KEY_INVALID']);

type Call = grpc.ServerUnaryCall<SignUserCertificateRequest, SignUserCertificateResponse>;

/** The service, for `startWorkloadApiServer({ services: [...] })`. */
export function sshCertificateService(signer: UserCertificateSigner, logger?: WorkloadApiLogger): ExtraServiceFactory {
  return (attestCall: CallAttestor) => ({
    definition: SSHCertificateServiceService,
    implementation: {
      signUserCertificate: (call: Call, callback: grpc.sendUnaryData<SignUserCertificateResponse>) => {
        handle(call, attestCall, signer, logger).then(
          (res) => callback(null, res),
          (e: { code: grpc.status; details: string }) => callback(e),
        );
      },
    },
  });
}

async function handle(call: Call, attestCall: CallAttestor, signer: UserCertificateSigner, logger?: WorkloadApiLogger): Promise<SignUserCertificateResponse> {
  const fail = (code: grpc.status, details: string) => ({ code, details });
  const values = call.metadata.get(SECURITY_HEADER);
  if (values.length !== 1 || values[0] !== 'true') throw fail(grpc.status.INVALID_ARGUMENT, 'security header missing');
  let selectors: string[] | undefined;
  try {
    selectors = await attestCall(call);
  } catch (e) {
    logger?.warn({ code: isAttestationError(e) ? e.code : 'INTERNAL', err: (e as Error).message }, 'workload attestation failed');
    if (isAttestationError(e)) throw fail(grpc.status.PERMISSION_DENIED, 'workload attestation failed');
    throw fail(grpc.status.INTERNAL, 'workload attestation failed');
  }
  if (selectors === undefined) throw fail(grpc.status.UNAVAILABLE, 'connection closed');
  try {
    const c = await signer.sign(new Set(selectors), { publicKey: call.request.publicKey, spiffeId: call.request.spiffeId });
    return {
      certificate: c.certificate,
      spiffeId: c.spiffeId,
      principals: c.principals,
      serial: c.serial,
      keyId: c.keyId,
      validAfter: c.validAfter,
      validBefore: c.validBefore,
      caFingerprint: c.caFingerprint,
    };
  } catch (e) {
    if (isAgentSshError(e)) {
      if (e.code !== 'NO_SSH_ENTRY' && e.code !== 'INVALID_KEY') logger?.warn({ code: e.code, err: e.message }, 'SSH user certificate not issued');
      throw fail(STATUS[e.code], HIDDEN.has(e.code) ? 'internal error' : e.message);
    }
    logger?.warn({ err: (e as Error).message }, 'SSH user certificate request failed');
    throw fail(grpc.status.INTERNAL, 'internal error');
  }
}
