/**
 * `idprov` command line: `serve` runs the server; `keys` and `allowlist` work on the data directory
 * directly (safe while the server runs: SQLite WAL, and the server picks up rotated keys); `migrate`
 * copies one store into another (SQLite ⇄ PostgreSQL, docs/scale-out.md).
 */
import { Command, Option } from 'commander';
import { createReadStream, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import { join, resolve } from 'node:path';
import { ConfigError, loadConfig, settingsTable, type Config } from '../config.ts';
import { ProvError, isProvError } from '../errors.ts';
import { AdminAuth } from '../admin/auth.ts';
import { createLogger } from '../log.ts';
import { AllowlistReader } from '../protocol/allowlist.ts';
import { AdminService, ensureTokenKey } from '../service/admin.ts';
import { NONCE_SECRET_PICKUP_S } from '../service/nonce-secret.ts';
import type { Store } from '../store/store.ts';
import { TokenKeyring } from '../tokens/keyring.ts';
import { removePidFile, runningServer, writePidFile } from './pidfile.ts';
import { EXIT_CODES, describeStartupError, preflight } from './startup.ts';
import { VERSION } from '../version.ts';

const nowS = (): number => Math.floor(Date.now() / 1000);
// The server (fastify, sqlite3, discovery …) loads only for the commands that use it: `--help`,
// `--version` and `config` start in a fraction of the time.
const openStore: typeof import('../server.ts').openStore = async (...a) => (await import('../server.ts')).openStore(...a);
const startServer: typeof import('../server.ts').startServer = async (...a) => (await import('../server.ts')).startServer(...a);
const importAllowlistFile: typeof import('../server.ts').importAllowlistFile = async (...a) => (await import('../server.ts')).importAllowlistFile(...a);
const backupDatabase: typeof import('../store/backup.ts').backupDatabase = async (...a) => (await import('../store/backup.ts')).backupDatabase(...a);
const checkDatabase: typeof import('../store/backup.ts').checkDatabase = async (...a) => (await import('../store/backup.ts')).checkDatabase(...a);
const restoreDatabase: typeof import('../store/backup.ts').restoreDatabase = async (...a) => (await import('../store/backup.ts')).restoreDatabase(...a);
const program = new Command('idprov')
  .description('Provisioning server for constrained IoT devices (CoAP, CWT)')
  .version(VERSION, '-V, --version', 'print the idprov version')
  .showHelpAfterError();

function configFrom(opts: Record<string, unknown>): Readonly<Config> {
  const flags: Partial<Record<keyof Config, unknown>> = {
    dataDir: opts['data'],
    bind: opts['bind'],
    coapPort: opts['coapPort'],
    coapsPort: opts['coapsPort'],
    adminPort: opts['adminPort'],
    allowlist: opts['allowlist'],
    logLevel: opts['logLevel'],
    logFormat: opts['logFormat'],
    store: opts['store'],
    databaseUrl: opts['databaseUrl'],
    mdns: opts['mdns'] === false ? false : undefined,
  };
  lastConfig = loadConfig({ ...(opts['config'] ? { file: String(opts['config']) } : {}), env: process.env, flags });
  return lastConfig;
}
/** The configuration of the command being run, for describing its errors. */
let lastConfig: Readonly<Config> | undefined;

const common = (c: Command): Command =>
  c
    .option('-c, --config <file>', 'JSON config file (see README "Configuration")')
    .option('-d, --data <dir>', 'data directory (default ./data)')
    .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent')
    .option('--log-format <format>', 'auto (pretty on a terminal, else JSON) | json | pretty')
    .option('--store <kind>', 'sqlite (default) or postgres (see docs/scale-out.md)')
    .option('--database-url <url>', 'PostgreSQL URL when --store postgres');

common(program.command('serve').description('run the provisioning server'))
  .option('--coap-port <n>', 'CoAP/UDP port (default 5683)')
  .option('--coaps-port <n>', 'CoAP/DTLS port (default 5684)')
  .option('--admin-port <n>', 'admin sidecar port (default 8445)')
  .option('--bind <addr>', 'bind address for CoAP (default ::)')
  .option('--allowlist <file>', 'import (upsert) this allowlist file at start')
  .addOption(new Option('--no-mdns', 'do not advertise by mDNS'))
  .action(async (opts: Record<string, unknown>) => {
    const cfg = configFrom(opts);
    // Ports bindable, data directory writable with room, database intact: before anything is created.
    await preflight(cfg);
    const log = createLogger(cfg.logLevel, 1, cfg.logFormat);
    const dataDir = resolve(cfg.dataDir);
    // SIGINT/SIGTERM are taken from before the start: one that arrives while the server starts (a
    // `systemctl stop` during migrations, a test that stops it the moment it listens) stops it
    // cleanly once it has started, instead of killing it half-way by the default action.
    let server: Awaited<ReturnType<typeof startServer>> | undefined;
    let stopAsked: string | undefined;
    let closing = false;
    const stop = (sig: string) => {
      if (closing) return;
      if (server === undefined) {
        stopAsked ??= sig;
        return;
      }
      closing = true;
      log.info({ sig }, 'shutting down');
      server.close().then(
        () => {
          removePidFile(dataDir);
          log.info('stopped');
          log.flush();
          process.exit(0);
        },
        (e: unknown) => {
          log.error({ err: e }, 'error during shutdown');
          process.exit(1);
        },
      );
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
    const started = await startServer(cfg, log).catch((e: unknown) => {
      log.flush();
      throw e;
    });
    server = started;
    writePidFile(dataDir);
    process.on('SIGHUP', () => {
      log.info({ sig: 'SIGHUP' }, 'reloading token keys and nonce secret');
      void started.reloadKeys();
    });
    if (stopAsked !== undefined) stop(stopAsked);
  });

const keys = program.command('keys').description('token signing keys');
common(keys.command('list').description('list token keys, newest first')).action(async (opts: Record<string, unknown>) => {
  const cfg = configFrom(opts);
  const store = await openStore(cfg, createLogger('warn', 2));
  try {
    const ks = await ensureTokenKey(store, nowS());
    for (const k of ks) {
      const state = k.retiredAt === undefined ? 'current' : `retired ${new Date(k.retiredAt * 1000).toISOString()}`;
      console.log(`${k.kid}  created ${new Date(k.createdAt * 1000).toISOString()}  ${state}`);
    }
  } finally {
    await store.close();
  }
});
common(keys.command('rotate').description('add a new signing key; old keys verify until their tokens expire')).action(async (opts: Record<string, unknown>) => {
  const cfg = configFrom(opts);
  const log = createLogger('warn', 2);
  const store = await openStore(cfg, log);
  try {
    const now = nowS();
    const keyring = new TokenKeyring(await ensureTokenKey(store, now), Math.max(cfg.tokenTtl, cfg.provisionTokenTtl));
    const kid = await new AdminService({ store, keyring, log, now: nowS }).rotateKey({ by: 'cli' });
    console.log(`new signing key ${kid}; a running server switches to it within 10 s (or at once on SIGHUP)`);
  } finally {
    await store.close();
  }
});

const nonceSecret = program.command('nonce-secret').description('the secret server nonces are made with (kept in the database)');
common(
  nonceSecret
    .command('rotate')
    .description('make nonces with a fresh secret; nonces made with the old one stay valid for one nonce lifetime (docs/scale-out.md)'),
).action(async (opts: Record<string, unknown>) => {
  const cfg = configFrom(opts);
  if (cfg.nonceSecret) {
    console.error('idprov: nonceSecret is set in the configuration (IDPROV_NONCE_SECRET), which wins over the database: change it there on every instance instead');
    process.exitCode = 2;
    return;
  }
  const log = createLogger('warn', 2);
  const store = await openStore(cfg, log);
  try {
    const keyring = new TokenKeyring(await ensureTokenKey(store, nowS()), Math.max(cfg.tokenTtl, cfg.provisionTokenTtl));
    const { previousUntil } = await new AdminService({ store, keyring, log, now: nowS }).rotateNonceSecret(cfg.nonceTtl + NONCE_SECRET_PICKUP_S, { by: 'cli' });
    console.log(
      `new nonce secret; running servers switch to it within 10 s (at once on SIGHUP; on PostgreSQL at once on every instance); ` +
        `nonces made with the previous one are accepted until ${new Date(previousUntil * 1000).toISOString()}`,
    );
  } finally {
    await store.close();
  }
});

const allow = program.command('allowlist').description('allowlist files');
common(allow.command('check <file>').description('validate an allowlist file without importing it')).action(async (file: string, opts: Record<string, unknown>) => {
  const cfg = configFrom(opts);
  // Streamed, as the import is: only the row being read is held, whatever the file's size.
  const reader = new AllowlistReader({ now: nowS(), minSecretLength: cfg.minSecretLength });
  let valid = 0;
  const decoder = new StringDecoder('utf8');
  for await (const chunk of createReadStream(file)) {
    if (reader.fatal) break;
    valid += reader.push(decoder.write(chunk as Buffer)).length;
  }
  if (!reader.fatal) valid += reader.push(decoder.end()).length;
  valid += reader.end().length;
  // A structural error leaves the file unread past it: nothing of it counts (as parseAllowlist).
  const r = { entries: { length: reader.fatal ? 0 : valid }, errors: reader.errors, warnings: reader.warnings };
  for (const w of r.warnings) console.error(`warning: line ${w.line}${w.id ? ` (${w.id})` : ''}: ${w.message}`);
  for (const e of r.errors) console.error(`error: line ${e.line}${e.id ? ` (${e.id})` : ''}: ${e.message}`);
  console.log(`${r.entries.length} valid, ${r.errors.length} invalid, ${r.warnings.length} warnings`);
  process.exitCode = r.errors.length ? 1 : 0;
});
common(allow.command('import <file>').description('import (upsert) an allowlist file; all or nothing')).action(async (file: string, opts: Record<string, unknown>) => {
  const cfg = configFrom(opts);
  const log = createLogger('warn', 2);
  const store = await openStore(cfg, log);
  try {
    const n = await importAllowlistFile(store, file, cfg, nowS(), log);
    console.log(`imported ${n} ${n === 1 ? 'entry' : 'entries'}`);
  } finally {
    await store.close();
  }
});

const token = program.command('token').description('admin sidecar bearer tokens');
common(token.command('create').description('mint a bearer token for the admin sidecar'))
  .requiredOption('--role <role>', 'admin (everything) or hub (read devices, keys, events; verify tokens)')
  .option('--name <name>', 'who the token is for (shown in the audit trail)', 'admin')
  .option('--ttl <duration>', 'lifetime: seconds, or with a unit (90d, 12h, 30m); 0 = no expiry', '90d')
  .action(async (opts: Record<string, unknown>) => {
    const cfg = configFrom(opts);
    const role = String(opts['role']);
    if (role !== 'admin' && role !== 'hub') throw new ProvError('malformed', '--role must be admin or hub');
    const ttlS = parseDuration(String(opts['ttl']));
    const store = await openStore(cfg, createLogger('warn', 2));
    try {
      const auth = await AdminAuth.open(store);
      const { token: text, record } = await auth.mintRecord({ name: String(opts['name']), role, ttlS }, nowS(), { by: 'cli' });
      // The token alone on stdout (scripts capture it); its ID, to list or revoke it by, on stderr.
      console.log(text);
      console.error(`token ${record.jti} (${record.role}, ${record.name}) ${record.expiresAt === null ? 'never expires' : `expires ${new Date(record.expiresAt * 1000).toISOString()}`}; revoke with \`idprov token revoke ${record.jti}\``);
    } finally {
      await store.close();
    }
  });
common(token.command('list').description('list the tokens of the token registry (never the token text: it is not kept)'))
  .option('--json', 'one JSON object per token')
  .action(async (opts: Record<string, unknown>) => {
    const cfg = configFrom(opts);
    const store = await openStore(cfg, createLogger('warn', 2));
    try {
      const auth = await AdminAuth.open(store);
      const now = nowS();
      const iso = (t: number | null) => (t === null ? '-' : new Date(t * 1000).toISOString().replace('.000Z', 'Z'));
      const rows: string[][] = [];
      let after: string | undefined;
      do {
        const page = await auth.list({ limit: 1000, ...(after ? { after } : {}) });
        for (const t of page.items) {
          const state = t.revokedAt !== null ? 'revoked' : t.expiresAt !== null && t.expiresAt <= now ? 'expired' : 'valid';
          if (opts['json']) console.log(JSON.stringify({ ...t, state }));
          else rows.push([t.jti, t.role, t.name, state, iso(t.issuedAt), iso(t.expiresAt), t.revokedAt === null ? '' : `${t.revokedBy ?? '?'}${t.revokedReason ? `: ${t.revokedReason}` : ''}`]);
        }
        after = page.next;
      } while (after);
      if (!opts['json']) {
        const head = ['ID', 'ROLE', 'NAME', 'STATE', 'ISSUED', 'EXPIRES', 'REVOKED BY'];
        const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
        for (const r of [head, ...rows]) console.log(r.map((c, i) => c.padEnd(w[i]!)).join('  ').trimEnd());
        console.log(`${rows.length} ${rows.length === 1 ? 'token' : 'tokens'}`);
      }
    } finally {
      await store.close();
    }
  });
common(token.command('revoke').description('revoke a token at once (the running server refuses it from its next request)').argument('<id>', 'the token ID (see `idprov token list`)'))
  .option('--reason <text>', 'why (kept in the registry and the event log)')
  .action(async (id: string, opts: Record<string, unknown>) => {
    const cfg = configFrom(opts);
    const store = await openStore(cfg, createLogger('warn', 2));
    try {
      const auth = await AdminAuth.open(store);
      const t = await auth.revoke(id, typeof opts['reason'] === 'string' ? opts['reason'] : undefined, { by: 'cli' }, nowS());
      console.log(`revoked token ${t.jti} (${t.role}, ${t.name})`);
    } finally {
      await store.close();
    }
  });

program
  .command('migrate')
  .description('copy every record from one store into another, empty one, then verify the copy record by record')
  .requiredOption('--from <store>', 'sqlite:PATH (an idprov.db) or postgres://…')
  .requiredOption('--to <store>', 'sqlite:PATH or postgres://… (must hold no records)')
  .action(async (opts: { from: string; to: string }) => {
    const log = createLogger('warn', 2);
    const from = await openStoreAt(opts.from, log);
    try {
      const to = await openStoreAt(opts.to, log);
      try {
        const { copyStore, verifyCopy } = await import('../store/copy.ts');
        const copied = await copyStore(from, to);
        const diffs = await verifyCopy(from, to);
        if (diffs.length > 0) throw new ProvError('internal', `the copy differs from the source:\n  ${diffs.join('\n  ')}`);
        console.log(JSON.stringify({ copied, verified: true }));
      } finally {
        await to.close();
      }
    } finally {
      await from.close();
    }
  });

/** A store named on the command line: `sqlite:PATH` or a `postgres://` URL. */
async function openStoreAt(spec: string, log: ReturnType<typeof createLogger>): Promise<Store> {
  if (/^postgres(ql)?:\/\//.test(spec)) return (await import('../store/postgres/store.ts')).PostgresStore.open(spec, { log });
  if (spec.startsWith('sqlite:') && spec.length > 'sqlite:'.length) return (await import('../store/sqlite/store.ts')).SqliteStore.open(spec.slice('sqlite:'.length), { log });
  throw new ProvError('malformed', `a store is sqlite:PATH or postgres://…, not "${spec}"`);
}

/** `90d`, `12h`, `30m`, `45s` or plain seconds. */
function parseDuration(s: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(s.trim());
  if (!m) throw new ProvError('malformed', `bad duration "${s}" (use e.g. 3600, 30m, 12h, 90d)`);
  return Number(m[1]) * { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
}

common(program.command('backup <file>').description('write a consistent copy of the database to FILE (safe while the server runs)')).action(
  async (file: string, opts: Record<string, unknown>) => {
    const cfg = configFrom(opts);
    const db = join(resolve(cfg.dataDir), 'idprov.db');
    const r = await backupDatabase(db, file).catch((e: unknown) => Promise.reject(new ProvError('not-found', `backup: ${(e as Error).message}`)));
    console.log(`backed up ${db} to ${file} (${r.pages} pages, schema version ${r.schemaVersion})`);
  },
);
common(program.command('restore <file>').description('replace the database with the backup FILE (the server must be stopped)')).action(
  async (file: string, opts: Record<string, unknown>) => {
    const cfg = configFrom(opts);
    const dir = resolve(cfg.dataDir);
    const pid = runningServer(dir);
    if (pid !== undefined) throw new ProvError('conflict', `restore: a server (pid ${pid}) is using ${dir}; stop it first (systemctl stop idprov)`);
    await checkDatabase(file).catch((e: unknown) => Promise.reject(new ProvError('malformed', `restore: ${(e as Error).message}`)));
    await preflight({ ...cfg, coapPort: 0, coapsPort: 0, adminPort: 0 });
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const r = await restoreDatabase(file, join(dir, 'idprov.db')).catch((e: unknown) => Promise.reject(new ProvError('malformed', `restore: ${(e as Error).message}`)));
    // Open it as the server would: applies newer schema migrations to an older backup.
    const store = await openStore(cfg, createLogger('warn', 2, cfg.logFormat));
    const migrated = store.stats.migrationsApplied;
    await store.close();
    console.log(`restored ${file} into ${join(dir, 'idprov.db')} (${r.pages} ${r.pages === 1 ? 'page' : 'pages'}, schema version ${r.schemaVersion}${migrated ? `, upgraded by ${migrated} ${migrated === 1 ? 'migration' : 'migrations'}` : ''})`);
  },
);

program
  .command('config')
  .description('print the settings table (markdown)')
  .option('--update-readme [file]', 'replace the table between the settings markers of README.md')
  .action((opts: { updateReadme?: string | boolean }) => {
    if (!opts.updateReadme) return console.log(settingsTable());
    const file = typeof opts.updateReadme === 'string' ? opts.updateReadme : 'README.md';
    const text = readFileSync(file, 'utf8');
    const re = /(<!-- settings:start[^>]*-->\n)[\s\S]*?(\n<!-- settings:end -->)/;
    if (!re.test(text)) throw new ProvError('not-found', `${file} has no settings markers`);
    writeFileSync(file, text.replace(re, (_m, a: string, b: string) => `${a}${settingsTable()}${b}`));
    console.log(`updated the settings table in ${file}`);
  });

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof ConfigError || isProvError(e)) {
    // Store errors (code internal) may be a full disk or a damaged file: say so; others say it already.
    const known = isProvError(e) && e.code === 'internal' && lastConfig ? describeStartupError(e, lastConfig) : undefined;
    console.error(`idprov: ${known?.message ?? e.message}`);
    process.exit(known?.exitCode ?? EXIT_CODES.config);
  }
  const known = lastConfig ? describeStartupError(e, lastConfig) : undefined;
  if (known) {
    console.error(`idprov: ${known.message}`);
    process.exit(known.exitCode);
  }
  throw e;
}
