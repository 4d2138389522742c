/**
 * The workload side of `brevis.agent.v1.SSHCertificateService`: one call
 * on the agent's socket, with the Workload API's security header.
 */
import * as grpc from '@grpc/grpc-js';
import { SSHCertificateServiceClient, type SignUserCertificateResponse } from '../../proto/gen/brevis/agent/v1/ssh.js';
import { WORKLOAD_API_HEADER } from '../../spiffe/workload-client.js';

export interface SignUserCertificateOptions {
  /** Absolute path of the agent's socket. */
  socketPath: string;
  /** An authorized_keys line. */
  publicKey: string;
  /** Which of the caller's identities; '' or undefined for the default. */
  spiffeId?: string | undefined;
  timeoutMs: number;
}

/** Asks the agent for a user certificate. Rejects with the grpc-js ServiceError the agent answered. */
export function requestUserCertificate(o: SignUserCertificateOptions): Promise<SignUserCertificateResponse> {
  const client = new SSHCertificateServiceClient(`unix://${o.socketPath}`, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  md.set(WORKLOAD_API_HEADER, 'true');
  return new Promise<SignUserCertificateResponse>((resolve, reject) => {
    client.signUserCertificate({ publicKey: o.publicKey, spiffeId: o.spiffeId ?? '' }, md, { deadline: Date.now() + o.timeoutMs }, (err, res) =>
      err ? reject(err) : resolve(res),
    );
  }).finally(() => client.close());
}
