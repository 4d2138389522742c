/**
 * The client side of x509pop node attestation: send the node certificate
 * chain and the CSR, sign the server's nonce with the node key (bound to
 * the CSR, see ca/attest/x509pop.ts), receive the agent SVID and bundle.
 */
import type { KeyObject } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { AttestJoinTokenResponse, AttestX509PopResponse, NodeServiceClient } from '../../proto/gen/brevis/ca/v1/node.js';
import { signX509PopPayload, x509popPayload } from '../../ca/attest/x509pop.js';
import { NodeApiError, fromGrpcError } from './errors.js';

export interface X509PopCredentials {
  /** The node certificate chain, DER, leaf first. */
  chain: readonly Buffer[];
  /** The node certificate's private key. */
  key: KeyObject;
}

export function attestX509PopWith(
  client: NodeServiceClient,
  node: X509PopCredentials,
  csr: Buffer,
  timeoutMs: number,
): Promise<AttestJoinTokenResponse> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const call = client.attestX509Pop(new grpc.Metadata(), { deadline: Date.now() + timeoutMs });
    const finish = (err: NodeApiError | null, res?: AttestJoinTokenResponse) => {
      if (settled) return;
      settled = true;
      if (err) {
        call.cancel();
        reject(err);
      } else {
        call.end();
        resolve(res!);
      }
    };
    call.on('data', (msg: AttestX509PopResponse) => {
      try {
        if (msg.challenge) {
          call.write({ challengeResponse: signX509PopPayload(node.key, x509popPayload(msg.challenge, csr)) });
        } else if (msg.result) {
          finish(null, msg.result);
        } else {
          finish(new NodeApiError('BAD_RESPONSE', 'x509pop attestation: the CA sent an empty step'));
        }
      } catch (e) {
        finish(new NodeApiError('RPC_FAILED', `x509pop attestation: cannot sign the challenge with the node key: ${(e as Error).message}`, { cause: e }));
      }
    });
    call.on('error', (e) => finish(fromGrpcError('x509pop attestation', e)));
    call.on('end', () => finish(new NodeApiError('BAD_RESPONSE', 'x509pop attestation: the CA ended the stream without a result')));
    call.write({ hello: { certChain: [...node.chain], csr } });
  });
}
