/**
 * A private PostgreSQL server for tests, from Debian's `postgresql` package (`npm run test:setup`
 * installs it): `initdb` into a fresh temporary folder, its own TCP port on 127.0.0.1 and its own
 * unix-socket directory inside that folder, started with `pg_ctl`, stopped and deleted by
 * {@link TestPostgres.stop} — and by an exit hook when a test run ends without calling it (a failed
 * `before`, an uncaught error). Nothing here assumes a PostgreSQL service is installed or running.
 *
 * PostgreSQL refuses to run as root: as root the helper runs every server binary as the `postgres`
 * OS user that the Debian package creates (falling back to `nobody`), and hands it the folder.
 *
 * For the network-namespace tests it can run inside a namespace (`netns`), listen on an address of
 * that namespace (`host`) and admit clients from other subnets (`allowFrom`, pg_hba `trust` lines);
 * `psql` keeps working from anywhere through the unix socket.
 */
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { appendFileSync, chownSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Where Debian puts the binaries of each installed major version: `/usr/lib/postgresql/<ver>/bin`. */
export function postgresBinDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => /^\d+$/.test(v) && existsSync(join(root, v, 'bin', 'pg_ctl')))
    .sort((a, b) => Number(b) - Number(a));
  const [newest] = versions;
  return newest === undefined ? undefined : join(root, newest, 'bin');
}

/** A free TCP port on 127.0.0.1 (bound then released; PostgreSQL binds it a moment later). */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      s.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** The OS user that runs the server when we are root (PostgreSQL will not run as root). */
function serverUser(): { name: string; uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  for (const name of ['postgres', 'nobody']) {
    const r = spawnSync('id', ['-u', name], { encoding: 'utf8' });
    if (r.status === 0) {
      const uid = Number(r.stdout.trim());
      const gid = Number(spawnSync('id', ['-g', name], { encoding: 'utf8' }).stdout.trim());
      return { name, uid, gid };
    }
  }
  throw new Error('running as root and no postgres/nobody user to run PostgreSQL as');
}

const running = new Set<TestPostgres>();
process.on('exit', () => {
  for (const pg of running) pg.stopSync();
});

/** A running private PostgreSQL; see the module comment. */
export class TestPostgres {
  private stopped = false;
  private nextDb = 0;

  private constructor(
    /** The temporary folder holding the cluster (`data/`) and the socket directory (`sock/`). */
    readonly dir: string,
    readonly port: number,
    private readonly bin: string,
    private readonly user: { name: string; uid: number; gid: number } | undefined,
    /** The address it listens on (127.0.0.1 unless `host` was given). */
    readonly host = '127.0.0.1',
    /** The network namespace it runs in, if any. */
    readonly netns?: string,
  ) {}

  /**
   * initdb + pg_ctl start. Rejects (after cleaning up) when the binaries are missing or the server
   * does not start; `skipUnlessAvailable` turns the missing-binaries case into a skip.
   */
  static async start(opts: { settings?: Record<string, string>; netns?: string; host?: string; allowFrom?: string[] } = {}): Promise<TestPostgres> {
    const bin = postgresBinDir();
    if (!bin) throw new Error('PostgreSQL binaries not found under /usr/lib/postgresql/<ver>/bin: run `npm run test:setup`');
    const dir = mkdtempSync(join(tmpdir(), 'idprov-pg-'));
    const user = serverUser();
    const port = await freePort();
    const pg = new TestPostgres(dir, port, bin, user, opts.host ?? '127.0.0.1', opts.netns);
    try {
      const sock = join(dir, 'sock');
      execFileSync('mkdir', ['-p', sock]);
      if (user) {
        chownSync(dir, user.uid, user.gid);
        chownSync(sock, user.uid, user.gid);
      }
      pg.runAs('initdb', ['-D', join(dir, 'data'), '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8', '--locale=C']);
      const settings: Record<string, string> = {
        listen_addresses: `'${pg.host}'`,
        port: String(port),
        unix_socket_directories: `'${sock}'`,
        max_connections: '60',
        shared_buffers: "'32MB'",
        // fsync stays on: the durability tests mean what they say.
        log_min_messages: 'warning',
        ...opts.settings,
      };
      const conf = Object.entries(settings).map(([k, v]) => `${k} = ${v}`).join('\n');
      writeFileSync(join(dir, 'data', 'postgresql.auto.conf'), `${conf}\n`);
      if (user) chownSync(join(dir, 'data', 'postgresql.auto.conf'), user.uid, user.gid);
      if (opts.allowFrom?.length) appendFileSync(join(dir, 'data', 'pg_hba.conf'), opts.allowFrom.map((cidr) => `host all all ${cidr} trust\n`).join(''));
      running.add(pg);
      pg.ctl('start');
      return pg;
    } catch (e) {
      pg.stopSync();
      throw e;
    }
  }

  /** Runs a server binary (as the server user when root); throws with its output when it fails. */
  private runAs(tool: string, args: string[]): string {
    const [file, argv] = this.command(tool, args);
    const r = spawnSync(file, argv, { encoding: 'utf8', cwd: this.dir, timeout: 60_000 });
    if (r.status !== 0) throw new Error(`${tool} ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stdout}${r.stderr}`);
    return r.stdout;
  }

  private ctl(action: 'start' | 'stop', mode = 'fast'): void {
    const data = join(this.dir, 'data');
    if (action === 'start') this.runAs('pg_ctl', ['-D', data, '-l', join(this.dir, 'server.log'), '-w', '-t', '60', 'start']);
    else this.runAs('pg_ctl', ['-D', data, '-m', mode, '-w', '-t', '60', 'stop']);
  }

  /** `postgres://…` of database `db` (default `postgres`) over TCP on its address (127.0.0.1 by default). */
  url(db = 'postgres'): string {
    return `postgres://postgres@${this.host}:${this.port}/${db}`;
  }

  /** Creates a fresh empty database and returns its URL (one per test keeps tests independent). */
  createDatabase(prefix = 'test'): string {
    const name = `${prefix}_${process.pid}_${this.nextDb++}`.replace(/[^a-z0-9_]/gi, '_').toLowerCase();
    this.psql(`CREATE DATABASE ${name}`);
    return this.url(name);
  }

  /** Runs SQL through `psql` on the unix socket (for setup and assertions outside the store). */
  psql(sql: string, db = 'postgres'): string {
    return this.runAs('psql', ['-h', join(this.dir, 'sock'), '-p', String(this.port), '-U', 'postgres', '-d', db, '-v', 'ON_ERROR_STOP=1', '-Atc', sql]).trim();
  }

  /**
   * Stops the server (fast shutdown: clients disconnected, committed data kept) without blocking the
   * event loop, so servers in this process keep answering meanwhile.
   */
  async pause(): Promise<void> {
    await this.ctlAsync(['-D', join(this.dir, 'data'), '-m', 'fast', '-w', '-t', '60', 'stop']);
  }

  /** Starts the server again after {@link pause}, same port and data. */
  async resume(): Promise<void> {
    await this.ctlAsync(['-D', join(this.dir, 'data'), '-l', join(this.dir, 'server.log'), '-w', '-t', '60', 'start']);
  }

  /** argv of a server binary: as the server user when root, inside the namespace when one is set. */
  private command(tool: string, args: string[]): [string, string[]] {
    const cmd = join(this.bin, tool);
    const [file, argv]: [string, string[]] = this.user ? ['runuser', ['-u', this.user.name, '--', cmd, ...args]] : [cmd, args];
    return this.netns ? ['ip', ['netns', 'exec', this.netns, file, ...argv]] : [file, argv];
  }

  private async ctlAsync(args: string[]): Promise<void> {
    const [file, argv] = this.command('pg_ctl', args);
    await promisify(execFile)(file, argv, { cwd: this.dir, timeout: 60_000 });
  }

  /**
   * SIGSTOPs the postmaster and every backend: connections stay open but nothing answers — the
   * database (or the path to it) gone silent, without the RST a shutdown sends. {@link thaw} undoes it.
   */
  freeze(): void {
    for (const pid of this.pids()) process.kill(pid, 'SIGSTOP');
  }

  /** SIGCONTs what {@link freeze} stopped. */
  thaw(): void {
    for (const pid of this.pids()) process.kill(pid, 'SIGCONT');
  }

  private pids(): number[] {
    const pm = Number(readFileSync(join(this.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
    const out = [pm];
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      try {
        if (Number(readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]) === pm) out.push(Number(d));
      } catch {
        // exited meanwhile
      }
    }
    return out;
  }

  /** Stops the server and deletes its folder. */
  async stop(): Promise<void> {
    this.stopSync();
  }

  /** {@link stop}, synchronously (the exit hook cannot wait). Idempotent. */
  stopSync(): void {
    if (this.stopped) return;
    try {
      this.thaw(); // a frozen server would not stop
    } catch {
      // not running
    }
    this.stopped = true;
    running.delete(this);
    try {
      if (existsSync(join(this.dir, 'data', 'postmaster.pid'))) this.ctl('stop', 'immediate');
    } catch {
      // already down
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
