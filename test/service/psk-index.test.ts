/**
 * The in-memory DTLS-PSK keys (src/service/psk-index.ts): what it holds after a load, that it follows
 * this process's allowlist writes at once and other writers' after a reload, and that a handshake's
 * lookup reads no store once loaded.
 */
import assert from 'node:assert/strict';
import type { AllowEntry } from '../../src/domain.ts';
import { ObservedStore } from '../../src/service/changes.ts';
import { PskIndex } from '../../src/service/psk-index.ts';
import { MemoryStore } from '../../src/store/memory/store.ts';
import type { Store } from '../../src/store/store.ts';

const NOW = 1_800_000_000;
const entry = (id: string, extra: Partial<AllowEntry> = {}): AllowEntry => ({ id, type: 0, createdAt: NOW - 10, secret: `secret-of-${id}`, ...extra });
const text = (b: Buffer | undefined | Promise<Buffer | undefined>) => {
  assert.ok(!(b instanceof Promise), 'a loaded index answers at once');
  return b?.toString('utf8');
};

/** A store whose reads are counted (and whose allowlist listing can be held at a gate). */
function counting(inner: Store) {
  const counts = { pskOf: 0, listAllow: 0, listPsk: 0, secretsRead: 0 };
  let gate: Promise<void> | undefined;
  const store = new Proxy(inner, {
    get(target, prop, recv) {
      if (prop === 'pskOf') return (id: string) => (counts.pskOf++, target.pskOf(id));
      if (prop === 'listAllow') return (o: Parameters<Store['listAllow']>[0]) => (counts.listAllow++, target.listAllow(o));
      if (prop === 'listPsk')
        return async (o: Parameters<Store['listPsk']>[0]) => {
          counts.listPsk++;
          const page = await target.listPsk(o);
          counts.secretsRead += page.items.length;
          if (gate) await gate;
          return page;
        };
      const v = Reflect.get(target, prop, recv);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  return { store, counts, hold: (p: Promise<void> | undefined) => (gate = p) };
}

describe('PskIndex: the allowlist secrets in memory for DTLS-PSK handshakes', () => {
  let mem: MemoryStore;
  let changes: ObservedStore;
  let c: ReturnType<typeof counting>;
  let index: PskIndex;
  let now = NOW;

  beforeEach(async () => {
    now = NOW;
    mem = await MemoryStore.open();
    await mem.apply([
      { kind: 'allow.upsert', entry: entry('dev-1') },
      { kind: 'allow.upsert', entry: entry('dev-expiring', { expires: NOW + 60 }) },
      { kind: 'allow.upsert', entry: { id: 'dev-key-only', type: 0, createdAt: NOW, pk: new Uint8Array(32).fill(7) } },
    ]);
    c = counting(mem);
    changes = new ObservedStore(c.store);
    index = new PskIndex(changes.store, () => now);
    changes.subscribe(index.onChange);
  });

  it('answers from the store until its first load, then from memory without reading the store', async () => {
    const before = index.lookup('dev-1');
    assert.ok(before instanceof Promise);
    assert.equal((await before)?.toString('utf8'), 'secret-of-dev-1');
    assert.equal(c.counts.pskOf, 1);
    await index.reload();
    assert.ok(index.ready);
    assert.equal(index.size, 2, 'only entries with a secret are held');
    assert.equal(text(index.lookup('dev-1')), 'secret-of-dev-1');
    assert.equal(text(index.lookup('nobody')), undefined);
    assert.equal(text(index.lookup('dev-key-only')), undefined);
    assert.equal(c.counts.pskOf, 1, 'no store read after the load');
    assert.equal(index.stats.storeLookups, 1);
  });

  it('reads only the entries that carry a secret: a key-only fleet costs a reload no records', async () => {
    const before = (await mem.listPsk({ limit: 1000 })).items.length;
    const keyOnly = Array.from({ length: 2500 }, (_, i) => ({ kind: 'allow.upsert' as const, entry: { id: `key-${String(i).padStart(4, '0')}`, type: 0 as const, createdAt: NOW, pk: new Uint8Array(32).fill(i % 251) } }));
    await mem.apply(keyOnly);
    await mem.apply([{ kind: 'allow.upsert', entry: entry('key-9999') }]);
    await index.reload();
    assert.equal(text(index.lookup('key-9999')), 'secret-of-key-9999');
    assert.equal(text(index.lookup('key-0001')), undefined);
    assert.equal(c.counts.listAllow, 0, 'no whole allowlist records read');
    assert.equal(c.counts.secretsRead, before + 1, 'the entries with a secret, none of the 2,500 key-only ones');
    assert.equal(c.counts.listPsk, 1, 'one page');
  });

  it('applies the rule of livePsk: an expired entry yields no key', async () => {
    await index.reload();
    assert.equal(text(index.lookup('dev-expiring')), 'secret-of-dev-expiring');
    now = NOW + 60;
    assert.equal(text(index.lookup('dev-expiring')), undefined);
  });

  it("follows this process's writes as they commit: a replaced secret, a removed entry, a secret dropped", async () => {
    await index.reload();
    const loads = index.stats.loads;
    await changes.store.apply([{ kind: 'allow.upsert', entry: entry('dev-1', { secret: 'replaced' }) }]);
    assert.equal(text(index.lookup('dev-1')), 'replaced');
    await changes.store.apply([{ kind: 'allow.delete', id: 'dev-1' }]);
    assert.equal(text(index.lookup('dev-1')), undefined);
    await changes.store.apply([{ kind: 'allow.upsert', entry: { id: 'dev-expiring', type: 0, createdAt: NOW, pk: new Uint8Array(32).fill(1) } }]);
    assert.equal(text(index.lookup('dev-expiring')), undefined);
    await changes.store.apply([{ kind: 'allow.upsert', entry: entry('dev-new') }]);
    assert.equal(text(index.lookup('dev-new')), 'secret-of-dev-new');
    assert.equal(index.stats.loads, loads, 'no reload needed for changes whose mutations it sees');
  });

  it('reloads after a bulk import, whose entries it never sees as mutations', async () => {
    await index.reload();
    const staged = await changes.store.stageAllow();
    await staged.write([entry('bulk-1'), entry('bulk-2', { secret: 'two' })]);
    await changes.store.bulkUpsertAllow(staged);
    await staged.discard();
    await index.settled();
    assert.equal(index.stats.loads, 2);
    assert.equal(text(index.lookup('bulk-2')), 'two');
  });

  it("reloads after another writer's commit (a shared database's notification, the CLI on the SQLite file)", async () => {
    await index.reload();
    await mem.apply([{ kind: 'allow.delete', id: 'dev-1' }, { kind: 'allow.upsert', entry: entry('elsewhere') }]);
    assert.equal(text(index.lookup('dev-1')), 'secret-of-dev-1', 'not seen yet: the write bypassed this process');
    changes.foreign('unknown');
    await index.settled();
    assert.equal(text(index.lookup('dev-1')), undefined);
    assert.equal(text(index.lookup('elsewhere')), 'secret-of-elsewhere');
    // Kinds that do not touch secrets cause no reload.
    changes.foreign(['allow.consume', 'device.upsert']);
    await index.settled();
    assert.equal(index.stats.loads, 2);
  });

  it('keeps its own changes made while a reload reads the allowlist, and reloads once more for a foreign one', async () => {
    await index.reload();
    let open!: () => void;
    c.hold(new Promise<void>((r) => (open = r)));
    changes.foreign('unknown');
    // The reload has read its page (dev-1 still there) and waits at the gate.
    await new Promise((r) => setImmediate(r));
    await changes.store.apply([{ kind: 'allow.delete', id: 'dev-1' }]);
    await changes.store.apply([{ kind: 'allow.upsert', entry: entry('during') }]);
    changes.foreign('unknown');
    c.hold(undefined);
    open();
    await index.settled();
    assert.equal(text(index.lookup('dev-1')), undefined, 'a delete during the reload is not undone by its older page');
    assert.equal(text(index.lookup('during')), 'secret-of-during');
    assert.equal(index.stats.loads, 3, 'the foreign change during the reload caused one more');
  });

  it('keeps the previous copy when a reload fails, and tries again by itself until one succeeds', async () => {
    let down = true;
    const flaky = new PskIndex(
      { listPsk: (o) => (down ? Promise.reject(new Error('disk gone')) : mem.listPsk(o)), pskOf: (id) => mem.pskOf(id) },
      () => now,
      undefined,
      (again) => setTimeout(again, 20),
    );
    await flaky.reload();
    assert.equal(flaky.ready, false);
    assert.equal((await flaky.lookup('dev-1'))?.toString('utf8'), 'secret-of-dev-1', 'falls back to the store');
    down = false;
    const until = Date.now() + 2000;
    while (!flaky.ready && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    assert.ok(flaky.ready, 'a retry loaded it without any change notification');
    assert.equal(text(flaky.lookup('dev-1')), 'secret-of-dev-1');
    flaky.stop();
  });
});
