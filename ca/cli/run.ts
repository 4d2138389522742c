/** `brevis-ca run`: build the config from file + flags, start the CA, stop cleanly on SIGINT/SIGTERM. */
import { buildCaConfig, ConfigError, readConfigFile } from '../config/config.js';
import { createLogger } from '../log.js';
import { startCa } from '../server/ca.js';
import { CliError } from './cli-error.js';

interface RunFlags {
  dataDir?: string;
  trustDomain?: string;
  listen?: string;
  adminSocket?: string;
  config?: string;
  keyType?: string;
  sshKeyType?: string;
  x509popCaBundle?: string;
  kekFile?: string;
  datastore?: string;
  kekPassphraseEnv?: string;
  logLevel?: string;
  metrics?: string;
  dashboard?: string;
  dashboardTlsCert?: string;
  dashboardTlsKey?: string;
  dashboardClientCa?: string;
}

export async function runCa(flags: RunFlags): Promise<void> {
  let config;
  try {
    const raw: Record<string, unknown> = flags.config ? readConfigFile(flags.config) : {};
    for (const [k, v] of Object.entries(flags)) if (k !== 'config' && v !== undefined) raw[k] = v;
    for (const k of ['dataDir', 'trustDomain', 'listen'] as const) {
      if (raw[k] === undefined) throw new ConfigError(`--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} is required (flag or config file)`);
    }
    config = buildCaConfig(raw);
  } catch (e) {
    if (e instanceof ConfigError) throw new CliError(e.message);
    throw e;
  }
  const logger = createLogger(config.logLevel, 'brevis-ca');
  const ca = await startCa(config, { logger });
  await new Promise<void>((resolve) => {
    const stop = (sig: string) => {
      logger.info({ signal: sig }, 'stopping');
      ca.close().then(resolve, resolve);
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}
