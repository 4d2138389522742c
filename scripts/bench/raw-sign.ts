/** The physical limit: raw ECDSA P-256 signatures per second with node:crypto on one core. */
import { createPrivateKey, generateKeyPairSync, randomBytes, sign } from 'node:crypto';

export function rawSignPerSecond(durationMs: number): number {
  // Imported from DER, not generateKeyPairSync's KeyObject (see agent/svid/new-key.ts).
  const der = generateKeyPairSync('ec', { namedCurve: 'P-256', publicKeyEncoding: { type: 'spki', format: 'der' }, privateKeyEncoding: { type: 'pkcs8', format: 'der' } });
  const privateKey = createPrivateKey({ key: der.privateKey, format: 'der', type: 'pkcs8' });
  // About the size of a leaf certificate's TBSCertificate.
  const data = randomBytes(450);
  let n = 0;
  const start = process.hrtime.bigint();
  const end = start + BigInt(durationMs) * 1_000_000n;
  let now = start;
  while (now < end) {
    for (let i = 0; i < 100; i++) sign('sha256', data, privateKey);
    n += 100;
    now = process.hrtime.bigint();
  }
  return n / (Number(now - start) / 1e9);
}
