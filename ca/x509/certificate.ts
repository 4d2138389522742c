import { randomFillSync } from 'node:crypto';
import { KEY_ALGORITHMS } from '../keys/keytype.js';
import type { KeyType } from '../keys/keytype.js';
import type { Signer } from '../keys/signer.js';
import { bitString, contextTag, oid, sequence, time, tlv, unsignedInteger } from './der.js';

/** The fields of a v3 TBSCertificate, each already DER-encoded where it is a structure. */
export interface TbsFields {
  /** Serial number magnitude, big-endian (see randomSerial). */
  serial: Uint8Array;
  issuerNameDer: Uint8Array;
  subjectNameDer: Uint8Array;
  /** Whole seconds (milliseconds are dropped by the encoding). */
  notBefore: Date;
  notAfter: Date;
  spkiDer: Uint8Array;
  /** Encoded `Extension`s, in order. */
  extensions: readonly Uint8Array[];
}

const VERSION_3 = tlv(contextTag(0, true), Buffer.from([0x02, 0x01, 0x02]));
const algorithmIdentifiers = new Map<KeyType, Buffer>();

/** The AlgorithmIdentifier DER for certificates signed by `keyType` (parameters absent: RFC 5758, RFC 8410). */
export function signatureAlgorithmDer(keyType: KeyType): Buffer {
  let der = algorithmIdentifiers.get(keyType);
  if (!der) {
    der = sequence(oid(KEY_ALGORITHMS[keyType].x509.signatureAlgorithmOid));
    algorithmIdentifiers.set(keyType, der);
  }
  return der;
}

/** Encodes the TBSCertificate, has `signer` sign it, and returns the DER certificate. */
export async function signCertificate(fields: TbsFields, signer: Pick<Signer, 'keyType' | 'sign'>): Promise<Buffer> {
  const algorithm = signatureAlgorithmDer(signer.keyType);
  const tbs = sequence(
    VERSION_3,
    unsignedInteger(fields.serial),
    algorithm,
    fields.issuerNameDer,
    sequence(time(fields.notBefore), time(fields.notAfter)),
    fields.subjectNameDer,
    fields.spkiDer,
    // Extensions ::= SEQUENCE SIZE (1..MAX): leave the field out rather than write an empty one.
    ...(fields.extensions.length > 0 ? [tlv(contextTag(3, true), sequence(...fields.extensions))] : []),
  );
  const signature = await signer.sign(tbs);
  return sequence(tbs, algorithm, bitString(signature));
}

/**
 * A fresh serial: 128 random bits with the top bit cleared, so the INTEGER
 * is positive and at most 16 octets (RFC 5280 4.1.2.2 allows 20), never zero.
 */
/*
 * Serial randomness is drawn from the CSPRNG 4 KiB at a time: one
 * randomBytes(16) call per certificate was 3% of a mint worker's time.
 * Every serial is a copy of bytes handed out once.
 */
const RANDOM_POOL = Buffer.alloc(4096);
let randomAt = RANDOM_POOL.length;

function randomBytes16(): Buffer {
  if (randomAt + 16 > RANDOM_POOL.length) {
    randomFillSync(RANDOM_POOL);
    randomAt = 0;
  }
  const out = Buffer.from(RANDOM_POOL.subarray(randomAt, randomAt + 16));
  RANDOM_POOL.fill(0, randomAt, randomAt + 16);
  randomAt += 16;
  return out;
}

export function randomSerial(): Buffer {
  for (;;) {
    const serial = randomBytes16();
    serial[0]! &= 0x7f;
    if (serial.some((b) => b !== 0)) return serial;
  }
}

/** Lower-case hex of a serial as its DER INTEGER content octets (what parseCertificate reports). */
export function serialHexOf(serial: Uint8Array): string {
  const der = unsignedInteger(serial);
  return der.subarray(2).toString('hex');
}

/** Truncates a date to whole seconds, as certificates store it. */
export function wholeSeconds(d: Date): Date {
  return new Date(Math.floor(d.getTime() / 1000) * 1000);
}
