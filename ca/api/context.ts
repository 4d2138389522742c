/** What the API handlers need from the CA, as one plain object. */
import type { X509Certificate, KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock } from '../../spiffe/clock.js';
import type { Store } from '../store/store.js';
import type { TtlPolicy } from '../issue/ttl-policy.js';
import type { SshIssuer } from '../ssh/ssh-issuer.js';
import type { SshCaKind } from '../ssh/ssh-authority.js';
import type { PushContext } from '../push/push-context.js';

export interface BundleView {
  trustDomain: string;
  /** Root certificates, DER. */
  roots: Buffer[];
  sequence: number;
  refreshHintSeconds: number;
}

export interface MintedSvid {
  spiffeId: string;
  /** Leaf then intermediates, DER. */
  chain: Buffer[];
  serialHex: string;
  notBefore: Date;
  notAfter: Date;
}

export interface MintRequest {
  spiffeId: string;
  dnsNames: string[];
  publicKey: KeyObject;
  /** The subject key's SubjectPublicKeyInfo when already known (saves an export per mint). */
  subjectSpkiDer?: Buffer;
  ttlSeconds: number;
}

/** A CSR (DER, not yet checked) and what to mint for its key. */
export interface CsrMintRequest {
  csr: Uint8Array;
  spiffeId: string;
  dnsNames: string[];
  ttlSeconds: number;
}

export interface SvidMinter {
  /** Mints for a subject key taken from an already-verified CSR. */
  mint(req: MintRequest): Promise<MintedSvid>;
  /**
   * Parses and verifies the CSR, then mints for its key. Throws CaError
   * CSR_INVALID / UNSUPPORTED_KEY / INVALID_ARGUMENT for a bad CSR, like
   * parseCsr followed by mint, whichever thread does the work.
   */
  mintFromCsr(req: CsrMintRequest): Promise<MintedSvid>;
}

export interface CaContext {
  trustDomain: string;
  clock: Clock;
  store: Store;
  minter: SvidMinter;
  bundle(): BundleView;
  svidTtl: TtlPolicy;
  agentSvidTtlSeconds: number;
  joinTokenTtl: TtlPolicy;
  /** Trusted host CAs for x509pop, or null when x509pop is off. */
  x509popCas: X509Certificate[] | null;
  logger: Logger;
  ssh: SshContext;
  /** Change notifications to connected agents, agent reports, authorities to stop relying on. */
  push: PushContext;
}

/** What the API needs for OpenSSH certificates. */
export interface SshContext {
  issuer: Pick<SshIssuer, 'issue'>;
  /** The CA keys to trust for a kind, as authorized_keys lines. */
  trustedKeys(kind: SshCaKind): string[];
  userTtl: TtlPolicy;
  hostTtl: TtlPolicy;
}
