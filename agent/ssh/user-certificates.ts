/**
 * OpenSSH user certificates for workloads: picks the caller's registration
 * entry (from the selectors attested for this call, never from the
 * request), asks the CA to sign the caller's public key for it, and checks
 * the answer before handing it over.
 */
import type { Logger } from 'pino';
import { parseAuthorizedKey, type SshPublicKey } from '../../ca/ssh/public-key.js';
import type { Entry } from '../../proto/gen/brevis/ca/v1/types.js';
import type { Clock } from '../../spiffe/clock.js';
import { formatSelector } from '../../spiffe/selector.js';
import { entryMatches } from '../attest/match.js';
import { isNodeApiError } from '../node/errors.js';
import type { Mutex } from '../node/mutex.js';
import type { NodeApi } from '../node/node-api.js';
import { checkCertificate } from './check-certificate.js';
import { AgentSshError } from './errors.js';
import { echo } from '../../ca/api/echo.js';

/** The entries the agent holds, as the signer reads them (SvidCache fits). */
export interface SshEntrySource {
  /** False until the agent's first sync with the CA. */
  isReady(): boolean;
  /** The entries the agent is authorized for, sorted by id. */
  entries(): Entry[];
}

export interface UserCertificateSignerOptions {
  entries: SshEntrySource;
  api: Pick<NodeApi, 'signSshUserCertificate'>;
  /** Shared with the sync loop: one node API operation at a time. */
  lock: Mutex;
  clock: Clock;
  logger: Logger;
  /** The user CA keys of the last sync (authorized_keys lines); empty when not known. */
  userCaKeys: () => readonly string[];
}

export interface UserCertificateRequest {
  /** An authorized_keys line. */
  publicKey: string;
  /** '' for the caller's first entry with SSH principals. */
  spiffeId: string;
}

export interface SignedUserCertificate {
  /** The `-cert.pub` line. */
  certificate: string;
  spiffeId: string;
  entryId: string;
  principals: string[];
  serial: string;
  keyId: string;
  /** Seconds since the epoch. */
  validAfter: number;
  validBefore: number;
  caFingerprint: string;
}

export class UserCertificateSigner {
  readonly #o: UserCertificateSignerOptions;

  constructor(options: UserCertificateSignerOptions) {
    this.#o = options;
  }

  /**
   * Signs `req.publicKey` for the caller with `selectors`. Throws
   * AgentSshError: NOT_READY, NO_SSH_ENTRY, INVALID_KEY, CA_UNAVAILABLE,
   * CA_REFUSED or BAD_CERTIFICATE.
   */
  async sign(selectors: ReadonlySet<string>, req: UserCertificateRequest): Promise<SignedUserCertificate> {
    const { entries, api, lock, clock, logger } = this.#o;
    if (!entries.isReady()) throw new AgentSshError('NOT_READY', 'the agent has not synced with the CA yet');
    const entry = pickEntry(entries.entries(), selectors, req.spiffeId);
    const key = parsePublicKey(req.publicKey);
    // The key is sent re-encoded: only the validated type and blob, with no comment.
    const line = `${key.type} ${key.blob.toString('base64')}`;
    let issued;
    try {
      issued = await lock.run(() => api.signSshUserCertificate(entry.id, line));
    } catch (e) {
      if (!isNodeApiError(e)) throw e;
      if (e.code === 'UNAVAILABLE') throw new AgentSshError('CA_UNAVAILABLE', 'the CA cannot be reached; try again later', { cause: e });
      if (e.code === 'INVALID_ARGUMENT') throw new AgentSshError('INVALID_KEY', `the CA refused the public key: ${e.message}`, { cause: e });
      if (e.code === 'BAD_RESPONSE') throw new AgentSshError('BAD_CERTIFICATE', e.message, { cause: e });
      throw new AgentSshError('CA_REFUSED', `the CA refused to sign: ${e.message}`, { cause: e });
    }
    // Principals are the CA's to decide (the entry may have changed since
    // the last sync); everything else must be exactly what was asked for.
    const cert = checkCertificate(issued.certificate, { type: 'user', subjectKeyBlob: key.blob, principals: null, caKeys: this.#o.userCaKeys(), now: clock.now() });
    logger.info({ entryId: entry.id, spiffeId: entry.spiffeId, serial: cert.serial, principals: cert.principals, validBefore: cert.validBefore.toISOString() }, 'SSH user certificate signed for a workload');
    return {
      certificate: cert.line,
      spiffeId: entry.spiffeId,
      entryId: entry.id,
      principals: cert.principals,
      serial: cert.serial,
      keyId: cert.keyId,
      validAfter: Math.floor(cert.validAfter.getTime() / 1000),
      validBefore: Math.floor(cert.validBefore.getTime() / 1000),
      caFingerprint: issued.caFingerprint,
    };
  }
}

/**
 * The entry to sign for: among the entries whose selectors the caller
 * matches (sorted by id), the first with SSH principals, restricted to
 * `spiffeId` when one is given.
 */
export function pickEntry(entries: readonly Entry[], selectors: ReadonlySet<string>, spiffeId: string): Entry {
  const mine = entries.filter((e) => entryMatches(e.selectors.map(formatSelector), selectors));
  const candidates = spiffeId ? mine.filter((e) => e.spiffeId === spiffeId) : mine;
  const found = candidates.find((e) => (e.ssh?.principals.length ?? 0) > 0);
  if (found) return found;
  // Say no more than the caller may know: only about its own identities.
  if (spiffeId && candidates.length === 0) throw new AgentSshError('NO_SSH_ENTRY', `the caller has no identity ${echo(spiffeId, 256)}`);
  if (spiffeId) throw new AgentSshError('NO_SSH_ENTRY', `${echo(spiffeId, 256)} is not allowed SSH user certificates (its entry has no SSH principals)`);
  if (mine.length === 0) throw new AgentSshError('NO_SSH_ENTRY', 'the caller has no identity');
  throw new AgentSshError('NO_SSH_ENTRY', 'none of the caller\'s identities is allowed SSH user certificates (no entry with SSH principals)');
}

function parsePublicKey(text: string): SshPublicKey {
  try {
    return parseAuthorizedKey(text);
  } catch (e) {
    throw new AgentSshError('INVALID_KEY', (e as Error).message, { cause: e });
  }
}
