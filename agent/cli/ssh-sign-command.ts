/**
 * `brevis-agent api ssh sign`: a user certificate for the calling
 * workload's public key, written as a `-cert.pub` file (0644) that ssh
 * picks up next to the key. The private key never leaves the caller: a
 * private key file given by mistake is refused before anything is sent.
 */
import { chmodSync, readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { CliError } from '../../ca/cli/cli-error.js';
import { parseAuthorizedKey } from '../../ca/ssh/public-key.js';
import { writeFileAtomic } from '../../spiffe/svid-files.js';
import { requestUserCertificate } from '../ssh/sign-client.js';
import { resolveSocket } from './healthcheck.js';

export interface SshSignOptions {
  socket?: string;
  publicKeyFile: string;
  /** Default: the key file with `.pub` replaced by `-cert.pub`. */
  out?: string;
  spiffeId?: string;
  timeoutMs: number;
}

export async function signSshUserCertificate(o: SshSignOptions, out: (line: string) => void): Promise<void> {
  const socketPath = resolveSocket(o.socket);
  const target = o.out ?? defaultCertPath(o.publicKeyFile);
  let text: string;
  try {
    text = readFileSync(o.publicKeyFile, 'utf8');
  } catch (e) {
    throw new CliError(`cannot read --public-key ${o.publicKeyFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    parseAuthorizedKey(text);
  } catch (e) {
    throw new CliError(`--public-key ${o.publicKeyFile}: ${(e as Error).message}`);
  }
  let res;
  try {
    res = await requestUserCertificate({ socketPath, publicKey: text, spiffeId: o.spiffeId, timeoutMs: o.timeoutMs });
  } catch (e) {
    const se = e as grpc.ServiceError;
    throw new CliError(`the agent on ${socketPath} did not sign: ${grpc.status[se.code] ?? se.code}: ${se.details || se.message}`);
  }
  try {
    writeFileAtomic(target, `${res.certificate}\n`, 0o644);
    chmodSync(target, 0o644);
  } catch (e) {
    throw new CliError(`cannot write ${target}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  out(`wrote ${target} for ${res.spiffeId}: principals ${res.principals.join(',')}, serial ${res.serial}, valid until ${new Date(res.validBefore * 1000).toISOString()}`);
}

function defaultCertPath(publicKeyFile: string): string {
  if (!publicKeyFile.endsWith('.pub')) throw new CliError('--out is required when --public-key does not end in .pub');
  return `${publicKeyFile.slice(0, -'.pub'.length)}-cert.pub`;
}
