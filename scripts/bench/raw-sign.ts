/** The physical limit: raw ECDSA P-256 signatures per second with node:crypto on one core. */
import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';

export function rawSignPerSecond(durationMs: number): number {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
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
