/**
 * Start-up checks of `idprov serve` and the one-line messages for what an operator can fix: a port
 * in use or not permitted, a data directory that cannot be written, a full disk, a corrupt database.
 *
 * {@link preflight} runs before anything is created, in order: the ports can be bound (then released),
 * the data directory (or the nearest existing folder above it) is writable, its file system has room,
 * and an existing database file looks like SQLite. The same failures met later (a race, a disk that
 * fills while the schema is written) are described by {@link describeStartupError}.
 */
import { createSocket } from 'node:dgram';
import { accessSync, closeSync, constants, existsSync, openSync, readSync, statSync, statfsSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import type { Config } from '../config.ts';

/** Exit codes of `idprov serve` (docs/operations.md "Exit codes"). */
export const EXIT_CODES = {
  /** A bad setting or a bad command line. */
  config: 2,
  /** A port is in use, or binding it is not permitted. */
  port: 3,
  /** The data directory or a file in it cannot be created, read or written. */
  permission: 4,
  /** No space left on the device of the data directory. */
  diskFull: 5,
  /** The database file is not an SQLite database, or is damaged. */
  corrupt: 6,
} as const;

/** Free space the data directory's file system must have at start (a new database takes ~150 KiB). */
export const MIN_FREE_BYTES = 1024 * 1024;

/** A failure an operator can fix, with the message to print and the exit code. */
export class StartupError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
    this.name = 'StartupError';
  }
}

const errno = (e: unknown): string | undefined => (e as NodeJS.ErrnoException | undefined)?.code;
const hostPort = (host: string, port: number): string => `${host.includes(':') ? `[${host}]` : host}:${port}`;

function portError(e: unknown, what: string, host: string, port: number, flag: string): StartupError {
  const at = `${what} ${hostPort(host, port)}`;
  if (errno(e) === 'EADDRINUSE') return new StartupError(`${at} is in use (is another idprov running?); choose another with ${flag}`, EXIT_CODES.port);
  if (errno(e) === 'EACCES' || errno(e) === 'EPERM')
    return new StartupError(`binding ${at} is not permitted (ports below 1024 need CAP_NET_BIND_SERVICE); choose a port ≥ 1024 with ${flag}`, EXIT_CODES.port);
  if (errno(e) === 'EADDRNOTAVAIL') return new StartupError(`${at}: no such local address (check bind/adminBind)`, EXIT_CODES.port);
  return new StartupError(`cannot bind ${at}: ${(e as Error).message}`, EXIT_CODES.port);
}

function tryUdp(host: string, port: number): Promise<void> {
  return new Promise((ok, fail) => {
    const s = createSocket({ type: host.includes(':') ? 'udp6' : 'udp4' });
    s.once('error', (e) => {
      s.close();
      fail(e);
    });
    s.bind({ address: host, port, exclusive: true }, () => s.close(() => ok()));
  });
}

function tryTcp(host: string, port: number): Promise<void> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen({ host, port, exclusive: true }, () => s.close(() => ok()));
  });
}

/** Bind and release a UDP port, on `::` falling back to 0.0.0.0 as the server does. */
async function checkUdp(what: string, host: string, port: number, flag: string): Promise<void> {
  if (port === 0) return;
  try {
    await tryUdp(host, port);
  } catch (e) {
    if (host === '::' && errno(e) !== 'EADDRINUSE' && errno(e) !== 'EACCES') {
      try {
        await tryUdp('0.0.0.0', port);
        return;
      } catch (e4) {
        throw portError(e4, what, '0.0.0.0', port, flag);
      }
    }
    throw portError(e, what, host, port, flag);
  }
}

/** The nearest folder at or above `dir` that exists. */
function existingAncestor(dir: string): string {
  let d = dir;
  while (!existsSync(d) && dirname(d) !== d) d = dirname(d);
  return d;
}

function checkWritable(dir: string): void {
  const base = existingAncestor(dir);
  if (!statSync(base).isDirectory()) throw new StartupError(`data directory ${dir}: ${base} is not a folder`, EXIT_CODES.permission);
  try {
    accessSync(base, constants.W_OK | constants.X_OK);
  } catch (e) {
    const why = errno(e) === 'EROFS' ? 'is on a read-only file system' : 'is not writable by this user';
    throw new StartupError(
      base === dir ? `data directory ${dir} ${why} (check its owner and mode, or choose another with --data)` : `cannot create the data directory ${dir}: ${base} ${why} (create it for this user, or choose another with --data)`,
      EXIT_CODES.permission,
    );
  }
  for (const f of ['idprov.db', 'idprov.db-wal', 'admin.token', 'dtls-key.pem']) {
    const p = join(dir, f);
    if (!existsSync(p)) continue;
    try {
      accessSync(p, constants.R_OK | constants.W_OK);
    } catch {
      throw new StartupError(`${p} is not readable and writable by this user (check its owner and mode)`, EXIT_CODES.permission);
    }
  }
  const fs = statfsSync(base);
  const free = Number(fs.bavail) * Number(fs.bsize);
  if (free < MIN_FREE_BYTES) throw new StartupError(`no space left for the data directory ${dir} (${Math.floor(free / 1024)} KiB free, at least ${MIN_FREE_BYTES / 1024} KiB needed)`, EXIT_CODES.diskFull);
}

const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');

function checkDatabaseHeader(file: string): void {
  if (!existsSync(file)) return;
  const size = statSync(file).size;
  if (size === 0) return; // SQLite treats an empty file as a new database.
  const head = Buffer.alloc(16);
  const fd = openSync(file, 'r');
  try {
    readSync(fd, head, 0, 16, 0);
  } finally {
    closeSync(fd);
  }
  if (!head.equals(SQLITE_MAGIC)) throw corrupt(file);
}

const corrupt = (file: string): StartupError =>
  new StartupError(`the database ${file} is not an SQLite database or is damaged; restore a backup (idprov restore FILE) or move it away`, EXIT_CODES.corrupt);

/**
 * Check, creating nothing, that `serve` can start on `cfg`: the ports (CoAP, CoAPS, admin) can be
 * bound, the data directory can be created or written and has room, and an existing database looks
 * like one. @throws StartupError on the first check that fails.
 */
export async function preflight(cfg: Readonly<Config>): Promise<void> {
  await checkUdp('CoAP port (UDP)', cfg.bind, cfg.coapPort, '--coap-port');
  await checkUdp('CoAPS port (UDP)', cfg.bind, cfg.coapsPort, '--coaps-port');
  if (cfg.adminPort !== 0) await tryTcp(cfg.adminBind, cfg.adminPort).catch((e: unknown) => Promise.reject(portError(e, 'admin port (TCP)', cfg.adminBind, cfg.adminPort, '--admin-port')));
  const dir = resolve(cfg.dataDir);
  checkWritable(dir);
  checkDatabaseHeader(join(dir, 'idprov.db'));
}

/**
 * The one-line description of an error met while starting (or running) the server, when it is one an
 * operator can fix; undefined for anything else (a bug: print the stack).
 */
export function describeStartupError(e: unknown, cfg: Readonly<Config>): StartupError | undefined {
  if (e instanceof StartupError) return e;
  const err = e as NodeJS.ErrnoException & { address?: string; port?: number; syscall?: string };
  const dir = resolve(cfg.dataDir);
  const code = errno(e);
  const msg = String(err?.message ?? '');
  if ((code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') && (err.syscall === 'bind' || err.syscall === 'listen')) {
    return portError(e, 'port', err.address ?? cfg.bind, err.port ?? 0, '--coap-port, --coaps-port or --admin-port');
  }
  if (code === 'ENOSPC' || code === 'SQLITE_FULL' || /SQLITE_FULL|database or disk is full/.test(msg)) return new StartupError(`no space left for the data directory ${dir}: ${msg}`, EXIT_CODES.diskFull);
  if (code === 'SQLITE_CORRUPT' || code === 'SQLITE_NOTADB' || /SQLITE_(CORRUPT|NOTADB)/.test(msg)) return corrupt(join(dir, 'idprov.db'));
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS' || code === 'SQLITE_CANTOPEN' || code === 'SQLITE_READONLY' || /SQLITE_(CANTOPEN|READONLY|PERM)/.test(msg))
    return new StartupError(`cannot write the data directory ${dir}: ${msg} (check its owner and mode)`, EXIT_CODES.permission);
  return undefined;
}
