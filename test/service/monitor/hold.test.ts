/**
 * The hold-flagged policy end to end (issue #6): with `holdFlagged` on, a device with an open flag
 * waits (2.05, no token) instead of being provisioned, until an admin clears the flag.
 */
import assert from 'node:assert/strict';
import { call, startAdminServer, type AdminFixture } from '../../support/admin-server.ts';
import { events, oneFlag } from '../../support/monitor-views.ts';

describe('holding flagged devices (holdFlagged)', () => {
  describe('when on', () => {
    let f: AdminFixture;
    before(async () => {
      f = await startAdminServer('hold', { holdFlagged: true, manyIdsThreshold: 3 });
    });
    after(async () => {
      await f?.close();
    });

    it('holds an allowlisted device whose MAC another ID reports, and provisions it once the flag is cleared', async () => {
      const other = await f.pendingDevice({ mac: '02:00:00:00:04:01' });
      const c = f.device({ mac: '02:00:00:00:04:01' });
      await f.allow({ id: c.id, pk: c.publicKey });
      const held = await c.provision();
      assert.equal(held.status, 'pending', JSON.stringify(held));
      assert.equal(held.code, '2.05');
      assert.equal(held.token, undefined);
      assert.ok(held.retry! > 0);
      assert.equal(await f.server.store.getDevice(c.id), undefined, 'nothing was provisioned');
      const flag = await oneFlag(f, 'duplicate-mac', c.id);
      assert.deepEqual(flag.deviceIds, [c.id, other.id]);
      const ev = (await events(f)).filter((e) => e.kind === 'provision.held' && e.deviceId === c.id);
      assert.equal(ev.length, 1);
      assert.deepEqual(ev[0]!.detail?.['flags'], [flag.id]);
      assert.equal((await c.provision()).status, 'pending', 'still held while the flag is open');

      const a = await call(f.base, 'POST', `/api/v1/flags/${flag.id}/clear`, { token: f.adminToken });
      assert.equal(a.status, 200, a.text);
      const r = await c.provision();
      assert.equal(r.status, 'approved', JSON.stringify(r));
    });

    it('holds a provisioned device whose MAC changed (the flag raised by the same request)', async () => {
      const c = await f.provisionedDevice({ mac: '02:00:00:00:04:02' });
      const moved = f.device({ id: c.id, seed: c.deviceKeys.seed, mac: '02:00:00:00:04:03' });
      assert.equal((await moved.provision()).status, 'pending');
      await oneFlag(f, 'mac-changed', c.id);
      assert.equal((await c.refresh()).status, 'approved', 'the token it already holds still refreshes');
    });

    it('does not hold devices for a many-ids flag on their address (a NAT looks the same)', async () => {
      for (let i = 0; i < 3; i++) await f.pendingDevice();
      const c = await f.provisionedDevice();
      assert.ok((await oneFlag(f, 'many-ids', c.id)).deviceIds.includes(c.id));
      assert.ok(c.token, 'provisioned despite the address flag');
    });

    it('does not hold an unflagged device', async () => {
      const c = f.device();
      await f.allow({ id: c.id, pk: c.publicKey });
      assert.equal((await c.provision()).status, 'approved');
    });
  });

  describe('when off (the default)', () => {
    let f: AdminFixture;
    before(async () => {
      f = await startAdminServer('nohold');
    });
    after(async () => {
      await f?.close();
    });

    it('provisions an allowlisted device even with an open flag, and still flags it', async () => {
      await f.pendingDevice({ mac: '02:00:00:00:04:09' });
      const c = f.device({ mac: '02:00:00:00:04:09' });
      await f.allow({ id: c.id, pk: c.publicKey });
      assert.equal((await c.provision()).status, 'approved');
      await oneFlag(f, 'duplicate-mac', c.id);
    });
  });
});
