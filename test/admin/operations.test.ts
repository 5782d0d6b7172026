/**
 * Each operation of the admin sidecar against the real server: allowlist uploads, pending approvals
 * (with devices simulated over CoAP), devices, the provisioning switch, token keys and verification,
 * the event feed (cursor, long poll, server-sent events), ETags, metrics, bad input, and the audit
 * trail of who did what.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { ERROR_TABLE } from '../../src/errors.ts';
import { decodeKeySet } from '../../src/protocol/cwt.ts';
import { keyFingerprint } from '../../src/tokens/ed25519.ts';
import { PATHS } from '../../tools/device-sim/client.ts';
import { assertError, call, lastEventSeq, readSse, startAdminServer, type AdminFixture } from '../support/admin-server.ts';

const CSV_HEADER = 'id,pk,mac,secret,type,expires';
const hexKey = (b: Uint8Array) => Buffer.from(b).toString('hex');

describe('admin sidecar operations', () => {
  let f: AdminFixture;
  let admin: string;
  const api = (method: string, path: string, o: Parameters<typeof call>[3] = {}) => call(f.base, method, `/api/v1${path}`, { token: admin, ...o });

  before(async () => {
    f = await startAdminServer('op');
    admin = await f.server.auth.mint({ name: 'ops', role: 'admin', ttlS: 3600 }, Math.floor(Date.now() / 1000));
  });
  after(async () => {
    await f?.close();
  });

  describe('health', () => {
    it('reports status, version, the provisioning switch and the current token key without a token', async () => {
      const a = await call(f.base, 'GET', '/api/v1/health');
      assert.equal(a.status, 200);
      assert.equal(a.json.status, 'ok');
      assert.equal(typeof a.json.version, 'string');
      assert.deepEqual(a.json.provisioning, { enabled: true });
      assert.equal(a.json.kid, f.server.keyring.current.kid);
    });
  });

  describe('allowlist', () => {
    it('imports a CSV upload and reports how many entries were added and how many updated', async () => {
      const first = await api('POST', '/allowlist', { body: `${CSV_HEADER}\ncsv-a,,aa:00:00:00:00:01,,device,\ncsv-b,,aa:00:00:00:00:02,,service,\n`, contentType: 'text/csv' });
      assert.equal(first.status, 200, first.text);
      assert.deepEqual([first.json.imported, first.json.rows, first.json.added, first.json.updated, first.json.invalid], [true, 2, 2, 0, 0]);
      const second = await api('POST', '/allowlist', { body: `${CSV_HEADER}\ncsv-b,,aa:00:00:00:00:22,,service,\ncsv-c,,aa:00:00:00:00:03,,device,\n`, contentType: 'text/csv' });
      assert.deepEqual([second.json.added, second.json.updated], [1, 1]);
      const b = await api('GET', '/allowlist/csv-b');
      assert.equal(b.status, 200);
      assert.equal(b.json.mac, 'aa:00:00:00:00:22');
      assert.equal(b.json.type, 'service');
    });

    it('imports a JSON array upload, and shows each key with its fingerprint', async () => {
      const c = f.device();
      const a = await api('POST', '/allowlist', { json: [{ id: 'json-a', pk: hexKey(c.publicKey) }, { id: 'json-b', secret: 'a-long-printed-secret-1234' }] });
      assert.equal(a.status, 200, a.text);
      assert.deepEqual([a.json.added, a.json.updated, a.json.invalid], [2, 0, 0]);
      const e = await api('GET', '/allowlist/json-a');
      assert.equal(e.json.pk, hexKey(c.publicKey));
      assert.equal(e.json.fingerprint, keyFingerprint(c.publicKey));
      const s = await api('GET', '/allowlist/json-b');
      assert.equal(s.json.hasSecret, true);
      assert.equal(s.text.includes('a-long-printed-secret-1234'), false, 'the secret is never sent back');
    });

    it('imports nothing from an upload with a bad row, and reports every bad row with its line number (422)', async () => {
      const before = await api('GET', '/allowlist?limit=1000');
      const body = `${CSV_HEADER}\nbad-ok-1,,aa:00:00:00:01:01,,device,\nbad-row-1,zz,,,,\nbad-ok-2,,aa:00:00:00:01:02,,device,\nbad-row-2,,not-a-mac,,,\n`;
      const a = await api('POST', '/allowlist', { body, contentType: 'text/csv' });
      assert.equal(a.status, 422, a.text);
      assert.equal(a.json.imported, false);
      assert.deepEqual([a.json.rows, a.json.added, a.json.updated, a.json.invalid], [4, 0, 0, 2]);
      assert.deepEqual(
        a.json.errors.map((e: { line: number; id: string }) => [e.line, e.id]),
        [
          [3, 'bad-row-1'],
          [5, 'bad-row-2'],
        ],
      );
      for (const e of a.json.errors) assert.ok(e.message.length > 0);
      const after = await api('GET', '/allowlist?limit=1000');
      assert.deepEqual(after.json.items, before.json.items, 'nothing was imported');
      assertError(await api('GET', '/allowlist/bad-ok-1'), 404, 'not-found');
    });

    it('imports the valid rows of such an upload with ?mode=valid and still reports the bad ones', async () => {
      const body = `${CSV_HEADER}\nvalid-1,,aa:00:00:00:02:01,,device,\nvalid-bad,zz,,,,\n`;
      const a = await api('POST', '/allowlist?mode=valid', { body, contentType: 'text/csv' });
      assert.equal(a.status, 200, a.text);
      assert.deepEqual([a.json.imported, a.json.added, a.json.invalid, a.json.errors[0].line], [true, 1, 1, 3]);
      assert.equal((await api('GET', '/allowlist/valid-1')).status, 200);
      assertError(await api('POST', '/allowlist?mode=some', { body, contentType: 'text/csv' }), 400, 'malformed');
    });

    it('reports a JSON upload that is not an array as malformed (400)', async () => {
      assertError(await api('POST', '/allowlist', { json: { id: 'x', mac: 'aa:bb:cc:dd:ee:ff' } }), 400, 'malformed');
    });

    it('pages through the allowlist in ID order with the next cursor', async () => {
      await api('POST', '/allowlist', { body: `${CSV_HEADER}\n${[1, 2, 3, 4, 5].map((i) => `page-${i},,ab:00:00:00:00:0${i},,device,`).join('\n')}\n`, contentType: 'text/csv' });
      const all = (await api('GET', '/allowlist?limit=1000')).json.items.map((e: { id: string }) => e.id);
      assert.deepEqual(all, [...all].sort());
      const seen: string[] = [];
      let after: string | undefined;
      for (let pages = 0; ; pages++) {
        assert.ok(pages <= all.length, 'the cursor makes progress');
        const p = await api('GET', `/allowlist?limit=2${after ? `&after=${encodeURIComponent(after)}` : ''}`);
        assert.equal(p.status, 200);
        assert.ok(p.json.items.length <= 2);
        seen.push(...p.json.items.map((e: { id: string }) => e.id));
        if (!p.json.next) break;
        after = p.json.next;
      }
      assert.deepEqual(seen, all);
    });

    it('deletes an entry, and a second delete is 404 not-found', async () => {
      await f.allow({ id: 'delete-me', mac: Buffer.from('aabbccddee99', 'hex') });
      const a = await api('DELETE', '/allowlist/delete-me');
      assert.equal(a.status, 204);
      assertError(await api('GET', '/allowlist/delete-me'), 404, 'not-found');
      assertError(await api('DELETE', '/allowlist/delete-me'), 404, 'not-found');
    });
  });

  describe('pending requests', () => {
    it('lists a device that asked to be provisioned, with the fingerprint of its key, its source and when it was seen', async () => {
      const c = await f.pendingDevice();
      const a = await api('GET', '/pending?limit=1000');
      assert.equal(a.status, 200);
      const p = a.json.items.find((x: { id: string }) => x.id === c.id);
      assert.ok(p, `${c.id} is listed`);
      assert.equal(p.status, 'pending');
      assert.equal(p.fingerprint, keyFingerprint(c.publicKey));
      assert.equal(p.fingerprint, c.fingerprint, 'the same string the device simulator prints');
      assert.equal(p.pk, hexKey(c.publicKey));
      assert.match(p.source, /^127\.0\.0\.1:\d+$/);
      assert.ok(p.count >= 1);
      assert.ok(Date.parse(p.firstSeen) <= Date.parse(p.lastSeen));
    });

    it('refuses an approval pinned to another key with 409 conflict, and the request stays pending', async () => {
      const c = await f.pendingDevice();
      const other = f.device();
      assertError(await api('POST', `/pending/${c.id}/approve`, { json: { fingerprint: other.fingerprint } }), 409, 'conflict');
      assertError(await api('POST', `/pending/${c.id}/approve`, { json: { pk: hexKey(other.publicKey) } }), 409, 'conflict');
      assertError(await api('POST', `/pending/${c.id}/approve`, { json: {} }), 400, 'malformed');
      assert.equal((await c.provision()).status, 'pending');
    });

    it('refuses to approve an ID that is not pending (404 not-found)', async () => {
      assertError(await api('POST', '/pending/nobody-asked/approve', { json: { fingerprint: 'AAAA-BBBB-CCCC' } }), 404, 'not-found');
    });

    it('approves a pending device pinned to its fingerprint, and the device gets its token at its next request', async () => {
      const c = await f.pendingDevice();
      const a = await api('POST', `/pending/${c.id}/approve`, { json: { fingerprint: c.fingerprint } });
      assert.equal(a.status, 200, a.text);
      assert.equal(a.json.status, 'approved');
      assert.equal(a.json.decidedBy, 'admin:ops');
      const r = await c.provision();
      assert.equal(r.status, 'approved', JSON.stringify(r));
      assert.equal(r.claims!.sub, c.id);
      assert.deepEqual(Buffer.from(r.claims!.cnf), c.publicKey);
      const d = await api('GET', `/devices/${c.id}`);
      assert.equal(d.status, 200);
      assert.equal(d.json.via, 'admin');
    });

    it('approves a pending device pinned to its full public key too', async () => {
      const c = await f.pendingDevice();
      assert.equal((await api('POST', `/pending/${c.id}/approve`, { json: { pk: hexKey(c.publicKey).toUpperCase() } })).status, 200);
      assert.equal((await c.provision()).status, 'approved');
    });

    it('rejects a device ID so that its requests are refused with 4.03 rejected, and un-rejecting makes it wait again', async () => {
      const c = await f.pendingDevice();
      assert.equal((await api('POST', `/pending/${c.id}/reject`, { json: { reason: 'not one of ours' } })).status, 204);
      const listed = await api('GET', '/pending?status=rejected&limit=1000');
      const mine = listed.json.items.find((p: { id: string }) => p.id === c.id);
      assert.deepEqual([mine?.decidedBy, mine?.decidedReason], ['admin:ops', 'not one of ours'], 'who and why, on the record (the response schema keeps the field)');
      assert.match(mine.decidedAt, /^\d{4}-\d\d-\d\dT/);
      assert.equal((await api('GET', `/pending/${c.id}`)).json.decidedReason, 'not one of ours');
      const r = await c.provision();
      assert.deepEqual([r.status, r.code, r.err], ['refused', '4.03', ERROR_TABLE.rejected.err]);
      assertError(await api('POST', `/pending/${c.id}/approve`, { json: { fingerprint: c.fingerprint } }), 409, 'conflict');
      assert.equal((await api('POST', `/pending/${c.id}/unreject`)).status, 204);
      assert.equal((await c.provision()).status, 'pending');
      assertError(await api('POST', `/pending/${c.id}/unreject`), 404, 'not-found');
    });

    it('refuses a status filter it does not know (400 malformed)', async () => {
      assertError(await api('GET', '/pending?status=maybe'), 400, 'malformed');
    });
  });

  describe('devices', () => {
    it('lists provisioned devices and gets one by ID, with key fingerprint, type and token expiry', async () => {
      const c = f.device({ type: 'service' });
      await f.allow({ id: c.id, pk: c.publicKey, type: 1 });
      assert.equal((await c.provision()).status, 'approved');
      const list = await api('GET', '/devices?limit=1000');
      assert.equal(list.status, 200);
      const d = list.json.items.find((x: { id: string }) => x.id === c.id);
      assert.ok(d, `${c.id} is listed`);
      assert.equal(d.fingerprint, c.fingerprint);
      assert.equal(d.type, 'service');
      assert.equal(d.via, 'allowlist');
      assert.equal(d.revoked, undefined);
      assert.equal(Date.parse(d.tokenExp) / 1000, c.claims!.exp);
      const one = await api('GET', `/devices/${c.id}`);
      assert.deepEqual(one.json, d);
      assertError(await api('GET', '/devices/no-such-device'), 404, 'not-found');
    });

    it('revokes a device so that its next refresh fails at once with err 7, and re-enabling lets it refresh again', async () => {
      const c = await f.provisionedDevice();
      assert.equal((await c.refresh()).status, 'approved');
      assert.equal((await api('POST', `/devices/${c.id}/revoke`, { json: { reason: 'stolen' } })).status, 204);
      const r = await c.refresh();
      assert.deepEqual([r.status, r.code, r.err], ['refused', '4.03', ERROR_TABLE.revoked.err]);
      const d = await api('GET', `/devices/${c.id}`);
      assert.equal(d.json.revoked.by, 'admin:ops');
      assert.equal(d.json.revoked.reason, 'stolen');
      assert.equal((await api('POST', `/devices/${c.id}/enable`)).status, 204);
      assert.equal((await api('GET', `/devices/${c.id}`)).json.revoked, undefined);
      assert.equal((await c.refresh()).status, 'approved');
      assertError(await api('POST', `/devices/${c.id}/enable`), 404, 'not-found');
      assertError(await api('POST', '/devices/no-such-device/revoke'), 404, 'not-found');
    });
  });

  describe('provisioning switch', () => {
    it('disables provisioning with a reason: a new device gets 5.03 err 10 while a provisioned one still refreshes; enabling lets the new one in', async () => {
      const known = await f.provisionedDevice();
      const fresh = f.device();
      await f.allow({ id: fresh.id, pk: fresh.publicKey });
      try {
        const off = await api('PUT', '/provisioning', { json: { enabled: false, reason: 'maintenance window' } });
        assert.equal(off.status, 200, off.text);
        assert.deepEqual(off.json, { enabled: false, reason: 'maintenance window' });
        assert.deepEqual((await api('GET', '/provisioning')).json, { enabled: false, reason: 'maintenance window' });
        assert.equal((await call(f.base, 'GET', '/api/v1/health')).json.provisioning.enabled, false);
        const r = await fresh.provision();
        assert.deepEqual([r.status, r.code, r.err], ['refused', '5.03', ERROR_TABLE.disabled.err]);
        assert.equal((await known.refresh()).status, 'approved', 'refresh keeps working');
      } finally {
        const on = await api('PUT', '/provisioning', { json: { enabled: true } });
        assert.deepEqual(on.json, { enabled: true });
      }
      assert.equal((await fresh.provision()).status, 'approved');
    });

    it('refuses a switch without a boolean (400 malformed)', async () => {
      assertError(await api('PUT', '/provisioning', { json: { enabled: 'yes' } }), 400, 'malformed');
      assertError(await api('PUT', '/provisioning', { json: [true] }), 400, 'malformed');
    });
  });

  describe('token keys and verification', () => {
    it('publishes the token keys as a JWKS that matches the COSE key set of /idprov/keys', async () => {
      const c = f.device();
      const cose = decodeKeySet((await c.get(PATHS.keys)).payload);
      const a = await api('GET', '/keys/jwks');
      assert.equal(a.status, 200);
      assert.equal(a.json.keys.length, cose.length);
      a.json.keys.forEach((k: Record<string, string>, i: number) => {
        assert.deepEqual([k['kty'], k['crv'], k['alg']], ['OKP', 'Ed25519', 'EdDSA']);
        assert.equal(k['kid'], Buffer.from(cose[i]!.kid).toString('base64url'));
        assert.equal(k['x'], Buffer.from(cose[i]!.x).toString('base64url'));
      });
    });

    it('serves the COSE_KeySet as application/cose-key-set, byte for byte what CoAP serves', async () => {
      const res = await fetch(`${f.base}/api/v1/keys/cose`, { headers: { authorization: `Bearer ${admin}` } });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), 'application/cose-key-set');
      const bytes = Buffer.from(await res.arrayBuffer());
      assert.deepEqual(bytes, Buffer.from((await f.device().get(PATHS.keys)).payload));
    });

    it('verifies a real device token, given as hex or base64url: valid, with its claims', async () => {
      const c = await f.provisionedDevice();
      for (const token of [c.token!.toString('hex'), c.token!.toString('base64url')]) {
        const a = await api('POST', '/tokens/verify', { json: { token } });
        assert.equal(a.status, 200, a.text);
        assert.equal(a.json.valid, true, a.text);
        assert.equal(a.json.error, undefined);
        assert.equal(a.json.claims.sub, c.id);
        assert.equal(a.json.claims.exp, c.claims!.exp);
        assert.equal(a.json.claims.role, 'device');
        assert.equal(a.json.claims.cnf.x, c.publicKey.toString('base64url'));
      }
    });

    it('reports the token of a revoked device as invalid with error revoked', async () => {
      const c = await f.provisionedDevice();
      await api('POST', `/devices/${c.id}/revoke`);
      const a = await api('POST', '/tokens/verify', { json: { token: c.token!.toString('hex') } });
      assert.equal(a.status, 200);
      assert.deepEqual([a.json.valid, a.json.error, a.json.claims.sub], [false, 'revoked', c.id]);
    });

    it('reports garbage as an invalid token, and a request without a token as malformed (400)', async () => {
      for (const token of ['00', 'deadbeef', 'bm90IGEgdG9rZW4', Buffer.from('8443a10127a040f6', 'hex').toString('base64url')]) {
        const a = await api('POST', '/tokens/verify', { json: { token } });
        assert.equal(a.status, 200, a.text);
        assert.equal(a.json.valid, false);
        assert.equal(typeof a.json.error, 'string');
      }
      assertError(await api('POST', '/tokens/verify', { json: {} }), 400, 'malformed');
      assertError(await api('POST', '/tokens/verify', { json: { token: 42 } }), 400, 'malformed');
    });
  });

  describe('event feed', () => {
    it('pages the feed with the after cursor, oldest first', async () => {
      for (let i = 0; i < 3; i++) await f.pendingDevice();
      const all = (await api('GET', '/events?limit=1000')).json.events;
      assert.ok(all.length >= 3);
      const first = await api('GET', '/events?after=0&limit=2');
      assert.deepEqual(
        first.json.events.map((e: { seq: number }) => e.seq),
        all.slice(0, 2).map((e: { seq: number }) => e.seq),
      );
      assert.equal(first.json.next, all[1].seq);
      const second = await api('GET', `/events?after=${first.json.next}&limit=2`);
      assert.deepEqual(second.json.events[0], all[2]);
      const end = await api('GET', `/events?after=${all[all.length - 1].seq}`);
      assert.deepEqual(end.json, { events: [], next: all[all.length - 1].seq });
    });

    it('answers a long poll with the event that is committed while it waits', async () => {
      const end = await lastEventSeq(f.base, admin);
      // Commit the change only once the poll has reached the server.
      const arrived = once(f.server.sidecar.server, 'request');
      const poll = api('GET', `/events?after=${end}&wait=25`);
      await arrived;
      const c = await f.pendingDevice();
      const a = await poll;
      assert.equal(a.status, 200, a.text);
      assert.ok(a.json.events.length >= 1, a.text);
      assert.ok(a.json.events.every((e: { seq: number }) => e.seq > end));
      assert.equal(a.json.events[0].kind, 'provision.pending');
      assert.equal(a.json.events[0].deviceId, c.id);
      assert.equal(a.json.next, a.json.events[a.json.events.length - 1].seq);
    });

    it('delivers events over server-sent events, each with an id: line to resume from', async () => {
      const end = await lastEventSeq(f.base, admin);
      let id = '';
      const r = await readSse(
        `${f.base}/api/v1/events/stream?after=${end}`,
        admin,
        (text) => /\n\n/.test(text.slice(text.indexOf('event: admin.disable'))),
        {},
        async () => {
          await api('PUT', '/provisioning', { json: { enabled: false, reason: 'sse' } });
          await api('PUT', '/provisioning', { json: { enabled: true } });
        },
      );
      assert.equal(r.status, 200);
      assert.equal(r.contentType, 'text/event-stream');
      const m = /id: (\d+)\nevent: admin\.disable\ndata: (.*)\n\n/.exec(r.text);
      assert.ok(m, r.text);
      id = m[1]!;
      assert.ok(Number(id) > end);
      const data = JSON.parse(m[2]!);
      assert.deepEqual([data.seq, data.kind, data.actor, data.detail], [Number(id), 'admin.disable', 'admin:ops', { reason: 'sse' }]);
      // Resume after it with Last-Event-ID: the next event is the enable.
      const again = await readSse(`${f.base}/api/v1/events/stream`, admin, (text) => text.includes('\n\n'), { 'last-event-id': id });
      assert.match(again.text, /^id: \d+\nevent: admin\.enable\n/);
    });

    it('refuses bad cursors, waits and limits (400 malformed)', async () => {
      for (const q of ['after=-1', 'after=x', 'wait=31', 'wait=x', 'limit=0', 'limit=1001', 'after=1&after=2']) {
        assertError(await api('GET', `/events?${q}`), 400, 'malformed', q);
      }
      assertError(await api('GET', '/events/stream?after=x'), 400, 'malformed');
    });
  });

  describe('conditional GET (ETag)', () => {
    it('answers a repeated GET with If-None-Match with 304, and after a change with 200 and a new ETag', async () => {
      const cases: Array<[string, () => Promise<unknown>]> = [
        ['/devices', () => f.provisionedDevice()],
        ['/pending', () => f.pendingDevice()],
        ['/allowlist', () => f.allow({ id: `etag-${Date.now()}`, mac: Buffer.from('aabbccddeeab', 'hex') })],
      ];
      for (const [path, change] of cases) {
        const a = await api('GET', path);
        const tag = a.headers.get('etag');
        assert.ok(tag, `${path} has an ETag`);
        const same = await api('GET', path, { headers: { 'if-none-match': tag } });
        assert.equal(same.status, 304, path);
        assert.equal(same.text, '');
        await change();
        const changed = await api('GET', path, { headers: { 'if-none-match': tag } });
        assert.equal(changed.status, 200, path);
        assert.notEqual(changed.headers.get('etag'), tag);
        assert.notDeepEqual(changed.json, a.json);
      }
    });

    it('gives each page of a list its own ETag, so a cached first page never answers for the second', async () => {
      await f.allow({ id: 'etag-page-a', mac: Buffer.from('aabbccddee01', 'hex') });
      await f.allow({ id: 'etag-page-b', mac: Buffer.from('aabbccddee02', 'hex') });
      const p1 = await api('GET', '/allowlist?limit=1');
      assert.ok(p1.json.next);
      const p2 = await api('GET', `/allowlist?limit=1&after=${encodeURIComponent(p1.json.next)}`, { headers: { 'if-none-match': p1.headers.get('etag')! } });
      assert.equal(p2.status, 200);
      assert.notEqual(p2.json.items[0].id, p1.json.items[0].id);
    });

    it('answers 304 for the JWKS while the keys are unchanged', async () => {
      const a = await api('GET', '/keys/jwks');
      assert.equal((await api('GET', '/keys/jwks', { headers: { 'if-none-match': a.headers.get('etag')! } })).status, 304);
      assert.equal((await api('GET', '/keys/jwks', { headers: { 'if-none-match': '"something-else"' } })).status, 200);
    });
  });

  describe('metrics', () => {
    it('exposes Prometheus metrics, idprov_requests_total among them', async () => {
      await f.pendingDevice();
      const a = await call(f.base, 'GET', '/metrics', { token: admin });
      assert.equal(a.status, 200);
      assert.match(a.headers.get('content-type') ?? '', /^text\/plain/);
      assert.match(a.text, /^# TYPE idprov_requests_total counter$/m);
      assert.match(a.text, /^idprov_requests_total\{op="request",outcome="pending",code="2\.05"\} \d+$/m);
      assert.match(a.text, /^idprov_records\{table="pending"\} \d+$/m);
    });
  });

  describe('bad input', () => {
    it('answers bad JSON, bad limits, bad cursors, unknown routes and odd bodies with a 4xx JSON error with a stable code, never 500', async () => {
      const cases: Array<[string, string, Parameters<typeof call>[3], number, string]> = [
        ['POST', '/api/v1/pending/x/approve', { body: '{"fingerprint":', contentType: 'application/json' }, 400, 'malformed'],
        ['PUT', '/api/v1/provisioning', { body: '', contentType: 'application/json' }, 400, 'malformed'],
        ['PUT', '/api/v1/provisioning', { body: 'null', contentType: 'application/json' }, 400, 'malformed'],
        ['PUT', '/api/v1/provisioning', { body: 'enabled=true', contentType: 'application/x-www-form-urlencoded' }, 415, 'unsupported-content-format'],
        ['POST', '/api/v1/tokens/verify', { body: `{"token":"${'a'.repeat(2 << 20)}"}`, contentType: 'application/json' }, 413, 'too-large'],
        ['GET', '/api/v1/allowlist?limit=abc', {}, 400, 'malformed'],
        ['GET', '/api/v1/allowlist?limit=0', {}, 400, 'malformed'],
        ['GET', '/api/v1/devices?limit=1.5', {}, 400, 'malformed'],
        ['GET', '/api/v1/pending?limit=5000', {}, 400, 'malformed'],
        ['GET', '/api/v1/allowlist?after=a&after=b', {}, 400, 'malformed'],
        ['GET', '/api/v1/devices?limit=1&limit=2', {}, 400, 'malformed'],
        ['GET', '/api/v1/nothing-here', {}, 404, 'not-found'],
        ['GET', '/api/v2/devices', {}, 404, 'not-found'],
        ['DELETE', '/api/v1/devices', {}, 404, 'not-found'],
        ['GET', '/api/v1/devices/%E0%A4%A', {}, 400, 'malformed'],
        ['GET', `/api/v1/devices/${'x'.repeat(300)}`, {}, 400, 'malformed'],
        ['GET', `/api/v1/allowlist/${'y'.repeat(90)}`, {}, 404, 'not-found'],
      ];
      for (const [method, path, o, status, code] of cases) {
        const a = await call(f.base, method, path, { token: admin, ...o });
        assertError(a, status, code, `${method} ${path.slice(0, 60)}`);
      }
    });
  });

  describe('audit trail', () => {
    it('records approve and revoke events with the admin:<name> of the token used as actor', async () => {
      const alice = await f.server.auth.mint({ name: 'alice', role: 'admin', ttlS: 600 }, Math.floor(Date.now() / 1000));
      const bob = await f.server.auth.mint({ name: 'bob', role: 'admin', ttlS: 600 }, Math.floor(Date.now() / 1000));
      const end = await lastEventSeq(f.base, admin);
      const c = await f.pendingDevice();
      assert.equal((await call(f.base, 'POST', `/api/v1/pending/${c.id}/approve`, { token: alice, json: { fingerprint: c.fingerprint } })).status, 200);
      assert.equal((await c.provision()).status, 'approved');
      assert.equal((await call(f.base, 'POST', `/api/v1/devices/${c.id}/revoke`, { token: bob, json: { reason: 'audit' } })).status, 204);
      const events = (await api('GET', `/events?after=${end}&limit=1000`)).json.events.filter((e: { deviceId?: string }) => e.deviceId === c.id);
      const kinds = events.map((e: { kind: string; actor: string }) => `${e.kind} by ${e.actor}`);
      assert.deepEqual(kinds, ['provision.pending by device', 'admin.approve by admin:alice', 'provision.approved by device', 'admin.revoke by admin:bob']);
      const approve = events[1];
      assert.equal(approve.detail.fingerprint, c.fingerprint);
      assert.equal(approve.source, '127.0.0.1');
      assert.deepEqual(events[3].detail, { reason: 'audit' });
    });
  });
});

describe('admin sidecar shutdown', () => {
  it('closes while an event stream and a long poll are open', async () => {
    const f = await startAdminServer('sd');
    const token = f.adminToken;
    // The feed already holds the first admin token's mint event: wait after it.
    const end = await lastEventSeq(f.base, token);
    const arrived = once(f.server.sidecar.server, 'request');
    const poll = call(f.base, 'GET', `/api/v1/events?after=${end}&wait=25`, { token }).catch((e: Error) => e);
    await arrived;
    const ac = new AbortController();
    const stream = await fetch(`${f.base}/api/v1/events/stream`, { headers: { authorization: `Bearer ${token}` }, signal: ac.signal });
    assert.equal(stream.status, 200);
    const reading = (async () => {
      const reader = stream.body!.getReader();
      for (;;) if ((await reader.read()).done) return 'ended';
    })().catch(() => 'ended');
    await f.close();
    assert.equal(await reading, 'ended');
    // The long poll is answered, not cut off: 200 with what the feed holds past its cursor (it was
    // waiting for a new event, so nothing), and the connection is closed after it.
    const p = await poll;
    assert.ok(!(p instanceof Error), `the long poll was answered: ${p instanceof Error ? p.message : ''}`);
    assert.equal(p.status, 200, p.text);
    assert.deepEqual(p.json, { events: [], next: end });
    assert.equal(p.headers.get('connection'), 'close');
    ac.abort();
  });
});
