import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { entryMatches } from '../../agent/attest/match.js';
import type { WorkloadIdentityProvider, WorkloadSvid } from '../../agent/workload-api/provider.js';
import { type Clock, realClock } from '../../spiffe/clock.js';

/**
 * An in-memory WorkloadIdentityProvider for Workload API tests, serving real
 * certificates from a small test PKI (EC P-256 root -> leaf X509-SVIDs).
 */

x509.cryptoProvider.set(globalThis.crypto);

const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;

/** A root CA of a trust domain that issues X509-SVIDs. */
export interface TestPki {
  trustDomain: string;
  rootDer: Buffer;
  /** Issues a leaf X509-SVID valid from a minute ago for `hours` (negative: already expired). */
  issue(spiffeId: string, opts?: { hours?: number; hint?: string; entryId?: string }): Promise<WorkloadSvid>;
}

let serial = 0x100;

export async function makeTestPki(trustDomain: string): Promise<TestPki> {
  const rootKeys = await crypto.subtle.generateKey(EC, true, ['sign', 'verify']);
  const root = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: (++serial).toString(16).padStart(4, '0'),
    name: `CN=${trustDomain} test root`,
    notBefore: new Date(Date.now() - 3600_000),
    notAfter: new Date(Date.now() + 24 * 3600_000),
    keys: rootKeys,
    signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${trustDomain}` }]),
    ],
  });
  return {
    trustDomain,
    rootDer: Buffer.from(root.rawData),
    async issue(spiffeId, opts = {}) {
      const keys = await crypto.subtle.generateKey(EC, true, ['sign', 'verify']);
      const notAfter = new Date(Date.now() + (opts.hours ?? 1) * 3600_000);
      const leaf = await x509.X509CertificateGenerator.create({
        serialNumber: (++serial).toString(16).padStart(4, '0'),
        subject: 'O=SPIFFE',
        issuer: root.subject,
        notBefore: new Date(Math.min(Date.now(), notAfter.getTime()) - 60_000),
        notAfter,
        publicKey: keys.publicKey,
        signingKey: rootKeys.privateKey,
        signingAlgorithm: SIGN,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
          new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }]),
        ],
      });
      return {
        spiffeId,
        entryId: opts.entryId ?? `entry-${serial}`,
        chain: [Buffer.from(leaf.rawData)],
        key: Buffer.from(await crypto.subtle.exportKey('pkcs8', keys.privateKey)),
        hint: opts.hint ?? '',
        notAfter,
      };
    },
  };
}

/** A registration entry as the memory provider holds it. */
export interface MemoryEntry {
  selectors: string[];
  svid: WorkloadSvid;
}

export class MemoryProvider implements WorkloadIdentityProvider {
  private ready: boolean;
  private roots: Buffer[];
  private entries: MemoryEntry[] = [];
  private readonly listeners = new Set<() => void>();
  /** Every selector set svidsFor was asked about, in order. */
  readonly asked: ReadonlySet<string>[] = [];
  /** When false, svidsFor returns expired SVIDs too (to test the server's own filter). */
  filterExpired = true;

  private readonly clock: Clock;

  constructor(
    private readonly td: string,
    roots: Buffer[],
    opts: { ready?: boolean; clock?: Clock } = {},
  ) {
    this.roots = roots;
    this.ready = opts.ready ?? true;
    this.clock = opts.clock ?? realClock;
  }

  isReady(): boolean {
    return this.ready;
  }
  trustDomain(): string {
    return this.td;
  }
  bundle(): Buffer[] {
    return this.roots;
  }
  svidsFor(selectors: ReadonlySet<string>): WorkloadSvid[] {
    this.asked.push(selectors);
    const now = this.clock.now().getTime();
    return this.entries
      .filter((e) => entryMatches(e.selectors, selectors))
      .map((e) => e.svid)
      .filter((s) => !this.filterExpired || s.notAfter.getTime() > now);
  }
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Number of subscribed listeners. */
  get listenerCount(): number {
    return this.listeners.size;
  }

  setReady(ready: boolean): void {
    this.ready = ready;
    this.changed();
  }
  setEntries(entries: MemoryEntry[]): void {
    this.entries = [...entries];
    this.changed();
  }
  setBundle(roots: Buffer[]): void {
    this.roots = [...roots];
    this.changed();
  }
  /** Signals a change without changing anything. */
  changed(): void {
    for (const l of [...this.listeners]) l();
  }
}
