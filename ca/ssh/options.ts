/**
 * What may go into an OpenSSH certificate, one small check per field:
 * principals, extensions, critical options, key id and validity. The API
 * (entries, admin requests) and the issuer use the same rules, so a value
 * stored in an entry is one the issuer will accept.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { CaError } from '../errors.js';

/** The user-certificate extensions ssh-keygen grants by default, and Brevis too. */
export const DEFAULT_USER_EXTENSIONS: readonly string[] = [
  'permit-X11-forwarding',
  'permit-agent-forwarding',
  'permit-port-forwarding',
  'permit-pty',
  'permit-user-rc',
];

/** Extensions OpenSSH defines (PROTOCOL.certkeys); others must look like `name@domain`. */
export const STANDARD_USER_EXTENSIONS: readonly string[] = [...DEFAULT_USER_EXTENSIONS, 'no-touch-required'];

export const SSH_LIMITS = {
  principals: 256,
  principalBytes: 255,
  extensions: 32,
  forceCommandBytes: 4096,
  sourceAddresses: 64,
  keyIdBytes: 4096,
} as const;

/** Sorts strings by their UTF-8 bytes, as OpenSSH (strcmp) orders option names. */
export function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

const USER_PRINCIPAL = /^[A-Za-z0-9_.][A-Za-z0-9_.@+=:-]*$/;
const HOST_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/**
 * A user principal: a login name (or a name listed in sshd's
 * AuthorizedPrincipalsFile). No spaces, commas, quotes or control
 * characters, which would be ambiguous in sshd's files and ssh-keygen's
 * `-n a,b` syntax; not starting with `-` or `#`.
 */
export function validateUserPrincipal(p: string): string {
  if (Buffer.byteLength(p) > SSH_LIMITS.principalBytes || !USER_PRINCIPAL.test(p)) {
    throw new CaError(
      'INVALID_ARGUMENT',
      `invalid SSH user principal '${shown(p)}': use letters, digits and . _ @ + = : -, starting with a letter, digit, _ or . (at most ${SSH_LIMITS.principalBytes} bytes)`,
    );
  }
  return p;
}

/**
 * A host principal: the name clients type, which ssh compares in lower
 * case: a DNS name or an IPv4/IPv6 address. Returned in lower case.
 */
export function validateHostPrincipal(p: string): string {
  const n = p.toLowerCase();
  const dns = n.length <= 253 && n.split('.').every((l) => HOST_LABEL.test(l));
  if (!dns && !isIPv4(n) && !isIPv6(n)) {
    throw new CaError('INVALID_ARGUMENT', `invalid SSH host principal '${shown(p)}': use a host name (DNS labels) or an IP address`);
  }
  return n;
}

/**
 * A principal list for a certificate: validated, duplicates removed, order
 * kept. Empty is refused: OpenSSH reads an empty list as "any principal".
 */
export function validatePrincipals(list: readonly string[], type: 'user' | 'host', opts: { allowEmpty?: boolean } = {}): string[] {
  if (list.length > SSH_LIMITS.principals) throw new CaError('INVALID_ARGUMENT', `at most ${SSH_LIMITS.principals} SSH principals`);
  const out = [...new Set(list.map(type === 'user' ? validateUserPrincipal : validateHostPrincipal))];
  if (out.length === 0 && !opts.allowEmpty) {
    throw new CaError('INVALID_ARGUMENT', 'an SSH certificate needs at least one principal (an empty list would mean any principal)');
  }
  return out;
}

/** Extension names for a user certificate: standard or `name@domain`, sorted by bytes, no duplicates. */
export function validateExtensions(names: readonly string[]): string[] {
  if (names.length > SSH_LIMITS.extensions) throw new CaError('INVALID_ARGUMENT', `at most ${SSH_LIMITS.extensions} SSH extensions`);
  for (const n of names) {
    if (!STANDARD_USER_EXTENSIONS.includes(n) && !/^[A-Za-z0-9._-]{1,64}@[a-z0-9.-]{1,190}$/.test(n)) {
      throw new CaError(
        'INVALID_ARGUMENT',
        `unknown SSH extension '${shown(n)}': use one of ${STANDARD_USER_EXTENSIONS.join(', ')} or a custom name@domain`,
      );
    }
  }
  return [...new Set(names)].sort(byteOrder);
}

/** The `force-command` critical option: the command sshd runs instead of the client's. */
export function validateForceCommand(cmd: string): string {
  // eslint-disable-next-line no-control-regex
  if (cmd.trim() === '' || Buffer.byteLength(cmd) > SSH_LIMITS.forceCommandBytes || /[\u0000-\u001f\u007f]/.test(cmd)) {
    throw new CaError(
      'INVALID_ARGUMENT',
      `force-command must be a non-empty command of at most ${SSH_LIMITS.forceCommandBytes} bytes without control characters`,
    );
  }
  return cmd;
}

/**
 * The `source-address` critical option: a comma-separated list of IPv4/IPv6
 * addresses or CIDR networks, as sshd's addr_match_cidr_list reads it. A
 * network with host bits set (`10.0.0.1/8`) is refused, as ssh-keygen does.
 * Returned normalized: no spaces, lower case.
 */
export function validateSourceAddress(list: string): string {
  const items = list.split(',').map((s) => s.trim().toLowerCase());
  if (items.length > SSH_LIMITS.sourceAddresses) throw new CaError('INVALID_ARGUMENT', `source-address: at most ${SSH_LIMITS.sourceAddresses} networks`);
  for (const item of items) checkCidr(item);
  return items.join(',');
}

function checkCidr(item: string): void {
  const bad = (why: string) => new CaError('INVALID_ARGUMENT', `source-address: '${shown(item)}' ${why}`);
  const [addr = '', len, extra] = item.split('/');
  if (extra !== undefined) throw bad('is not an address or CIDR network');
  const v4 = isIPv4(addr);
  if (!v4 && !isIPv6(addr)) throw bad('is not an IPv4/IPv6 address or CIDR network (e.g. 10.0.0.0/8, ::1)');
  if (len === undefined) return;
  const max = v4 ? 32 : 128;
  if (!/^\d{1,3}$/.test(len) || Number(len) > max) throw bad(`has an invalid prefix length (0 to ${max})`);
  const bits = addressBits(addr, v4);
  if (bits & ((1n << BigInt(max - Number(len))) - 1n)) throw bad('has host bits set beyond its prefix length');
}

function addressBits(addr: string, v4: boolean): bigint {
  if (v4) return addr.split('.').reduce((acc, o) => (acc << 8n) | BigInt(Number(o)), 0n);
  let a = addr;
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (dotted) {
    const n = addressBits(dotted[1]!, true);
    a = `${a.slice(0, -dotted[1]!.length)}${(n >> 16n).toString(16)}:${(n & 0xffffn).toString(16)}`;
  }
  const [head = '', tail] = a.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(`0x${g || '0'}`), 0n);
}

/** A key id: printable ASCII (it appears in sshd's logs), at most SSH_LIMITS.keyIdBytes. */
export function validateKeyId(id: string): string {
  if (id.length === 0 || id.length > SSH_LIMITS.keyIdBytes || !/^[\x20-\x7e]+$/.test(id)) {
    throw new CaError('INVALID_ARGUMENT', `key id must be 1 to ${SSH_LIMITS.keyIdBytes} printable ASCII characters`);
  }
  return id;
}

/**
 * The validity window: valid-after backdated by `backdateSeconds` for
 * clients and servers whose clocks run behind, valid-before `ttlSeconds`
 * after now. OpenSSH accepts a certificate when after <= now < before.
 */
export function validityWindow(now: Date, ttlSeconds: number, backdateSeconds: number): { validAfter: number; validBefore: number } {
  const t = Math.floor(now.getTime() / 1000);
  return { validAfter: Math.max(0, t - backdateSeconds), validBefore: t + ttlSeconds };
}

function shown(s: string): string {
  return s.slice(0, 80).replace(/[^\x20-\x7e]/g, '?');
}
