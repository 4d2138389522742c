/**
 * `brevis-agent run`: build the config from file + flags, start the agent,
 * stop cleanly on SIGINT/SIGTERM. If the agent stops by itself (its
 * identity is lost for good), the reason becomes the one-line error.
 */
import { createLogger } from '../../ca/log.js';
import { CliError } from '../../ca/cli/cli-error.js';
import { startAgent } from '../agent.js';
import { AgentConfigError, buildAgentConfig, mergeAgentConfig, readAgentConfigFile } from '../config/config.js';
import { isAgentSvidError } from '../svid/errors.js';

export interface RunFlags {
  config?: string;
  server?: string;
  trustDomain?: string;
  trustBundle?: string;
  dataDir?: string;
  socket?: string;
  joinToken?: string;
  x509popCert?: string;
  x509popKey?: string;
  syncInterval?: string;
  rotationFraction?: string;
  rotationJitter?: string;
  logLevel?: string;
  metrics?: string;
  sshHostKey?: string;
  sshHostCert?: string;
  sshHostPrincipal?: string[];
  sshTrustDir?: string;
  sshReloadCmd?: string;
}

export async function runAgent(flags: RunFlags): Promise<void> {
  let config;
  try {
    const { config: file, ...rest } = flags;
    config = buildAgentConfig(mergeAgentConfig(file ? readAgentConfigFile(file) : {}, rest as Record<string, unknown>));
  } catch (e) {
    if (e instanceof AgentConfigError) throw new CliError(e.message);
    throw e;
  }
  const logger = createLogger(config.logLevel, 'brevis-agent');
  const startup = new AbortController();
  let signalled: string | null = null;
  const onSignal = (sig: string) => {
    signalled = sig;
    startup.abort(new Error(`interrupted by ${sig} while attesting`));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  let agent;
  try {
    agent = await startAgent(config, { logger, signal: startup.signal });
  } catch (e) {
    if (signalled) return;
    if (isAgentSvidError(e) || e instanceof AgentConfigError) throw new CliError(e.message);
    throw e;
  }
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  if (signalled) {
    await agent.close();
    return;
  }

  const stop = (sig: string) => {
    logger.info({ signal: sig }, 'stopping');
    void agent.close();
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
  const reason = await agent.stopped;
  if (reason) throw new CliError(reason.message);
}
