/**
 * Rate limits and bounded growth end to end (issue #6): token buckets per source address and per
 * device ID answering 4.29 with Max-Age and `err` 9 (docs/spec/idprov-coap-v1.md §4), the cap on waiting requests,
 * the expiry of stale ones and the event retention — the real server on loopback, devices over UDP.
 */
import assert from 'node:assert/strict';
import { ERROR_TABLE } from '../../../src/errors.ts';
import { parseResponse } from '../../../src/protocol/messages.ts';
import { PATHS } from '../../../tools/device-sim/client.ts';
import { coapRequest } from '../../support/coap-client.ts';
import { startAdminServer, type AdminFixture } from '../../support/admin-server.ts';
import { events } from '../../support/monitor-views.ts';

const ERR_RATE = ERROR_TABLE['rate-limited'].err!;

describe('rate limits over CoAP/UDP', () => {
  describe('per source address', () => {
    let f: AdminFixture;
    before(async () => {
      // One request a second with a burst of 3 from one address; the per-ID limit out of the way. The
      // server's clock stands still, so no token comes back however slow the machine is.
      const frozen = Date.now();
      f = await startAdminServer('rla', { rateLimitAddress: 1, rateBurstAddress: 3, rateLimitDevice: 0 }, () => frozen);
    });
    after(async () => {
      await f?.close();
    });

    it('answers 4.29 with Max-Age and err 9 once an address spends its burst on requests that do not decode', async () => {
      const junk = () => coapRequest({ port: f.server.coapPort, method: 'POST', path: PATHS.request, contentFormat: 18, payload: Buffer.from('not cbor at all') });
      for (let i = 0; i < 3; i++) assert.equal((await junk()).code, '4.00', 'within the burst: the decoding error');
      const g = await junk();
      assert.equal(g.code, '4.29');
      const answer = parseResponse(g.payload);
      assert.equal(answer.err, ERR_RATE);
      assert.ok(answer.retry! >= 1);
      assert.equal(g.maxAge, answer.retry, 'Max-Age repeats retry');
      assert.equal(answer.diag, undefined, 'no diagnostic any more: the bucket bounds those answers');
      // The same bucket covers refresh.
      const c = f.device();
      const rf = await c.post(PATHS.refresh, Buffer.from([0x80]));
      assert.equal(rf.code, '4.29');
      // A nonce challenge is never rate-limited (issue #11 F4): whoever filled the bucket with junk in
      // this address's name cannot keep a device here from the nonce it needs to prove its key.
      const ch = await c.post(PATHS.request, c.requestBodyMap());
      assert.equal(ch.code, '4.01');
      assert.equal(ch.body?.err, ERROR_TABLE.nonce.err);
      assert.ok(ch.body?.nonce);
    });

    it('answers 4.29 with Max-Age and err 9 once an address spends its signature budget, on request and refresh alike', async () => {
      const a = await f.provisionedDevice();
      await f.pendingDevice();
      assert.equal((await a.refresh()).status, 'approved', 'the third signature check of the burst');
      const b = f.device();
      await f.allow({ id: b.id, pk: b.publicKey });
      const r = await b.provision();
      assert.equal(r.code, '4.29', JSON.stringify(r));
      assert.equal(r.err, ERR_RATE);
      assert.ok(r.retry! >= 1);
      assert.equal((await a.refresh()).code, '4.29');
      assert.equal(await f.server.store.getDevice(b.id), undefined);
    });
  });

  describe('per device ID', () => {
    let f: AdminFixture;
    before(async () => {
      const frozen = Date.now();
      f = await startAdminServer('rld', { rateLimitDevice: 1, rateBurstDevice: 2, rateLimitAddress: 0 }, () => frozen);
    });
    after(async () => {
      await f?.close();
    });

    it('answers 4.29 with Max-Age and err 9 once a device ID spends its burst, on request and refresh alike', async () => {
      const c = await f.provisionedDevice();
      assert.equal((await c.refresh()).status, 'approved', 'the second authenticated request of the burst');
      const r = await c.provision();
      assert.equal(r.code, '4.29');
      assert.equal(r.err, ERR_RATE);
      assert.equal(r.errName, 'rate-limited');
      assert.ok(r.retry! >= 1);
      const rf = await c.refresh();
      assert.equal(rf.code, '4.29');
      assert.equal(rf.err, ERR_RATE);
    });

    it('limits each ID on its own', async () => {
      const a = await f.provisionedDevice();
      await a.provision();
      assert.equal((await a.provision()).code, '4.29');
      const b = await f.provisionedDevice();
      assert.equal(b.token !== undefined, true, 'another ID is not affected');
    });

    it('counts only authenticated requests, so nobody can spend a device budget in its name', async () => {
      const victim = f.device();
      await f.allow({ id: victim.id, pk: victim.publicKey });
      const forger = f.device({ id: victim.id });
      // Unsigned first POSTs and requests signed with another key: 4.01 each, the victim's bucket untouched.
      for (let i = 0; i < 5; i++) assert.equal((await forger.post(PATHS.request, forger.requestBodyMap())).code, '4.01');
      const r = await victim.provision();
      assert.equal(r.status, 'approved', JSON.stringify(r));
    });
  });
});

describe('bounded growth over CoAP/UDP', () => {
  describe('the cap on waiting requests (maxPending)', () => {
    let f: AdminFixture;
    before(async () => {
      f = await startAdminServer('cap', { maxPending: 10 });
    });
    after(async () => {
      await f?.close();
    });

    it('never keeps more than maxPending waiting requests, and keeps the newest', async () => {
      const devices = [];
      for (let i = 0; i < 15; i++) devices.push(await f.pendingDevice());
      assert.equal(await f.server.store.pendingWaiting(), 10);
      assert.equal((await f.server.store.counts()).pending, 10);
      assert.ok(await f.server.store.getPending(devices[14]!.id), 'the newest request is kept');
      // A dropped device is simply asked to wait again when it polls.
      const dropped = [];
      for (const d of devices) if (!(await f.server.store.getPending(d.id))) dropped.push(d);
      assert.equal(dropped.length, 5);
      assert.equal((await dropped[0]!.provision()).status, 'pending');
      assert.equal(await f.server.store.pendingWaiting(), 10);
    });

    it('never drops an approval or a rejection to make room', async () => {
      const approved = await f.pendingDevice();
      await f.server.admin.approve(approved.id, { fingerprint: approved.fingerprint }, { by: 'test' });
      await f.server.admin.reject('cap-rejected', 'no', { by: 'test' });
      for (let i = 0; i < 12; i++) await f.pendingDevice();
      assert.equal((await f.server.store.getPending(approved.id))?.status, 'approved');
      assert.equal((await f.server.store.getPending('cap-rejected'))?.status, 'rejected');
      assert.equal(await f.server.store.pendingWaiting(), 10);
    });
  });

  describe('expiry and retention (the periodic sweep, clock injected)', () => {
    let f: AdminFixture;
    const clock = { ms: Date.now() };
    before(async () => {
      f = await startAdminServer('sweep', { pendingExpiry: 3600, eventRetention: 1 }, () => clock.ms);
    });
    after(async () => {
      await f?.close();
    });

    it('deletes a waiting request not seen for pendingExpiry, oldest unseen first, and keeps the one still polling', async () => {
      const stale = await f.pendingDevice();
      clock.ms += 1800_000;
      const live = await f.pendingDevice();
      clock.ms += 1800_000 + 1000;
      assert.deepEqual(await f.server.service.sweep(), { pendingExpired: 1, pendingTrimmed: 0, eventsPruned: 0 });
      assert.equal(await f.server.store.getPending(stale.id), undefined);
      assert.ok(await f.server.store.getPending(live.id));
      const ev = (await events(f)).filter((e) => e.kind === 'system.sweep');
      assert.equal(ev.at(-1)?.detail?.['pendingExpired'], 1);
    });

    it('prunes events older than eventRetention days', async () => {
      const before = await events(f);
      assert.ok(before.length > 0);
      clock.ms += 86_400_000 + 1000;
      await f.pendingDevice();
      const r = await f.server.service.sweep();
      assert.ok(r.eventsPruned >= before.length, JSON.stringify(r));
      const after = await events(f);
      assert.equal(after.some((e) => before.some((b) => b.seq === e.seq)), false, 'every event from a day ago is gone');
      assert.ok(after.some((e) => e.kind === 'provision.pending'), 'the recent ones stay');
    });
  });
});
