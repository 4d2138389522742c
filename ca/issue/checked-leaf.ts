/**
 * Issue an X509-SVID, then check what was minted before anyone sees it
 * (parse back: SAN, CA bit, key usages, validity, subject key). The one
 * sequence both minting paths use: in this thread (X509Minter.mint) and in
 * the mint workers (mint-worker.ts).
 */
import { issueX509Svid, type IssuedX509Svid, type IssueX509SvidParams } from '../x509/leaf.js';
import { checkMintedSvid } from '../x509/validate.js';

export async function issueCheckedSvid(p: IssueX509SvidParams): Promise<IssuedX509Svid> {
  const leaf = await issueX509Svid(p);
  checkMintedSvid(leaf.der, {
    spiffeId: p.spiffeId,
    dnsNames: p.dnsNames,
    notAfter: leaf.notAfter,
    issuerSkiHex: p.issuer.skiHex,
    ...(p.subjectSpkiDer ? { subjectSpkiDer: p.subjectSpkiDer } : {}),
  });
  return leaf;
}
