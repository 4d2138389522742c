/**
 * Promise-based calls of the CA's node API over a NodeChannel, with a
 * deadline on each and failures turned into NodeApiError.
 */
import * as grpc from '@grpc/grpc-js';
import type {
  AttestJoinTokenResponse,
  BatchMintX509SVIDResponse,
  FetchAuthorizedEntriesResponse,
  MintX509SVIDParams,
  MintX509SVIDResult,
  NodeServiceClient,
  RenewAgentSVIDResponse,
  SignSSHHostCertificateResponse,
  SignSSHUserCertificateResponse,
} from '../../proto/gen/brevis/ca/v1/node.js';
import type { AuthorityStatus } from '../../proto/gen/brevis/ca/v1/push.js';
import type { AgentSSH, Bundle, Entry, SSHCertificate, X509SVID } from '../../proto/gen/brevis/ca/v1/types.js';
import { attestX509PopWith, type X509PopCredentials } from './attest-x509pop.js';
import type { ChannelKind, NodeChannel } from './channel.js';
import { NodeApiError, fromGrpcError } from './errors.js';

/** What any attestation yields: the agent SVID and the trust bundle. */
export interface AttestationResult {
  svid: X509SVID;
  bundle: Bundle;
}

export interface AuthorizedEntries {
  unchanged: false;
  /** Names this state: pass it to the next fetch ('' from a CA that does not version it). */
  version: string;
  entries: Entry[];
  bundle: Bundle;
  /** SSH CA keys and the agent's host names; undefined from a CA without SSH. */
  ssh?: AgentSSH | undefined;
  /** Tainted and revoked authorities; undefined from a CA without rotation. */
  authorities?: AuthorityStatus | undefined;
}

/** The CA's state is still the one `version` names. */
export interface UnchangedEntries {
  unchanged: true;
  version: string;
}

type Callback<Res> = (err: grpc.ServiceError | null, res?: Res) => void;

/** Default deadline of one node API call. */
export const NODE_CALL_TIMEOUT_MS = 30_000;

export class NodeApi {
  constructor(
    readonly channel: NodeChannel,
    private readonly timeoutMs = NODE_CALL_TIMEOUT_MS,
  ) {}

  async attestJoinToken(token: string, csr: Buffer): Promise<AttestationResult> {
    const res = await this.#unary<AttestJoinTokenResponse>('anonymous', 'join token attestation', (c, md, o, cb) =>
      c.attestJoinToken({ token, csr }, md, o, cb),
    );
    return attestationResult('join token attestation', res.svid, res.bundle);
  }

  async attestX509Pop(node: X509PopCredentials, csr: Buffer): Promise<AttestationResult> {
    const res = await this.channel.use('anonymous', (c) => attestX509PopWith(c, node, csr, this.timeoutMs));
    return attestationResult('x509pop attestation', res.svid, res.bundle);
  }

  async renewAgentSvid(csr: Buffer): Promise<X509SVID> {
    const res = await this.#unary<RenewAgentSVIDResponse>('agent', 'agent SVID renewal', (c, md, o, cb) =>
      c.renewAgentSvid({ csr }, md, o, cb),
    );
    if (!res.svid || res.svid.certChain.length === 0) throw new NodeApiError('BAD_RESPONSE', 'agent SVID renewal: the CA returned no SVID');
    return res.svid;
  }

  /** The authorized entries and the bundle, or `unchanged` when they are still the ones `knownVersion` names. */
  async fetchAuthorizedEntries(knownVersion = ''): Promise<AuthorizedEntries | UnchangedEntries> {
    const res = await this.#unary<FetchAuthorizedEntriesResponse>('agent', 'fetching authorized entries', (c, md, o, cb) =>
      c.fetchAuthorizedEntries({ knownVersion }, md, o, cb),
    );
    if (res.unchanged) {
      if (knownVersion === '' || res.version !== knownVersion) {
        throw new NodeApiError('BAD_RESPONSE', 'fetching authorized entries: the CA said unchanged for a version the agent did not send');
      }
      return { unchanged: true, version: res.version };
    }
    if (!res.bundle || res.bundle.x509Authorities.length === 0) {
      throw new NodeApiError('BAD_RESPONSE', 'fetching authorized entries: the CA returned no bundle');
    }
    return { unchanged: false, version: res.version, entries: res.entries, bundle: res.bundle, ssh: res.ssh, authorities: res.authorities };
  }

  /** One result per param, in order (an SVID or a status). */
  async batchMintX509Svid(params: MintX509SVIDParams[]): Promise<MintX509SVIDResult[]> {
    const res = await this.#unary<BatchMintX509SVIDResponse>('agent', 'minting SVIDs', (c, md, o, cb) =>
      c.batchMintX509Svid({ params }, md, o, cb),
    );
    if (res.results.length !== params.length) {
      throw new NodeApiError('BAD_RESPONSE', `minting SVIDs: asked for ${params.length}, the CA answered ${res.results.length} results`);
    }
    return res.results;
  }

  /** An OpenSSH user certificate for an authorized entry with SSH principals, for `publicKey` (an authorized_keys line). */
  async signSshUserCertificate(entryId: string, publicKey: string): Promise<SSHCertificate> {
    const res = await this.#unary<SignSSHUserCertificateResponse>('agent', 'signing an SSH user certificate', (c, md, o, cb) =>
      c.signSshUserCertificate({ entryId, publicKey }, md, o, cb),
    );
    if (!res.certificate?.certificate) throw new NodeApiError('BAD_RESPONSE', 'signing an SSH user certificate: the CA returned no certificate');
    return res.certificate;
  }

  /** An OpenSSH host certificate for the node's host key; `principals` empty means all host names bound to this agent. */
  async signSshHostCertificate(publicKey: string, principals: readonly string[]): Promise<SSHCertificate> {
    const res = await this.#unary<SignSSHHostCertificateResponse>('agent', 'signing an SSH host certificate', (c, md, o, cb) =>
      c.signSshHostCertificate({ publicKey, principals: [...principals] }, md, o, cb),
    );
    if (!res.certificate?.certificate) throw new NodeApiError('BAD_RESPONSE', 'signing an SSH host certificate: the CA returned no certificate');
    return res.certificate;
  }

  #unary<Res>(
    kind: ChannelKind,
    what: string,
    invoke: (client: NodeServiceClient, md: grpc.Metadata, opts: Partial<grpc.CallOptions>, cb: Callback<Res>) => grpc.ClientUnaryCall,
  ): Promise<Res> {
    return this.channel.use(
      kind,
      (client) =>
        new Promise<Res>((resolve, reject) => {
          invoke(client, new grpc.Metadata(), { deadline: Date.now() + this.timeoutMs }, (err, res) => {
            if (err) reject(fromGrpcError(what, err));
            else if (!res) reject(new NodeApiError('BAD_RESPONSE', `${what}: empty response`));
            else resolve(res);
          });
        }),
    );
  }
}

function attestationResult(what: string, svid: X509SVID | undefined, bundle: Bundle | undefined): AttestationResult {
  if (!svid || svid.certChain.length === 0) throw new NodeApiError('BAD_RESPONSE', `${what}: the CA returned no SVID`);
  if (!bundle || bundle.x509Authorities.length === 0) throw new NodeApiError('BAD_RESPONSE', `${what}: the CA returned no bundle`);
  return { svid, bundle };
}
