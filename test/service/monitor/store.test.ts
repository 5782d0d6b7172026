/**
 * The store side of the security monitor (migration 2): the waiting-request counter kept by triggers,
 * the cap and expiry of waiting requests, event pruning, flags and their trim, the MAC index.
 */
import assert from 'node:assert/strict';
import type { FlagRecord, PendingRecord } from '../../../src/domain.ts';
import { SqliteStore } from '../../../src/store/sqlite/store.ts';

const T0 = 1_800_000_000;
const pending = (id: string, lastSeen: number, extra: Partial<PendingRecord> = {}): PendingRecord => ({
  id,
  pk: new Uint8Array(32).fill(1),
  type: 0,
  source: '10.0.0.1:1',
  firstSeen: lastSeen,
  lastSeen,
  count: 1,
  status: 'pending',
  ...extra,
});
const flag = (id: string, extra: Partial<FlagRecord> = {}): FlagRecord => ({
  id,
  kind: 'key-changed',
  subject: id,
  deviceIds: [id],
  evidence: { got: 'aa' },
  firstSeen: T0,
  lastSeen: T0,
  count: 1,
  ...extra,
});

describe('the store for the security monitor', () => {
  let store: SqliteStore;
  beforeEach(async () => {
    store = await SqliteStore.open(':memory:');
  });
  afterEach(async () => {
    await store.close();
  });

  it('counts waiting requests through inserts, updates (upserts), status changes and deletes', async () => {
    await store.apply([{ kind: 'pending.upsert', pending: pending('a', T0) }, { kind: 'pending.upsert', pending: pending('b', T0) }]);
    assert.equal(await store.pendingWaiting(), 2);
    await store.apply([{ kind: 'pending.upsert', pending: pending('a', T0 + 1, { count: 2 }) }]);
    assert.equal(await store.pendingWaiting(), 2, 'a poll updates, it does not add');
    await store.apply([{ kind: 'pending.upsert', pending: pending('a', T0 + 2, { status: 'approved' }) }]);
    assert.equal(await store.pendingWaiting(), 1);
    await store.apply([{ kind: 'pending.upsert', pending: pending('c', T0, { status: 'rejected' }) }, { kind: 'pending.delete', id: 'b' }]);
    assert.equal(await store.pendingWaiting(), 0);
    await store.apply([{ kind: 'pending.delete', id: 'a' }, { kind: 'pending.delete', id: 'c' }]);
    assert.equal(await store.pendingWaiting(), 0);
  });

  it('trims waiting requests to the cap, least recently seen first, keeping the one named and every decision', async () => {
    const muts = [];
    for (let i = 0; i < 10; i++) muts.push({ kind: 'pending.upsert' as const, pending: pending(`p${i}`, T0 + i) });
    muts.push({ kind: 'pending.upsert' as const, pending: pending('old-approved', T0 - 100, { status: 'approved' }) });
    await store.apply(muts);
    const removed = { count: 0 };
    await store.apply([{ kind: 'pending.upsert', pending: pending('new', T0 - 50) }, { kind: 'pending.trim', max: 5, keep: 'new', removed }]);
    assert.equal(removed.count, 6);
    assert.equal(await store.pendingWaiting(), 5);
    const left = (await store.listPending({ limit: 100 })).items.map((p) => p.id).sort();
    assert.deepEqual(left, ['new', 'old-approved', 'p6', 'p7', 'p8', 'p9']);
  });

  it('expires waiting requests last seen before a time, and never decisions', async () => {
    await store.apply([
      { kind: 'pending.upsert', pending: pending('stale', T0) },
      { kind: 'pending.upsert', pending: pending('fresh', T0 + 100) },
      { kind: 'pending.upsert', pending: pending('rejected', T0, { status: 'rejected' }) },
    ]);
    const removed = { count: 0 };
    await store.apply([{ kind: 'pending.expire', before: T0 + 50, removed }]);
    assert.equal(removed.count, 1);
    assert.deepEqual((await store.listPending({ limit: 10 })).items.map((p) => p.id).sort(), ['fresh', 'rejected']);
  });

  it('prunes events by age and by count, oldest first', async () => {
    const muts = [];
    for (let i = 0; i < 20; i++) muts.push({ kind: 'event' as const, event: { at: T0 + i, kind: 'k', actor: 'system' } });
    await store.apply(muts);
    const byAge = { count: 0 };
    await store.apply([{ kind: 'events.prune', before: T0 + 5, max: 1000, limit: 1000, removed: byAge }]);
    assert.equal(byAge.count, 5);
    const byCap = { count: 0 };
    await store.apply([{ kind: 'events.prune', before: 0, max: 10, limit: 1000, removed: byCap }]);
    assert.equal(byCap.count, 5);
    const left = await store.listEvents(0, 100);
    assert.equal(left.length, 10);
    assert.equal(left[0]!.at, T0 + 10);
  });

  it('keeps flags, lists them by status, and trims the oldest cleared ones to the cap', async () => {
    await store.apply([
      { kind: 'flag.put', flag: flag('f1', { clearedAt: T0 + 1, clearedBy: 'admin:x' }) },
      { kind: 'flag.put', flag: flag('f2', { clearedAt: T0 + 2, clearedBy: 'admin:x' }) },
      { kind: 'flag.put', flag: flag('f3') },
      { kind: 'flag.put', flag: flag('f4', { deviceIds: ['f4', 'other'], evidence: { mac: '01' } }) },
    ]);
    assert.deepEqual((await store.listFlags({ status: 'open' })).items.map((f) => f.id), ['f3', 'f4']);
    assert.deepEqual((await store.listFlags({ status: 'cleared' })).items.map((f) => f.id), ['f1', 'f2']);
    assert.deepEqual(await store.getFlag('f4'), flag('f4', { deviceIds: ['f4', 'other'], evidence: { mac: '01' } }));
    await store.apply([{ kind: 'flags.trim', max: 3 }]);
    assert.deepEqual((await store.listFlags()).items.map((f) => f.id), ['f2', 'f3', 'f4']);
    assert.equal((await store.counts()).flags, 3);
  });

  it('refuses a second open flag of one kind and subject, but keeps any number of cleared ones', async () => {
    await store.apply([{ kind: 'flag.put', flag: flag('a', { subject: 's', clearedAt: T0, clearedBy: 'x' }) }, { kind: 'flag.put', flag: flag('b', { subject: 's' }) }]);
    await assert.rejects(store.apply([{ kind: 'flag.put', flag: flag('c', { subject: 's' }) }]), { code: 'conflict' });
  });

  it('finds the other IDs whose device or pending request holds a MAC', async () => {
    const mac = new Uint8Array([2, 0, 0, 0, 0, 1]);
    await store.apply([
      { kind: 'pending.upsert', pending: pending('p', T0, { mac }) },
      { kind: 'device.upsert', device: { id: 'd', pk: new Uint8Array(32), mac, type: 0, via: 'admin', provisionedAt: T0, lastSeen: T0 } },
      { kind: 'pending.upsert', pending: pending('q', T0, { mac: new Uint8Array([2, 0, 0, 0, 0, 2]) }) },
    ]);
    assert.deepEqual((await store.macPeers(mac, 'p', 10)).sort(), ['d']);
    assert.deepEqual((await store.macPeers(mac, 'x', 10)).sort(), ['d', 'p']);
    assert.deepEqual(await store.macPeers(new Uint8Array([9, 9, 9, 9, 9, 9]), 'x', 10), []);
  });
});
