/**
 * Tests of the SQLite store: the shared Store contract (contract.ts) on an in-memory and on a file
 * database, then what is SQLite's own — group-commit retries with savepoints, the one-statement
 * fast path, migrations, file permissions, durability across a SIGKILL.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import sqlite3 from 'sqlite3';
import type { PendingRecord } from '../../../src/domain.ts';
import { MIGRATIONS, SqliteStore } from '../../../src/store/sqlite/store.ts';
import type { Mutation } from '../../../src/store/store.ts';
import {
  T0,
  fullDevice,
  invalidDevice,
  minimalDevice,
  minimalPending,
  fullPending,
  fullAllow,
  currentKey,
  rejectsWith,
  storeContract,
  upsertAllow,
} from '../../support/store-contract.ts';

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'idprov-store-'));
}

/** Rows of a query on a separate raw connection (for schema checks the Store does not expose). */
function rawQuery(path: string, sql: string): Promise<Record<string, unknown>[]> {
  return new Promise((resolve, reject) => {
    const db = new sqlite3.Database(path, sqlite3.OPEN_READONLY, (err) => {
      if (err) return reject(err);
      db.all<Record<string, unknown>>(sql, (e, rows) => db.close(() => (e ? reject(e) : resolve(rows))));
    });
  });
}

storeContract('SqliteStore (:memory:)', { open: () => SqliteStore.open(':memory:') });

describe('SqliteStore on a file database', () => {
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  storeContract('SqliteStore (file)', {
    open: () => {
      const d = tempDir();
      dirs.push(d);
      return SqliteStore.open(join(d, 'idprov.db'));
    },
  });
});

describe('SqliteStore', () => {
  let store: SqliteStore;

  describe('apply', () => {
    beforeEach(async () => {
      store = await SqliteStore.open(':memory:');
    });
    afterEach(async () => {
      await store.close();
    });

    // The contract (contract.ts) checks which calls of such a group fail and what is kept; this is how
    // SQLite gets there: a call that fails half-way forces one re-run of its group with savepoints.
    it('re-runs a group once, with savepoints from the call that failed half-way, when one does', async () => {
      const calls = Array.from({ length: 30 }, (_, i) => {
        if (i === 10) return store.apply([upsertAllow('bad-halfway'), invalidDevice('bad-halfway')]);
        if (i === 20) return store.apply([invalidDevice('bad-first'), upsertAllow('bad-first')]);
        return store.apply([upsertAllow(`ok-${i}`), { kind: 'event', event: { at: T0, kind: 'k', actor: 'system' } }]);
      });
      const results = await Promise.allSettled(calls);
      assert.equal(store.stats.largestGroup, 30, 'all calls shared one group');
      assert.equal(store.stats.retries, 1, 'the call that failed half-way forced one re-run with savepoints');
      assert.equal(store.stats.commits, 1, 'and the group still committed once');
      assert.deepEqual(results.map((r) => r.status === 'rejected').map((x, i) => (x ? i : -1)).filter((i) => i >= 0), [10, 20]);
      assert.equal(await store.getAllow('bad-halfway'), undefined, 'the first statement of the half-way call was undone');
      assert.equal((await store.counts()).allowlist, 28);
    });

    describe('one-statement fast path', () => {
      /** What one approval writes: consume the entry, the device row, drop its waiting request, an event. */
      function approval(id: string, i: number): Mutation[] {
        return [
          { kind: 'allow.consume', id, at: T0 + i },
          { kind: 'device.upsert', device: { ...fullDevice, id, lastCti: `cti-${i}`, tokenExp: T0 + 1000 + i } },
          { kind: 'pending.delete', id },
          { kind: 'event', event: { at: T0 + i, kind: 'provision.approved', deviceId: id, actor: 'device', source: '192.0.2.1:5683', detail: { i, note: 'q"\\é' } } },
        ];
      }
      async function seed(n: number): Promise<void> {
        await store.apply([
          ...Array.from({ length: n }, (_, i) => upsertAllow(`fp-${i}`)),
          ...Array.from({ length: n }, (_, i): Mutation => ({ kind: 'pending.upsert', pending: { ...minimalPending, id: `fp-${i}` } })),
        ]);
      }

      it('writes a group of approvals as one statement with the same records and event order as call by call', async () => {
        await seed(12);
        const before = { ...store.stats };
        await Promise.all(Array.from({ length: 12 }, (_, i) => store.apply(approval(`fp-${i}`, i))));
        assert.equal(store.stats.batched - before.batched, 1, 'one fast-path statement');
        assert.equal(store.stats.transactions - before.transactions, 1);
        assert.equal(store.stats.batchFallbacks, before.batchFallbacks);
        for (let i = 0; i < 12; i++) {
          const rec = await store.loadSubject(`fp-${i}`);
          assert.equal(rec.allow?.consumedAt, T0 + i);
          assert.deepEqual(rec.device, { ...fullDevice, id: `fp-${i}`, lastCti: `cti-${i}`, tokenExp: T0 + 1000 + i });
          assert.equal(rec.pending, undefined);
        }
        const events = (await store.listEvents(0, 100)).filter((e) => e.kind === 'provision.approved');
        assert.deepEqual(events.map((e) => e.deviceId), Array.from({ length: 12 }, (_, i) => `fp-${i}`));
        assert.deepEqual(events[3]!.detail, { i: 3, note: 'q"\\é' });
        assert.equal(events[3]!.source, '192.0.2.1:5683');
        assert.equal((await store.counts()).pending, 0);
      });

      it('round-trips devices and waiting requests with every optional field and with none', async () => {
        const before = store.stats.batched;
        await store.apply([
          { kind: 'device.upsert', device: fullDevice },
          { kind: 'device.upsert', device: minimalDevice },
          { kind: 'pending.upsert', pending: fullPending },
          { kind: 'pending.upsert', pending: minimalPending },
        ]);
        assert.equal(store.stats.batched - before, 1);
        assert.deepEqual(await store.getDevice('dev-full'), fullDevice);
        assert.deepEqual(await store.getDevice('dev-min'), minimalDevice);
        assert.deepEqual(await store.getPending('dev-full'), fullPending);
        assert.deepEqual(await store.getPending('dev-min'), minimalPending);
      });

      it('falls back when one consume conflicts: that call fails with conflict, writing nothing, the others commit', async () => {
        await seed(6);
        await store.apply([{ kind: 'allow.consume', id: 'fp-3', at: T0 }]); // spent before the group
        const before = { ...store.stats };
        const results = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => store.apply(approval(`fp-${i}`, i))));
        assert.equal(store.stats.batchFallbacks - before.batchFallbacks, 1);
        assert.equal(store.stats.batched, before.batched);
        results.forEach((r, i) => assert.equal(r.status, i === 3 ? 'rejected' : 'fulfilled', `call ${i}`));
        assert.equal(((results[3] as PromiseRejectedResult).reason as { code: string }).code, 'conflict');
        const spent = await store.loadSubject('fp-3');
        assert.equal(spent.device, undefined, 'the failed call wrote no device');
        assert.equal(spent.allow?.consumedAt, T0, 'the earlier consumption stands');
        assert.ok(spent.pending, 'its waiting request stays');
        for (const i of [0, 1, 2, 4, 5]) assert.ok((await store.loadSubject(`fp-${i}`)).device, `device fp-${i}`);
        assert.equal((await store.listEvents(0, 100)).filter((e) => e.kind === 'provision.approved').length, 5);
      });

      it('falls back when a record breaks a CHECK: that call fails with internal, the others commit', async () => {
        await seed(4);
        const before = store.stats.batchFallbacks;
        const results = await Promise.allSettled([
          store.apply(approval('fp-0', 0)),
          store.apply([{ kind: 'event', event: { at: T0, kind: 'x', actor: 'system' } }, invalidDevice('fp-1')]),
          store.apply(approval('fp-2', 2)),
        ]);
        assert.equal(store.stats.batchFallbacks - before, 1);
        assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
        assert.equal(((results[1] as PromiseRejectedResult).reason as { code: string }).code, 'internal');
        assert.equal((await store.loadSubject('fp-1')).device, undefined);
        assert.equal((await store.listEvents(0, 100)).filter((e) => e.kind === 'x').length, 0, 'nothing of the failed call');
      });

      it('keeps call order through the general path when two calls of a group touch the same row', async () => {
        const before = store.stats.batched;
        await Promise.all([
          store.apply([{ kind: 'pending.upsert', pending: { ...minimalPending, id: 'same', count: 1 } }]),
          store.apply([{ kind: 'pending.delete', id: 'same' }]),
          store.apply([{ kind: 'pending.upsert', pending: { ...minimalPending, id: 'same', count: 3 } }]),
          store.apply([{ kind: 'device.upsert', device: { ...minimalDevice, id: 'twice', lastSeen: T0 + 1 } }]),
          store.apply([{ kind: 'device.upsert', device: { ...minimalDevice, id: 'twice', lastSeen: T0 + 2 } }]),
        ]);
        assert.equal(store.stats.batched, before, 'not batched');
        assert.equal((await store.getPending('same'))?.count, 3);
        assert.equal((await store.getDevice('twice'))?.lastSeen, T0 + 2);
      });

      it('pending.seen sets when, how often and from where only, keeps the status, and ignores a missing request (both paths)', async () => {
        const approved: PendingRecord = { ...fullPending, id: 'seen-a', status: 'approved' };
        await store.apply([{ kind: 'pending.upsert', pending: approved }]);
        const seen = (id: string, n: number): Mutation => ({ kind: 'pending.seen', id, lastSeen: T0 + 1000 + n, count: 40 + n, source: `198.51.100.${n}:5683` });
        const before = store.stats.batched;
        await store.apply([seen('seen-a', 1), seen('seen-missing', 2)]);
        assert.equal(store.stats.batched - before, 1, 'batched');
        assert.deepEqual(await store.getPending('seen-a'), { ...approved, lastSeen: T0 + 1001, count: 41, source: '198.51.100.1:5683' });
        assert.equal(await store.getPending('seen-missing'), undefined);
        // The general path (with a mutation the fast path does not take), same result.
        await store.apply([seen('seen-a', 3), upsertAllow('seen-general')]);
        assert.equal(store.stats.batched - before, 1, 'not batched');
        assert.deepEqual(await store.getPending('seen-a'), { ...approved, lastSeen: T0 + 1003, count: 43, source: '198.51.100.3:5683' });
      });

      it('writes statement by statement when opened with groupStatement: false, with the same result', async () => {
        const plain = await SqliteStore.open(':memory:', { groupStatement: false });
        try {
          await plain.apply([upsertAllow('gs-1'), { kind: 'pending.upsert', pending: { ...minimalPending, id: 'gs-1' } }]);
          await Promise.all([plain.apply(approval('gs-1', 1)), plain.apply([{ kind: 'device.upsert', device: minimalDevice }])]);
          assert.equal(plain.stats.batched, 0);
          const rec = await plain.loadSubject('gs-1');
          assert.equal(rec.allow?.consumedAt, T0 + 1);
          assert.equal(rec.pending, undefined);
          assert.equal(rec.device?.lastCti, 'cti-1');
          assert.deepEqual(await plain.getDevice('dev-min'), minimalDevice);
        } finally {
          await plain.close();
        }
      });

      it('takes the general path for other mutation kinds', async () => {
        const before = store.stats.batched;
        await store.apply([upsertAllow('other'), { kind: 'event', event: { at: T0, kind: 'k', actor: 'system' } }]);
        assert.equal(store.stats.batched, before);
        assert.ok(await store.getAllow('other'));
      });
    });

  });

  describe('on disk', () => {
    let dir: string;
    beforeEach(() => {
      dir = tempDir();
    });
    afterEach(() => {
      rmSync(dir, { recursive: true, force: true });
    });

    it('creates the parent directory and makes the database files readable by the owner only', async () => {
      const path = join(dir, 'nested', 'deeper', 'idprov.db');
      const s = await SqliteStore.open(path);
      try {
        await s.apply([upsertAllow('dev-1')]);
        assert.equal(statSync(path).mode & 0o777, 0o600);
        for (const suffix of ['-wal', '-shm']) {
          if (existsSync(path + suffix)) assert.equal(statSync(path + suffix).mode & 0o777, 0o600, suffix);
        }
        assert.equal(statSync(join(dir, 'nested')).mode & 0o077, 0, 'new directories are private');
      } finally {
        await s.close();
      }
    });

    it('rejects with internal when the database cannot be created', async () => {
      const blocker = join(dir, 'a-file');
      await (await SqliteStore.open(blocker)).close();
      await rejectsWith(SqliteStore.open(join(blocker, 'db')), 'internal');
    });

    it('runs in WAL mode with synchronous=FULL, foreign keys and a busy timeout', async () => {
      const s = await SqliteStore.open(join(dir, 'db'));
      try {
        const d = await s.diagnostics();
        assert.equal(d.journalMode, 'wal');
        assert.equal(d.synchronous, 'full');
        assert.equal(d.foreignKeys, true);
        assert.ok(d.busyTimeoutMs > 0);
        assert.equal(d.schemaVersion, MIGRATIONS.length);
      } finally {
        await s.close();
      }
    });

    it('keeps the data and applies only new migrations when reopened', async () => {
      const path = join(dir, 'idprov.db');
      const first = await SqliteStore.open(path);
      assert.equal(first.stats.migrationsApplied, MIGRATIONS.length);
      await first.apply([{ kind: 'allow.upsert', entry: fullAllow }, { kind: 'key.put', key: currentKey }]);
      await first.close();
      const before = await rawQuery(path, 'SELECT version, applied_at FROM schema_migrations ORDER BY version');
      assert.equal(before.length, MIGRATIONS.length);

      const second = await SqliteStore.open(path);
      assert.equal(second.stats.migrationsApplied, 0);
      assert.deepEqual(await second.getAllow('dev-full'), fullAllow);
      assert.deepEqual(await second.listKeys(), [currentKey]);
      await second.close();
      assert.deepEqual(await rawQuery(path, 'SELECT version, applied_at FROM schema_migrations ORDER BY version'), before);

      const extended = [...MIGRATIONS, 'CREATE TABLE migration_probe (x INTEGER) STRICT'];
      const third = await SqliteStore.open(path, { migrations: extended });
      assert.equal(third.stats.migrationsApplied, 1);
      assert.deepEqual(await third.getAllow('dev-full'), fullAllow);
      await third.close();
      const versions = await rawQuery(path, 'SELECT version FROM schema_migrations ORDER BY version');
      assert.deepEqual(
        versions.map((r) => r.version),
        extended.map((_, i) => i + 1),
      );
      assert.equal((await rawQuery(path, "SELECT name FROM sqlite_master WHERE name = 'migration_probe'")).length, 1);
    });

    it('refuses to open a database written by a newer schema', async () => {
      const path = join(dir, 'idprov.db');
      await (await SqliteStore.open(path, { migrations: [...MIGRATIONS, 'CREATE TABLE future (x INTEGER)'] })).close();
      await rejectsWith(SqliteStore.open(path), 'internal');
    });

    it('rolls back a migration that fails and records nothing of it', async () => {
      const path = join(dir, 'idprov.db');
      await rejectsWith(
        SqliteStore.open(path, { migrations: [...MIGRATIONS, 'CREATE TABLE half (x INTEGER); SELECT no_such_function()'] }),
        'internal',
      );
      assert.equal((await rawQuery(path, "SELECT name FROM sqlite_master WHERE name = 'half'")).length, 0);
      const s = await SqliteStore.open(path);
      assert.equal(s.stats.migrationsApplied, 0, 'the good migrations had been committed one by one');
      await s.close();
    });

    it('sees a write made after an earlier read of the same row on the same reader connection', async () => {
      const s = await SqliteStore.open(join(dir, 'idprov.db'), { readers: 1 });
      try {
        await s.apply([upsertAllow('dev-1', { type: 0 })]);
        assert.equal((await s.getAllow('dev-1'))!.type, 0);
        assert.equal((await s.loadSubject('dev-1')).allow!.type, 0);
        await s.apply([upsertAllow('dev-1', { type: 2 }), { kind: 'device.upsert', device: { ...minimalDevice, id: 'dev-1' } }]);
        // loadSubject first: a statement left mid-result by the earlier getAllow would pin the old snapshot.
        const subject = await s.loadSubject('dev-1');
        assert.equal(subject.allow!.type, 2);
        assert.ok(subject.device);
        assert.equal((await s.getAllow('dev-1'))!.type, 2);
        assert.ok(await s.getDevice('dev-1'));
      } finally {
        await s.close();
      }
    });

    describe('WAL checkpoints', () => {
      const walBytes = (path: string): number => statSync(`${path}-wal`).size;
      /** `calls` apply calls, `parallel` at a time, each an allowlist row and an event. */
      async function write(s: SqliteStore, from: number, calls: number, parallel = 8): Promise<void> {
        let next = from;
        const worker = async (): Promise<void> => {
          while (next < from + calls) {
            const id = `wal-${next++}`;
            await s.apply([upsertAllow(id, { type: 0, secret: 'x'.repeat(200) }), { kind: 'event', event: { at: T0, kind: 'test.wal', actor: 'system', deviceId: id } }]);
          }
        };
        await Promise.all(Array.from({ length: parallel }, worker));
      }

      it('never checkpoints inside a commit: without checkpointer rounds the WAL grows past SQLite\'s 1,000-page autocheckpoint', async function () {
        this.timeout(60_000);
        const path = join(dir, 'idprov.db');
        // A timer that never fires within the test: only the writer's commits touch the WAL.
        const s = await SqliteStore.open(path, { checkpoint: { everyMs: 3_600_000 } });
        try {
          await write(s, 0, 3000, 1);
          // 1,000 pages of 4 KiB (plus frame headers) is where an autocheckpoint would have restarted it.
          assert.ok(walBytes(path) > 1000 * 4096 * 1.05, `WAL ${walBytes(path)} bytes`);
          assert.equal(s.stats.checkpoints, 0);
        } finally {
          await s.close();
        }
      });

      it('keeps the WAL bounded while writes continue during every checkpoint, and loses nothing', async function () {
        this.timeout(60_000);
        const path = join(dir, 'idprov.db');
        const s = await SqliteStore.open(path, { checkpoint: { everyMs: 3_600_000, restartFrames: 64 } });
        const calls = 4000;
        try {
          // Writers run throughout, so commits land while each checkpoint runs (the case in which
          // a checkpoint from another connection alone never lets the WAL restart).
          let writing = true;
          const writers = write(s, 0, calls).finally(() => (writing = false));
          let rounds = 0;
          while (writing) {
            await s.checkpointRound();
            rounds++;
            // A round with no new commit does no I/O: let the writers run.
            await new Promise((r) => setImmediate(r));
          }
          await writers;
          // The WAL file keeps its high-water mark: 4,000 calls wrote far more than this.
          assert.ok(walBytes(path) < 1000 * 4096, `WAL ${walBytes(path)} bytes after ${rounds} rounds`);
          assert.ok(s.stats.writerCheckpoints >= 2, `restarted ${s.stats.writerCheckpoints} times in ${rounds} rounds`);
          assert.equal((await s.counts()).allowlist, calls);
        } finally {
          await s.close();
        }
        const again = await SqliteStore.open(path);
        try {
          assert.equal((await again.counts()).allowlist, calls);
          assert.equal((await again.counts()).events, calls);
        } finally {
          await again.close();
        }
      });
    });

    /** Runs the durability child, SIGKILLs it once `enough` holds, and returns the ids it reported committed. */
    async function killedWriter(path: string, mode: string, enough: (committed: number, restarts: number) => boolean): Promise<string[]> {
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', fileURLToPath(new URL('../../support/sqlite-durability-child.ts', import.meta.url)), path, mode],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
      const committed: string[] = [];
      let restarts = 0;
      for await (const line of createInterface({ input: child.stdout })) {
        if (line === 'restarted') restarts++;
        else if (line.startsWith('committed ')) committed.push(line.slice('committed '.length));
        if (enough(committed.length, restarts)) {
          child.kill('SIGKILL');
          break;
        }
      }
      assert.equal(await exited, 'SIGKILL');
      assert.ok(enough(committed.length, restarts), `the child reported ${committed.length} commits and ${restarts} WAL restarts before it was killed`);
      return committed;
    }

    it('keeps every write it reported committed when its process is killed with SIGKILL while checkpoints restart the WAL', async function () {
      this.timeout(60_000);
      const path = join(dir, 'idprov.db');
      const committed = await killedWriter(path, 'often', (n, restarts) => n >= 500 && restarts >= 3);
      const s = await SqliteStore.open(path);
      try {
        for (const id of committed) assert.equal((await s.loadSubject(id)).allow?.secret, `s-${id}`, `${id} survived`);
        const counts = await s.counts();
        assert.equal(counts.events, counts.allowlist, 'each call committed whole');
      } finally {
        await s.close();
      }
    });

    it('keeps every write it reported committed when its process is killed with SIGKILL', async function () {
      this.timeout(60_000);
      const path = join(dir, 'idprov.db');
      const committed = await killedWriter(path, 'default', (n) => n === 200);

      const s = await SqliteStore.open(path);
      try {
        for (const id of committed) {
          const subject = await s.loadSubject(id);
          assert.equal(subject.allow?.secret, `s-${id}`, `${id} survived`);
        }
        const counts = await s.counts();
        assert.ok(counts.allowlist >= 200);
        assert.equal(counts.events, counts.allowlist, 'each call committed whole');
      } finally {
        await s.close();
      }
    });
  });

  describe('close', () => {
    // The contract checks close itself; this is the case of a group whose start is still delayed.
    it('starts a group still waiting for its delay at once when closed, and commits it', async () => {
      const s = await SqliteStore.open(':memory:', { groupCommitMaxDelayMs: 60_000 });
      const pending = Array.from({ length: 10 }, (_, i) => s.apply([upsertAllow(`dev-${i}`)]));
      await s.close();
      await Promise.all(pending);
      assert.equal(s.stats.commits, 1);
      await rejectsWith(s.apply([upsertAllow('late')]), 'internal');
    });

    it('closes a file database and leaves it reopenable with its data', async () => {
      const dir = tempDir();
      try {
        const path = join(dir, 'idprov.db');
        const s = await SqliteStore.open(path);
        const writes = Array.from({ length: 20 }, (_, i) => s.apply([upsertAllow(`dev-${i}`)]));
        const reads = Array.from({ length: 20 }, (_, i) => s.loadSubject(`dev-${i}`));
        await s.close();
        await Promise.all([...writes, ...reads]);
        const again = await SqliteStore.open(path);
        assert.equal((await again.counts()).allowlist, 20);
        await again.close();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});
