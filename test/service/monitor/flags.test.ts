/**
 * The security monitor's flags end to end (issue #6): the real server on loopback, simulated devices
 * over CoAP/UDP, flags read through the sidecar. One test per flag kind showing it fires, next to one
 * showing that the well-behaved version of the same traffic raises nothing.
 */
import assert from 'node:assert/strict';
import { call, startAdminServer, type AdminFixture } from '../../support/admin-server.ts';
import { events, flags, flagsOf, mac, oneFlag } from '../../support/monitor-views.ts';

describe('security monitor flags over CoAP/UDP', () => {
  let f: AdminFixture;

  before(async () => {
    // The many-IDs count has its own server below: every test device here comes from 127.0.0.1.
    f = await startAdminServer('flag', { manyIdsThreshold: 0 });
  });
  after(async () => {
    await f?.close();
  });

  describe('key-changed', () => {
    it('flags a waiting device ID that asks again with another key, and shows the new key', async () => {
      const first = await f.pendingDevice();
      assert.deepEqual(await flagsOf(f, first.id), [], 'asking once raises nothing');
      const second = f.device({ id: first.id });
      assert.equal((await second.provision()).status, 'pending');
      const flag = await oneFlag(f, 'key-changed', first.id);
      assert.deepEqual(flag.deviceIds, [first.id]);
      assert.equal(flag.evidence['previous'], first.publicKey.toString('hex'));
      assert.equal(flag.evidence['got'], second.publicKey.toString('hex'));
      assert.equal(flag.count, 1);
      assert.equal(flag.status, 'open');
      const raised = (await events(f)).filter((e) => e.kind === 'flag.raised' && e.detail?.['flag'] === flag.id);
      assert.equal(raised.length, 1, 'the event feed carries flag.raised');
      assert.equal(raised[0]!.actor, 'system');
    });

    it('merges repeated key changes of one ID into one flag with a count', async () => {
      const first = await f.pendingDevice();
      for (let i = 0; i < 3; i++) assert.equal((await f.device({ id: first.id }).provision()).status, 'pending');
      const flag = await oneFlag(f, 'key-changed', first.id);
      assert.equal(flag.count, 3);
      assert.equal((await events(f)).filter((e) => e.kind === 'flag.raised' && e.detail?.['flag'] === flag.id).length, 1, 'one flag.raised, however often it is seen');
    });

    it('does not flag a waiting device that polls with its own key', async () => {
      const c = await f.pendingDevice();
      assert.equal((await c.provision()).status, 'pending');
      assert.equal((await c.provision()).status, 'pending');
      assert.deepEqual(await flagsOf(f, c.id), []);
    });

    it('flags a provisioned device ID asked for with another key, and refuses it (4.03 key-mismatch)', async () => {
      const owner = await f.provisionedDevice();
      const other = f.device({ id: owner.id });
      const r = await other.provision();
      assert.equal(r.code, '4.03');
      assert.equal(r.errName, 'key-mismatch');
      const flag = await oneFlag(f, 'key-changed', owner.id);
      assert.equal(flag.evidence['recorded'], owner.publicKey.toString('hex'));
      assert.equal(flag.evidence['got'], other.publicKey.toString('hex'));
    });

    it('does not flag a provisioned device that provisions again with its own key', async () => {
      const c = await f.provisionedDevice();
      assert.equal((await c.provision()).status, 'approved');
      assert.equal((await c.refresh()).status, 'approved');
      assert.deepEqual(await flagsOf(f, c.id), []);
    });
  });

  describe('key-mismatch', () => {
    it('flags a request whose key differs from the allowlisted key', async () => {
      const c = f.device();
      const listed = f.device();
      await f.allow({ id: c.id, pk: listed.publicKey });
      const r = await c.provision();
      assert.equal(r.errName, 'key-mismatch');
      const flag = await oneFlag(f, 'key-mismatch', c.id);
      assert.equal(flag.evidence['expected'], listed.publicKey.toString('hex'));
      assert.equal(flag.evidence['got'], c.publicKey.toString('hex'));
      assert.equal(flag.evidence['source']?.startsWith('127.0.0.1:'), true);
    });

    it('does not flag the allowlisted key', async () => {
      const c = await f.provisionedDevice();
      assert.deepEqual(await flagsOf(f, c.id), []);
    });
  });

  describe('mac-mismatch', () => {
    it('flags a request whose MAC differs from the allowlisted MAC', async () => {
      const c = f.device({ mac: '02:00:00:00:01:02' });
      await f.allow({ id: c.id, mac: mac('02:00:00:00:01:01') });
      const r = await c.provision();
      assert.equal(r.errName, 'mac-mismatch');
      const flag = await oneFlag(f, 'mac-mismatch', c.id);
      assert.equal(flag.evidence['expected'], '020000000101');
      assert.equal(flag.evidence['got'], '020000000102');
    });

    it('does not flag the allowlisted MAC', async () => {
      const c = f.device({ mac: '02:00:00:00:01:03' });
      await f.allow({ id: c.id, mac: mac('02:00:00:00:01:03') });
      assert.equal((await c.provision()).status, 'approved');
      assert.deepEqual(await flagsOf(f, c.id), []);
    });
  });

  describe('mac-changed', () => {
    it('flags a provisioned device that reports another MAC than the one recorded at provisioning', async () => {
      const c = await f.provisionedDevice({ mac: '02:00:00:00:02:01' });
      const seed = c.deviceKeys.seed;
      const moved = f.device({ id: c.id, seed, mac: '02:00:00:00:02:02' });
      assert.equal((await moved.provision()).status, 'approved', 'the key decides; the MAC change is flagged');
      const flag = await oneFlag(f, 'mac-changed', c.id);
      assert.equal(flag.evidence['recorded'], '020000000201');
      assert.equal(flag.evidence['got'], '020000000202');
    });

    it('does not flag a provisioned device that reports the same MAC', async () => {
      const c = await f.provisionedDevice({ mac: '02:00:00:00:02:03' });
      assert.equal((await c.provision()).status, 'approved');
      assert.deepEqual(await flagsOf(f, c.id), []);
    });
  });

  describe('oob-failed', () => {
    it('flags a device that cannot prove the out-of-band secret of its entry', async () => {
      const c = f.device({ secret: 'not-the-printed-one' });
      await f.allow({ id: c.id, secret: 'the-printed-secret-1234' });
      const r = await c.provision();
      assert.equal(r.code, '4.01');
      assert.equal(r.errName, 'oob-mismatch');
      const flag = await oneFlag(f, 'oob-failed', c.id);
      assert.equal(flag.evidence['proofSent'], 'yes');
      assert.equal(JSON.stringify(flag).includes('the-printed-secret'), false, 'the secret is never shown');
    });

    it('does not flag a device that proves the secret', async () => {
      const c = f.device({ secret: 'the-printed-secret-5678' });
      await f.allow({ id: c.id, secret: 'the-printed-secret-5678' });
      assert.equal((await c.provision()).status, 'approved');
      assert.deepEqual(await flagsOf(f, c.id), []);
    });
  });

  describe('approved-key-changed', () => {
    it('flags an approved ID that then asks with another key, and keeps it waiting', async () => {
      const c = await f.pendingDevice();
      const a = await call(f.base, 'POST', `/api/v1/pending/${c.id}/approve`, { token: f.adminToken, json: { fingerprint: c.fingerprint } });
      assert.equal(a.status, 200, a.text);
      const other = f.device({ id: c.id });
      assert.equal((await other.provision()).status, 'pending');
      const flag = await oneFlag(f, 'approved-key-changed', c.id);
      assert.equal(flag.evidence['approved'], c.publicKey.toString('hex'));
      assert.equal(flag.evidence['got'], other.publicKey.toString('hex'));
      assert.equal((await c.provision()).status, 'approved', 'the approved key still gets its token');
    });

    it('does not flag an approved ID that asks with the approved key', async () => {
      const c = await f.pendingDevice();
      await call(f.base, 'POST', `/api/v1/pending/${c.id}/approve`, { token: f.adminToken, json: { fingerprint: c.fingerprint } });
      assert.equal((await c.provision()).status, 'approved');
      assert.deepEqual(await flagsOf(f, c.id), []);
    });
  });

  describe('duplicate-mac', () => {
    it('flags a MAC that a second device ID reports, naming both IDs', async () => {
      const a = await f.pendingDevice({ mac: '02:00:00:00:03:01' });
      const b = f.device({ mac: '02:00:00:00:03:01' });
      assert.equal((await b.provision()).status, 'pending');
      const flag = await oneFlag(f, 'duplicate-mac', b.id);
      assert.deepEqual(flag.deviceIds, [b.id, a.id]);
      assert.equal(flag.subject, 'mac:020000000301');
      assert.equal(flag.evidence['mac'], '020000000301');
    });

    it('adds a third ID with the same MAC to the same flag', async () => {
      const a = await f.provisionedDevice({ mac: '02:00:00:00:03:02' });
      const b = await f.pendingDevice({ mac: '02:00:00:00:03:02' });
      const c = await f.pendingDevice({ mac: '02:00:00:00:03:02' });
      const flag = await oneFlag(f, 'duplicate-mac', a.id);
      assert.deepEqual([...flag.deviceIds].sort(), [a.id, b.id, c.id].sort());
      assert.equal(flag.count, 2);
    });

    it('does not flag a device that keeps reporting its own MAC', async () => {
      const c = await f.provisionedDevice({ mac: '02:00:00:00:03:03' });
      assert.equal((await c.provision()).status, 'approved');
      assert.deepEqual(await flagsOf(f, c.id), []);
    });
  });

  describe('clearing', () => {
    it('clears a flag for an admin, records who did it, and raises a new flag when it happens again', async () => {
      const first = await f.pendingDevice();
      await f.device({ id: first.id }).provision();
      const flag = await oneFlag(f, 'key-changed', first.id);
      const token = await f.server.auth.mint({ name: 'carol', role: 'admin' }, Math.floor(Date.now() / 1000));
      const a = await call(f.base, 'POST', `/api/v1/flags/${flag.id}/clear`, { token, json: { note: 'installer swapped the board' } });
      assert.equal(a.status, 200, a.text);
      assert.equal(a.json.status, 'cleared');
      assert.equal(a.json.clearedBy, 'admin:carol');
      assert.deepEqual(await flagsOf(f, first.id), [], 'no longer open');
      assert.equal((await flags(f, 'cleared')).some((x) => x.id === flag.id), true, 'kept as cleared');
      const ev = (await events(f)).find((e) => e.kind === 'flag.cleared' && e.detail?.['flag'] === flag.id);
      assert.equal(ev?.actor, 'admin:carol');
      assert.equal(ev?.source, '127.0.0.1');
      assert.equal(ev?.detail?.['note'], 'installer swapped the board');
      const again = await call(f.base, 'POST', `/api/v1/flags/${flag.id}/clear`, { token });
      assert.equal(again.status, 409, 'a cleared flag cannot be cleared twice');
      await f.device({ id: first.id }).provision();
      const next = await oneFlag(f, 'key-changed', first.id);
      assert.notEqual(next.id, flag.id);
      assert.equal(next.count, 1);
    });

    it('treats a cleared duplicate-mac flag as acknowledged for its IDs, and flags a new ID with that MAC', async () => {
      const a = await f.pendingDevice({ mac: '02:00:00:00:05:01' });
      const b = await f.pendingDevice({ mac: '02:00:00:00:05:01' });
      const flag = await oneFlag(f, 'duplicate-mac', b.id);
      assert.equal((await call(f.base, 'POST', `/api/v1/flags/${flag.id}/clear`, { token: f.adminToken })).status, 200);
      assert.equal((await b.provision()).status, 'pending');
      assert.equal((await a.provision()).status, 'pending');
      assert.deepEqual(await flagsOf(f, b.id), [], 'the same two IDs sharing the MAC raise nothing new');
      const c = await f.pendingDevice({ mac: '02:00:00:00:05:01' });
      const next = await oneFlag(f, 'duplicate-mac', c.id);
      assert.notEqual(next.id, flag.id);
      assert.deepEqual([...next.deviceIds].sort(), [a.id, b.id, c.id].sort());
    });

    it('answers 404 for a flag that does not exist', async () => {
      const a = await call(f.base, 'POST', '/api/v1/flags/0123456789abcdef/clear', { token: f.adminToken });
      assert.equal(a.status, 404);
      assert.equal(a.json.error.code, 'not-found');
    });
  });
});

describe('the many-ids flag over CoAP/UDP', () => {
  let f: AdminFixture;

  before(async () => {
    f = await startAdminServer('many', { manyIdsThreshold: 5, manyIdsWindow: 3600 });
  });
  after(async () => {
    await f?.close();
  });

  it('raises nothing below the threshold, then flags the source address at the fifth distinct ID', async () => {
    const seen = [];
    for (let i = 0; i < 4; i++) seen.push(await f.pendingDevice());
    // Asking again with the same IDs does not count them twice.
    for (const c of seen) assert.equal((await c.provision()).status, 'pending');
    assert.deepEqual((await flags(f)).filter((x) => x.kind === 'many-ids'), []);
    const fifth = await f.pendingDevice();
    const found = (await flags(f)).filter((x) => x.kind === 'many-ids');
    assert.equal(found.length, 1);
    const flag = found[0]!;
    assert.equal(flag.subject, 'addr:127.0.0.1');
    assert.equal(flag.evidence['address'], '127.0.0.1');
    assert.equal(flag.evidence['distinct'], '5');
    assert.equal(flag.deviceIds[0], fifth.id);
    assert.equal(flag.deviceIds.length, 5, 'the flag names the recent IDs');
    const sixth = await f.pendingDevice();
    const after = (await flags(f)).filter((x) => x.kind === 'many-ids');
    assert.equal(after.length, 1, 'one flag per address');
    assert.equal(after[0]!.count, 2);
    assert.ok(after[0]!.deviceIds.includes(sixth.id));
  });
});
