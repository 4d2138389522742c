/**
 * A promise-based client for any service served on the CA's admin socket
 * (AuditService, AuthorityService, ...), with the same error explanations
 * as the AdminService client.
 */
import * as grpc from '@grpc/grpc-js';
import { CliError } from './cli-error.js';

type ClientCtor<C> = new (address: string, credentials: grpc.ChannelCredentials) => C;
type UnaryFn<Req, Res> = (req: Req, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: Res) => void) => void;

export class SocketClient<C extends grpc.Client> {
  readonly raw: C;
  constructor(
    private readonly socket: string,
    ctor: ClientCtor<C>,
  ) {
    this.raw = new ctor(`unix://${socket}`, grpc.credentials.createInsecure());
  }

  call<Req, Res>(method: keyof C & string, req: Req, timeoutMs = 60_000): Promise<Res> {
    const fn = (this.raw[method] as unknown as UnaryFn<Req, Res>).bind(this.raw);
    return new Promise((resolve, reject) => {
      fn(req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
        if (err) reject(this.explain(err));
        else resolve(res);
      });
    });
  }

  private explain(err: grpc.ServiceError): CliError {
    if (err.code === grpc.status.UNAVAILABLE && !err.details?.includes('database')) {
      return new CliError(`cannot reach the CA admin socket ${this.socket}: is the CA running? (${err.details})`, err.code);
    }
    if (err.code === grpc.status.UNIMPLEMENTED) {
      return new CliError(`the CA at ${this.socket} does not offer this command (is it an older version?)`, err.code);
    }
    return new CliError(err.details || err.message, err.code);
  }

  close(): void {
    this.raw.close();
  }
}
