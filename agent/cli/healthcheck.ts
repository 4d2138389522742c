/**
 * `brevis-agent healthcheck`: the standard grpc.health.v1 Check on the
 * agent's Workload API socket. SERVING means attested and synced.
 */
import * as grpc from '@grpc/grpc-js';
import { CliError } from '../../ca/cli/cli-error.js';
import { HealthClient, HealthCheckResponse_ServingStatus } from '../../proto/gen/grpc/health/v1/health.js';
import { parseWorkloadApiAddress, SPIFFE_ENDPOINT_SOCKET, WorkloadApiError } from '../../spiffe/workload-client.js';

/** The socket from --socket, else SPIFFE_ENDPOINT_SOCKET (a unix:/// URI). */
export function resolveSocket(socket: string | undefined): string {
  try {
    if (socket !== undefined) return parseWorkloadApiAddress(socket);
    const env = process.env[SPIFFE_ENDPOINT_SOCKET];
    if (env) return parseWorkloadApiAddress(env, false);
  } catch (e) {
    if (e instanceof WorkloadApiError) throw new CliError(e.message);
    throw e;
  }
  throw new CliError(`no Workload API socket: pass --socket PATH or set ${SPIFFE_ENDPOINT_SOCKET}=unix:///path/to/agent.sock`);
}

export async function healthcheck(socket: string | undefined, timeoutMs: number): Promise<void> {
  const path = resolveSocket(socket);
  const client = new HealthClient(`unix://${path}`, grpc.credentials.createInsecure());
  try {
    const status = await new Promise<HealthCheckResponse_ServingStatus>((resolve, reject) => {
      const md = new grpc.Metadata();
      md.set('workload.spiffe.io', 'true');
      client.check({ service: '' }, md, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res.status)));
    });
    if (status !== HealthCheckResponse_ServingStatus.SERVING) {
      throw new CliError(`the agent on ${path} is not serving yet (${HealthCheckResponse_ServingStatus[status] ?? status}): not attested or not synced with the CA`);
    }
  } catch (e) {
    if (e instanceof CliError) throw e;
    const se = e as grpc.ServiceError;
    throw new CliError(`cannot reach the agent on ${path}: ${grpc.status[se.code] ?? se.code}: ${se.details || se.message}`);
  } finally {
    client.close();
  }
}
