/**
 * The SSH side of push sync: which SSH CA the node's host certificate
 * chains to (counted in the agent's holdings by fingerprint), and the
 * response to a tainted host CA: the host certificate keeper is shown the
 * host CA keys without the tainted ones, so it finds its certificate no
 * longer trusted and obtains a new one at once. The trust files keep the
 * full list (a tainted CA stays trusted until revoked), so other hosts'
 * certificates keep working while they are replaced too.
 */
import { createHash } from 'node:crypto';
import type { AgentSSH } from '../../proto/gen/brevis/ca/v1/types.js';

/** What this needs from the agent's SSH side (agent/ssh/agent-ssh.ts). */
export interface SshHostSide {
  readonly hostCertificate: {
    readonly current: { readonly caKeyBlob: Buffer } | null;
    applySync(info: { hostCaKeys: readonly string[]; hostPrincipals: readonly string[] }): void;
  } | null;
}

/** `SHA256:<base64, no padding>` of a public key blob, as ssh-keygen -l prints it. */
export function sshFingerprintOf(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** The fingerprint of an authorized_keys line (`<type> <base64> [comment]`), or undefined. */
export function lineFingerprint(line: string): string | undefined {
  const b64 = line.trim().split(/\s+/)[1];
  if (!b64) return undefined;
  const blob = Buffer.from(b64, 'base64');
  return blob.length > 0 ? sshFingerprintOf(blob) : undefined;
}

export class SshTaintResponder {
  #last: AgentSSH | undefined;

  constructor(private readonly side: SshHostSide | null) {}

  /** What the last sync said about SSH (called before the SSH side applies it). */
  observe(info: AgentSSH | undefined): void {
    this.#last = info;
  }

  /** SSH CA fingerprints of the certificates this node holds (its host certificate). */
  fingerprints(): string[] {
    const cur = this.side?.hostCertificate?.current;
    return cur ? [sshFingerprintOf(cur.caKeyBlob)] : [];
  }

  /** Tainted authorities reported by a sync: replaces a host certificate signed by one. Returns true when it did. */
  respond(tainted: ReadonlySet<string>): boolean {
    const keeper = this.side?.hostCertificate;
    const last = this.#last;
    if (!keeper || !last || !this.fingerprints().some((f) => tainted.has(f))) return false;
    const hostCaKeys = last.hostCaKeys.filter((l) => !tainted.has(lineFingerprint(l) ?? ''));
    keeper.applySync({ hostCaKeys, hostPrincipals: last.hostPrincipals });
    return true;
  }
}
