/**
 * Tests of the PostgreSQL store (issue 16) on a private server (test/support/postgres.ts): the shared
 * Store contract (contract.ts), then what is PostgreSQL's own — migrations under concurrent opens,
 * consumption exactly once across stores racing on one database, the event feed's commit order,
 * change notifications, and behaviour while the server is down.
 */
import assert from 'node:assert/strict';
import { PG_MIGRATIONS } from '../../../src/store/postgres/schema.ts';
import { PostgresStore } from '../../../src/store/postgres/store.ts';
import { TestPostgres } from '../../support/postgres.ts';
import { T0, rejectsWith, storeContract, upsertAllow } from '../../support/store-contract.ts';

describe('PostgresStore', function () {
  this.timeout(60_000);
  let server: TestPostgres;
  before(async () => {
    server = await TestPostgres.start();
  });
  after(async () => {
    await server?.stop();
  });

  storeContract('PostgresStore', { open: () => PostgresStore.open(server.createDatabase('contract')) });

  it('consumes each allowlist entry exactly once when two stores on one database race for all of them', async () => {
    const url = server.createDatabase('race');
    const [a, b] = await Promise.all([PostgresStore.open(url), PostgresStore.open(url)]);
    try {
      await a.apply(Array.from({ length: 40 }, (_, i) => upsertAllow(`race-${i}`)));
      const tries = [a, b].flatMap((s, k) =>
        Array.from({ length: 40 }, (_, i) => s.apply([{ kind: 'allow.consume', id: `race-${i}`, at: T0 + k }, { kind: 'event', event: { at: T0, kind: 'won', actor: 'system', deviceId: `race-${i}` } }])),
      );
      const results = await Promise.allSettled(tries);
      const won = results.filter((r) => r.status === 'fulfilled').length;
      assert.equal(won, 40, 'one winner per entry');
      for (const r of results) if (r.status === 'rejected') assert.equal((r.reason as { code: string }).code, 'conflict');
      const events = await b.listEvents(0, 1000);
      assert.deepEqual(events.map((e) => e.deviceId).sort(), Array.from({ length: 40 }, (_, i) => `race-${i}`).sort(), 'the losers wrote nothing');
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('merges an open flag raised by two instances under different ids instead of failing the call it rides with', async () => {
    const url = server.createDatabase('flags');
    const [a, b] = await Promise.all([PostgresStore.open(url), PostgresStore.open(url)]);
    try {
      const flag = { kind: 'many-ids', subject: '192.0.2.1', deviceIds: ['x'], evidence: { ids: '5' }, firstSeen: T0, lastSeen: T0, count: 1 };
      await a.apply([{ kind: 'flag.put', flag: { ...flag, id: 'from-a' } }]);
      await b.apply([{ kind: 'flag.put', flag: { ...flag, id: 'from-b', lastSeen: T0 + 9, count: 4 } }, upsertAllow('rides-along')]);
      assert.ok(await a.getAllow('rides-along'), 'the call carrying the flag committed');
      const open = (await a.listFlags({ status: 'open' })).items;
      assert.deepEqual(open.map((f) => [f.id, f.lastSeen, f.count]), [['from-a', T0 + 9, 4]]);
      await b.apply([{ kind: 'flag.put', flag: { ...flag, id: 'from-a', clearedAt: T0 + 20, clearedBy: 'admin:x', count: 4 } }]);
      assert.equal((await a.getFlag('from-a'))?.clearedBy, 'admin:x', 'a put by id still replaces the row');
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('commits every call when two stores write events and the same flag row at once (no deadlock)', async () => {
    const url = server.createDatabase('deadlock');
    const [a, b] = await Promise.all([PostgresStore.open(url), PostgresStore.open(url)]);
    try {
      const flag = { id: 'shared', kind: 'many-ids', subject: '192.0.2.1', deviceIds: ['x'], evidence: {}, firstSeen: T0, lastSeen: T0, count: 1 };
      const calls = [a, b].flatMap((s, k) =>
        Array.from({ length: 150 }, (_, i) =>
          s.apply(
            (i + k) % 2
              ? [{ kind: 'event', event: { at: T0, kind: 'e', actor: 'system' } }, { kind: 'flag.put', flag: { ...flag, count: i + 1 } }]
              : [{ kind: 'flag.put', flag: { ...flag, count: i + 1 } }, { kind: 'event', event: { at: T0, kind: 'e', actor: 'system' } }],
          ),
        ),
      );
      const results = await Promise.allSettled(calls);
      assert.deepEqual(results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason)), []);
      assert.equal((await a.counts()).events, 300);
      assert.equal(a.stats.retries + b.stats.retries, 0, 'no group had to be re-run');
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('fails a write and a read with unavailable, promptly, while the database is silent, and works again after', async () => {
    const store = await PostgresStore.open(server.createDatabase('silent'), { queryTimeoutMs: 1000, connectTimeoutMs: 1000 });
    try {
      await store.apply([upsertAllow('before')]);
      server.freeze();
      try {
        const t0 = Date.now();
        await rejectsWith(store.apply([upsertAllow('during')]), 'unavailable');
        await rejectsWith(store.loadSubject('before'), 'unavailable');
        assert.ok(Date.now() - t0 < 8000, `both answered within their timeouts (${Date.now() - t0} ms)`);
      } finally {
        server.thaw();
      }
      await store.apply([upsertAllow('after')]);
      assert.ok(await store.getAllow('after'));
      assert.ok(await store.getAllow('before'));
    } finally {
      await store.close();
    }
  });

  it('migrates once when several stores open an empty database at the same time', async () => {
    const url = server.createDatabase('migrate');
    const stores = await Promise.all(Array.from({ length: 4 }, () => PostgresStore.open(url)));
    try {
      assert.deepEqual(stores.map((s) => s.stats.migrationsApplied).sort(), [0, 0, 0, PG_MIGRATIONS.length], 'one store ran every step, the others none');
      const secrets = await Promise.all(stores.map((s) => s.getSetting('nonce.secret')));
      assert.match(secrets[0]!, /^[0-9a-f]{64}$/);
      assert.equal(new Set(secrets).size, 1, 'one nonce secret for all');
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });
});
