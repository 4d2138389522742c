/**
 * The X.509 key state the issuing path reads: the intermediate that signs
 * now (with the certificate served beside each SVID) and the trust bundle.
 * It is a view: the authority life cycle (ca/rotation/) decides and
 * persists every change and then calls `apply` with a fresh snapshot, so
 * a reader never sees half of a transition.
 */
import 'reflect-metadata';
import { CaError } from '../errors.js';
import type { LocalSigner } from '../keys/signer.js';
import type { AuthorityRecord } from '../store/store.js';
import type { BundleView } from '../api/context.js';
import { servedIntermediate, trustedOf, type LifecycleSnapshot } from '../rotation/model.js';
import { parseCertificate } from '../x509/parse.js';

/** Consumers should re-check the bundle at least this often (seconds). */
export const BUNDLE_REFRESH_HINT_SECONDS = 300;

export interface ActiveIntermediate {
  record: AuthorityRecord;
  signer: LocalSigner;
  /** SVIDs never outlive this (the served certificate's notAfter). */
  notAfter: Date;
  /** The intermediate certificate(s) sent after each leaf, DER: the direct one, or the one cross-signed by the previous root. */
  chain: Buffer[];
  /** The root the served chain leads to. */
  rootId: string;
}

export class X509Authority {
  #intermediate: ActiveIntermediate | null = null;
  #bundle: BundleView;

  constructor(private readonly trustDomain: string) {
    this.#bundle = { trustDomain, roots: [], sequence: 0, refreshHintSeconds: BUNDLE_REFRESH_HINT_SECONDS };
  }

  /** The active intermediate: the key that signs SVIDs now. */
  signing(): ActiveIntermediate {
    if (!this.#intermediate) throw new CaError('CA_NOT_READY', 'no active intermediate CA is loaded');
    return this.#intermediate;
  }

  bundle(): BundleView {
    return this.#bundle;
  }

  /**
   * Takes the state of `snapshot`: loads the active intermediate's key
   * (through `loadSigner`, which may cache) before switching, so a failure
   * leaves the previous state in place.
   */
  async apply(snapshot: LifecycleSnapshot, nowSeconds: number, loadSigner: (keyRef: string) => Promise<LocalSigner>): Promise<void> {
    const served = servedIntermediate(snapshot, nowSeconds);
    if (!served) throw new CaError('INTERNAL', 'the authority state has no active intermediate');
    const signer = await loadSigner(served.intermediate.keyRef);
    if (!signer.spkiDer.equals(parseCertificate(served.intermediate.publicDer).spkiDer)) {
      throw new CaError('INTERNAL', `the key file of intermediate ${served.intermediate.id} does not match its certificate`);
    }
    this.#intermediate = {
      record: served.intermediate,
      signer,
      notAfter: new Date(served.notAfter * 1000),
      chain: [served.certDer],
      rootId: served.rootId,
    };
    this.#bundle = {
      trustDomain: this.trustDomain,
      roots: trustedOf(snapshot, 'x509-root').map((r) => r.publicDer),
      sequence: snapshot.bundleSequence,
      refreshHintSeconds: BUNDLE_REFRESH_HINT_SECONDS,
    };
  }
}
