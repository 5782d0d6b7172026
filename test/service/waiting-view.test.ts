import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { PendingRecord } from '../../src/domain.ts';
import { silentLogger } from '../../src/log.ts';
import { AdminService, ensureTokenKey } from '../../src/service/admin.ts';
import { ObservedStore } from '../../src/service/changes.ts';
import { ProvisioningService, type Outcome, type RequestContext } from '../../src/service/provisioning.ts';
import { WaitingView } from '../../src/service/waiting-view.ts';
import { SqliteStore } from '../../src/store/sqlite/store.ts';
import type { Store } from '../../src/store/store.ts';
import { keyFingerprint } from '../../src/tokens/ed25519.ts';
import { TokenKeyring } from '../../src/tokens/keyring.ts';
import { TestDevice } from '../support/device.ts';
import { BASE_SETTINGS, T0, codeOf, peer } from '../support/service-rig.ts';
import { tempDir } from '../support/temp-dir.ts';

const waiting = (id: string, count = 1): PendingRecord => ({
  id,
  pk: new Uint8Array(32).fill(1),
  type: 0,
  source: '127.0.0.1:40000',
  firstSeen: T0,
  lastSeen: T0,
  count,
  status: 'pending',
});

describe('waiting view: what it keeps and what drops it (src/service/waiting-view.ts)', () => {
  it('keeps a waiting request with nothing else on record, and nothing else', () => {
    const v = new WaitingView(10);
    v.learn('a', { pending: waiting('a') }, v.epoch);
    v.learn('b', { pending: waiting('b'), device: { id: 'b', pk: new Uint8Array(32), type: 0, via: 'admin', provisionedAt: T0, lastSeen: T0, source: 'x' } as never }, v.epoch);
    v.learn('c', { pending: { ...waiting('c'), status: 'approved' } }, v.epoch);
    v.learn('d', { pending: waiting('d'), revocation: { id: 'd', at: T0, by: 'admin' } }, v.epoch);
    assert.ok(v.subject('a'));
    assert.equal(v.subject('b'), undefined);
    assert.equal(v.subject('c'), undefined);
    assert.equal(v.subject('d'), undefined);
  });

  it('does not keep what a read that started before a drop showed', () => {
    const v = new WaitingView(10);
    const epoch = v.epoch;
    v.onChange([{ kind: 'pending.delete', id: 'other' }], 1);
    v.learn('a', { pending: waiting('a') }, epoch);
    assert.equal(v.subject('a'), undefined);
    assert.equal(v.fill([waiting('a')], epoch), 0);
  });

  it("drops an entry on this process's commit for its ID, not on its own sightings", () => {
    const v = new WaitingView(10);
    v.learn('a', { pending: waiting('a') }, v.epoch);
    v.learn('b', { pending: waiting('b') }, v.epoch);
    v.onChange([{ kind: 'pending.seen', id: 'a', lastSeen: T0 + 1, count: 2, source: 'x' }, { kind: 'event', event: { at: T0, kind: 'k', deviceId: 'a', actor: 'x' } }], 1);
    assert.ok(v.subject('a'));
    v.onChange([{ kind: 'pending.upsert', pending: { ...waiting('a'), status: 'approved' } }], 2);
    assert.equal(v.subject('a'), undefined);
    assert.ok(v.subject('b'));
    v.onChange([{ kind: 'revocation.put', revocation: { id: 'b', at: T0, by: 'admin' } }], 3);
    assert.equal(v.subject('b'), undefined);
  });

  it('drops everything on a trim or expiry that removed rows, or whose count it is not told', () => {
    const v = new WaitingView(10);
    v.learn('a', { pending: waiting('a') }, v.epoch);
    v.onChange([{ kind: 'pending.trim', max: 5, removed: { count: 0 } }, { kind: 'pending.expire', before: T0, removed: { count: 0 } }], 1);
    assert.ok(v.subject('a'));
    v.onChange([{ kind: 'pending.expire', before: T0, removed: { count: 1 } }], 2);
    assert.equal(v.subject('a'), undefined);
    v.learn('a', { pending: waiting('a') }, v.epoch);
    v.onChange([{ kind: 'pending.trim', max: 5 }], 3);
    assert.equal(v.subject('a'), undefined);
  });

  it("drops everything on a change made elsewhere to a subject table or its sightings, not on other tables'", () => {
    const v = new WaitingView(10);
    v.learn('a', { pending: waiting('a') }, v.epoch);
    v.onChange([], 1, new Set(['nonce.use', 'event', 'flag.put']));
    assert.ok(v.subject('a'));
    v.onChange([], 2, new Set(['allow.upsert']));
    assert.equal(v.subject('a'), undefined);
    v.learn('a', { pending: waiting('a') }, v.epoch);
    v.onChange([], 3, new Set(['pending.seen']));
    assert.equal(v.subject('a'), undefined, "another instance's sightings");
  });

  it('holds at most its bound', () => {
    const v = new WaitingView(2);
    for (const id of ['a', 'b', 'c']) v.learn(id, { pending: waiting(id) }, v.epoch);
    assert.equal(v.size, 2);
    assert.equal(v.fill([waiting('d')], v.epoch), 0);
  });
});

describe('repeat polls answered from the waiting view, on a real SQLite store', () => {
  interface Rig {
    raw: SqliteStore;
    changes: ObservedStore;
    svc: ProvisioningService;
    admin: AdminService;
    reads: { n: number };
    ctx: RequestContext;
    close(): Promise<void>;
  }
  const rigs: Rig[] = [];
  let dbs = 0;
  const temp = tempDir();
  after(() => temp.cleanup());

  async function rig(raw?: SqliteStore): Promise<Rig> {
    const store = raw ?? (await SqliteStore.open(join(temp.dir, `db-${dbs++}.sqlite`)));
    const changes = new ObservedStore(store);
    const reads = { n: 0 };
    const counted: Store = new Proxy(changes.store, {
      get: (t, p, recv) => {
        if (p === 'loadSubject') return (id: string) => (reads.n++, t.loadSubject(id));
        const v = Reflect.get(t, p, recv);
        return typeof v === 'function' ? v.bind(t) : v;
      },
    });
    const keyring = new TokenKeyring(await ensureTokenKey(store, T0), 30 * 86400);
    const svc = new ProvisioningService({ store: counted, keyring, log: silentLogger, clock: () => T0 * 1000, random: randomBytes, nonceSecret: Buffer.alloc(32, 7), settings: BASE_SETTINGS });
    const unwatch = changes.subscribe(svc.onStoreChange);
    const admin = new AdminService({ store: changes.store, keyring, log: silentLogger, now: () => T0, monitor: svc.monitor, switch: svc.switch });
    const r: Rig = { raw: store, changes, svc, admin, reads, ctx: { source: peer('127.0.0.1:40000') }, close: async () => unwatch() };
    rigs.push(r);
    return r;
  }
  afterEach(async () => {
    const stores = new Set(rigs.map((r) => r.raw));
    for (const r of rigs.splice(0)) await r.close();
    for (const s of stores) await s.close();
  });

  /** Poll with the nonce of the last answer (a challenge first); returns the answer. */
  async function poll(r: Rig, dev: TestDevice, nonce?: Uint8Array): Promise<Outcome> {
    if (!nonce) nonce = (await r.svc.request(dev.request({}), r.ctx)).body.nonce!;
    return r.svc.request(dev.request({ nonce }), r.ctx);
  }

  it('answers a repeat poll without a store read, counting it as before', async () => {
    const r = await rig();
    const dev = new TestDevice('wv-0001');
    const first = await poll(r, dev);
    assert.equal(first.kind, 'pending');
    const second = await poll(r, dev, first.body.nonce!);
    assert.equal(second.kind, 'pending');
    const before = r.reads.n;
    const third = await poll(r, dev, second.body.nonce!);
    assert.equal(third.kind, 'pending');
    assert.equal(r.reads.n, before, 'no loadSubject for a repeat poll the view holds');
    assert.ok(third.retry! > second.retry!, 'the count still grows (the retry hint backs off)');
    assert.equal(await r.svc.flushSightings(), 1);
    assert.equal((await r.raw.getPending(dev.id))!.count, 3);
  });

  it("sees this process's approval at the next poll", async () => {
    const r = await rig();
    const dev = new TestDevice('wv-0002');
    const p1 = await poll(r, dev);
    const p2 = await poll(r, dev, p1.body.nonce!);
    await r.admin.approve(dev.id, { fingerprint: keyFingerprint(dev.pk) }, { by: 'admin:alice' });
    const out = await poll(r, dev, p2.body.nonce!);
    assert.equal(codeOf(out), '2.01');
  });

  it("sees another writer's rejection once it is notified (a shared database)", async () => {
    const r = await rig();
    const dev = new TestDevice('wv-0003');
    const p1 = await poll(r, dev);
    const p2 = await poll(r, dev, p1.body.nonce!);
    // Another instance's commit: straight to the database, then its notification.
    const rec = (await r.raw.getPending(dev.id))!;
    await r.raw.apply([{ kind: 'pending.upsert', pending: { ...rec, status: 'rejected', decidedAt: T0, decidedBy: 'admin:bob' } }]);
    r.changes.foreign(['pending.upsert', 'event']);
    const out = await poll(r, dev, p2.body.nonce!);
    assert.equal(codeOf(out), '4.03');
  });

  it('fills from the store after a restart, so the first poll needs no read', async () => {
    const r = await rig();
    const dev = new TestDevice('wv-0004');
    const provisioned = new TestDevice('wv-0005');
    const p1 = await poll(r, dev);
    await poll(r, provisioned);
    await r.admin.approve(provisioned.id, { fingerprint: keyFingerprint(provisioned.pk) }, { by: 'admin:alice' });
    await r.svc.flushSightings();
    const again = await rig(r.raw);
    assert.equal(await again.svc.loadWaitingView(), 1, 'the waiting request only (the approved one is not waiting)');
    const out = await poll(again, dev, p1.body.nonce!);
    assert.equal(out.kind, 'pending');
    assert.equal(again.reads.n, 0);
  });

  it('reads the store for a poll that carries a MAC (the duplicate-MAC check)', async () => {
    const r = await rig();
    const dev = new TestDevice('wv-0006');
    const mac = Buffer.from('0a0b0c0d0e0f', 'hex');
    const n1 = (await r.svc.request(dev.request({ mac }), r.ctx)).body.nonce!;
    const p1 = await r.svc.request(dev.request({ mac, nonce: n1 }), r.ctx);
    const before = r.reads.n;
    await r.svc.request(dev.request({ mac, nonce: p1.body.nonce! }), r.ctx);
    assert.equal(r.reads.n, before + 1);
  });
});
