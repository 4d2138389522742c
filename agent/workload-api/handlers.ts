/**
 * The SpiffeWorkloadAPI service: the gRPC edge where attestation results and
 * provider state become responses and statuses (SPECS.md, "Workload API").
 *
 * Every call is attested on its own: kernel credentials are fixed at connect
 * time, but the process behind them may since have exec'd another program.
 * A stream keeps the selectors attested when it opened.
 */
import * as grpc from '@grpc/grpc-js';
import { SpiffeWorkloadAPIService } from '../../proto/gen/workload.js';
import { isAttestationError } from '../attest/errors.js';
import type { PeerCred } from '../attest/peercred.js';
import type { PeerRegistry } from './peers.js';
import type { WorkloadIdentityProvider } from './provider.js';
import type { ResponseCache, WorkloadView } from './responses.js';

/** Attests the process behind a connection: its selectors, `type:value`. */
export type WorkloadAttestor = (cred: PeerCred) => Promise<string[]>;

/** The slice of a logger the server uses; pino's logger fits. */
export interface WorkloadApiLogger {
  warn(obj: object, msg: string): void;
}

/** The metadata every Workload API call must carry, with the value `true`. */
export const SECURITY_HEADER = 'workload.spiffe.io';

const raw = (b: Buffer): Buffer => b;

/**
 * SpiffeWorkloadAPIService with the two streamed responses serialized by the
 * handlers: they write buffers encoded once per selector set (ResponseCache).
 */
export const workloadApiDefinition = {
  ...SpiffeWorkloadAPIService,
  fetchX509Svid: { ...SpiffeWorkloadAPIService.fetchX509Svid, responseSerialize: raw },
  fetchX509Bundles: { ...SpiffeWorkloadAPIService.fetchX509Bundles, responseSerialize: raw },
} satisfies grpc.ServiceDefinition;

type StreamCall = grpc.ServerWritableStream<unknown, Buffer>;
type Fail = (code: grpc.status, details: string) => void;

export interface WorkloadApiHandlersDeps {
  provider: WorkloadIdentityProvider;
  cache: ResponseCache;
  peers: PeerRegistry;
  attest: WorkloadAttestor;
  logger?: WorkloadApiLogger;
}

export class WorkloadApiHandlers {
  private readonly streams = new Set<OpenStream>();
  private closing = false;

  constructor(private readonly deps: WorkloadApiHandlersDeps) {}

  /** Streams currently open. */
  get openStreams(): number {
    return this.streams.size;
  }

  /** The grpc-js implementation of `workloadApiDefinition`. */
  implementation(): grpc.UntypedServiceImplementation {
    const unimplemented = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      const fail: Fail = (code, details) => callback({ code, details });
      if (!hasSecurityHeader(call.metadata)) return fail(grpc.status.INVALID_ARGUMENT, 'security header missing');
      fail(grpc.status.UNIMPLEMENTED, 'JWT-SVIDs are not offered by this agent');
    };
    return {
      fetchX509Svid: (call: StreamCall) => void this.serveStream(call, (v) => v.x509SvidResponse()),
      fetchX509Bundles: (call: StreamCall) => void this.serveStream(call, (v) => v.x509BundlesResponse()),
      fetchJwtsvid: unimplemented,
      fetchJwtBundles: (call: StreamCall) => {
        if (!hasSecurityHeader(call.metadata)) return failStream(call, grpc.status.INVALID_ARGUMENT, 'security header missing');
        failStream(call, grpc.status.UNIMPLEMENTED, 'JWT bundles are not offered by this agent');
      },
      validateJwtsvid: unimplemented,
    };
  }

  /** Re-evaluates every open stream; call after `cache.invalidate()`. */
  refreshStreams(): void {
    for (const s of [...this.streams]) s.refresh();
  }

  /** Ends every open stream with Unavailable and refuses new calls. */
  shutdown(): void {
    this.closing = true;
    for (const s of [...this.streams]) s.fail(grpc.status.UNAVAILABLE, 'agent is shutting down');
  }

  private async serveStream(call: StreamCall, pick: (view: WorkloadView) => Buffer): Promise<void> {
    const fail: Fail = (code, details) => failStream(call, code, details);
    try {
      const selectors = await this.admit(call, fail);
      if (selectors === undefined || call.cancelled) return;
      if (this.closing) return fail(grpc.status.UNAVAILABLE, 'agent is shutting down');
      const stream = new OpenStream(call, selectors, pick, this.deps, () => this.streams.delete(stream));
      this.streams.add(stream);
      stream.refresh();
    } catch (e) {
      this.deps.logger?.warn({ err: (e as Error).message, method: call.getPath() }, 'Workload API call failed');
      fail(grpc.status.INTERNAL, 'internal error');
    }
  }

  /**
   * The checks every call passes, in the order the standard implies: the
   * security header, readiness, then attestation. Returns the caller's
   * selectors, or undefined after failing the call.
   */
  private async admit(call: StreamCall, fail: Fail): Promise<string[] | undefined> {
    if (!hasSecurityHeader(call.metadata)) return void fail(grpc.status.INVALID_ARGUMENT, 'security header missing');
    if (this.closing) return void fail(grpc.status.UNAVAILABLE, 'agent is shutting down');
    if (!this.deps.provider.isReady()) return void fail(grpc.status.UNAVAILABLE, 'agent is not ready yet');
    const peer = call.getPeer();
    try {
      const selectors = await this.deps.peers.use(peer, this.deps.attest);
      if (selectors === undefined) return void fail(grpc.status.UNAVAILABLE, 'connection closed');
      return selectors;
    } catch (e) {
      this.deps.logger?.warn(
        { peer, code: isAttestationError(e) ? e.code : 'INTERNAL', err: (e as Error).message },
        'workload attestation failed',
      );
      // Attestation errors are the caller's problem (it exited or changed);
      // anything else is ours, and its detail stays in the log.
      if (isAttestationError(e)) return void fail(grpc.status.PERMISSION_DENIED, 'workload attestation failed');
      return void fail(grpc.status.INTERNAL, 'workload attestation failed');
    }
  }
}

/**
 * One open FetchX509SVID or FetchX509Bundles stream. Sends the full state at
 * once, then again only when the caller's encoded response changes; ends with
 * PermissionDenied when the caller no longer has an identity. Updates are
 * driven by the provider's change signal only: readiness is checked when a
 * stream opens, and an SVID that expires without a change (the agent lost the
 * CA) is dropped from the next message, not pushed on its own.
 */
class OpenStream {
  private last: Buffer | undefined;
  /** A change arrived while the client was not reading: send the latest on drain. */
  private dirty = false;
  private done = false;

  constructor(
    private readonly call: StreamCall,
    private readonly selectors: readonly string[],
    private readonly pick: (view: WorkloadView) => Buffer,
    private readonly deps: Pick<WorkloadApiHandlersDeps, 'cache' | 'logger'>,
    private readonly forget: () => void,
  ) {
    const finish = () => this.finish();
    call.on('cancelled', finish);
    call.on('close', finish);
    call.on('error', finish);
    call.on('drain', () => {
      if (!this.dirty) return;
      this.dirty = false;
      this.refresh();
    });
  }

  refresh(): void {
    if (this.done) return;
    let view: WorkloadView;
    let msg: Buffer;
    try {
      view = this.deps.cache.viewFor(this.selectors);
      if (!view.hasIdentity) return this.fail(grpc.status.PERMISSION_DENIED, 'no identity issued');
      msg = this.pick(view);
    } catch (e) {
      // A provider bug must not take down other streams or the process.
      this.deps.logger?.warn({ err: (e as Error).message }, 'could not build a Workload API response');
      return this.fail(grpc.status.INTERNAL, 'internal error');
    }
    if (this.last !== undefined && (msg === this.last || msg.equals(this.last))) return;
    if (this.call.writableNeedDrain) {
      this.dirty = true;
      return;
    }
    this.last = msg;
    this.call.write(msg);
  }

  fail(code: grpc.status, details: string): void {
    if (this.done) return;
    this.finish();
    failStream(this.call, code, details);
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    this.forget();
  }
}

function hasSecurityHeader(md: grpc.Metadata): boolean {
  const values = md.get(SECURITY_HEADER);
  return values.length === 1 && values[0] === 'true';
}

/** Ends a server stream with a status (grpc-js turns an 'error' event into the trailers). */
function failStream(call: grpc.ServerWritableStream<unknown, unknown>, code: grpc.status, details: string): void {
  if (call.cancelled || call.writableEnded) return;
  call.emit('error', { code, details });
}
