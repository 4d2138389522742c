/**
 * The CA's own serving identity: an X.509-SVID for spiffe://TD/brevis/server
 * minted by the CA itself with a key that never leaves this process, renewed
 * at half of its lifetime. It feeds grpc-js through the CertificateProvider
 * interface, so renewals and bundle changes apply to new handshakes without
 * restarting the listener.
 */
import { generateKeyPairSync } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import type { Clock } from '../../spiffe/clock.js';
import type { MintedSvid, SvidMinter } from '../api/context.js';
import { serverId } from '../authz/authorized-entries.js';
import { certsToPem } from '../../spiffe/pem.js';

type Provider = grpc.experimental.CertificateProvider;
type CaListener = grpc.experimental.CaCertificateUpdateListener;
type IdListener = grpc.experimental.IdentityCertificateUpdateListener;


export class ServerIdentity implements Provider {
  private caListeners = new Set<CaListener>();
  private idListeners = new Set<IdListener>();
  private ca: grpc.experimental.CaCertificateUpdate | null = null;
  private id: grpc.experimental.IdentityCertificateUpdate | null = null;
  private timer: NodeJS.Timeout | null = null;
  private current: MintedSvid | null = null;

  constructor(
    private readonly deps: {
      trustDomain: string;
      minter: SvidMinter;
      clock: Clock;
      ttlSeconds: number;
      onError: (e: unknown) => void;
    },
  ) {}

  get svid(): MintedSvid | null {
    return this.current;
  }

  /** Mints the first SVID and schedules renewals. */
  async start(roots: Buffer[]): Promise<void> {
    this.setRoots(roots);
    await this.renew();
  }

  setRoots(roots: Buffer[]): void {
    this.ca = { caCertificate: Buffer.from(certsToPem(roots)) };
    for (const l of this.caListeners) l(this.ca);
  }

  async renew(): Promise<void> {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const svid = await this.deps.minter.mint({
      spiffeId: serverId(this.deps.trustDomain),
      dnsNames: [],
      publicKey,
      ttlSeconds: this.deps.ttlSeconds,
    });
    this.current = svid;
    this.id = {
      certificate: Buffer.from(certsToPem(svid.chain)),
      privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }) as Buffer,
    };
    for (const l of this.idListeners) l(this.id);
    this.schedule(svid);
  }

  private schedule(svid: MintedSvid): void {
    if (this.timer) clearTimeout(this.timer);
    const half = (svid.notAfter.getTime() - svid.notBefore.getTime()) / 2;
    const at = svid.notBefore.getTime() + half;
    const delay = Math.max(1000, at - this.deps.clock.now().getTime());
    this.timer = setTimeout(() => {
      this.renew().catch((e) => {
        this.deps.onError(e);
        // Retry soon; the current SVID is still valid for the other half.
        this.timer = setTimeout(() => void this.renew().catch(this.deps.onError), 10_000);
        this.timer.unref();
      });
    }, delay);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  addCaCertificateListener(l: CaListener): void {
    this.caListeners.add(l);
    // grpc-js registers its own watcher only after this call returns: deliver asynchronously.
    queueMicrotask(() => this.ca && this.caListeners.has(l) && l(this.ca));
  }
  removeCaCertificateListener(l: CaListener): void {
    this.caListeners.delete(l);
  }
  addIdentityCertificateListener(l: IdListener): void {
    this.idListeners.add(l);
    queueMicrotask(() => this.id && this.idListeners.has(l) && l(this.id));
  }
  removeIdentityCertificateListener(l: IdListener): void {
    this.idListeners.delete(l);
  }
}
