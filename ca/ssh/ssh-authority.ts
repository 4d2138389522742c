/**
 * The SSH CA key state: one authority for user certificates and one for
 * host certificates, kept apart so that trusting one never implies the
 * other. On first start each key is generated (Ed25519 by default, ECDSA
 * P-256 selectable) and saved in the KeyStore like the X.509 keys; its
 * record (kind 'ssh-user' / 'ssh-host') is named by the key's SHA256
 * fingerprint as ssh-keygen prints it and holds the public key blob, so more
 * than one key per kind can exist when rotation arrives.
 */
import type { Logger } from 'pino';
import type { Clock } from '../../spiffe/clock.js';
import { epochSeconds } from '../../spiffe/clock.js';
import { CaError } from '../errors.js';
import type { KeyStore } from '../keys/keystore.js';
import { generateSigner, type LocalSigner } from '../keys/signer.js';
import type { AuthorityRecord, Store } from '../store/store.js';
import { formatAuthorizedKey, sshFingerprint } from './public-key.js';
import { sshCaSigner, type SshCaSigner } from './ssh-signer.js';

export type SshCaKind = 'ssh-user' | 'ssh-host';
export const SSH_CA_KINDS: readonly SshCaKind[] = ['ssh-user', 'ssh-host'];

/** Key types an SSH CA may have (config `sshKeyType`). */
export type SshCaKeyType = 'ed25519' | 'ec-p256';

/** SSH CA keys do not expire; the record's notAfter holds 9999-12-31T23:59:59Z. */
const NO_EXPIRY = 253_402_300_799;

export interface ActiveSshCa {
  record: AuthorityRecord;
  /** `SHA256:...`, the record id. */
  fingerprint: string;
  signer: SshCaSigner;
}

export interface SshAuthorityOptions {
  store: Store;
  keys: KeyStore;
  clock: Clock;
  trustDomain: string;
  keyType: SshCaKeyType;
  logger: Logger;
}

export class SshAuthority {
  readonly #active = new Map<SshCaKind, ActiveSshCa>();
  readonly #trusted = new Map<SshCaKind, AuthorityRecord[]>();

  private constructor(private readonly o: SshAuthorityOptions) {}

  /** Loads both SSH CAs, creating each one that does not exist yet. */
  static async open(o: SshAuthorityOptions): Promise<SshAuthority> {
    const a = new SshAuthority(o);
    for (const kind of SSH_CA_KINDS) await a.load(kind);
    return a;
  }

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
    const comment = `brevis-${kind}-ca@${this.o.trustDomain}`;
    return (this.#trusted.get(kind) ?? []).map((r) => formatAuthorizedKey(r.publicDer, comment));
  }

  private async load(kind: SshCaKind): Promise<void> {
    const { store, logger } = this.o;
    let records = (await store.listAuthorities(kind)).filter((r) => r.state !== 'revoked');
    let active = records.find((r) => r.state === 'active');
    if (!active) {
      active = await this.create(kind);
      records = [...records, active];
      logger.info({ authority: active.id, kind }, `created a new ${kind} SSH CA`);
    }
    const signer = sshCaSigner(await this.o.keys.load(active.keyRef));
    if (!signer.publicKeyBlob.equals(active.publicDer)) {
      throw new CaError('INTERNAL', `the key file of SSH CA ${active.id} does not match its record`);
    }
    const configured = this.o.keyType === 'ed25519' ? 'ssh-ed25519' : 'ecdsa-sha2-nistp256';
    if (signer.algorithm !== configured) {
      logger.warn({ authority: active.id, kind, has: signer.algorithm, configured }, 'the SSH CA key type differs from sshKeyType; keeping the existing key (changing it needs a rotation)');
    }
    this.#active.set(kind, { record: active, fingerprint: active.id, signer });
    this.#trusted.set(kind, records);
  }

  private async create(kind: SshCaKind): Promise<AuthorityRecord> {
    const signer: LocalSigner = await generateSigner(this.o.keyType);
    const blob = sshCaSigner(signer).publicKeyBlob;
    const fingerprint = sshFingerprint(blob);
    const now = epochSeconds(this.o.clock.now());
    const rec: AuthorityRecord = {
      id: fingerprint,
      kind,
      state: 'active',
      publicDer: blob,
      parentId: null,
      // Key refs allow only [A-Za-z0-9._-]: the fingerprint's base64 becomes hex.
      keyRef: `${kind}-${Buffer.from(fingerprint.slice('SHA256:'.length), 'base64').toString('hex')}`,
      notBefore: now,
      notAfter: NO_EXPIRY,
      createdAt: now,
    };
    // Key first, record second: a crash in between leaves an unused key file, never a record without a key.
    await this.o.keys.save(rec.keyRef, signer);
    await this.o.store.putAuthority(rec);
    return rec;
  }
}
