/**
 * The node's SSH trust directory, kept current from each sync with the CA:
 *
 * - `trusted_user_ca_keys`: one user CA key per line, for sshd's
 *   `TrustedUserCAKeys` (several during a CA rotation);
 * - `known_hosts`: `@cert-authority * <host CA key>` lines for ssh clients
 *   (`UserKnownHostsFile` or `GlobalKnownHostsFile`).
 *
 * A file is rewritten (atomically) only when its content changes, so its
 * mtime says when trust last changed. A list the CA sends empty leaves the
 * file as it is: an empty TrustedUserCAKeys would lock every user out, and
 * a CA always has at least one key of each kind.
 */
import { chmodSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { formatAuthorizedKey, parseAuthorizedKey } from '../../ca/ssh/public-key.js';
import type { AgentSSH } from '../../proto/gen/brevis/ca/v1/types.js';
import { writeFileAtomic } from '../../spiffe/svid-files.js';

export const TRUSTED_USER_CA_KEYS_FILE = 'trusted_user_ca_keys';
export const KNOWN_HOSTS_FILE = 'known_hosts';

/** Both files are public and read by sshd (root) and by any user's ssh. */
const FILE_MODE = 0o644;

export interface TrustFileContents {
  /** null when the CA sent no user CA key. */
  trustedUserCaKeys: string | null;
  /** null when the CA sent no host CA key. */
  knownHosts: string | null;
}

/**
 * The files' contents for the CA keys of a sync. Every key line is parsed
 * and written back in canonical form, so nothing the CA sends can add a
 * line or an option of its own; unusable lines are reported in `skipped`.
 */
export function trustFileContents(ssh: AgentSSH): TrustFileContents & { skipped: number } {
  let skipped = 0;
  const canonical = (lines: readonly string[]): string[] => {
    const out: string[] = [];
    for (const line of lines) {
      try {
        const k = parseAuthorizedKey(line);
        const text = formatAuthorizedKey(k.blob, k.comment);
        if (!out.includes(text)) out.push(text);
      } catch {
        skipped++;
      }
    }
    return out;
  };
  const user = canonical(ssh.userCaKeys);
  const host = canonical(ssh.hostCaKeys);
  return {
    trustedUserCaKeys: user.length > 0 ? user.map((k) => `${k}\n`).join('') : null,
    knownHosts: host.length > 0 ? host.map((k) => `@cert-authority * ${k}\n`).join('') : null,
    skipped,
  };
}

/**
 * Writes the trust files into `dir` (created 0755 if missing) where their
 * content differs from what is on disk. Returns the names rewritten.
 * Throws on I/O errors.
 */
export function writeTrustFiles(dir: string, contents: TrustFileContents): string[] {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const written: string[] = [];
  for (const [name, text] of [
    [TRUSTED_USER_CA_KEYS_FILE, contents.trustedUserCaKeys],
    [KNOWN_HOSTS_FILE, contents.knownHosts],
  ] as const) {
    if (text === null) continue;
    const file = path.join(dir, name);
    if (readOrNull(file) === text) continue;
    writeFileAtomic(file, text, FILE_MODE);
    // The temp file's mode went through the umask.
    chmodSync(file, FILE_MODE);
    written.push(name);
  }
  return written;
}

function readOrNull(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}
