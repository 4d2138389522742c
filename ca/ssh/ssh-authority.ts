/**
 * The SSH CA key state the issuing path reads: one authority for user
 * certificates and one for host certificates, kept apart so that trusting
 * one never implies the other. Each is named by its key's SHA256
 * fingerprint as ssh-keygen prints it. This is a view: the authority life
 * cycle (ca/rotation/) creates, rotates and persists the keys and calls
 * `apply` with a fresh snapshot; during a rotation more than one key of a
 * kind is trusted (prepared keys before they sign, retired keys until
 * their last certificate expires).
 */
import { CaError } from '../errors.js';
import type { LocalSigner } from '../keys/signer.js';
import type { AuthorityRecord } from '../store/store.js';
import { activeOf, trustedOf, type LifecycleSnapshot } from '../rotation/model.js';
import { formatAuthorizedKey } from './public-key.js';
import { sshCaSigner, type SshCaSigner } from './ssh-signer.js';

export type SshCaKind = 'ssh-user' | 'ssh-host';
export const SSH_CA_KINDS: readonly SshCaKind[] = ['ssh-user', 'ssh-host'];

/** Key types an SSH CA may have (config `sshKeyType`). */
export type SshCaKeyType = 'ed25519' | 'ec-p256';

export interface ActiveSshCa {
  record: AuthorityRecord;
  /** `SHA256:...`, the record id. */
  fingerprint: string;
  signer: SshCaSigner;
}

export class SshAuthority {
  readonly #active = new Map<SshCaKind, ActiveSshCa>();
  readonly #trusted = new Map<SshCaKind, AuthorityRecord[]>();

  constructor(private readonly trustDomain: string) {}

  /** The key that signs certificates of this kind now. */
  signing(kind: SshCaKind): ActiveSshCa {
    const a = this.#active.get(kind);
    if (!a) throw new CaError('CA_NOT_READY', `the ${kind} CA is not loaded`);
    return a;
  }

  /**
   * The CA keys relying parties should trust for this kind, as
   * authorized_keys lines (TrustedUserCAKeys, or after `@cert-authority
   * <hosts>` in known_hosts). More than one during a rotation.
   */
  trustedKeys(kind: SshCaKind): string[] {
    const comment = `brevis-${kind}-ca@${this.trustDomain}`;
    return (this.#trusted.get(kind) ?? []).map((r) => formatAuthorizedKey(r.publicDer, comment));
  }

  /** Takes the state of `snapshot`; keys are loaded before anything switches. */
  async apply(snapshot: LifecycleSnapshot, loadSigner: (keyRef: string) => Promise<LocalSigner>): Promise<void> {
    const next = new Map<SshCaKind, ActiveSshCa>();
    for (const kind of SSH_CA_KINDS) {
      const active = activeOf(snapshot, kind);
      if (!active) throw new CaError('INTERNAL', `the authority state has no active ${kind} CA`);
      const signer = sshCaSigner(await loadSigner(active.keyRef));
      if (!signer.publicKeyBlob.equals(active.publicDer)) {
        throw new CaError('INTERNAL', `the key file of SSH CA ${active.id} does not match its record`);
      }
      next.set(kind, { record: active, fingerprint: active.id, signer });
    }
    for (const kind of SSH_CA_KINDS) {
      this.#active.set(kind, next.get(kind)!);
      this.#trusted.set(kind, trustedOf(snapshot, kind));
    }
  }
}
