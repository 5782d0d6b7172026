import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { silentLogger } from '../../src/log.ts';
import { DEFAULTS } from '../../src/config.ts';
import { serviceSettings } from '../../src/service/settings.ts';
import { parseSign1 } from '../../src/protocol/cose.ts';
import { decodeClaims } from '../../src/protocol/cwt.ts';
import { AdminService, ensureTokenKey } from '../../src/service/admin.ts';
import { AllowlistImporter } from '../../src/service/allowlist-import.ts';
import { ProvisioningService, recordPending, type Outcome, type RequestContext, type ServiceSettings } from '../../src/service/provisioning.ts';
import { SqliteStore } from '../../src/store/sqlite/store.ts';
import type { Mutation, Store } from '../../src/store/store.ts';
import { keyFingerprint } from '../../src/tokens/ed25519.ts';
import { TokenKeyring, newTokenKey } from '../../src/tokens/keyring.ts';
import { openSealed } from '../../src/tokens/seal.ts';
import { tempDir } from '../support/temp-dir.ts';
import { TestDevice } from '../support/device.ts';
import { codeOf, maxAgeOf, peer } from '../support/service-rig.ts';

const T0 = 1_800_000_000;
/** The configured defaults (src/config.ts), with a smaller used-once set. */
const SETTINGS: ServiceSettings = { ...serviceSettings(DEFAULTS), maxUsedNonces: 10_000 };

interface Rig {
  store: SqliteStore;
  svc: ProvisioningService;
  admin: AdminService;
  importer: AllowlistImporter;
  keyring: TokenKeyring;
  clock: { ms: number };
  ctx: RequestContext;
  close(): Promise<void>;
}

async function rig(opts: { wrapStore?: (s: Store) => Store } = {}): Promise<Rig> {
  const t = tempDir();
  const store = await SqliteStore.open(join(t.dir, 'db.sqlite'));
  const clock = { ms: T0 * 1000 };
  const keyring = new TokenKeyring(await ensureTokenKey(store, T0), 30 * 86400);
  const s = opts.wrapStore ? opts.wrapStore(store) : store;
  const svc = new ProvisioningService({
    store: s,
    keyring,
    log: silentLogger,
    clock: () => clock.ms,
    random: randomBytes,
    nonceSecret: randomBytes(32),
    settings: SETTINGS,
  });
  const admin = new AdminService({ store: s, keyring, log: silentLogger, now: () => svc.now(), monitor: svc.monitor, switch: svc.switch });
  return {
    store,
    svc,
    admin,
    importer: new AllowlistImporter(s, () => svc.now(), 12),
    keyring,
    clock,
    ctx: { source: peer('127.0.0.1:40000') },
    async close() {
      await store.close();
      t.cleanup();
    },
  };
}

/** Send without a nonce, take the 4.01 challenge, send again with it. */
async function provision(r: Rig, dev: TestDevice, opts: Parameters<TestDevice['request']>[0] = {}): Promise<Outcome> {
  const first = await r.svc.request(dev.request({ ...opts, nonce: undefined }), r.ctx);
  assert.equal(codeOf(first), '4.01');
  assert.equal(first.body.err, 3);
  return r.svc.request(dev.request({ ...opts, nonce: first.body.nonce! }), r.ctx);
}

const allow = (r: Rig, dev: TestDevice, type: 0 | 1 | 2 = 0) =>
  r.importer.importEntries([{ id: dev.id, pk: dev.pk, type, createdAt: T0 }], { actor: { by: 'test' } });

describe('provisioning service end to end on a real SQLite store (docs/spec/idprov-coap-v1.md §3–§5)', () => {
  let r: Rig;
  beforeEach(async () => {
    r = await rig();
  });
  afterEach(async () => {
    await r.close();
  });

  it('answers a request without a nonce with 4.01 and a fresh nonce, then approves an allowlisted key', async () => {
    const dev = new TestDevice('sensor-0001');
    await allow(r, dev);
    const out = await provision(r, dev);
    assert.equal(codeOf(out), '2.01');
    assert.equal(out.body.status, 0);
    assert.equal(out.body.ttl, 3600);
    assert.equal(out.body.exp, T0 + 3600);
    const claims = r.keyring.verify(out.body.token!, T0);
    assert.equal(claims.sub, dev.id);
    assert.deepEqual(Buffer.from(claims.cnf), dev.pk);
    assert.equal(claims.role, undefined);
    assert.equal((await r.store.getAllow(dev.id))?.consumedAt, T0, 'the allowlist entry is consumed');
    const device = await r.store.getDevice(dev.id);
    assert.equal(device?.via, 'allowlist');
    assert.equal(device?.lastCti, Buffer.from(claims.cti).toString('hex'));
  });

  it('refuses a reused nonce and a bad signature with 4.01 and a new nonce', async () => {
    const dev = new TestDevice('sensor-0002');
    await allow(r, dev);
    const c = await r.svc.request(dev.request(), r.ctx);
    assert.equal(codeOf(await r.svc.request(dev.request({ nonce: c.body.nonce! }), r.ctx)), '2.01');
    const again = await r.svc.request(dev.request({ nonce: c.body.nonce! }), r.ctx);
    assert.equal(codeOf(again), '4.01');
    assert.equal(again.body.err, 3);
    assert.ok(again.body.nonce);
    const forger = new TestDevice(dev.id);
    const forged = forger.sign(parseSign1(dev.request({ nonce: again.body.nonce! })).payload);
    const bad = await r.svc.request(forged, r.ctx);
    assert.equal(codeOf(bad), '4.01');
    assert.equal(bad.body.err, 2);
  });

  it('refuses a nonce issued to another device ID and an expired nonce', async () => {
    const a = new TestDevice('dev-a');
    const b = new TestDevice('dev-b');
    const c = await r.svc.request(a.request(), r.ctx);
    assert.equal((await r.svc.request(b.request({ nonce: c.body.nonce! }), r.ctx)).body.err, 3);
    r.clock.ms += 301_000;
    assert.equal((await r.svc.request(a.request({ nonce: c.body.nonce! }), r.ctx)).body.err, 3);
  });

  it('keeps an unknown device pending with 60, 90, 120 s hints until an admin approves the key shown', async () => {
    const dev = new TestDevice('unknown-7');
    const mac = Buffer.from('240ac4000001', 'hex');
    let out = await provision(r, dev, { mac });
    assert.equal(codeOf(out), '2.05');
    assert.equal(out.body.status, 1);
    assert.equal(out.body.retry, 60);
    assert.equal(maxAgeOf(out), 60);
    for (const expected of [90, 120]) {
      r.clock.ms += out.body.retry! * 1000;
      out = await r.svc.request(dev.request({ nonce: out.body.nonce!, mac }), r.ctx);
      assert.equal(out.body.retry, expected, 'the pending nonce is still valid after waiting the hint');
    }
    assert.equal(r.svc.unflushedSightings, 1, 'the repeat polls wait in memory: no write per poll');
    assert.equal((await r.store.getPending(dev.id))?.count, 1, 'the store holds the first request until a flush');
    assert.equal(await r.svc.flushSightings(), 1);
    assert.equal((await r.store.getPending(dev.id))?.count, 3);
    await assert.rejects(r.admin.approve(dev.id, { fingerprint: 'AAAA-BBBB-CCCC' }, { by: 'admin:alice' }), { code: 'conflict' });
    await r.admin.approve(dev.id, { fingerprint: keyFingerprint(dev.pk) }, { by: 'admin:alice' });
    out = await r.svc.request(dev.request({ nonce: out.body.nonce! }), r.ctx);
    assert.equal(codeOf(out), '2.01');
    assert.equal((await r.store.getDevice(dev.id))?.via, 'admin');
    assert.equal(await r.store.getPending(dev.id), undefined);
  });

  it('keeps an admin approval committed while a poll of the same device is in flight', async () => {
    // The poll reads the waiting request (status pending); the admin approves before the poll writes.
    let racing: (() => Promise<void>) | undefined;
    const raced = await rig({
      wrapStore: (inner) =>
        new Proxy(inner, {
          get(target, prop, recv) {
            if (prop !== 'loadSubject') return Reflect.get(target, prop, recv) as unknown;
            return async (id: string) => {
              const rec = await target.loadSubject(id);
              const go = racing;
              racing = undefined;
              if (go) await go();
              return rec;
            };
          },
        }),
    });
    try {
      const dev = new TestDevice('race-1');
      const out = await provision(raced, dev);
      assert.equal(out.body.status, 1);
      racing = () => raced.admin.approve(dev.id, { fingerprint: keyFingerprint(dev.pk) }, { by: 'admin:alice' }).then(() => undefined);
      const poll = await raced.svc.request(dev.request({ nonce: out.body.nonce! }), raced.ctx);
      assert.equal(poll.body.status, 1, 'this poll read the request before the approval');
      assert.equal(racing, undefined, 'the approval ran inside the poll');
      await raced.svc.flushSightings();
      const p = await raced.store.getPending(dev.id);
      assert.equal(p?.status, 'approved', 'the poll did not undo the approval');
      assert.equal(p?.count, 2, 'and still counted');
      const next = await raced.svc.request(dev.request({ nonce: poll.body.nonce! }), raced.ctx);
      assert.equal(codeOf(next), '2.01');
    } finally {
      await raced.close();
    }
  });

  it('writes nothing for a repeat poll, keeps counting in memory, and flushes the sightings in one write', async () => {
    const applied: Mutation[][] = [];
    const counted = await rig({
      wrapStore: (inner) =>
        new Proxy(inner, {
          get(target, prop, recv) {
            if (prop !== 'apply') return Reflect.get(target, prop, recv) as unknown;
            return (muts: readonly Mutation[]) => {
              applied.push([...muts]);
              return target.apply(muts);
            };
          },
        }),
    });
    try {
      const dev = new TestDevice('quiet-1');
      let out = await provision(counted, dev);
      assert.equal(out.body.retry, 60);
      const writes = applied.length;
      for (const expected of [90, 120, 150]) {
        counted.clock.ms += out.body.retry! * 1000;
        out = await counted.svc.request(dev.request({ nonce: out.body.nonce! }), { source: peer('127.0.0.1:41000') });
        assert.equal(out.body.retry, expected, 'the back-off grows from the count kept in memory');
      }
      assert.equal(applied.length, writes, 'no write per repeat poll');
      assert.equal(await counted.svc.flushSightings(), 1);
      assert.deepEqual(applied.at(-1), [{ kind: 'pending.seen', id: dev.id, lastSeen: counted.svc.now(), count: 4, source: '127.0.0.1:41000' }]);
      const p = await counted.store.getPending(dev.id);
      assert.equal(p?.count, 4);
      assert.equal(p?.source, '127.0.0.1:41000');
      assert.equal(await counted.svc.flushSightings(), 0, 'nothing left to write');
      // The approval path still writes before its answer, and the sighting is forgotten with the request.
      out = await counted.svc.request(dev.request({ nonce: out.body.nonce! }), counted.ctx);
      assert.equal(counted.svc.unflushedSightings, 1);
      await counted.admin.approve(dev.id, { fingerprint: keyFingerprint(dev.pk) }, { by: 'admin:alice' });
      out = await counted.svc.request(dev.request({ nonce: out.body.nonce! }), counted.ctx);
      assert.equal(codeOf(out), '2.01');
      assert.equal(counted.svc.unflushedSightings, 0, 'no sighting outlives its request');
      assert.equal(await counted.store.getPending(dev.id), undefined);
    } finally {
      await counted.close();
    }
  });

  it('keeps the sightings for the next flush when a flush fails', async () => {
    let fail = false;
    const flaky = await rig({
      wrapStore: (inner) =>
        new Proxy(inner, {
          get(target, prop, recv) {
            if (prop !== 'apply') return Reflect.get(target, prop, recv) as unknown;
            return (muts: readonly Mutation[]) => (fail ? Promise.reject(new Error('disk full')) : target.apply(muts));
          },
        }),
    });
    try {
      const dev = new TestDevice('flaky-1');
      let out = await provision(flaky, dev);
      out = await flaky.svc.request(dev.request({ nonce: out.body.nonce! }), flaky.ctx);
      assert.equal(out.body.retry, 90);
      fail = true;
      await assert.rejects(flaky.svc.flushSightings(), /disk full/);
      assert.equal(flaky.svc.unflushedSightings, 1, 'kept');
      fail = false;
      assert.equal(await flaky.svc.flushSightings(), 1);
      assert.equal((await flaky.store.getPending(dev.id))?.count, 2);
    } finally {
      await flaky.close();
    }
  });

  it('keeps a device pending and flags it when it asks with another key after approval', async () => {
    const dev = new TestDevice('swap-1');
    const out = await provision(r, dev);
    await r.admin.approve(dev.id, { pkHex: dev.pk.toString('hex') }, { by: 'admin:alice' });
    const impostor = new TestDevice(dev.id);
    assert.equal(codeOf(await r.svc.request(impostor.request({ nonce: out.body.nonce! }), r.ctx)), '2.05');
    const events = await r.store.listEvents(0, 100);
    assert.ok(events.some((e) => e.kind === 'flag.raised' && e.deviceId === dev.id && e.detail?.['kind'] === 'approved-key-changed'));
  });

  it('keeps a rejected device rejected when a pre-approval for it arrives later', async () => {
    const dev = new TestDevice('bad-1');
    await r.admin.reject(dev.id, 'not ours', { by: 'admin:bob' });
    await allow(r, dev);
    const out = await provision(r, dev);
    assert.equal(codeOf(out), '4.03');
    assert.equal(out.body.status, 2);
    assert.equal(out.body.err, 6);
    assert.equal(out.body.retry, 3600);
  });

  it('re-provisions a known device with the same key and refuses another key', async () => {
    const dev = new TestDevice('repro-1');
    await allow(r, dev, 1);
    assert.equal(codeOf(await provision(r, dev)), '2.01');
    const second = await provision(r, dev);
    assert.equal(codeOf(second), '2.01');
    assert.equal(r.keyring.verify(second.body.token!, T0).role, 'service');
    const other = await provision(r, new TestDevice(dev.id));
    assert.equal(codeOf(other), '4.03');
    assert.equal(other.body.err, 4);
  });

  it('requires the MAC and the OOB proof that the entry holds', async () => {
    const dev = new TestDevice('mac-oob-1');
    const mac = Buffer.from('240ac4123456', 'hex');
    await r.importer.importEntries([{ id: dev.id, mac, secret: 'label-code-7Q4K', type: 0, createdAt: T0 }], { actor: { by: 'test' } });
    assert.equal((await provision(r, dev, { mac: Buffer.from('240ac4123457', 'hex'), secret: 'label-code-7Q4K' })).body.err, 5);
    const wrongSecret = await provision(r, dev, { mac, secret: 'label-code-XXXX' });
    assert.equal(codeOf(wrongSecret), '4.01');
    assert.equal(wrongSecret.body.err, 11);
    assert.equal(codeOf(await provision(r, dev, { mac, secret: 'label-code-7Q4K' })), '2.01');
    assert.deepEqual(Buffer.from((await r.store.getDevice(dev.id))!.pk), dev.pk, 'the key from a MAC/secret-only entry is recorded');
  });

  it('sends the nonce for the next POST in a 2.01, valid until the token expires, bound to the address and used once', async () => {
    const dev = new TestDevice('next-nonce-1');
    await allow(r, dev);
    const issued = await provision(r, dev);
    assert.equal(codeOf(issued), '2.01');
    const next = issued.body.nonce!;
    assert.equal(next.length, 24);
    assert.equal(Buffer.from(next).readUInt32BE(0), issued.body.exp, 'its expiry is the token\'s exp');
    r.clock.ms += 1800_000;
    const from = { source: peer('127.0.0.2:40000') };
    const moved = await r.svc.refresh(dev.refresh(issued.body.token!, next), from);
    assert.equal(codeOf(moved), '4.01', 'bound to the address the 2.01 went to');
    const fresh = await r.svc.refresh(dev.refresh(issued.body.token!, next), r.ctx);
    assert.equal(codeOf(fresh), '2.01', 'one round trip');
    const replay = await r.svc.refresh(dev.refresh(issued.body.token!, next), r.ctx);
    assert.equal(codeOf(replay), '4.01', 'used once');
    assert.equal(replay.body.err, 3);
    r.clock.ms += (fresh.body.ttl! / 2) * 1000;
    assert.equal(codeOf(await r.svc.refresh(dev.refresh(fresh.body.token!, fresh.body.nonce!), r.ctx)), '2.01', 'the refresh\'s 2.01 carries the next one');
  });

  it('refreshes a valid token for tokenTtl and refuses expired, foreign-key and revoked tokens', async () => {
    const dev = new TestDevice('refresh-1');
    await allow(r, dev);
    const token = (await provision(r, dev)).body.token!;
    r.clock.ms += 1800_000;
    const ch = await r.svc.refresh(dev.refresh(token), r.ctx);
    assert.equal(codeOf(ch), '4.01');
    const fresh = await r.svc.refresh(dev.refresh(token, ch.body.nonce!), r.ctx);
    assert.equal(codeOf(fresh), '2.01');
    assert.equal(fresh.body.ttl, 30 * 86400);
    assert.equal(fresh.body.exp, T0 + 1800 + 30 * 86400);
    const alien = new TokenKeyring([newTokenKey(T0)], 3600).issue({ ...decodeClaims(parseSign1(token).payload) });
    const ch2 = await r.svc.refresh(dev.refresh(alien), r.ctx);
    assert.equal((await r.svc.refresh(dev.refresh(alien, ch2.body.nonce!), r.ctx)).body.err, 12);
    r.clock.ms += 3600_000;
    const ch3 = await r.svc.refresh(dev.refresh(token), r.ctx);
    assert.equal((await r.svc.refresh(dev.refresh(token, ch3.body.nonce!), r.ctx)).body.err, 8);
    await r.admin.revoke(dev.id, 'lost', { by: 'admin:alice' });
    const ch4 = await r.svc.refresh(dev.refresh(fresh.body.token!), r.ctx);
    const revoked = await r.svc.refresh(dev.refresh(fresh.body.token!, ch4.body.nonce!), r.ctx);
    assert.equal(codeOf(revoked), '4.03');
    assert.equal(revoked.body.err, 7);
    await r.admin.reenable(dev.id, { by: 'admin:alice' });
    const ch5 = await r.svc.refresh(dev.refresh(fresh.body.token!), r.ctx);
    assert.equal(codeOf(await r.svc.refresh(dev.refresh(fresh.body.token!, ch5.body.nonce!), r.ctx)), '2.01');
  });

  it('refuses a refresh signed by a key other than the token cnf key', async () => {
    const dev = new TestDevice('refresh-2');
    await allow(r, dev);
    const token = (await provision(r, dev)).body.token!;
    const thief = new TestDevice(dev.id);
    const ch = await r.svc.refresh(thief.refresh(token), r.ctx);
    const out = await r.svc.refresh(thief.refresh(token, ch.body.nonce!), r.ctx);
    assert.equal(codeOf(out), '4.01');
    assert.equal(out.body.err, 2);
  });

  it('answers 5.03 while provisioning is disabled but keeps refresh working', async () => {
    const dev = new TestDevice('dis-1');
    await allow(r, dev);
    const token = (await provision(r, dev)).body.token!;
    await r.admin.setProvisioning(false, 'maintenance', { by: 'admin:alice' });
    const off = await r.svc.request(new TestDevice('dis-2').request(), r.ctx);
    assert.equal(codeOf(off), '5.03');
    assert.equal(off.body.err, 10);
    assert.equal(off.body.retry, 300);
    const ch = await r.svc.refresh(dev.refresh(token), r.ctx);
    assert.equal(codeOf(await r.svc.refresh(dev.refresh(token, ch.body.nonce!), r.ctx)), '2.01');
    await r.admin.setProvisioning(true, undefined, { by: 'admin:alice' });
    assert.equal(codeOf(await r.svc.request(new TestDevice('dis-2').request(), r.ctx)), '4.01');
  });

  it('seals the token to xk so that only the key holder can open it', async () => {
    const dev = new TestDevice('seal-1');
    await allow(r, dev, 2);
    const out = await provision(r, dev, { seal: true });
    assert.equal(out.body.token, undefined);
    const token = openSealed(out.body.sealed!, dev.box.secretKey);
    assert.ok(token);
    assert.equal(r.keyring.verify(token, T0).role, 'consumer');
    assert.equal(openSealed(out.body.sealed!, new TestDevice('x').box.secretKey), undefined);
  });

  it('keeps a spent pre-approval spent when the same file is imported again, and re-arms it for a new key', async () => {
    const dev = new TestDevice('reimport-1');
    await allow(r, dev);
    assert.equal(codeOf(await provision(r, dev)), '2.01');
    await allow(r, dev);
    assert.equal((await r.store.getAllow(dev.id))?.consumedAt, T0, 'an identical re-import keeps the entry consumed');
    const rekeyed = new TestDevice(dev.id);
    await allow(r, rekeyed);
    assert.equal((await r.store.getAllow(dev.id))?.consumedAt, undefined, 'an entry with a new key is usable again');
    assert.equal(codeOf(await provision(r, rekeyed)), '2.01', 'the admin re-keyed the device through the allowlist');
    assert.equal((await provision(r, dev)).body.err, 4, 'the old key is refused now');
  });

  it('answers malformed envelopes with 4.00 and err 1', async () => {
    for (const junk of [Buffer.alloc(0), Buffer.from('ff', 'hex'), Buffer.from('84404040', 'hex'), Buffer.from('a0', 'hex')]) {
      const out = await r.svc.request(junk, r.ctx);
      assert.equal(codeOf(out), '4.00');
      assert.equal(out.body.err, 1);
      assert.equal(typeof out.body.diag, 'string');
    }
  });
});

describe('durability: a token is only sent after its record is committed', () => {
  it('sends no token and answers 5.00 when the commit fails', async () => {
    let failApprove = false;
    const r = await rig({
      wrapStore: (s) =>
        new Proxy(s, {
          get(target, prop, recv) {
            if (prop === 'apply') {
              return async (m: readonly Mutation[]) => {
                if (failApprove && m.some((x) => x.kind === 'device.upsert')) throw new Error('disk full');
                return target.apply(m);
              };
            }
            const v = Reflect.get(target, prop, recv);
            return typeof v === 'function' ? v.bind(target) : v;
          },
        }),
    });
    try {
      const dev = new TestDevice('dur-1');
      await allow(r, dev);
      failApprove = true;
      const out = await provision(r, dev);
      assert.equal(codeOf(out), '5.00');
      assert.equal(out.body.token, undefined);
      assert.equal(out.body.sealed, undefined);
      assert.equal((await r.store.getAllow(dev.id))?.consumedAt, undefined, 'the entry is not consumed');
      assert.equal(await r.store.getDevice(dev.id), undefined);
    } finally {
      await r.close();
    }
  });
});

describe('recordPending', () => {
  const prev = { id: 'p', pk: new Uint8Array(32).fill(1), type: 0 as const, source: '192.0.2.1:1', firstSeen: T0, lastSeen: T0, count: 1, status: 'pending' as const };
  const next = { ...prev, source: '192.0.2.2:2', lastSeen: T0 + 60, count: 2 };

  it('writes only lastSeen, count and source for a repeat poll that changes nothing else', () => {
    assert.deepEqual(recordPending(prev, next), { kind: 'pending.seen', id: 'p', lastSeen: T0 + 60, count: 2, source: '192.0.2.2:2' });
    const withMac = { ...prev, mac: new Uint8Array([1, 2, 3, 4, 5, 6]) };
    assert.equal(recordPending(withMac, { ...next, mac: new Uint8Array([1, 2, 3, 4, 5, 6]) }).kind, 'pending.seen');
  });

  it('writes the whole request when it is new or its key, type, MAC or status changed', () => {
    assert.equal(recordPending(undefined, next).kind, 'pending.upsert');
    assert.equal(recordPending(prev, { ...next, pk: new Uint8Array(32).fill(2) }).kind, 'pending.upsert');
    assert.equal(recordPending(prev, { ...next, type: 1 }).kind, 'pending.upsert');
    assert.equal(recordPending(prev, { ...next, mac: new Uint8Array([1, 2, 3, 4, 5, 6]) }).kind, 'pending.upsert');
    assert.equal(recordPending({ ...prev, mac: new Uint8Array([1, 2, 3, 4, 5, 6]) }, next).kind, 'pending.upsert');
    assert.equal(recordPending(prev, { ...next, status: 'approved' }).kind, 'pending.upsert');
  });
});
