/**
 * Mints X.509-SVIDs with the active intermediate, then checks what it
 * minted before anyone sees it (parse back: SAN, CA bit, key usages,
 * validity). A certificate that fails the check is never returned.
 * Signatures are made on libuv's thread pool (thread-pool-signer.ts).
 */
import type { Clock } from '../../spiffe/clock.js';
import type { MintedSvid, MintRequest, SvidMinter } from '../api/context.js';
import type { X509Authority } from '../authority/x509-authority.js';
import { issueX509Svid } from '../x509/leaf.js';
import { checkMintedSvid } from '../x509/validate.js';
import { threadPoolSigner } from './thread-pool-signer.js';

export class X509Minter implements SvidMinter {
  constructor(
    private readonly deps: { authority: X509Authority; clock: Clock; backdateSeconds: number },
  ) {}

  async mint(req: MintRequest): Promise<MintedSvid> {
    const issuer = this.deps.authority.signing();
    const leaf = await issueX509Svid({
      spiffeId: req.spiffeId,
      dnsNames: req.dnsNames,
      subjectPublicKey: req.publicKey,
      ...(req.subjectSpkiDer ? { subjectSpkiDer: req.subjectSpkiDer } : {}),
      issuer: { certDer: issuer.record.publicDer, signer: threadPoolSigner(issuer.signer), notAfter: issuer.notAfter, skiHex: issuer.record.id },
      ttlSeconds: req.ttlSeconds,
      now: this.deps.clock.now(),
      backdateSeconds: this.deps.backdateSeconds,
    });
    checkMintedSvid(leaf.der, {
      spiffeId: req.spiffeId,
      dnsNames: req.dnsNames,
      notAfter: leaf.notAfter,
      issuerSkiHex: issuer.record.id,
      ...(req.subjectSpkiDer ? { subjectSpkiDer: req.subjectSpkiDer } : {}),
    });
    return {
      spiffeId: req.spiffeId,
      chain: [leaf.der, ...issuer.chain],
      serialHex: leaf.serialHex,
      notBefore: leaf.notBefore,
      notAfter: leaf.notAfter,
    };
  }
}
