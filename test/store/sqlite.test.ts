/**
 * Tests of the SQLite store: record round trips, group commit, failure isolation, pagination,
 * migrations, file permissions and durability across a SIGKILL.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import sqlite3 from 'sqlite3';
import type {
  AllowEntry,
  DeviceRecord,
  EventRecord,
  PendingRecord,
  Revocation,
  TokenKeyRecord,
} from '../../src/domain.ts';
import { isProvError } from '../../src/errors.ts';
import { MIGRATIONS, SqliteStore } from '../../src/store/sqlite.ts';
import type { Mutation } from '../../src/store/store.ts';

const T0 = 1_700_000_000;

function bytes(...b: number[]): Uint8Array {
  return new Uint8Array(b);
}

function key32(seed: number): Uint8Array {
  return Uint8Array.from({ length: 32 }, (_, i) => (seed * 31 + i) & 0xff);
}

const fullAllow: AllowEntry = {
  id: 'dev-full',
  pk: key32(1),
  mac: bytes(0x24, 0x0a, 0xc4, 0x01, 0x02, 0x03),
  secret: 'ABCD-EFGH-1234',
  type: 1,
  expires: T0 + 86_400,
  createdAt: T0,
  consumedAt: T0 + 10,
};
const minimalAllow: AllowEntry = { id: 'dev-min', mac: bytes(1, 2, 3, 4, 5, 6), type: 0, createdAt: T0 };

const fullDevice: DeviceRecord = {
  id: 'dev-full',
  pk: key32(2),
  mac: bytes(0x24, 0x0a, 0xc4, 0x01, 0x02, 0x03),
  type: 2,
  via: 'allowlist',
  provisionedAt: T0,
  lastSeen: T0 + 5,
  source: '192.0.2.7:5683',
  lastCti: '0011223344556677',
  tokenExp: T0 + 3600,
};
const minimalDevice: DeviceRecord = {
  id: 'dev-min',
  pk: key32(3),
  type: 0,
  via: 'admin',
  provisionedAt: T0,
  lastSeen: T0,
};

const fullPending: PendingRecord = {
  id: 'dev-full',
  pk: key32(4),
  mac: bytes(9, 8, 7, 6, 5, 4),
  type: 0,
  source: '[2001:db8::1]:5684',
  firstSeen: T0,
  lastSeen: T0 + 60,
  count: 7,
  status: 'rejected',
  decidedAt: T0 + 120,
  decidedBy: 'admin:alice',
};
const minimalPending: PendingRecord = {
  id: 'dev-min',
  pk: key32(5),
  type: 0,
  source: '192.0.2.8:5683',
  firstSeen: T0,
  lastSeen: T0,
  count: 1,
  status: 'pending',
};

const fullRevocation: Revocation = { id: 'dev-full', at: T0 + 200, by: 'admin:bob', reason: 'stolen' };
const minimalRevocation: Revocation = { id: 'dev-min', at: T0 + 300, by: 'system' };

const retiredKey: TokenKeyRecord = {
  kid: '0102030405060708',
  publicKey: key32(6),
  privateKey: Uint8Array.from({ length: 48 }, (_, i) => i),
  createdAt: T0,
  retiredAt: T0 + 1000,
};
const currentKey: TokenKeyRecord = {
  kid: '1112131415161718',
  publicKey: key32(7),
  privateKey: Uint8Array.from({ length: 48 }, (_, i) => 255 - i),
  createdAt: T0 + 1000,
};

function allowEntry(id: string, extra: Partial<AllowEntry> = {}): AllowEntry {
  return { id, pk: key32(id.length), type: 0, createdAt: T0, ...extra };
}

function upsertAllow(id: string, extra: Partial<AllowEntry> = {}): Mutation {
  return { kind: 'allow.upsert', entry: allowEntry(id, extra) };
}

/** A mutation that violates a CHECK constraint (client type 7 does not exist). */
function invalidDevice(id: string): Mutation {
  return { kind: 'device.upsert', device: { ...minimalDevice, id, type: 7 as 0 } };
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isProvError(e), `expected a ProvError, got ${String(e)}`);
    assert.equal(e.code, code);
    return true;
  });
}

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

describe('SqliteStore', () => {
  let store: SqliteStore;

  describe('records', () => {
    beforeEach(async () => {
      store = await SqliteStore.open(':memory:');
    });
    afterEach(async () => {
      await store.close();
    });

    it('round-trips an allowlist entry with every optional field and one with none', async () => {
      await store.apply([
        { kind: 'allow.upsert', entry: fullAllow },
        { kind: 'allow.upsert', entry: minimalAllow },
      ]);
      assert.deepEqual(await store.getAllow('dev-full'), fullAllow);
      const min = await store.getAllow('dev-min');
      assert.deepEqual(min, minimalAllow);
      for (const k of ['pk', 'secret', 'expires', 'consumedAt'] as const) assert.ok(!(k in min!), `${k} absent`);
    });

    it('round-trips a device record with every optional field and one with none', async () => {
      await store.apply([
        { kind: 'device.upsert', device: fullDevice },
        { kind: 'device.upsert', device: minimalDevice },
      ]);
      assert.deepEqual(await store.getDevice('dev-full'), fullDevice);
      const min = await store.getDevice('dev-min');
      assert.deepEqual(min, minimalDevice);
      for (const k of ['mac', 'source', 'lastCti', 'tokenExp'] as const) assert.ok(!(k in min!), `${k} absent`);
    });

    it('round-trips a pending request with every optional field and one with none', async () => {
      await store.apply([
        { kind: 'pending.upsert', pending: fullPending },
        { kind: 'pending.upsert', pending: minimalPending },
      ]);
      assert.deepEqual(await store.getPending('dev-full'), fullPending);
      const min = await store.getPending('dev-min');
      assert.deepEqual(min, minimalPending);
      for (const k of ['mac', 'decidedAt', 'decidedBy'] as const) assert.ok(!(k in min!), `${k} absent`);
    });

    it('round-trips a revocation with and without a reason', async () => {
      await store.apply([
        { kind: 'revocation.put', revocation: fullRevocation },
        { kind: 'revocation.put', revocation: minimalRevocation },
      ]);
      assert.deepEqual(await store.getRevocation('dev-full'), fullRevocation);
      const min = await store.getRevocation('dev-min');
      assert.deepEqual(min, minimalRevocation);
      assert.ok(!('reason' in min!));
    });

    it('round-trips token keys with and without a retirement time, newest first', async () => {
      await store.apply([
        { kind: 'key.put', key: retiredKey },
        { kind: 'key.put', key: currentKey },
      ]);
      const keys = await store.listKeys();
      assert.deepEqual(keys, [currentKey, retiredKey]);
      assert.ok(!('retiredAt' in keys[0]));
    });

    it('round-trips a setting and overwrites it on a second put', async () => {
      assert.equal(await store.getSetting('provisioning.enabled'), undefined);
      await store.apply([{ kind: 'setting.put', name: 'provisioning.enabled', value: 'true' }]);
      assert.equal(await store.getSetting('provisioning.enabled'), 'true');
      await store.apply([{ kind: 'setting.put', name: 'provisioning.enabled', value: 'false' }]);
      assert.equal(await store.getSetting('provisioning.enabled'), 'false');
    });

    it('round-trips events with and without optional fields, assigning increasing seqs', async () => {
      const full: EventRecord = {
        at: T0,
        kind: 'provision.approved',
        deviceId: 'dev-full',
        actor: 'device',
        source: '192.0.2.7:5683',
        detail: { via: 'allowlist', n: 3, nested: { ok: true, list: [1, 'two'] } },
      };
      const minimal: EventRecord = { at: T0 + 1, kind: 'admin.settings', actor: 'admin:alice' };
      await store.apply([{ kind: 'event', event: full }]);
      await store.apply([{ kind: 'event', event: { ...minimal, seq: 999 } }]);
      const events = await store.listEvents(0, 10);
      assert.equal(events.length, 2);
      assert.ok(events[0].seq! > 0 && events[1].seq! > events[0].seq!, 'seqs increase');
      assert.notEqual(events[1].seq, 999, 'seq is assigned by the store, not the caller');
      assert.deepEqual(events[0], { ...full, seq: events[0].seq });
      assert.deepEqual(events[1], { ...minimal, seq: events[1].seq });
      for (const k of ['deviceId', 'source', 'detail'] as const) assert.ok(!(k in events[1]), `${k} absent`);
    });

    it('returns byte fields as plain Uint8Arrays equal to what was stored, even from a subarray', async () => {
      const backing = Uint8Array.from({ length: 64 }, (_, i) => i);
      const pk = backing.subarray(16, 48);
      await store.apply([upsertAllow('dev-view', { pk })]);
      const got = await store.getAllow('dev-view');
      assert.equal(Object.getPrototypeOf(got!.pk), Uint8Array.prototype);
      assert.deepEqual(got!.pk, Uint8Array.from({ length: 32 }, (_, i) => i + 16));
    });

    it('loads the allowlist entry, device, pending request and revocation of a subject together', async () => {
      await store.apply([
        { kind: 'allow.upsert', entry: fullAllow },
        { kind: 'device.upsert', device: fullDevice },
        { kind: 'pending.upsert', pending: fullPending },
        { kind: 'revocation.put', revocation: fullRevocation },
        { kind: 'device.upsert', device: minimalDevice },
      ]);
      assert.deepEqual(await store.loadSubject('dev-full'), {
        allow: fullAllow,
        device: fullDevice,
        pending: fullPending,
        revocation: fullRevocation,
      });
      assert.deepEqual(await store.loadSubject('dev-min'), { device: minimalDevice });
      assert.deepEqual(await store.loadSubject('nobody'), {});
    });

    it('replaces the whole row on upsert, dropping optional fields the new record omits', async () => {
      await store.apply([{ kind: 'allow.upsert', entry: fullAllow }]);
      const replacement: AllowEntry = { id: 'dev-full', secret: 'NEW', type: 0, createdAt: T0 + 5 };
      await store.apply([{ kind: 'allow.upsert', entry: replacement }]);
      assert.deepEqual(await store.getAllow('dev-full'), replacement);
    });

    it('deletes records, and deleting a missing record succeeds', async () => {
      await store.apply([
        { kind: 'allow.upsert', entry: fullAllow },
        { kind: 'device.upsert', device: fullDevice },
        { kind: 'pending.upsert', pending: fullPending },
        { kind: 'revocation.put', revocation: fullRevocation },
      ]);
      await store.apply([
        { kind: 'allow.delete', id: 'dev-full' },
        { kind: 'device.delete', id: 'dev-full' },
        { kind: 'pending.delete', id: 'dev-full' },
        { kind: 'revocation.delete', id: 'dev-full' },
        { kind: 'device.delete', id: 'never-existed' },
      ]);
      assert.deepEqual(await store.loadSubject('dev-full'), {});
    });

    it('consumes an allowlist entry once and rejects a second consumption with conflict', async () => {
      await store.apply([upsertAllow('dev-1')]);
      await store.apply([{ kind: 'allow.consume', id: 'dev-1', at: T0 + 7 }]);
      assert.equal((await store.getAllow('dev-1'))!.consumedAt, T0 + 7);
      await rejectsWith(
        store.apply([
          { kind: 'device.upsert', device: { ...minimalDevice, id: 'dev-1' } },
          { kind: 'allow.consume', id: 'dev-1', at: T0 + 8 },
        ]),
        'conflict',
      );
      assert.equal((await store.getAllow('dev-1'))!.consumedAt, T0 + 7);
      assert.equal(await store.getDevice('dev-1'), undefined, 'the rest of the call was rolled back');
    });

    it('rejects consuming a missing allowlist entry with conflict', async () => {
      await rejectsWith(store.apply([{ kind: 'allow.consume', id: 'ghost', at: T0 }]), 'conflict');
    });

    it('rejects an invalid record with internal and applies nothing of its call', async () => {
      await rejectsWith(store.apply([upsertAllow('dev-ok'), invalidDevice('dev-bad')]), 'internal');
      assert.deepEqual(await store.counts(), {
        allowlist: 0,
        devices: 0,
        pending: 0,
        revocations: 0,
        keys: 0,
        events: 0,
        flags: 0,
      });
    });

    it('rejects an allowlist entry that has neither key, MAC nor secret', async () => {
      await rejectsWith(store.apply([{ kind: 'allow.upsert', entry: { id: 'x', type: 0, createdAt: T0 } }]), 'internal');
    });

    it('rejects a fractional time instead of storing it', async () => {
      await rejectsWith(store.apply([upsertAllow('dev-f', { createdAt: T0 + 0.5 })]), 'internal');
    });

    it('counts the rows of every table', async () => {
      await store.apply([
        { kind: 'allow.upsert', entry: fullAllow },
        { kind: 'allow.upsert', entry: minimalAllow },
        { kind: 'device.upsert', device: fullDevice },
        { kind: 'pending.upsert', pending: fullPending },
        { kind: 'revocation.put', revocation: fullRevocation },
        { kind: 'key.put', key: currentKey },
        { kind: 'event', event: { at: T0, kind: 'k', actor: 'system' } },
        { kind: 'event', event: { at: T0, kind: 'k', actor: 'system' } },
      ]);
      assert.deepEqual(await store.counts(), {
        allowlist: 2,
        devices: 1,
        pending: 1,
        revocations: 1,
        keys: 1,
        events: 2,
        flags: 0,
      });
    });

    it('resolves a call without mutations', async () => {
      await store.apply([]);
      assert.equal(store.stats.transactions, 0);
    });
  });

  describe('apply', () => {
    beforeEach(async () => {
      store = await SqliteStore.open(':memory:');
    });
    afterEach(async () => {
      await store.close();
    });

    it('commits 50 concurrent calls in fewer transactions than calls, every call resolving', async () => {
      const before = store.stats.transactions;
      await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          store.apply([upsertAllow(`dev-${i}`), { kind: 'event', event: { at: T0, kind: 'k', actor: 'system', deviceId: `dev-${i}` } }]),
        ),
      );
      const transactions = store.stats.transactions - before;
      assert.ok(transactions < 50, `${transactions} transactions for 50 calls`);
      assert.ok(store.stats.largestGroup > 1);
      const counts = await store.counts();
      assert.equal(counts.allowlist, 50);
      assert.equal(counts.events, 50);
    });

    it('groups calls that arrive while a transaction is in flight into the next one', async () => {
      const first = store.apply([upsertAllow('dev-first')]);
      await new Promise((r) => setImmediate(r)); // the first group has started
      const later = Array.from({ length: 20 }, (_, i) => store.apply([upsertAllow(`dev-later-${i}`)]));
      await Promise.all([first, ...later]);
      assert.ok(store.stats.transactions <= 3, `${store.stats.transactions} transactions for 21 calls`);
      assert.equal((await store.counts()).allowlist, 21);
    });

    it('rolls back only the failing calls of a group and commits the others', async () => {
      const calls = Array.from({ length: 30 }, (_, i) => {
        if (i === 10) return store.apply([upsertAllow('bad-halfway'), invalidDevice('bad-halfway')]);
        if (i === 20) return store.apply([invalidDevice('bad-first'), upsertAllow('bad-first')]);
        if (i === 25) return store.apply([{ kind: 'allow.consume', id: 'ghost', at: T0 }]);
        return store.apply([upsertAllow(`ok-${i}`), { kind: 'event', event: { at: T0, kind: 'k', actor: 'system' } }]);
      });
      const results = await Promise.allSettled(calls);
      assert.equal(store.stats.largestGroup, 30, 'all calls shared one group');
      assert.equal(store.stats.retries, 1, 'the call that failed half-way forced one re-run with savepoints');
      results.forEach((r, i) => {
        if (i === 10 || i === 20 || i === 25) assert.equal(r.status, 'rejected', `call ${i}`);
        else assert.equal(r.status, 'fulfilled', `call ${i}`);
      });
      const [halfway, first, ghost] = [results[10], results[20], results[25]] as PromiseRejectedResult[];
      assert.equal(halfway.reason.code, 'internal');
      assert.equal(first.reason.code, 'internal');
      assert.equal(ghost.reason.code, 'conflict');
      assert.deepEqual(await store.loadSubject('bad-halfway'), {});
      assert.deepEqual(await store.loadSubject('bad-first'), {});
      const counts = await store.counts();
      assert.equal(counts.allowlist, 27);
      assert.equal(counts.events, 27);
      assert.equal(counts.devices, 0);
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

    it('rolls back a lone call that fails half-way', async () => {
      await rejectsWith(store.apply([upsertAllow('a'), upsertAllow('b'), invalidDevice('c')]), 'internal');
      assert.equal((await store.counts()).allowlist, 0);
      await store.apply([upsertAllow('d')]);
      assert.equal((await store.counts()).allowlist, 1, 'the store keeps working afterwards');
    });

    it('upserts 10,000 allowlist entries in one call, keeping the last of a repeated id', async () => {
      const ms: Mutation[] = [];
      for (let i = 0; i < 10_000; i++) {
        const extra: Partial<AllowEntry> =
          i % 3 === 0
            ? { mac: bytes(1, 2, 3, 4, 5, i & 0xff), secret: `s"e\\c\u00e9\u{1F511}-${i}`, expires: T0 + i, consumedAt: T0 + 1 }
            : { type: (i % 3) as 1 | 2 };
        ms.push(upsertAllow(`bulk-${String(i).padStart(5, '0')}`, extra));
      }
      ms.push(upsertAllow('bulk-00003', { secret: 'last wins', type: 2 }));
      await store.apply(ms);
      assert.equal((await store.counts()).allowlist, 10_000);
      assert.deepEqual(await store.getAllow('bulk-00003'), allowEntry('bulk-00003', { secret: 'last wins', type: 2 }));
      assert.deepEqual(await store.getAllow('bulk-00006'), (ms[6] as { entry: AllowEntry }).entry);
      assert.deepEqual(await store.getAllow('bulk-09998'), (ms[9998] as { entry: AllowEntry }).entry);
    });

    it('rolls back a whole bulk call when one of its entries is invalid', async () => {
      const ms = Array.from({ length: 5000 }, (_, i) => upsertAllow(`bulk-${i}`));
      ms[4321] = { kind: 'allow.upsert', entry: { id: 'no-credential', type: 0, createdAt: T0 } };
      const other = store.apply([upsertAllow('bystander')]);
      await rejectsWith(store.apply(ms), 'internal');
      await other;
      assert.equal((await store.counts()).allowlist, 1);
    });

    it('answers reads interleaved with concurrent writes on a shared in-memory connection', async () => {
      const ops: Promise<unknown>[] = [];
      for (let i = 0; i < 100; i++) {
        ops.push(store.apply([upsertAllow(`dev-${i}`)]));
        ops.push(store.loadSubject(`dev-${i}`));
      }
      await Promise.all(ops);
      for (let i = 0; i < 100; i += 17) assert.ok((await store.loadSubject(`dev-${i}`)).allow);
    });
  });

  describe('lists', () => {
    before(async () => {
      store = await SqliteStore.open(':memory:');
      const ms: Mutation[] = [];
      for (let i = 0; i < 25; i++) {
        const id = `id-${String(i).padStart(2, '0')}`;
        ms.push(upsertAllow(id));
        ms.push({ kind: 'device.upsert', device: { ...minimalDevice, id } });
        ms.push({ kind: 'revocation.put', revocation: { ...minimalRevocation, id } });
        ms.push({
          kind: 'pending.upsert',
          pending: { ...minimalPending, id, status: (['pending', 'approved', 'rejected'] as const)[i % 3] },
        });
      }
      for (let i = 0; i < 1200; i++) ms.push(upsertAllow(`many-${String(i).padStart(4, '0')}`));
      for (let i = 0; i < 30; i++) ms.push({ kind: 'event', event: { at: T0 + i, kind: `k${i}`, actor: 'system' } });
      await store.apply(ms);
    });
    after(async () => {
      await store.close();
    });

    it('pages through the allowlist in id order, setting next only while more remain', async () => {
      const seen: string[] = [];
      let after: string | undefined;
      let pages = 0;
      do {
        const page = await store.listAllow({ after, limit: 10 });
        assert.ok(page.items.length <= 10);
        seen.push(...page.items.map((e) => e.id));
        after = page.next;
        pages++;
      } while (after !== undefined && !after.startsWith('many'));
      assert.deepEqual(seen.slice(0, 25), Array.from({ length: 25 }, (_, i) => `id-${String(i).padStart(2, '0')}`));
      assert.equal(pages, 3);
    });

    it('returns the last page without next', async () => {
      const page = await store.listAllow({ after: 'many-1195', limit: 10 });
      assert.deepEqual(
        page.items.map((e) => e.id),
        ['many-1196', 'many-1197', 'many-1198', 'many-1199'],
      );
      assert.equal(page.next, undefined);
      assert.ok(!('next' in page));
    });

    it('defaults the page size to 100 and caps it at 1000', async () => {
      const def = await store.listAllow();
      assert.equal(def.items.length, 100);
      assert.equal(def.next, def.items[99].id);
      const big = await store.listAllow({ limit: 5000 });
      assert.equal(big.items.length, 1000);
      assert.equal(big.next, big.items[999].id);
    });

    it('pages devices and revocations by id', async () => {
      const d1 = await store.listDevices({ limit: 20 });
      assert.equal(d1.items.length, 20);
      const d2 = await store.listDevices({ after: d1.next, limit: 20 });
      assert.deepEqual(
        d2.items.map((d) => d.id),
        ['id-20', 'id-21', 'id-22', 'id-23', 'id-24'],
      );
      assert.equal(d2.next, undefined);
      const r = await store.listRevocations({ after: 'id-22' });
      assert.deepEqual(
        r.items.map((v) => v.id),
        ['id-23', 'id-24'],
      );
    });

    it('filters pending requests by status, paging within the filter', async () => {
      const all = await store.listPending({ limit: 1000 });
      assert.equal(all.items.length, 25);
      const approved = await store.listPending({ status: 'approved', limit: 3 });
      assert.deepEqual(
        approved.items.map((p) => p.id),
        ['id-01', 'id-04', 'id-07'],
      );
      const rest = await store.listPending({ status: 'approved', after: approved.next });
      assert.ok(rest.items.every((p) => p.status === 'approved'));
      assert.equal(approved.items.length + rest.items.length, 8);
    });

    it('lists events after a seq, oldest first, at most limit of them', async () => {
      const first = await store.listEvents(0, 10);
      assert.deepEqual(
        first.map((e) => e.kind),
        Array.from({ length: 10 }, (_, i) => `k${i}`),
      );
      const next = await store.listEvents(first[9].seq!, 100);
      assert.equal(next.length, 20);
      assert.equal(next[0].kind, 'k10');
      assert.deepEqual(await store.listEvents(next[19].seq!, 10), []);
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

    it('keeps every write it reported committed when its process is killed with SIGKILL', async function () {
      this.timeout(60_000);
      const path = join(dir, 'idprov.db');
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', fileURLToPath(new URL('./durability-child.ts', import.meta.url)), path],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
      const committed: string[] = [];
      for await (const line of createInterface({ input: child.stdout })) {
        if (!line.startsWith('committed ')) continue;
        committed.push(line.slice('committed '.length));
        if (committed.length === 200) {
          child.kill('SIGKILL');
          break;
        }
      }
      assert.equal(await exited, 'SIGKILL');
      assert.equal(committed.length, 200, 'the child reported 200 commits before it was killed');

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
    it('commits calls made before close and rejects calls made after it with internal', async () => {
      const s = await SqliteStore.open(':memory:', { groupCommitMaxDelayMs: 50 });
      const pending = Array.from({ length: 10 }, (_, i) => s.apply([upsertAllow(`dev-${i}`)]));
      const closed = s.close();
      await Promise.all(pending);
      await closed;
      await rejectsWith(s.apply([upsertAllow('late')]), 'internal');
      await rejectsWith(s.loadSubject('dev-1'), 'internal');
      await rejectsWith(s.listAllow(), 'internal');
      await s.close(); // a second close resolves too
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
