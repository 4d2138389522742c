/**
 * `brevis-ca backup --socket PATH --out FILE` and
 * `brevis-ca restore --from FILE --data-dir DIR`. Registered by main.ts.
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants as fsConstants, promises as fsp } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Command } from 'commander';
import { BackupServiceClient, type CreateBackupResponse } from '../../proto/gen/brevis/ca/v1/backup.js';
import { restoreBackup } from '../backup/restore.js';
import { CaError } from '../errors.js';
import { KEK_ENV, parseKekHex, readSecretFile } from '../keys/kek.js';
import type { KekSource } from '../keys/keystore.js';
import { resolveAdminSocket } from './admin-client.js';
import { CliError } from './cli-error.js';

export interface BackupCliHelpers {
  withSocket(cmd: Command): Command;
  out(s: string): void;
  json(v: unknown): void;
}

/** Streams a backup from the CA into `out` (mode 0600; an existing file is never replaced). */
async function fetchBackup(socket: string, out: string): Promise<{ bytes: number; sha256: string }> {
  const target = path.resolve(out);
  // Asked before the CA does the work; the link below is what guarantees it.
  if (await fsp.lstat(target).then(() => true, () => false)) throw new CliError(`${target} already exists; choose another --out`);
  const partial = path.join(path.dirname(target), `.${path.basename(target)}.${randomBytes(6).toString('hex')}.partial`);
  const fh = await fsp.open(partial, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600).catch((e: NodeJS.ErrnoException) => {
    throw new CliError(`cannot write ${target}: ${e.code ?? e.message}`);
  });
  const hash = createHash('sha256');
  let bytes = 0;
  const client = new BackupServiceClient(`unix://${socket}`, grpc.credentials.createInsecure());
  try {
    await new Promise<void>((resolve, reject) => {
      const call = client.createBackup({}, new grpc.Metadata(), { deadline: Date.now() + 10 * 60_000 });
      let writing = Promise.resolve();
      call.on('data', (msg: CreateBackupResponse) => {
        hash.update(msg.chunk);
        bytes += msg.chunk.length;
        writing = writing.then(() => fh.write(msg.chunk).then(() => undefined));
      });
      call.on('error', (err: grpc.ServiceError) => {
        if (err.code === grpc.status.UNAVAILABLE) reject(new CliError(`cannot reach the CA admin socket ${socket}: is the CA running? (${err.details})`, err.code));
        else if (err.code === grpc.status.UNIMPLEMENTED) reject(new CliError(`the CA at ${socket} does not offer backups (is it an older version?)`, err.code));
        else reject(new CliError(err.details || err.message, err.code));
      });
      call.on('end', () => writing.then(resolve, reject));
    });
    if (bytes === 0) throw new CliError('the CA sent an empty backup');
    await fh.sync();
    await fh.close();
    try {
      await fsp.link(partial, target);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new CliError(`${target} already exists; choose another --out`);
      throw e;
    }
    return { bytes, sha256: hash.digest('hex') };
  } finally {
    client.close();
    await fh.close().catch(() => undefined);
    await fsp.unlink(partial).catch(() => undefined);
  }
}

/** The KEK of the CA that made the backup, from exactly one of the flags or BREVIS_KEK. */
async function restoreKek(opts: { kekFile?: string; kekPassphraseEnv?: string }): Promise<KekSource> {
  const env = process.env[KEK_ENV];
  const given = [opts.kekFile, env, opts.kekPassphraseEnv].filter(Boolean).length;
  if (given === 0) {
    throw new CliError(`give the key-encryption key of the CA that made the backup: --kek-file FILE (its <data-dir>/kek if it generated one) or ${KEK_ENV}`);
  }
  if (given > 1) throw new CliError(`set only one of --kek-file, ${KEK_ENV} and --kek-passphrase-env`);
  try {
    if (opts.kekFile) {
      const bytes = await readSecretFile(opts.kekFile, 'key-encryption key file');
      return { key: parseKekHex(bytes.toString('latin1'), `key-encryption key file ${opts.kekFile}`) };
    }
    if (env) return { key: parseKekHex(env, `environment variable ${KEK_ENV}`) };
    const passphrase = process.env[opts.kekPassphraseEnv!];
    if (!passphrase) throw new CliError(`environment variable ${opts.kekPassphraseEnv} (--kek-passphrase-env) is empty or unset`);
    return { passphrase };
  } catch (e) {
    if (e instanceof CaError) throw new CliError(e.message);
    throw e;
  }
}

export function registerBackupCommands(program: Command, h: BackupCliHelpers): void {
  h.withSocket(program.command('backup'))
    .description('take a consistent, encrypted backup of the running CA (database and CA keys); keep the KEK separately')
    .requiredOption('--out <file>', 'the backup file to write (mode 0600; never replaced)')
    .option('--json', 'print a JSON summary')
    .action(async (opts: { socket?: string; out: string; json?: boolean }) => {
      const r = await fetchBackup(resolveAdminSocket(opts.socket), opts.out);
      if (opts.json) h.json({ out: path.resolve(opts.out), bytes: r.bytes, sha256: r.sha256 });
      else h.out(`wrote ${path.resolve(opts.out)} (${r.bytes} bytes, sha256 ${r.sha256})`);
    });

  program
    .command('restore')
    .description('restore a backup into a new, empty data directory')
    .requiredOption('--from <file>', 'the backup file')
    .requiredOption('--data-dir <dir>', 'the new data directory (must not exist or be empty)')
    .option('--kek-file <file>', `the KEK of the CA that made the backup (default: $${KEK_ENV})`)
    .option('--kek-passphrase-env <var>', 'environment variable holding the passphrase, if that CA used one')
    .option('--json', 'print a JSON summary')
    .action(async (opts: { from: string; dataDir: string; kekFile?: string; kekPassphraseEnv?: string; json?: boolean }) => {
      const kek = await restoreKek(opts);
      let r;
      try {
        r = await restoreBackup(opts.from, opts.dataDir, kek);
      } catch (e) {
        if (e instanceof CaError) throw new CliError(e.message);
        throw e;
      }
      const dir = path.resolve(opts.dataDir);
      const kekHint = r.written.includes('kek') ? '' : opts.kekFile ? ` --kek-file ${opts.kekFile}` : ` (with the same ${KEK_ENV} or --kek-passphrase-env)`;
      if (opts.json) h.json({ dataDir: dir, trustDomain: r.manifest.trustDomain, createdAt: new Date(r.manifest.createdAtMs).toISOString(), files: r.written });
      else {
        h.out(`restored the ${r.manifest.trustDomain} backup of ${new Date(r.manifest.createdAtMs).toISOString()} into ${dir} (${r.written.length} files)`);
        h.out(`start it with: brevis-ca run --data-dir ${dir} --trust-domain ${r.manifest.trustDomain} --listen HOST:PORT${kekHint}`);
      }
    });
}
