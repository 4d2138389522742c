/**
 * The X.509 key state: which root and intermediate exist, which one signs,
 * and what the bundle is. On first start with an empty data directory it
 * creates a self-signed root and an intermediate signed by it; later starts
 * load them. Each authority is recorded in the store by its
 * SubjectKeyIdentifier, with its key in the KeyStore under `keyRef`, so more
 * than one key per kind can exist (rotation builds on this).
 */
import 'reflect-metadata';
import type { Logger } from 'pino';
import type { Clock } from '../../spiffe/clock.js';
import { epochSeconds } from '../../spiffe/clock.js';
import { CaError } from '../errors.js';
import type { KeyStore } from '../keys/keystore.js';
import type { KeyType } from '../keys/keytype.js';
import { generateSigner, type LocalSigner } from '../keys/signer.js';
import type { AuthorityRecord, Store } from '../store/store.js';
import { createIntermediateCertificate, createRootCertificate } from '../x509/hierarchy.js';
import type { BundleView } from '../api/context.js';

const BUNDLE_SEQUENCE_KEY = 'bundle_sequence';
/** Consumers should re-check the bundle at least this often (seconds). */
export const BUNDLE_REFRESH_HINT_SECONDS = 300;

export interface ActiveIntermediate {
  record: AuthorityRecord;
  signer: LocalSigner;
  notAfter: Date;
}

export interface X509AuthorityOptions {
  store: Store;
  keys: KeyStore;
  clock: Clock;
  trustDomain: string;
  keyType: KeyType;
  rootTtlSeconds: number;
  intermediateTtlSeconds: number;
  logger: Logger;
}

export class X509Authority {
  private roots: AuthorityRecord[] = [];
  private intermediate!: ActiveIntermediate;
  private sequence = 0;

  private constructor(private readonly o: X509AuthorityOptions) {}

  static async open(o: X509AuthorityOptions): Promise<X509Authority> {
    const a = new X509Authority(o);
    await a.load();
    return a;
  }

  /** The active intermediate: the key that signs SVIDs now. */
  signing(): ActiveIntermediate {
    return this.intermediate;
  }

  bundle(): BundleView {
    return {
      trustDomain: this.o.trustDomain,
      roots: this.roots.map((r) => r.publicDer),
      sequence: this.sequence,
      refreshHintSeconds: BUNDLE_REFRESH_HINT_SECONDS,
    };
  }

  private async load(): Promise<void> {
    const { store, clock, logger } = this.o;
    let roots = (await store.listAuthorities('x509-root')).filter((r) => r.state !== 'revoked');
    let root = roots.find((r) => r.state === 'active');
    if (!root) {
      root = await this.createRoot();
      roots = [root];
      logger.info({ authority: root.id, kind: 'x509-root' }, 'created a new root CA');
    }
    const rootSigner = await this.o.keys.load(root.keyRef);
    this.roots = roots;

    const now = clock.now();
    const inter = (await store.listAuthorities('x509-intermediate')).find((r) => r.state === 'active');
    if (inter && inter.notAfter > epochSeconds(now) + 60 && inter.parentId === root.id) {
      this.intermediate = { record: inter, signer: await this.o.keys.load(inter.keyRef), notAfter: new Date(inter.notAfter * 1000) };
    } else {
      // No usable intermediate (first start, or the CA was down past its expiry): make one.
      const created = await this.createIntermediate(root, rootSigner);
      if (inter) await store.setAuthorityState(inter.id, 'retired');
      this.intermediate = created;
      logger.info({ authority: created.record.id, kind: 'x509-intermediate' }, 'created a new intermediate CA');
    }
    const seq = Number((await store.getMeta(BUNDLE_SEQUENCE_KEY)) ?? '0');
    if (seq === 0) await store.setMeta(BUNDLE_SEQUENCE_KEY, '1');
    this.sequence = seq === 0 ? 1 : seq;
    if (this.intermediate.notAfter.getTime() > new Date(root.notAfter * 1000).getTime()) {
      throw new CaError('INTERNAL', 'intermediate outlives its root');
    }
  }

  private async createRoot(): Promise<AuthorityRecord> {
    const { clock, trustDomain, keyType, rootTtlSeconds } = this.o;
    const signer = await generateSigner(keyType);
    const now = clock.now();
    const cert = await createRootCertificate({
      trustDomain,
      signer,
      notBefore: new Date(now.getTime() - 60_000),
      notAfter: new Date(now.getTime() + rootTtlSeconds * 1000),
    });
    const rec: AuthorityRecord = {
      id: cert.skiHex,
      kind: 'x509-root',
      state: 'active',
      publicDer: cert.der,
      parentId: null,
      keyRef: `x509-root-${cert.skiHex}`,
      notBefore: epochSeconds(cert.notBefore),
      notAfter: epochSeconds(cert.notAfter),
      createdAt: epochSeconds(now),
    };
    // Key first, record second: a crash in between leaves an unused key file, never a record without a key.
    await this.o.keys.save(rec.keyRef, signer);
    await this.o.store.putAuthority(rec);
    return rec;
  }

  private async createIntermediate(root: AuthorityRecord, rootSigner: LocalSigner): Promise<ActiveIntermediate> {
    const { clock, trustDomain, keyType, intermediateTtlSeconds } = this.o;
    const signer = await generateSigner(keyType);
    const now = clock.now();
    const notAfter = Math.min(now.getTime() + intermediateTtlSeconds * 1000, root.notAfter * 1000);
    const cert = await createIntermediateCertificate({
      trustDomain,
      subjectSigner: signer,
      issuerCertDer: root.publicDer,
      issuerSigner: rootSigner,
      notBefore: new Date(now.getTime() - 60_000),
      notAfter: new Date(notAfter),
    });
    const rec: AuthorityRecord = {
      id: cert.skiHex,
      kind: 'x509-intermediate',
      state: 'active',
      publicDer: cert.der,
      parentId: root.id,
      keyRef: `x509-intermediate-${cert.skiHex}`,
      notBefore: epochSeconds(cert.notBefore),
      notAfter: epochSeconds(cert.notAfter),
      createdAt: epochSeconds(now),
    };
    await this.o.keys.save(rec.keyRef, signer);
    await this.o.store.putAuthority(rec);
    return { record: rec, signer, notAfter: cert.notAfter };
  }
}
