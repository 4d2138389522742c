#!/usr/bin/env -S node --max-semi-space-size=2 --expose-gc
/**
 * brevis-agent: runs the node agent (`run`), and gives software that cannot
 * speak the Workload API its SVID as files (`api fetch x509`, `api watch`),
 * an SSH user certificate (`api ssh sign`) or a health probe
 * (`healthcheck`). Failures print one line and exit non-zero.
 */
import 'reflect-metadata';
import { Command, InvalidArgumentError, Option } from 'commander';
import { parseDuration } from '../../spiffe/duration.js';
import { paint } from '../../ca/cli/terminal.js';
import { healthcheck } from './healthcheck.js';
import { runAgent } from './run.js';
import { signSshUserCertificate } from './ssh-sign-command.js';
import { fetchX509Files, watchX509Files } from './svid-files-command.js';

const seconds = (v: string) => {
  try {
    return parseDuration(v);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
};

const collect = (v: string, prev: string[] = []) => [...prev, v];

const out = (s: string) => process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
const warn = (s: string) => process.stderr.write(`brevis-agent: ${s}\n`);

function withSocket(cmd: Command): Command {
  return cmd.option('--socket <path>', 'Workload API socket (default: $SPIFFE_ENDPOINT_SOCKET)');
}

export function buildProgram(): Command {
  const program = new Command('brevis-agent')
    .description('Brevis node agent: attests the node, keeps workload SVIDs fresh, serves the SPIFFE Workload API')
    .showHelpAfterError(false)
    .configureOutput({ outputError: (s, write) => write(`brevis-agent: ${s.replace(/^error: /, '')}`) });

  program
    .command('run')
    .description('run the agent')
    .option('--server <host:port,...>', 'node API of the CA; several servers of one CA as HOST:PORT,HOST:PORT,... (the agent fails over between them)')
    .option('--trust-domain <td>', 'trust domain, e.g. example.org')
    .option('--trust-bundle <file>', 'PEM root certificates of the CA, trusted until the agent has its own copy')
    .option('--data-dir <dir>', 'state directory (agent SVID and key, last bundle)')
    .option('--socket <path>', 'Workload API socket to serve')
    .option('--join-token <token>', 'attest with this one-time join token (brevis-ca token create)')
    .option('--x509pop-cert <file>', 'attest with x509pop: the node certificate chain (PEM)')
    .option('--x509pop-key <file>', 'attest with x509pop: the node private key (PEM)')
    .option('--sync-interval <duration>', 'how often to sync with the CA (default 5s)')
    .option('--rotation-fraction <n>', 'renew when this fraction of the lifetime is left (default 0.5)')
    .option('--rotation-jitter <n>', 'random relative spread of the renewal point (default 0.1)')
    .option('--ssh-host-key <file>', "the sshd host public key (.pub) to keep certified")
    .option('--ssh-host-cert <file>', 'where to keep the SSH host certificate (sshd HostCertificate)')
    .option('--ssh-host-principal <name>', "host name for the host certificate (repeatable; default: all of the node's)", collect)
    .option('--ssh-trust-dir <dir>', 'keep trusted_user_ca_keys (sshd TrustedUserCAKeys) and known_hosts (@cert-authority) here')
    .option('--ssh-reload-cmd <cmd>', 'command run with sh -c after each new host certificate (e.g. reload sshd)')
    .option('--config <file>', 'JSON config file (flags override it)')
    .addOption(new Option('--log-level <level>').choices(['trace', 'debug', 'info', 'warn', 'error']))
    .option('--metrics <host:port>', 'serve Prometheus metrics on http://HOST:PORT/metrics (default off)')
    .action(async (opts) => {
      await runAgent(opts);
    });

  const api = program.command('api').description('the Workload API as files, for software that cannot speak it');
  const fetch = api.command('fetch').description('fetch once');
  withSocket(fetch.command('x509'))
    .description('write the default X509-SVID: svid.pem (leaf then intermediates), svid.key (PKCS#8, 0600), bundle.pem')
    .requiredOption('--out-dir <dir>', 'directory for the files')
    .option('--timeout <duration>', 'give up after this long', seconds, 30)
    .action(async (opts) => {
      await fetchX509Files({ socket: opts.socket, outDir: opts.outDir, timeoutMs: opts.timeout * 1000 }, out);
    });
  withSocket(api.command('watch'))
    .description('keep svid.pem, svid.key and bundle.pem current (atomic replacement); run CMD after each change')
    .requiredOption('--out-dir <dir>', 'directory for the files')
    .option('--exec <cmd>', 'command run with sh -c after each change')
    .action(async (opts) => {
      const stop = new AbortController();
      process.once('SIGINT', () => stop.abort());
      process.once('SIGTERM', () => stop.abort());
      await watchX509Files({ socket: opts.socket, outDir: opts.outDir, exec: opts.exec, signal: stop.signal }, out, warn);
    });

  const ssh = api.command('ssh').description('OpenSSH certificates for the calling workload');
  withSocket(ssh.command('sign'))
    .description("sign the public key with a user certificate for the caller's entry; write the -cert.pub line (0644)")
    .requiredOption('--public-key <file>', 'the public key (.pub); a private key is refused without being sent')
    .option('--out <file>', 'where to write the certificate (default: the key path with -cert.pub, as ssh looks for it)')
    .option('--spiffe-id <id>', "which of the caller's identities (default: the first with SSH principals)")
    .option('--timeout <duration>', 'give up after this long', seconds, 30)
    .action(async (opts) => {
      await signSshUserCertificate({ socket: opts.socket, publicKeyFile: opts.publicKey, out: opts.out, spiffeId: opts.spiffeId, timeoutMs: opts.timeout * 1000 }, out);
    });

  withSocket(program.command('healthcheck'))
    .description('exit 0 when the agent is attested, synced and serving the Workload API')
    .option('--timeout <duration>', 'give up after this long', seconds, 5)
    .action(async (opts) => {
      await healthcheck(opts.socket, opts.timeout * 1000);
      out(paint('serving', 'green'));
    });

  return program;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return 0;
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    process.stderr.write(`${paint('brevis-agent:', 'red', process.stderr)} ${msg.split('\n')[0]}\n`);
    return 1;
  }
}

// Every command has finished its work when main resolves (run and watch once
// stopped); a lingering handle such as a closing channel must not keep it alive.
main(process.argv).then((code) => process.exit(code));
