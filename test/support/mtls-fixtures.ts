import 'reflect-metadata';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { webcrypto } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { AsnConvert } from '@peculiar/asn1-schema';
import { GeneralName, GeneralSubtree, GeneralSubtrees, NameConstraints } from '@peculiar/asn1-x509';
import * as x509 from '@peculiar/x509';
import {
  SpiffeWorkloadAPIService,
  type SpiffeWorkloadAPIServer,
  type X509BundlesResponse,
  type X509SVIDResponse,
} from '../../proto/gen/workload.js';
import type { X509Context } from '../../spiffe/workload-client.js';
import { X509Source } from '../../spiffe/x509-source.js';

/**
 * Test PKI (root -> intermediate -> leaf X509-SVIDs, EC P-256) and a small
 * but real SpiffeWorkloadAPI server on a Unix socket whose streams the test
 * drives. Shared by the Workload API client and mTLS tests.
 */

x509.cryptoProvider.set(globalThis.crypto);

const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;

/** A signing authority of the test PKI. */
export interface TestCa {
  trustDomain: string;
  cert: x509.X509Certificate;
  der: Buffer;
  keys: webcrypto.CryptoKeyPair;
  /** The issuing chain above this CA, excluding the root (empty for a root). */
  chainAbove: Buffer[];
}

/** A leaf X509-SVID as the agent would serve it. */
export interface TestSvid {
  spiffeId: string;
  /** DER, leaf first then intermediates (no root). */
  chain: Buffer[];
  keyDer: Buffer;
  /** Uppercase hex, as Node's PeerCertificate.serialNumber shows it. */
  serial: string;
}

let serialCounter = 0x1000;
function nextSerial(): string {
  serialCounter += 1;
  return `7f${serialCounter.toString(16).padStart(6, '0')}`;
}

async function newKeys(): Promise<webcrypto.CryptoKeyPair> {
  return (await crypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
}

const NOT_BEFORE = () => new Date(Date.now() - 60_000);
const HOURS = (h: number) => new Date(Date.now() + h * 3600_000);

/** A self-signed root for `td`: CA, keyCertSign+cRLSign, URI SAN spiffe://td. */
export async function makeRoot(trustDomain: string): Promise<TestCa> {
  const keys = await newKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: nextSerial(),
    name: `CN=${trustDomain} root`,
    keys,
    notBefore: NOT_BEFORE(),
    notAfter: HOURS(48),
    signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${trustDomain}` }]),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { trustDomain, cert, der: Buffer.from(cert.rawData), keys, chainAbove: [] };
}

/** An intermediate under `parent`: pathLen 0 and a URI name constraint permitting only its trust domain. */
export async function makeIntermediate(parent: TestCa): Promise<TestCa> {
  const keys = await newKeys();
  const nc = new NameConstraints({
    permittedSubtrees: new GeneralSubtrees([
      new GeneralSubtree({ base: new GeneralName({ uniformResourceIdentifier: parent.trustDomain }) }),
    ]),
  });
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: nextSerial(),
    subject: `CN=${parent.trustDomain} intermediate`,
    issuer: parent.cert.subjectName,
    publicKey: keys.publicKey,
    signingKey: parent.keys.privateKey,
    notBefore: NOT_BEFORE(),
    notAfter: HOURS(24),
    signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${parent.trustDomain}` }]),
      new x509.Extension('2.5.29.30', true, AsnConvert.serialize(nc)),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(parent.keys.publicKey),
    ],
  });
  const chainAbove = parent.chainAbove.length === 0 && isRoot(parent) ? [] : [parent.der, ...parent.chainAbove];
  return { trustDomain: parent.trustDomain, cert, der: Buffer.from(cert.rawData), keys, chainAbove };
}

function isRoot(ca: TestCa): boolean {
  return ca.cert.subject === ca.cert.issuer;
}

/** A leaf X509-SVID for `spiffeId`, signed by `issuer`: CA:false, KU digitalSignature (critical), EKU server+client. */
export async function makeSvid(issuer: TestCa, spiffeId: string, options: { hours?: number } = {}): Promise<TestSvid> {
  const keys = await newKeys();
  const serial = nextSerial();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial,
    subject: 'O=Brevis test',
    issuer: issuer.cert.subjectName,
    publicKey: keys.publicKey,
    signingKey: issuer.keys.privateKey,
    notBefore: NOT_BEFORE(),
    notAfter: HOURS(options.hours ?? 1),
    signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }]),
      await x509.AuthorityKeyIdentifierExtension.create(issuer.keys.publicKey),
    ],
  });
  const keyDer = Buffer.from(await crypto.subtle.exportKey('pkcs8', keys.privateKey));
  const chain = [Buffer.from(cert.rawData), ...(isRoot(issuer) ? [] : [issuer.der, ...issuer.chainAbove])];
  return { spiffeId, chain, keyDer, serial: serial.toUpperCase() };
}

/** One trust domain's PKI: a root, an intermediate under it, and a way to mint SVIDs. */
export interface TestDomain {
  trustDomain: string;
  root: TestCa;
  intermediate: TestCa;
  svid(spiffePath: string, options?: { hours?: number }): Promise<TestSvid>;
}

export async function makeDomain(trustDomain: string): Promise<TestDomain> {
  const root = await makeRoot(trustDomain);
  const intermediate = await makeIntermediate(root);
  return {
    trustDomain,
    root,
    intermediate,
    svid: (p, o) => makeSvid(intermediate, `spiffe://${trustDomain}${p}`, o),
  };
}

/** Builds a FetchX509SVID message: each SVID with its domain's bundle (its root), plus federated roots. */
export function x509Response(
  svids: Array<{ svid: TestSvid; bundle: Buffer[]; hint?: string }>,
  federated: Record<string, Buffer[]> = {},
): X509SVIDResponse {
  return {
    svids: svids.map(({ svid, bundle, hint }) => ({
      spiffeId: svid.spiffeId,
      x509Svid: Buffer.concat(svid.chain),
      x509SvidKey: svid.keyDer,
      bundle: Buffer.concat(bundle),
      hint: hint ?? '',
    })),
    crl: [],
    federatedBundles: Object.fromEntries(Object.entries(federated).map(([k, v]) => [k, Buffer.concat(v)])),
  };
}

/** A fresh temp dir; remove it with `fs.rmSync(dir, { recursive: true, force: true })`. */
export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/**
 * A real SpiffeWorkloadAPI server on a Unix socket. It enforces the
 * security header (InvalidArgument without it, as the standard requires),
 * sends the current response first on every FetchX509SVID stream and
 * pushes later ones to every open stream.
 */
export class FakeWorkloadApi {
  readonly socketPath: string;
  /** The `workload.spiffe.io` header values of every call, in order. */
  readonly headers: Array<string | undefined> = [];
  /** When set, every new call fails with this status instead of being served. */
  failWith: { code: grpc.status; details: string } | undefined;
  #server: grpc.Server | undefined;
  #x509: X509SVIDResponse | undefined;
  #bundles: X509BundlesResponse | undefined;
  readonly #streams = new Set<grpc.ServerWritableStream<unknown, X509SVIDResponse>>();

  constructor(socketPath: string) {
    this.socketPath = socketPath;
  }

  get address(): string {
    return `unix://${this.socketPath}`;
  }

  /** Number of FetchX509SVID streams currently open. */
  get openStreams(): number {
    return this.#streams.size;
  }

  /** Sets the current X509 response and pushes it to every open stream. */
  setX509(res: X509SVIDResponse): void {
    this.#x509 = res;
    for (const s of this.#streams) s.write(res);
  }

  setBundles(res: X509BundlesResponse): void {
    this.#bundles = res;
  }

  /** Ends every open FetchX509SVID stream with OK, as an agent might on shutdown. */
  endStreams(): void {
    for (const s of this.#streams) s.end();
    this.#streams.clear();
  }

  async start(): Promise<void> {
    const server = new grpc.Server();
    const impl: Partial<SpiffeWorkloadAPIServer> = {
      fetchX509Svid: (call) => {
        if (!this.#admit(call)) return;
        this.#streams.add(call);
        call.on('cancelled', () => this.#streams.delete(call));
        call.on('close', () => this.#streams.delete(call));
        if (this.#x509) call.write(this.#x509);
      },
      fetchX509Bundles: (call) => {
        if (!this.#admit(call)) return;
        if (this.#bundles) call.write(this.#bundles);
      },
    };
    server.addService(SpiffeWorkloadAPIService, impl as SpiffeWorkloadAPIServer);
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(this.address, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
    this.#server = server;
  }

  /** Drops every connection at once, like an agent crash. */
  stop(): void {
    this.#streams.clear();
    this.#server?.forceShutdown();
    this.#server = undefined;
    fs.rmSync(this.socketPath, { force: true });
  }

  #admit(call: grpc.ServerWritableStream<unknown, unknown>): boolean {
    const header = call.metadata.get('workload.spiffe.io')[0];
    this.headers.push(header === undefined ? undefined : String(header));
    if (header !== 'true') {
      call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: 'security header missing from request' });
      return false;
    }
    if (this.failWith) {
      call.emit('error', this.failWith);
      return false;
    }
    return true;
  }
}

/** A workload for mTLS tests: its own fake agent and an X509Source on it. */
export interface TestWorkload {
  api: FakeWorkloadApi;
  source: X509Source;
  /** Pushes a new response and resolves once the source holds it. */
  push(res: X509SVIDResponse): Promise<X509Context>;
  close(): Promise<void>;
}

export async function startWorkload(dir: string, name: string, res: X509SVIDResponse): Promise<TestWorkload> {
  const api = new FakeWorkloadApi(path.join(dir, `${name}.sock`));
  api.setX509(res);
  await api.start();
  const source = await X509Source.create({ socketPath: api.socketPath, backoff: { initialMs: 20, maxMs: 100 } });
  return {
    api,
    source,
    push: (next) => {
      const updated = new Promise<X509Context>((resolve) => source.once('update', resolve));
      api.setX509(next);
      return updated;
    },
    close: async () => {
      await source.close();
      api.stop();
    },
  };
}
