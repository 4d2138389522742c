/**
 * The agent's SSH side, assembled: what each sync reports (CA keys, host
 * names) goes to the trust directory and the host certificate keeper, and
 * the user certificate service is served on the Workload API socket.
 */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { AgentSSH } from '../../proto/gen/brevis/ca/v1/types.js';
import type { Clock } from '../../spiffe/clock.js';
import { AgentConfigError, type AgentSshConfig, type RotationPolicy } from '../config/config.js';
import type { Mutex } from '../node/mutex.js';
import type { NodeApi } from '../node/node-api.js';
import type { BackoffPolicy } from '../sync/backoff.js';
import type { ExtraServiceFactory } from '../workload-api/server.js';
import { HostCertificateKeeper, readHostPublicKey } from './host-certificate.js';
import { ReloadCommand } from './reload-command.js';
import { trustFileContents, writeTrustFiles } from './trust-files.js';
import { sshCertificateService } from './user-certificate-service.js';
import { UserCertificateSigner, type SshEntrySource } from './user-certificates.js';

/** No host certificate, no trust directory: only user certificates for workloads. */
const NO_SSH_FILES: AgentSshConfig = Object.freeze({ host: null, trustDir: null });

export interface AgentSshOptions {
  /** Default: no host certificate and no trust directory. */
  config?: AgentSshConfig | undefined;
  api: Pick<NodeApi, 'signSshUserCertificate' | 'signSshHostCertificate'>;
  /** Shared with the sync loop and the agent identity. */
  lock: Mutex;
  entries: SshEntrySource;
  clock: Clock;
  logger: Logger;
  rotation: RotationPolicy;
  backoff: BackoffPolicy;
  random?: () => number;
}

export class AgentSsh {
  readonly #o: AgentSshOptions & { config: AgentSshConfig };
  readonly hostCertificate: HostCertificateKeeper | null;
  readonly userCertificates: UserCertificateSigner;
  #userCaKeys: readonly string[] = [];
  #trustError: string | null = null;
  #skippedKeys = 0;
  #warnedNoSsh = false;

  constructor(options: AgentSshOptions) {
    this.#o = { ...options, config: options.config ?? NO_SSH_FILES };
    const { config, api, lock, clock, logger, rotation, backoff, random } = this.#o;
    this.hostCertificate = config.host
      ? new HostCertificateKeeper({
          config: config.host,
          api,
          lock,
          clock,
          logger,
          rotation,
          backoff,
          reload: config.host.reloadCommand ? new ReloadCommand(config.host.reloadCommand, logger) : undefined,
          ...(random ? { random } : {}),
        })
      : null;
    this.userCertificates = new UserCertificateSigner({ entries: options.entries, api, lock, clock, logger, userCaKeys: () => this.#userCaKeys });
  }

  /** The user certificate service for the Workload API server. */
  service(): ExtraServiceFactory {
    return sshCertificateService(this.userCertificates, this.#o.logger);
  }

  /** Takes in the SSH part of a sync. Never throws: a trust file that cannot be written is logged. */
  applySync(ssh: AgentSSH | undefined): void {
    const { config, logger } = this.#o;
    if (!ssh) {
      if (!this.#warnedNoSsh && (config.host || config.trustDir)) {
        logger.warn('the CA sent no SSH information: it does not offer SSH certificates; the host certificate and trust files are left as they are');
      }
      this.#warnedNoSsh = true;
      return;
    }
    this.#userCaKeys = [...ssh.userCaKeys];
    this.hostCertificate?.applySync(ssh);
    if (!config.trustDir) return;
    try {
      const contents = trustFileContents(ssh);
      if (contents.skipped !== this.#skippedKeys) {
        this.#skippedKeys = contents.skipped;
        if (contents.skipped > 0) logger.warn({ skipped: contents.skipped }, 'the CA sent SSH CA keys that cannot be parsed; left them out of the trust files');
      }
      const written = writeTrustFiles(config.trustDir, contents);
      if (written.length > 0) logger.info({ dir: config.trustDir, files: written }, 'SSH trust files updated');
      this.#trustError = null;
    } catch (e) {
      const message = (e as Error).message;
      if (message !== this.#trustError) logger.error({ err: message, dir: config.trustDir }, 'cannot write the SSH trust files');
      this.#trustError = message;
    }
  }

  /** Keeps the host certificate current until `signal` aborts; resolves at once without one. Never rejects. */
  async run(signal: AbortSignal): Promise<void> {
    await this.hostCertificate?.run(signal);
  }
}

/**
 * Fails fast on SSH settings the agent could never act on: a host key that
 * is not a readable public key, or a certificate path in a directory that
 * does not exist. Throws AgentConfigError.
 */
export function checkSshFiles(config: AgentSshConfig | undefined): void {
  if (!config?.host) return;
  try {
    readHostPublicKey(config.host.keyFile);
  } catch (e) {
    throw new AgentConfigError(`--ssh-host-key: ${(e as Error).message}`);
  }
  const dir = path.dirname(config.host.certFile);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new AgentConfigError(`--ssh-host-cert: the directory ${dir} does not exist`);
  }
}
