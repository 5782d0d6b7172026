/**
 * The Store contract suite (issue 16): what every implementation of the Store seam must do —
 * record round trips, whole-row upserts, consume-at-most-once, failure isolation inside a group,
 * pagination, the event feed and close — run against SQLite (sqlite.test.ts) and PostgreSQL
 * (postgres.test.ts) alike. Tests of one implementation's internals stay in its own file.
 */
import assert from 'node:assert/strict';
import type {
  AdminTokenRecord,
  AllowEntry,
  DeviceRecord,
  EventRecord,
  PendingRecord,
  Revocation,
  TokenKeyRecord,
} from '../../src/domain.ts';
import { isProvError } from '../../src/errors.ts';
import type { Mutation, Store } from '../../src/store/store.ts';

/** A store under test, with the group-commit counters both implementations keep. */
export type ContractStore = Store & { readonly stats: { readonly transactions: number; readonly largestGroup: number } };

/** How the suite gets a store: each `open()` returns a new, empty one. */
export interface ContractTarget {
  open(): Promise<ContractStore>;
}

export const T0 = 1_700_000_000;

export function bytes(...b: number[]): Uint8Array {
  return new Uint8Array(b);
}

function key32(seed: number): Uint8Array {
  return Uint8Array.from({ length: 32 }, (_, i) => (seed * 31 + i) & 0xff);
}

export const fullAllow: AllowEntry = {
  id: 'dev-full',
  pk: key32(1),
  mac: bytes(0x24, 0x0a, 0xc4, 0x01, 0x02, 0x03),
  secret: 'ABCD-EFGH-1234',
  type: 1,
  expires: T0 + 86_400,
  createdAt: T0,
  consumedAt: T0 + 10,
};
export const minimalAllow: AllowEntry = { id: 'dev-min', mac: bytes(1, 2, 3, 4, 5, 6), type: 0, createdAt: T0 };

export const fullDevice: DeviceRecord = {
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
export const minimalDevice: DeviceRecord = {
  id: 'dev-min',
  pk: key32(3),
  type: 0,
  via: 'admin',
  provisionedAt: T0,
  lastSeen: T0,
};

export const fullPending: PendingRecord = {
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
  decidedReason: 'not one of ours — label does not match',
};
export const minimalPending: PendingRecord = {
  id: 'dev-min',
  pk: key32(5),
  type: 0,
  source: '192.0.2.8:5683',
  firstSeen: T0,
  lastSeen: T0,
  count: 1,
  status: 'pending',
};

export const fullRevocation: Revocation = { id: 'dev-full', at: T0 + 200, by: 'admin:bob', reason: 'stolen' };
export const minimalRevocation: Revocation = { id: 'dev-min', at: T0 + 300, by: 'system' };

export const retiredKey: TokenKeyRecord = {
  kid: '0102030405060708',
  publicKey: key32(6),
  privateKey: Uint8Array.from({ length: 48 }, (_, i) => i),
  createdAt: T0,
  retiredAt: T0 + 1000,
};
export const currentKey: TokenKeyRecord = {
  kid: '1112131415161718',
  publicKey: key32(7),
  privateKey: Uint8Array.from({ length: 48 }, (_, i) => 255 - i),
  createdAt: T0 + 1000,
};

export function adminToken(jti: string, extra: Partial<AdminTokenRecord> = {}): AdminTokenRecord {
  return { jti, name: 'alice', role: 'admin', issuedAt: T0, expiresAt: null, revokedAt: null, revokedBy: null, revokedReason: null, ...extra };
}

export function allowEntry(id: string, extra: Partial<AllowEntry> = {}): AllowEntry {
  return { id, pk: key32(id.length), type: 0, createdAt: T0, ...extra };
}

export function upsertAllow(id: string, extra: Partial<AllowEntry> = {}): Mutation {
  return { kind: 'allow.upsert', entry: allowEntry(id, extra) };
}

/** A mutation that violates a CHECK constraint (client type 7 does not exist). */
export function invalidDevice(id: string): Mutation {
  return { kind: 'device.upsert', device: { ...minimalDevice, id, type: 7 as 0 } };
}

export async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isProvError(e), `expected a ProvError, got ${String(e)}`);
    assert.equal(e.code, code);
    return true;
  });
}

/** Registers the contract suite for `name` (inside the caller's describe). */
export function storeContract(name: string, target: ContractTarget): void {
  describe(`${name}: the Store contract`, () => {
    let store: ContractStore;

    describe('records', () => {
      beforeEach(async () => {
        store = await target.open();
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
        for (const k of ['mac', 'decidedAt', 'decidedBy', 'decidedReason'] as const) assert.ok(!(k in min!), `${k} absent`);
      });

      it('keeps who rejected an ID, when and why, through concurrent calls, a later poll and the status filter', async () => {
        // Each call is a rejection plus its event, as AdminService.reject writes it: concurrent calls
        // are grouped into one transaction (SQLite: the one-statement fast path), which must carry the
        // reason as the one-call path does.
        const ids = ['rej-a', 'rej-b', 'rej-c'];
        await Promise.all(
          ids.map((id, i) =>
            store.apply([
              { kind: 'pending.upsert', pending: { ...minimalPending, id, status: 'rejected', decidedAt: T0 + i, decidedBy: `admin:a${i}`, decidedReason: `reason ${i}` } },
              { kind: 'event', event: { at: T0 + i, kind: 'admin.reject', deviceId: id, actor: `admin:a${i}`, detail: { reason: `reason ${i}` } } },
            ]),
          ),
        );
        await store.apply([{ kind: 'pending.seen', id: 'rej-b', lastSeen: T0 + 50, count: 9, source: '192.0.2.9:5683' }]);
        const rejected = await store.listPending({ status: 'rejected' });
        const got = rejected.items.filter((p) => ids.includes(p.id)).map((p) => [p.id, p.decidedAt, p.decidedBy, p.decidedReason]);
        assert.deepEqual(got, ids.map((id, i) => [id, T0 + i, `admin:a${i}`, `reason ${i}`]));
        const b = await store.loadSubject('rej-b');
        assert.equal(b.pending?.decidedReason, 'reason 1', 'loadSubject reads the reason too');
        assert.equal(b.pending?.count, 9);
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
        assert.ok(!('retiredAt' in keys[0]!));
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
        const [e0, e1] = events;
        assert.ok(e0 && e1);
        assert.ok(e0.seq! > 0 && e1.seq! > e0.seq!, 'seqs increase');
        assert.notEqual(e1.seq, 999, 'seq is assigned by the store, not the caller');
        assert.deepEqual(e0, { ...full, seq: e0.seq });
        assert.deepEqual(e1, { ...minimal, seq: e1.seq });
        for (const k of ['deviceId', 'source', 'detail'] as const) assert.ok(!(k in e1), `${k} absent`);
      });

      it('copies events with their seqs, in seq order, and numbers later events after them', async () => {
        const copied = (seq: number) => ({ kind: 'event.copy', event: { seq, at: T0 + seq, kind: `c${seq}`, actor: 'system', detail: { seq } } }) as Mutation;
        await store.apply([copied(105), copied(109)]);
        await store.apply([copied(107)]);
        assert.deepEqual((await store.listEvents(0, 10)).map((e) => [e.seq, e.kind, e.detail]), [[105, 'c105', { seq: 105 }], [107, 'c107', { seq: 107 }], [109, 'c109', { seq: 109 }]]);
        assert.deepEqual((await store.listEvents(106, 10)).map((e) => e.seq), [107, 109]);
        await rejectsWith(store.apply([copied(107)]), 'conflict');
        await store.apply([{ kind: 'event', event: { at: T0, kind: 'new', actor: 'system' } }]);
        const [last] = (await store.listEvents(109, 10)).map((e) => [e.seq!, e.kind] as const);
        assert.ok(last && last[0] > 109 && last[1] === 'new', `a new event after the copied ones: ${JSON.stringify(last)}`);
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
          adminTokens: 0,
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
          { kind: 'admin-token.put', token: adminToken('jti-1') },
        ]);
        assert.deepEqual(await store.counts(), {
          allowlist: 2,
          devices: 1,
          pending: 1,
          revocations: 1,
          keys: 1,
          events: 2,
          flags: 0,
          adminTokens: 1,
        });
      });

      it('round-trips admin tokens with and without an expiry, and replaces the whole row on put', async () => {
        const hub = adminToken('jti-hub', { role: 'hub', name: 'hub-1', expiresAt: T0 + 86_400 });
        const revoked = adminToken('jti-old', { revokedAt: T0 + 5, revokedBy: 'admin:alice', revokedReason: 'left' });
        await store.apply([
          { kind: 'admin-token.put', token: adminToken('jti-adm') },
          { kind: 'admin-token.put', token: hub },
          { kind: 'admin-token.put', token: revoked },
        ]);
        assert.deepEqual(await store.getAdminToken('jti-adm'), adminToken('jti-adm'));
        assert.deepEqual(await store.getAdminToken('jti-hub'), hub);
        assert.deepEqual(await store.getAdminToken('jti-old'), revoked);
        assert.equal(await store.getAdminToken('jti-none'), undefined);
        await store.apply([{ kind: 'admin-token.put', token: { ...hub, name: 'hub-2', expiresAt: null } }]);
        assert.deepEqual(await store.getAdminToken('jti-hub'), { ...hub, name: 'hub-2', expiresAt: null });
      });

      it('revokes an admin token once: a second revocation and one of an unknown jti change nothing', async () => {
        await store.apply([{ kind: 'admin-token.put', token: adminToken('jti-r') }]);
        await store.apply([{ kind: 'admin-token.revoke', jti: 'jti-r', at: T0 + 10, by: 'admin:alice', reason: 'lost laptop' }]);
        const once = { ...adminToken('jti-r'), revokedAt: T0 + 10, revokedBy: 'admin:alice', revokedReason: 'lost laptop' };
        assert.deepEqual(await store.getAdminToken('jti-r'), once);
        await store.apply([
          { kind: 'admin-token.revoke', jti: 'jti-r', at: T0 + 20, by: 'admin:bob', reason: null },
          { kind: 'admin-token.revoke', jti: 'jti-ghost', at: T0 + 20, by: 'admin:bob', reason: null },
        ]);
        assert.deepEqual(await store.getAdminToken('jti-r'), once, 'the first revocation stays');
        assert.equal(await store.getAdminToken('jti-ghost'), undefined, 'revoking an unknown jti records nothing');
        await store.apply([
          { kind: 'admin-token.put', token: adminToken('jti-n') },
          { kind: 'admin-token.revoke', jti: 'jti-n', at: T0 + 30, by: 'system', reason: null },
        ]);
        assert.deepEqual(await store.getAdminToken('jti-n'), { ...adminToken('jti-n'), revokedAt: T0 + 30, revokedBy: 'system', revokedReason: null });
      });

      it('pages admin tokens by jti, setting next only while more remain', async () => {
        await store.apply(Array.from({ length: 25 }, (_, i) => ({ kind: 'admin-token.put', token: adminToken(`t-${String(24 - i).padStart(2, '0')}`) }) as Mutation));
        const seen: string[] = [];
        let after: string | undefined;
        let pages = 0;
        do {
          const page = await store.listAdminTokens({ after, limit: 10 });
          assert.ok(page.items.length <= 10);
          seen.push(...page.items.map((t) => t.jti));
          after = page.next;
          pages++;
        } while (after !== undefined);
        assert.deepEqual(seen, Array.from({ length: 25 }, (_, i) => `t-${String(i).padStart(2, '0')}`));
        assert.equal(pages, 3);
        const last = await store.listAdminTokens({ after: 't-20', limit: 10 });
        assert.deepEqual(last.items.map((t) => t.jti), ['t-21', 't-22', 't-23', 't-24']);
        assert.ok(!('next' in last));
        assert.deepEqual(await store.listAdminTokens({ after: 't-24', limit: 10 }), { items: [] });
      });

      it('rejects an admin token with an unknown role with internal', async () => {
        await rejectsWith(store.apply([{ kind: 'admin-token.put', token: adminToken('jti-x', { role: 'root' as 'admin' }) }]), 'internal');
        assert.equal(await store.getAdminToken('jti-x'), undefined);
      });

      it('resolves a call without mutations', async () => {
        await store.apply([]);
        assert.equal(store.stats.transactions, 0);
      });
    });

    describe('apply', () => {
      beforeEach(async () => {
        store = await target.open();
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
        results.forEach((r, i) => {
          if (i === 10 || i === 20 || i === 25) assert.equal(r.status, 'rejected', `call ${i}`);
          else assert.equal(r.status, 'fulfilled', `call ${i}`);
        });
        const [halfway, first, ghost] = [results[10], results[20], results[25]] as [PromiseRejectedResult, PromiseRejectedResult, PromiseRejectedResult];
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

      it('bulk-imports staged entries and its after mutations in one transaction, counting the new ids', async () => {
        await store.apply([upsertAllow('bulk-00001'), upsertAllow('bulk-00002')]);
        const staged = await store.stageAllow();
        try {
          for (let b = 0; b < 3; b++) {
            await staged.write(Array.from({ length: 4000 }, (_, i) => allowEntry(`bulk-${String(b * 4000 + i).padStart(5, '0')}`, { secret: `s-${b}-${i}` })));
          }
          assert.equal(staged.count, 12_000);
          const r = await store.bulkUpsertAllow(staged, [{ kind: 'event', event: { at: T0, kind: 'admin.allowlist.import', actor: 'admin:test' } }]);
          assert.deepEqual(r, { rows: 12_000, added: 11_998 });
        } finally {
          await staged.discard();
        }
        assert.equal((await store.counts()).allowlist, 12_000);
        assert.deepEqual(await store.getAllow('bulk-11999'), allowEntry('bulk-11999', { secret: 's-2-3999' }));
        assert.equal((await store.getAllow('bulk-00001'))?.secret, 's-0-1', 'an existing id was replaced');
        assert.deepEqual((await store.listEvents(0, 10)).map((e) => e.kind), ['admin.allowlist.import']);
      });

      it('writes nothing of a bulk import whose after mutations fail', async () => {
        const staged = await store.stageAllow();
        try {
          await staged.write(Array.from({ length: 50 }, (_, i) => allowEntry(`gone-${i}`)));
          await rejectsWith(store.bulkUpsertAllow(staged, [invalidDevice('gone-x')]), 'internal');
        } finally {
          await staged.discard();
        }
        assert.equal((await store.counts()).allowlist, 0);
        await store.apply([upsertAllow('after')]);
        assert.ok(await store.getAllow('after'), 'the store keeps working afterwards');
      });

      it('keeps the consumption of an entry re-imported unchanged in bulk and re-arms one with a new key', async () => {
        await store.apply([upsertAllow('same'), upsertAllow('rekeyed'), { kind: 'allow.consume', id: 'same', at: T0 + 1 }, { kind: 'allow.consume', id: 'rekeyed', at: T0 + 1 }]);
        const staged = await store.stageAllow();
        try {
          await staged.write([allowEntry('same'), allowEntry('rekeyed', { pk: bytes(...Array.from({ length: 32 }, (_, i) => i)) })]);
          assert.deepEqual(await store.bulkUpsertAllow(staged), { rows: 2, added: 0 });
        } finally {
          await staged.discard();
        }
        assert.equal((await store.getAllow('same'))?.consumedAt, T0 + 1);
        assert.equal((await store.getAllow('rekeyed'))?.consumedAt, undefined);
      });

      it('rolls back a whole bulk call when one of its entries is invalid', async () => {
        const ms = Array.from({ length: 5000 }, (_, i) => upsertAllow(`bulk-${i}`));
        ms[4321] = { kind: 'allow.upsert', entry: { id: 'no-credential', type: 0, createdAt: T0 } };
        const other = store.apply([upsertAllow('bystander')]);
        await rejectsWith(store.apply(ms), 'internal');
        await other;
        assert.equal((await store.counts()).allowlist, 1);
      });

      it('answers reads interleaved with concurrent writes', async () => {
        const ops: Promise<unknown>[] = [];
        for (let i = 0; i < 100; i++) {
          ops.push(store.apply([upsertAllow(`dev-${i}`)]));
          ops.push(store.loadSubject(`dev-${i}`));
        }
        await Promise.all(ops);
        for (let i = 0; i < 100; i += 17) assert.ok((await store.loadSubject(`dev-${i}`)).allow);
      });
    });

    describe('listPsk', () => {
      before(async () => {
        store = await target.open();
        const ms: Mutation[] = [];
        // Every third entry has a printed secret, every sixth an expiry too; the rest only a key.
        for (let i = 0; i < 30; i++) {
          const id = `psk-${String(i).padStart(2, '0')}`;
          ms.push(upsertAllow(id, i % 3 === 0 ? { secret: `printed-${i}`, ...(i % 6 === 0 ? { expires: T0 + i } : {}) } : {}));
        }
        await store.apply(ms);
      });
      after(async () => {
        await store.close();
      });

      it('lists only the entries with a secret, in id order, with their PSK fields alone', async () => {
        const page = await store.listPsk({ limit: 1000 });
        assert.deepEqual(
          page.items,
          Array.from({ length: 10 }, (_, k) => {
            const i = k * 3;
            const id = `psk-${String(i).padStart(2, '0')}`;
            return i % 6 === 0 ? { id, secret: `printed-${i}`, expires: T0 + i } : { id, secret: `printed-${i}` };
          }),
        );
        assert.ok(!('next' in page));
      });

      it('pages by id, setting next only while more remain', async () => {
        const first = await store.listPsk({ limit: 4 });
        assert.deepEqual(first.items.map((e) => e.id), ['psk-00', 'psk-03', 'psk-06', 'psk-09']);
        assert.equal(first.next, 'psk-09');
        const rest = await store.listPsk({ after: first.next, limit: 100 });
        assert.deepEqual(rest.items.map((e) => e.id), ['psk-12', 'psk-15', 'psk-18', 'psk-21', 'psk-24', 'psk-27']);
        assert.equal(rest.next, undefined);
      });

      it('follows an entry that gains, changes or loses its secret, and one deleted', async () => {
        await store.apply([
          upsertAllow('psk-01', { secret: 'gained' }),
          upsertAllow('psk-03', { secret: 'changed' }),
          upsertAllow('psk-06'),
          { kind: 'allow.delete', id: 'psk-09' },
        ]);
        const ids = (await store.listPsk({ limit: 5 })).items;
        assert.deepEqual(ids, [
          { id: 'psk-00', secret: 'printed-0', expires: T0 },
          { id: 'psk-01', secret: 'gained' },
          { id: 'psk-03', secret: 'changed' },
          { id: 'psk-12', secret: 'printed-12', expires: T0 + 12 },
          { id: 'psk-15', secret: 'printed-15' },
        ]);
      });
    });

    describe('lists', () => {
      before(async () => {
        store = await target.open();
        const ms: Mutation[] = [];
        for (let i = 0; i < 25; i++) {
          const id = `id-${String(i).padStart(2, '0')}`;
          ms.push(upsertAllow(id));
          ms.push({ kind: 'device.upsert', device: { ...minimalDevice, id } });
          ms.push({ kind: 'revocation.put', revocation: { ...minimalRevocation, id } });
          ms.push({
            kind: 'pending.upsert',
            pending: { ...minimalPending, id, status: (['pending', 'approved', 'rejected'] as const)[i % 3]! },
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
        assert.equal(def.next, def.items[99]!.id);
        const big = await store.listAllow({ limit: 5000 });
        assert.equal(big.items.length, 1000);
        assert.equal(big.next, big.items[999]!.id);
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
        const next = await store.listEvents(first[9]!.seq!, 100);
        assert.equal(next.length, 20);
        assert.equal(next[0]?.kind, 'k10');
        assert.deepEqual(await store.listEvents(next[19]!.seq!, 10), []);
      });
    });

    describe('close', () => {
      it('commits calls made before close and rejects calls made after it with internal', async () => {
        const s = await target.open();
        const pending = Array.from({ length: 10 }, (_, i) => s.apply([upsertAllow(`dev-${i}`)]));
        const closed = s.close();
        await Promise.all(pending);
        await closed;
        await rejectsWith(s.apply([upsertAllow('late')]), 'internal');
        await rejectsWith(s.loadSubject('dev-1'), 'internal');
        await rejectsWith(s.listAllow(), 'internal');
        await s.close(); // a second close resolves too
      });
    });
  });
}
