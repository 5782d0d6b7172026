/**
 * The operator's kit, through the real `idprov` command: one-line errors with their own exit codes
 * (port in use, permission, full disk, corrupt database) that create nothing; logs for people on a
 * terminal and JSON elsewhere; `--version`; `backup` while the server runs and `restore`, then a
 * device provisions from the restored database.
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { join } from 'node:path';
import { EXIT_CODES } from '../../src/cli/startup.ts';
import { tempDir } from '../support/temp-dir.ts';
import { outputUntil, run, serve } from '../support/processes.ts';

const ROOT = new URL('../..', import.meta.url).pathname;
const IDPROV = join(ROOT, 'bin/idprov.js');
const OOB = join(ROOT, 'bin/oob.js');
const SIM = join(ROOT, 'bin/device-sim.js');
const isRoot = process.getuid?.() === 0;
const PORTS = ['--coap-port', '0', '--coaps-port', '0', '--admin-port', '0', '--bind', '127.0.0.1', '--no-mdns'];

const idprov = (args: string[], opts: { uid?: number } = {}) => run(process.execPath, [IDPROV, ...args], { cwd: ROOT, ...opts });

/** The command failed with one line on stderr matching `re` and exit code `code`. */
function assertOneLine(r: ReturnType<typeof run>, code: number, re: RegExp): void {
  assert.equal(r.status, code, `exit code; stderr: ${r.stderr}`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line, not a stack trace: ${r.stderr}`);
  assert.match(lines[0]!, /^idprov: /);
  assert.match(lines[0]!, re);
}

function listenTcp(): Promise<Server & { port: number }> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => resolve(Object.assign(s, { port: (s.address() as { port: number }).port })));
  });
}

describe('the operator\'s kit of idprov serve', function () {
  this.timeout(120_000);
  const t = tempDir();
  // Tests that run a command as nobody must reach their folders (mkdtemp makes them 0700).
  if (isRoot) chmodSync(t.dir, 0o755);
  after(() => t.cleanup());

  describe('one-line errors that create nothing', () => {
    it('says the admin port is in use, exits 3, and does not create the data directory', async () => {
      const busy = await listenTcp();
      try {
        const data = join(t.dir, 'busy-tcp');
        const r = idprov(['serve', '--data', data, ...PORTS.slice(0, 4), '--admin-port', String(busy.port), '--bind', '127.0.0.1', '--no-mdns']);
        assertOneLine(r, EXIT_CODES.port, new RegExp(`admin port \\(TCP\\) 127\\.0\\.0\\.1:${busy.port} is in use.*--admin-port`));
        assert.equal(existsSync(data), false, 'the data directory was not created');
      } finally {
        busy.close();
      }
    });

    it('says the CoAP port is in use when another socket holds it', async () => {
      const sock = createSocket('udp4');
      await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
      try {
        const data = join(t.dir, 'busy-udp');
        const r = idprov(['serve', '--data', data, '--coap-port', String(sock.address().port), '--coaps-port', '0', '--admin-port', '0', '--bind', '127.0.0.1', '--no-mdns']);
        assertOneLine(r, EXIT_CODES.port, /CoAP port \(UDP\) 127\.0\.0\.1:\d+ is in use.*--coap-port/);
        assert.equal(existsSync(data), false);
      } finally {
        sock.close();
      }
    });

    it('says a privileged port is not permitted for an unprivileged user', function () {
      if (!isRoot) this.skip(); // needs a user without CAP_NET_BIND_SERVICE: the test runs one as nobody
      const unprivileged = Number(readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8'));
      if (unprivileged <= 683) this.skip(); // this kernel lets anyone bind port 683
      const r = idprov(['serve', '--data', join(t.dir, 'low-port'), '--coap-port', '683', '--coaps-port', '0', '--admin-port', '0', '--bind', '127.0.0.1', '--no-mdns'], { uid: 65534 });
      assertOneLine(r, EXIT_CODES.port, /binding CoAP port \(UDP\) 127\.0\.0\.1:683 is not permitted/);
    });

    it('says the data directory cannot be created when its parent is not writable, and creates nothing', function () {
      const parent = join(t.dir, 'locked');
      mkdirSync(parent, { mode: 0o755 });
      let opts: { uid?: number } = {};
      if (isRoot) opts = { uid: 65534 }; // root may write anywhere: run as nobody, for whom the folder is read-only
      else chmodSync(parent, 0o555);
      const r = idprov(['serve', '--data', join(parent, 'data'), ...PORTS], opts);
      assertOneLine(r, EXIT_CODES.permission, /cannot create the data directory .*locked\/data: .*locked is not writable by this user/);
      assert.deepEqual(readdirSync(parent), []);
    });

    it('says the database is corrupt when the file is not SQLite, exits 6, and writes nothing next to it', () => {
      const data = join(t.dir, 'garbage');
      mkdirSync(data, { mode: 0o700 });
      writeFileSync(join(data, 'idprov.db'), 'this is not a database, it is a shopping list\n'.repeat(100));
      const r = idprov(['serve', '--data', data, ...PORTS]);
      assertOneLine(r, EXIT_CODES.corrupt, /database .*garbage\/idprov\.db is not an SQLite database or is damaged; restore a backup/);
      assert.deepEqual(readdirSync(data), ['idprov.db']);
    });

    it('says the database is corrupt when SQLite finds its pages damaged', async () => {
      const data = join(t.dir, 'damaged');
      const first = await serve(process.execPath, [IDPROV, 'serve', '--data', data, ...PORTS, '--log-format', 'json']);
      assert.equal(await first.stop(), 0);
      const db = join(data, 'idprov.db');
      const bytes = readFileSync(db);
      bytes.fill(0xa5, 100, 4096); // the schema page after the 100-byte header
      writeFileSync(db, bytes);
      const r = idprov(['serve', '--data', data, ...PORTS]);
      assertOneLine(r, EXIT_CODES.corrupt, /is not an SQLite database or is damaged/);
    });

    it('says there is no space left on a full file system, exits 5, and creates nothing', function () {
      if (!isRoot) this.skip(); // mounting a tiny tmpfs needs root
      const mnt = join(t.dir, 'full');
      mkdirSync(mnt);
      const m = run('mount', ['-t', 'tmpfs', '-o', 'size=512k', 'tmpfs', mnt]);
      if (m.status !== 0) this.skip(); // no mount permission in this container
      try {
        run('dd', ['if=/dev/zero', `of=${join(mnt, 'filler')}`, 'bs=64k']); // until ENOSPC
        const r = idprov(['serve', '--data', join(mnt, 'data'), ...PORTS]);
        assertOneLine(r, EXIT_CODES.diskFull, /no space left for the data directory .*full\/data \(\d+ KiB free/);
        assert.deepEqual(readdirSync(mnt), ['filler']);
      } finally {
        run('umount', [mnt]);
      }
    });
  });

  describe('signals', () => {
    it('stops cleanly (exit 0, "stopped", no pid file) on a SIGTERM that arrives while it is still starting', async () => {
      const data = join(t.dir, 'sigterm-at-start');
      const child = spawn(process.execPath, [IDPROV, 'serve', '--data', data, ...PORTS], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      // The first start creates the DTLS certificate well before it listens: stop it right then.
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no certificate line: ${out}`)), 60_000);
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('created the DTLS certificate')) {
            clearTimeout(timer);
            child.kill('SIGTERM');
            resolve();
          }
        });
      });
      assert.equal(await exited, 0, out);
      assert.match(out, /"msg":"stopped"/);
      assert.ok(!existsSync(join(data, 'idprov.pid')), 'no pid file left behind');
    });
  });

  describe('logs', () => {
    it('are JSON lines when stdout is not a terminal, and text for people with --log-format pretty', async () => {
      const json = await serve(process.execPath, [IDPROV, 'serve', '--data', join(t.dir, 'logs'), ...PORTS]);
      assert.equal(await json.stop(), 0);
      for (const line of json.output().trim().split('\n')) assert.doesNotThrow(() => JSON.parse(line), line);
      const pretty = await outputUntil(process.execPath, [IDPROV, 'serve', '--data', join(t.dir, 'logs'), ...PORTS, '--log-format', 'pretty'], /idprov listening/);
      assert.match(pretty, /^\d\d:\d\d:\d\d\.\d{3} INFO  idprov listening coap=\d+ /m);
      assert.doesNotMatch(pretty, /^\{/m);
    });

    it('are text for people when stdout is a terminal (logFormat auto), and JSON there with IDPROV_LOG_FORMAT=json', async function () {
      if (run('script', ['--version']).status !== 0) this.skip(); // util-linux's script gives the server a pseudo-terminal
      const cmd = `${process.execPath} ${IDPROV} serve --data ${join(t.dir, 'tty')} ${PORTS.join(' ')}`;
      const tty = await outputUntil('script', ['-qec', cmd, '/dev/null'], /idprov listening[^\n]*\n/);
      assert.match(tty, /\d\d:\d\d:\d\d\.\d{3} .*INFO.* idprov listening coap=\d+/);
      assert.doesNotMatch(tty, /"level":/);
      const forced = await outputUntil('script', ['-qec', cmd, '/dev/null'], /idprov listening[^\n]*\n/, { env: { ...process.env, IDPROV_LOG_FORMAT: 'json' } });
      assert.match(forced, /\{"level":30,.*"msg":"idprov listening"\}/);
    });
  });

  it('prints the package version with --version', () => {
    const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    for (const bin of [IDPROV, OOB, SIM]) {
      const r = run(process.execPath, [bin, '--version']);
      assert.equal(r.stdout.trim(), version, bin);
    }
  });

  describe('backup and restore', () => {
    const data = join(t.dir, 'live');
    const backup = join(t.dir, 'idprov-backup.db');
    const key = join(t.dir, 'bk.key');

    it('backs up while the server runs, refuses to restore under a running server, and restores once it stopped', async () => {
      const s = await serve(process.execPath, [IDPROV, 'serve', '--data', data, ...PORTS, '--log-format', 'json']);
      try {
        const kg = run(process.execPath, [SIM, 'keygen', '--key', key, '--json']);
        const { pk } = JSON.parse(kg.stdout) as { pk: string };
        writeFileSync(join(t.dir, 'bk.csv'), `id,pk\nbackup-01,${pk}\n`);
        const imp = run(process.execPath, [OOB, 'import', join(t.dir, 'bk.csv'), '--server', s.admin, '--data', data]);
        assert.equal(imp.status, 0, imp.stderr);

        const b = idprov(['backup', backup, '--data', data]);
        assert.equal(b.status, 0, b.stderr);
        assert.match(b.stdout, /backed up .* \(\d+ pages, schema version \d+\)/);
        assert.equal(statSync(backup).mode & 0o777, 0o600, 'the backup holds keys and secrets: mode 0600');
        assert.notEqual(idprov(['backup', backup, '--data', data]).status, 0, 'a backup never overwrites a file');

        const refused = idprov(['restore', backup, '--data', data]);
        assert.notEqual(refused.status, 0);
        assert.match(refused.stderr, /^idprov: restore: a server \(pid \d+\) is using .*; stop it first/);
      } finally {
        assert.equal(await s.stop(), 0);
      }
      // Lose the database, then restore it.
      const fresh = join(t.dir, 'restored');
      const r = idprov(['restore', backup, '--data', fresh]);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /restored .* into .*restored\/idprov\.db/);
    });

    it('provisions a device from the allowlist the restored database holds', async () => {
      const s = await serve(process.execPath, [IDPROV, 'serve', '--data', join(t.dir, 'restored'), ...PORTS, '--log-format', 'json']);
      try {
        const p = run(process.execPath, [SIM, 'provision', '--server', `coap://127.0.0.1:${s.coap}`, '--id', 'backup-01', '--key', key, '--json']);
        assert.equal(p.status, 0, p.stdout + p.stderr);
        assert.equal((JSON.parse(p.stdout.trim().split('\n').pop()!) as { status: string }).status, 'approved');
      } finally {
        assert.equal(await s.stop(), 0);
      }
    });

    it('refuses to restore a file that is not an idprov database, and leaves the data directory alone', () => {
      const junk = join(t.dir, 'junk.db');
      writeFileSync(junk, 'nope');
      const dir = join(t.dir, 'not-restored');
      const r = idprov(['restore', junk, '--data', dir]);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /^idprov: restore: /);
      assert.equal(existsSync(dir), false);
    });
  });
});
