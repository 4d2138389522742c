/**
 * The node's x509pop credentials: a certificate chain issued by the host
 * PKI the CA trusts, and its private key. Read from their files at each
 * attestation, since host PKIs replace them in place.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { pemDecodeAll } from '../../spiffe/pem.js';
import type { X509PopCredentials } from '../node/attest-x509pop.js';
import { AgentSvidError } from './errors.js';

export function loadX509PopCredentials(certFile: string, keyFile: string): X509PopCredentials {
  const bad = (why: string, cause?: unknown) =>
    new AgentSvidError('NODE_CREDENTIALS_INVALID', `x509pop: ${why}`, cause === undefined ? undefined : { cause });
  let chain: Buffer[];
  try {
    chain = pemDecodeAll(readFileSync(certFile, 'utf8'), 'CERTIFICATE');
  } catch (e) {
    throw bad(`cannot read the node certificate ${certFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, e);
  }
  if (chain.length === 0) throw bad(`${certFile} holds no certificate`);
  let key;
  try {
    key = createPrivateKey(readFileSync(keyFile));
  } catch (e) {
    // Not the error's text: a parser message could quote key material.
    throw bad(`cannot read the node key ${keyFile} (${(e as NodeJS.ErrnoException).code ?? 'not a PEM or DER private key'})`, e);
  }
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(chain[0]!);
  } catch (e) {
    throw bad(`the first certificate in ${certFile} cannot be parsed`, e);
  }
  if (!leaf.checkPrivateKey(key)) throw bad(`the key in ${keyFile} does not belong to the certificate in ${certFile}`);
  return { chain, key };
}
