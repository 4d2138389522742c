#!/usr/bin/env -S node --initial-old-space-size=512
/**
 * brevis-ca: runs the CA (`run`) and administers a running CA through its
 * local admin socket (every other command). Human-readable output by
 * default, `--json` for scripts; failures print one line and exit non-zero.
 */
import 'reflect-metadata';
import { generateKeyPairSync } from 'node:crypto';
import { Command, InvalidArgumentError, Option } from 'commander';
import { parseDuration } from '../../spiffe/duration.js';
import { parseSelector, SelectorError } from '../../spiffe/selector.js';
import { writeSvidFiles } from '../../spiffe/svid-files.js';
import { certsToPem } from '../../spiffe/pem.js';
import { toSpiffeJwks, X509Bundle } from '../../spiffe/bundle.js';
import { createCsr } from '../x509/csr.js';
import type { Entry } from '../../proto/gen/brevis/ca/v1/types.js';
import { AdminApi, resolveAdminSocket } from './admin-client.js';
import { CliError } from './cli-error.js';
import { printAgents, printEntries, printEntry } from './output.js';
import { runCa } from './run.js';
import { paint } from './terminal.js';
import { addEntrySshOptions, entrySshFromFlags, registerSshCommands } from './ssh-commands.js';
import { registerAuditCommands } from './audit-commands.js';
import { registerBackupCommands } from './backup-commands.js';
import { registerAuthorityCommands } from './authority-commands.js';

const durationArg = (v: string) => {
  try {
    return parseDuration(v);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
};
const collect = (v: string, prev: string[] = []) => [...prev, v];

function withSocket(cmd: Command): Command {
  return cmd.option('--socket <path>', 'admin socket of the CA (default: $BREVIS_ADMIN_SOCKET)');
}

async function withAdmin<T>(opts: { socket?: string }, fn: (api: AdminApi) => Promise<T>): Promise<T> {
  const api = new AdminApi(resolveAdminSocket(opts.socket));
  try {
    return await fn(api);
  } finally {
    api.close();
  }
}

const out = (s: string) => process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
const json = (v: unknown) => out(JSON.stringify(v, (_k, x) => (Buffer.isBuffer(x) ? x.toString('base64') : x), 2));

export function buildProgram(): Command {
  const program = new Command('brevis-ca')
    .description('Brevis certificate authority: SPIFFE X.509-SVIDs for attested workloads')
    .showHelpAfterError(false)
    .configureOutput({ outputError: (s, write) => write(`brevis-ca: ${s.replace(/^error: /, '')}`) });

  program
    .command('run')
    .description('run the CA server')
    .option('--data-dir <dir>', 'state directory (database, keys, admin socket)')
    .option('--trust-domain <td>', 'trust domain, e.g. example.org')
    .option('--listen <host:port>', 'address of the node API (TLS)')
    .option('--admin-socket <path>', 'admin API socket (default <data-dir>/admin.sock)')
    .option('--config <file>', 'JSON config file (flags override it)')
    .addOption(new Option('--key-type <type>', 'CA key type').choices(['ec-p256', 'ec-p384', 'ed25519']))
    .addOption(new Option('--ssh-key-type <type>', 'key type of the SSH CAs when first created (default ed25519)').choices(['ed25519', 'ec-p256']))
    .option('--x509pop-ca-bundle <file>', 'PEM bundle of host CAs trusted for x509pop attestation')
    .option('--kek-file <file>', 'key-encryption key file (64 hex characters, mode 0600); default: $BREVIS_KEK, else <data-dir>/kek is generated')
    .option('--datastore <sqlite|url>', 'sqlite (default: <data-dir>/brevis.db) or postgres://USER@HOST:PORT/DB shared by several CA servers (password: PGPASSWORD or ~/.pgpass)')
    .option('--kek-passphrase-env <var>', 'environment variable holding a key-encryption passphrase')
    .addOption(new Option('--log-level <level>').choices(['trace', 'debug', 'info', 'warn', 'error']))
    .option('--metrics <host:port>', 'serve Prometheus metrics on http://HOST:PORT/metrics (default off)')
    .option('--dashboard <host:port>', 'serve the read-only web dashboard (default off; loopback only without --dashboard-client-ca)')
    .option('--dashboard-tls-cert <file>', 'dashboard over HTTPS: server certificate chain (PEM)')
    .option('--dashboard-tls-key <file>', 'dashboard over HTTPS: server private key (PEM)')
    .option('--dashboard-client-ca <file>', 'dashboard over HTTPS: CA certificates (PEM) that issue admin client certificates; required to listen beyond loopback')
    .action(async (opts) => {
      await runCa(opts);
    });

  const token = program.command('token').description('join tokens for node attestation');
  withSocket(token.command('create'))
    .description('create a one-time join token; prints only the token')
    .option('--agent-id <id>', 'agent ID to give the node (default spiffe://TD/brevis/agent/join_token/<token id>)')
    .option('--ttl <duration>', 'how long the token can be redeemed', durationArg)
    .option('--ssh-host-principal <name>', 'host name bound to the agent that redeems the token, for its SSH host certificate (repeatable)', collect)
    .option('--json', 'print a JSON object')
    .action(async (opts) => {
      const res = await withAdmin(opts, (api) =>
        api.call<unknown, { token: string; tokenId: string; agentId: string; expiresAt: number; sshHostPrincipals: string[] }>('createJoinToken', {
          agentId: opts.agentId ?? '',
          ttlSeconds: opts.ttl ?? 0,
          ...(opts.sshHostPrincipal ? { ssh: { hostPrincipals: opts.sshHostPrincipal } } : {}),
        }),
      );
      if (opts.json) json({ token: res.token, token_id: res.tokenId, agent_id: res.agentId, expires_at: res.expiresAt, ssh_host_principals: res.sshHostPrincipals });
      else out(res.token);
    });

  const entry = program.command('entry').description('registration entries');
  addEntrySshOptions(withSocket(entry.command('create')), { durationArg, collect })
    .description('create a registration entry; prints only its id')
    .requiredOption('--spiffe-id <id>', 'SPIFFE ID to issue')
    .requiredOption('--parent-id <id>', 'agent ID, or a node entry / spiffe://TD/brevis/server')
    .requiredOption('--selector <type:value>', 'selector (repeatable)', collect)
    .option('--x509-ttl <duration>', 'X.509-SVID lifetime', durationArg)
    .option('--dns <name...>', 'DNS SANs')
    .option('--hint <hint>', 'hint passed to workloads')
    .option('--admin', 'mark as an admin identity')
    .option('--entry-id <id>', 'choose the entry id (default: a random UUID)')
    .option('--json', 'print the entry as JSON')
    .action(async (opts) => {
      let selectors;
      try {
        selectors = (opts.selector as string[]).map(parseSelector);
      } catch (e) {
        if (e instanceof SelectorError) throw new CliError(e.message);
        throw e;
      }
      const e: Entry = {
        id: opts.entryId ?? '',
        spiffeId: opts.spiffeId,
        parentId: opts.parentId,
        selectors,
        x509SvidTtl: opts.x509Ttl ?? 0,
        dnsNames: opts.dns ?? [],
        hint: opts.hint ?? '',
        admin: Boolean(opts.admin),
        expiresAt: 0,
        revision: 0,
        createdAt: 0,
      };
      const ssh = entrySshFromFlags(opts);
      if (ssh) e.ssh = ssh;
      const res = await withAdmin(opts, (api) => api.call<unknown, { entry: Entry }>('createEntry', { entry: e }));
      if (opts.json) json(res.entry);
      else out(res.entry.id);
    });
  withSocket(entry.command('list'))
    .description('list registration entries')
    .option('--json', 'JSON output')
    .action(async (opts) => {
      const res = await withAdmin(opts, (api) => api.call<unknown, { entries: Entry[] }>('listEntries', {}));
      if (opts.json) json(res.entries);
      else printEntries(res.entries, out);
    });
  withSocket(entry.command('show'))
    .argument('<id>', 'entry id')
    .description('show one entry')
    .option('--json', 'JSON output')
    .action(async (id: string, opts) => {
      const res = await withAdmin(opts, (api) => api.call<unknown, { entry: Entry }>('getEntry', { id }));
      if (opts.json) json(res.entry);
      else printEntry(res.entry, out);
    });
  withSocket(entry.command('delete'))
    .argument('<id>', 'entry id')
    .description('delete an entry')
    .option('--json', 'JSON output')
    .action(async (id: string, opts) => {
      await withAdmin(opts, (api) => api.call('deleteEntry', { id }));
      if (opts.json) json({ deleted: id });
      else out(`deleted ${id}`);
    });

  const agent = program.command('agent').description('attested agents');
  withSocket(agent.command('list'))
    .option('--json', 'JSON output')
    .action(async (opts) => {
      const res = await withAdmin(opts, (api) => api.call<unknown, { agents: import('../../proto/gen/brevis/ca/v1/types.js').Agent[] }>('listAgents', {}));
      if (opts.json) json(res.agents);
      else printAgents(res.agents, out);
    });
  withSocket(agent.command('evict'))
    .argument('<id>', 'agent SPIFFE ID')
    .description('forget an agent: its SVID stops working; it may attest again')
    .option('--json', 'JSON output')
    .action(async (id: string, opts) => {
      await withAdmin(opts, (api) => api.call('evictAgent', { agentId: id }));
      if (opts.json) json({ evicted: id });
      else out(`evicted ${id}`);
    });
  withSocket(agent.command('ban'))
    .argument('<id>', 'agent SPIFFE ID')
    .description('refuse an agent for good: its SVID stops working and it cannot attest again')
    .option('--json', 'JSON output')
    .action(async (id: string, opts) => {
      await withAdmin(opts, (api) => api.call('banAgent', { agentId: id }));
      if (opts.json) json({ banned: id });
      else out(`banned ${id}`);
    });

  const bundle = program.command('bundle').description('the trust bundle');
  withSocket(bundle.command('show'))
    .addOption(new Option('--format <format>', 'pem: root certificates; spiffe: SPIFFE bundle (JWKS)').choices(['pem', 'spiffe']).default('pem'))
    .action(async (opts) => {
      const res = await withAdmin(opts, (api) => api.call<unknown, { bundle: import('../../proto/gen/brevis/ca/v1/types.js').Bundle }>('getBundle', {}));
      const b = new X509Bundle({ trustDomain: res.bundle.trustDomain, authorities: res.bundle.x509Authorities, sequence: res.bundle.sequence, refreshHintSeconds: res.bundle.refreshHintSeconds });
      if (opts.format === 'spiffe') out(JSON.stringify(toSpiffeJwks(b), null, 2));
      else out(certsToPem(res.bundle.x509Authorities));
    });

  const x509 = program.command('x509').description('X.509-SVIDs');
  withSocket(x509.command('mint'))
    .description('mint an X.509-SVID here: writes svid.pem, svid.key (0600) and bundle.pem')
    .requiredOption('--spiffe-id <id>', 'SPIFFE ID')
    .option('--ttl <duration>', 'lifetime', durationArg)
    .option('--dns <name...>', 'DNS SANs')
    .requiredOption('--out-dir <dir>', 'directory for the files')
    .option('--json', 'print a JSON summary')
    .action(async (opts) => {
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const csr = await createCsr(privateKey, publicKey);
      const [minted, b] = await withAdmin(opts, (api) =>
        Promise.all([
          api.call<unknown, { svid: import('../../proto/gen/brevis/ca/v1/types.js').X509SVID }>('mintX509Svid', {
            spiffeId: opts.spiffeId,
            csr,
            ttlSeconds: opts.ttl ?? 0,
            dnsNames: opts.dns ?? [],
          }),
          api.call<unknown, { bundle: import('../../proto/gen/brevis/ca/v1/types.js').Bundle }>('getBundle', {}),
        ]),
      );
      const svid = minted.svid;
      writeSvidFiles(opts.outDir, {
        chain: svid.certChain,
        key: privateKey.export({ type: 'pkcs8', format: 'der' }),
        bundle: b.bundle.x509Authorities,
      });
      if (opts.json) json({ spiffe_id: svid.spiffeId, serial: svid.serial, expires_at: svid.expiresAt, out_dir: opts.outDir });
      else out(`wrote ${opts.outDir}/svid.pem, svid.key, bundle.pem for ${svid.spiffeId} (serial ${svid.serial}, expires ${new Date(svid.expiresAt * 1000).toISOString()})`);
    });

  registerSshCommands(program, { withSocket, withAdmin, out, json, durationArg, collect });
  registerAuditCommands(program, { withSocket, out, json });
  registerBackupCommands(program, { withSocket, out, json });
  registerAuthorityCommands(program, { withSocket, out, json });

  withSocket(program.command('healthcheck'))
    .description('exit 0 when the CA is serving')
    .action(async (opts) => {
      const ok = await withAdmin(opts, (api) => api.serving());
      if (!ok) throw new CliError('the CA is not serving');
      out(paint('serving', 'green'));
    });

  return program;
}


export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return 0;
  } catch (e) {
    const msg = e instanceof CliError ? e.message : e instanceof Error ? e.message : String(e);
    process.stderr.write(`${paint('brevis-ca:', 'red', process.stderr)} ${msg.split('\n')[0]}\n`);
    return 1;
  }
}

main(process.argv).then((code) => {
  if (code !== 0) process.exit(code);
});
