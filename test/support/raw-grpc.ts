/**
 * Calls any gRPC method by path with raw request bytes, and reads the
 * outcome as a status (code, details, trailing metadata) instead of an
 * exception: what hostile-input and authorization tests need.
 */
import * as grpc from '@grpc/grpc-js';

export interface Outcome {
  code: grpc.status;
  details: string;
  /** Decoded response messages (unary: at most one). */
  messages: Buffer[];
  trailers: grpc.Metadata | undefined;
}

const raw = (b: Buffer) => b;

export function header(values: Record<string, string> = {}): grpc.Metadata {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(values)) md.set(k, v);
  return md;
}

/** A unary call with raw bytes. Never rejects. */
export function rawUnary(client: grpc.Client, path: string, body: Buffer, md = new grpc.Metadata(), timeoutMs = 20_000): Promise<Outcome> {
  return new Promise((resolve) => {
    let trailers: grpc.Metadata | undefined;
    const call = client.makeUnaryRequest(path, raw, raw, body, md, { deadline: Date.now() + timeoutMs }, (err, res) => {
      if (err) resolve({ code: err.code, details: err.details, messages: [], trailers: err.metadata ?? trailers });
      else resolve({ code: grpc.status.OK, details: '', messages: res ? [res] : [], trailers });
    });
    call.on('status', (s: grpc.StatusObject) => (trailers = s.metadata));
  });
}

/**
 * A server-streaming call with raw bytes: collects messages until the
 * status, or until `cancelAfterMs` (then cancels). Never rejects.
 */
export function rawServerStream(
  client: grpc.Client,
  path: string,
  body: Buffer,
  md = new grpc.Metadata(),
  opts: { cancelAfterMs?: number; cancelAfterMessages?: number; timeoutMs?: number } = {},
): Promise<Outcome> {
  return new Promise((resolve) => {
    const messages: Buffer[] = [];
    const call = client.makeServerStreamRequest(path, raw, raw, body, md, { deadline: Date.now() + (opts.timeoutMs ?? 20_000) });
    const timer = opts.cancelAfterMs === undefined ? undefined : setTimeout(() => call.cancel(), opts.cancelAfterMs);
    call.on('data', (m: Buffer) => {
      messages.push(m);
      if (opts.cancelAfterMessages !== undefined && messages.length >= opts.cancelAfterMessages) call.cancel();
    });
    call.on('error', () => undefined);
    call.on('status', (s: grpc.StatusObject) => {
      clearTimeout(timer);
      resolve({ code: s.code, details: s.details, messages, trailers: s.metadata });
    });
  });
}

/** A bidirectional call: writes `bodies` in order (optionally ending the send side), cancels after `cancelAfterMs`. */
export function rawBidi(
  client: grpc.Client,
  path: string,
  bodies: Buffer[],
  opts: { end?: boolean; cancelAfterMs?: number; timeoutMs?: number; md?: grpc.Metadata } = {},
): Promise<Outcome> {
  return new Promise((resolve) => {
    const messages: Buffer[] = [];
    const call = client.makeBidiStreamRequest(path, raw, raw, opts.md ?? new grpc.Metadata(), { deadline: Date.now() + (opts.timeoutMs ?? 20_000) });
    const timer = opts.cancelAfterMs === undefined ? undefined : setTimeout(() => call.cancel(), opts.cancelAfterMs);
    call.on('data', (m: Buffer) => messages.push(m));
    call.on('error', () => undefined);
    call.on('status', (s: grpc.StatusObject) => {
      clearTimeout(timer);
      resolve({ code: s.code, details: s.details, messages, trailers: s.metadata });
    });
    for (const b of bodies) call.write(b);
    if (opts.end !== false) call.end();
  });
}

/** grpc status name, for messages and tables. */
export function statusName(code: grpc.status): string {
  return grpc.status[code] ?? String(code);
}
