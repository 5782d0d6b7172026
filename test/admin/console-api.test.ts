/**
 * The API additions the console needs (issue 14): `q` search on every list, `PUT /allowlist/{id}` for
 * one entry, and the optional reasons of reject and revoke, against the real server.
 */
import assert from 'node:assert/strict';
import { keyFingerprint } from '../../src/tokens/ed25519.ts';
import { SEARCH_SCAN_ROWS } from '../../src/service/admin-queries.ts';
import { assertError, call, startAdminServer, type AdminFixture } from '../support/admin-server.ts';

const hexKey = (b: Uint8Array) => Buffer.from(b).toString('hex');
const ids = (a: { json: { items: Array<{ id: string }> } }) => a.json.items.map((e) => e.id);

describe('admin API for the console', () => {
  let f: AdminFixture;
  let admin: string;
  const api = (method: string, path: string, o: Parameters<typeof call>[3] = {}) => call(f.base, method, `/api/v1${path}`, { token: admin, ...o });

  before(async () => {
    f = await startAdminServer('con');
    admin = await f.server.auth.mint({ name: 'console', role: 'admin', ttlS: 3600 }, Math.floor(Date.now() / 1000));
  });
  after(async () => {
    await f?.close();
  });

  describe('q search', () => {
    before(async () => {
      for (const id of ['Plant-A-01', 'plant-a-02', 'plant-b-01', 'office-9']) await f.allow({ id, mac: Buffer.from(`aabbcc0000${id.length}${id.at(-1)}`, 'hex') });
    });

    it('finds allowlist entries by a case-insensitive substring or prefix of the ID', async () => {
      assert.deepEqual(ids(await api('GET', '/allowlist?q=PLANT-A')), ['Plant-A-01', 'plant-a-02']);
      assert.deepEqual(ids(await api('GET', '/allowlist?q=-01')), ['Plant-A-01', 'plant-b-01']);
      assert.deepEqual(ids(await api('GET', '/allowlist?q=nothing-like-it')), []);
      // Without q (or with an empty one) the list is the whole list.
      assert.ok(ids(await api('GET', '/allowlist?q=')).length >= 4);
    });

    it('pages through the matches with the next cursor, each match once', async () => {
      const first = await api('GET', '/allowlist?q=plant&limit=2');
      assert.deepEqual(ids(first), ['Plant-A-01', 'plant-a-02']);
      assert.equal(typeof first.json.next, 'string');
      const second = await api('GET', `/allowlist?q=plant&limit=2&after=${encodeURIComponent(first.json.next)}`);
      assert.deepEqual(ids(second), ['plant-b-01']);
    });

    it('refuses a q longer than 64 characters (400 malformed)', async () => {
      assertError(await api('GET', `/allowlist?q=${'x'.repeat(65)}`), 400, 'malformed');
      assertError(await api('GET', `/devices?q=${'x'.repeat(65)}`), 400, 'malformed');
    });

    it('searches pending requests, the rejected list among them, and devices', async () => {
      const waiting = await f.pendingDevice({ id: `SEARCH-pend-${process.pid}` });
      await f.server.admin.reject(`search-rej-${process.pid}`, 'test', { by: 'test' });
      const dev = await f.provisionedDevice({ id: `search-dev-${process.pid}` });
      assert.deepEqual(ids(await api('GET', '/pending?q=search-PEND')), [waiting.id]);
      assert.deepEqual(ids(await api('GET', '/pending?q=search-pend&status=rejected')), []);
      assert.deepEqual(ids(await api('GET', '/pending?q=SEARCH-rej&status=rejected')), [`search-rej-${process.pid}`]);
      assert.deepEqual(ids(await api('GET', '/devices?q=search-dev')), [dev.id]);
      assert.deepEqual(ids(await api('GET', '/devices?q=search-pend')), []);
    });

    it('searches flags by the IDs of their devices', async () => {
      const first = await f.pendingDevice({ id: `flagged-${process.pid}` });
      assert.equal((await f.device({ id: first.id }).provision()).status, 'pending');
      const hit = await api('GET', `/flags?q=FLAGGED-${process.pid}`);
      assert.equal(hit.status, 200);
      assert.ok(hit.json.items.length >= 1);
      for (const x of hit.json.items) assert.ok(x.deviceIds.includes(first.id));
      assert.deepEqual((await api('GET', '/flags?q=no-such-device-anywhere')).json.items, []);
    });

    it('stops a search after a bounded number of rows and hands back a cursor to go on from', async () => {
      // More rows than one search request looks at, none of them matching, and a match after them.
      const n = SEARCH_SCAN_ROWS + 10;
      const rows = Array.from({ length: n }, (_, i) => `bulk-${String(i).padStart(6, '0')},,,secret-for-bulk-rows,,`).join('\n');
      const up = await api('POST', '/allowlist', { body: `id,pk,mac,secret,type,expires\n${rows}\nbulkz-needle,,,secret-for-bulk-rows,,\n`, contentType: 'text/csv' });
      assert.equal(up.status, 200, up.text);
      const first = await api('GET', '/allowlist?q=needle&after=bulk-');
      assert.equal(first.status, 200);
      assert.deepEqual(ids(first), [], 'the budget ran out before the match');
      assert.equal(typeof first.json.next, 'string', 'with a cursor to go on from');
      let after: string = first.json.next;
      const found: string[] = [];
      for (let i = 0; i < 5 && after; i++) {
        const p = await api('GET', `/allowlist?q=needle&after=${encodeURIComponent(after)}`);
        found.push(...ids(p));
        after = p.json.next;
      }
      assert.deepEqual(found, ['bulkz-needle']);
    });
  });

  describe('PUT /allowlist/{id}', () => {
    it('adds one entry by key (201) with the entry view, and replaces it (200)', async () => {
      const c = f.device();
      const a = await api('PUT', `/allowlist/${c.id}`, { json: { pk: hexKey(c.publicKey), type: 'service', expires: '2099-01-01T00:00:00Z' } });
      assert.equal(a.status, 201, a.text);
      assert.equal(a.json.id, c.id);
      assert.equal(a.json.pk, hexKey(c.publicKey));
      assert.equal(a.json.fingerprint, keyFingerprint(c.publicKey));
      assert.equal(a.json.type, 'service');
      assert.equal(a.json.expires, '2099-01-01T00:00:00.000Z');
      const b = await api('PUT', `/allowlist/${c.id}`, { json: { mac: '02:00:00:00:00:01' } });
      assert.equal(b.status, 200, b.text);
      assert.equal(b.json.pk, undefined, 'replaced, not merged');
      assert.equal(b.json.mac, '02:00:00:00:00:01');
      assert.equal((await api('GET', `/allowlist/${c.id}`)).json.mac, '02:00:00:00:00:01');
    });

    it('lets the device it names provision at once, and records the change in the event log', async () => {
      const c = f.device();
      const before = (await api('GET', '/events?limit=1000')).json.next;
      assert.equal((await api('PUT', `/allowlist/${c.id}`, { json: { pk: hexKey(c.publicKey) } })).status, 201);
      assert.equal((await c.provision()).status, 'approved');
      const ev = (await api('GET', `/events?after=${before}&limit=1000`)).json.events.find((e: { kind: string; deviceId?: string }) => e.kind === 'admin.allowlist.put' && e.deviceId === c.id);
      assert.ok(ev, 'an admin.allowlist.put event');
      assert.equal(ev.actor, 'admin:console');
      assert.equal(ev.detail.created, true);
    });

    it('takes a secret but never shows it back', async () => {
      const a = await api('PUT', '/allowlist/put-secret', { json: { secret: 'a-long-enough-secret' } });
      assert.equal(a.status, 201, a.text);
      assert.equal(a.json.hasSecret, true);
      assert.ok(!a.text.includes('a-long-enough-secret'));
    });

    it('refuses what a file row would refuse, and fields a row does not have (400 malformed)', async () => {
      for (const json of [{}, { pk: 'abc' }, { mac: 'zz' }, { secret: 'short' }, { type: 'robot', mac: '02:00:00:00:00:02' }, { mac: '02:00:00:00:00:02', colour: 'red' }, { id: 'other', mac: '02:00:00:00:00:02' }, { pk: 5 }]) {
        assertError(await api('PUT', '/allowlist/put-bad', { json }), 400, 'malformed', JSON.stringify(json));
      }
      assertError(await api('PUT', '/allowlist/bad%20id', { json: { mac: '02:00:00:00:00:02' } }), 400, 'malformed', 'bad id');
      assertError(await api('GET', '/allowlist/put-bad'), 404, 'not-found');
    });

    it('needs the admin role', async () => {
      const hub = await f.server.auth.mint({ name: 'h', role: 'hub', ttlS: 3600 }, Math.floor(Date.now() / 1000));
      assertError(await call(f.base, 'PUT', '/api/v1/allowlist/put-hub', { token: hub, json: { mac: '02:00:00:00:00:03' } }), 403, 'forbidden');
    });
  });

  describe('reasons', () => {
    it('records the reason of a reject and of a revoke in the event log, and shows the revoke reason on the device', async () => {
      const p = await f.pendingDevice();
      const before = (await api('GET', '/events?limit=1000')).json.next;
      assert.equal((await api('POST', `/pending/${p.id}/reject`, { json: { reason: 'not ours' } })).status, 204);
      const d = await f.provisionedDevice();
      assert.equal((await api('POST', `/devices/${d.id}/revoke`, { json: { reason: 'stolen' } })).status, 204);
      assert.equal((await api('GET', `/devices/${d.id}`)).json.revoked.reason, 'stolen');
      const evs = (await api('GET', `/events?after=${before}&limit=1000`)).json.events;
      assert.equal(evs.find((e: { kind: string }) => e.kind === 'admin.reject').detail.reason, 'not ours');
      assert.equal(evs.find((e: { kind: string }) => e.kind === 'admin.revoke').detail.reason, 'stolen');
    });
  });
});
