/**
 * A CA signer whose signatures are made on libuv's thread pool
 * (`crypto.sign` with a callback, at most cryptoGate.limit at once)
 * instead of the event loop's thread, so
 * that a busy CA signs on every core while the event loop goes on with
 * gRPC, TLS and the store. Same key, same algorithm, same output encoding
 * (DER ECDSA, raw Ed25519) as the LocalSigner's own `sign`.
 */
import { sign as nodeSign } from 'node:crypto';
import { KEY_ALGORITHMS } from '../keys/keytype.js';
import type { LocalSigner, Signer } from '../keys/signer.js';
import { cryptoGate } from '../x509/thread-pool-gate.js';

const wrapped = new WeakMap<LocalSigner, Signer>();

/** `signer` with `sign` on the thread pool (one wrapper per signer, reused). */
export function threadPoolSigner(signer: LocalSigner): Signer {
  let s = wrapped.get(signer);
  if (!s) {
    const key = signer.privateKeyObject;
    const digest = KEY_ALGORITHMS[signer.keyType].node.digest;
    s = {
      keyType: signer.keyType,
      publicKey: signer.publicKey,
      publicKeyObject: signer.publicKeyObject,
      spkiDer: signer.spkiDer,
      sign: (data) =>
        cryptoGate.run(
          () =>
            new Promise<Uint8Array>((resolve, reject) => {
              nodeSign(digest, data, key, (err, signature) => (err ? reject(err) : resolve(signature)));
            }),
        ),
    };
    wrapped.set(signer, s);
  }
  return s;
}
