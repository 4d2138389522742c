/** A promise-based client for the local admin API (Unix socket). */
import * as grpc from '@grpc/grpc-js';
import { AdminServiceClient } from '../../proto/gen/brevis/ca/v1/admin.js';
import { HealthClient, HealthCheckResponse_ServingStatus } from '../../proto/gen/grpc/health/v1/health.js';
import { CliError } from './cli-error.js';

type Unary<Req, Res> = (req: Req, cb: (err: grpc.ServiceError | null, res: Res) => void) => grpc.ClientUnaryCall;

export function resolveAdminSocket(socket: string | undefined): string {
  const s = socket ?? process.env.BREVIS_ADMIN_SOCKET;
  if (!s) throw new CliError('no admin socket: pass --socket PATH (the CA prints it at start; default <data-dir>/admin.sock)');
  return s;
}

export class AdminApi {
  readonly raw: AdminServiceClient;
  private readonly health: HealthClient;
  constructor(private readonly socket: string) {
    const addr = `unix://${socket}`;
    this.raw = new AdminServiceClient(addr, grpc.credentials.createInsecure());
    this.health = new HealthClient(addr, grpc.credentials.createInsecure());
  }

  call<Req, Res>(method: keyof AdminServiceClient & string, req: Req, timeoutMs = 30_000): Promise<Res> {
    const fn = (this.raw[method] as unknown as Unary<Req, Res>).bind(this.raw) as unknown as (
      req: Req,
      md: grpc.Metadata,
      opts: grpc.CallOptions,
      cb: (err: grpc.ServiceError | null, res: Res) => void,
    ) => void;
    return new Promise((resolve, reject) => {
      fn(req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
        if (err) reject(this.explain(err));
        else resolve(res);
      });
    });
  }

  async serving(timeoutMs = 5000): Promise<boolean> {
    return new Promise((resolve) => {
      this.health.check({ service: '' }, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
        resolve(!err && res.status === HealthCheckResponse_ServingStatus.SERVING);
      });
    });
  }

  private explain(err: grpc.ServiceError): CliError {
    if (err.code === grpc.status.UNAVAILABLE) {
      return new CliError(`cannot reach the CA admin socket ${this.socket}: is the CA running? (${err.details})`);
    }
    return new CliError(err.details || err.message, err.code);
  }

  close(): void {
    this.raw.close();
    this.health.close();
  }
}
