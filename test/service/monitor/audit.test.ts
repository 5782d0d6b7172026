/**
 * The audit trail (issue #6): every decision and every admin action lands in the append-only event log
 * with who, what, when and from where. Admins act through the sidecar with their own tokens; the feed
 * a Hub (or `oob watch`) reads shows `admin:<name>` and the source address behind each approval and
 * revocation, next to the devices' own decisions.
 */
import assert from 'node:assert/strict';
import { call, lastEventSeq, nowS, startAdminServer, type AdminFixture } from '../../support/admin-server.ts';
import { events } from '../../support/monitor-views.ts';

describe('the audit trail through the sidecar', () => {
  let f: AdminFixture;
  let alice: string;
  let bob: string;

  before(async () => {
    f = await startAdminServer('audit');
    alice = await f.server.auth.mint({ name: 'alice', role: 'admin' }, nowS());
    bob = await f.server.auth.mint({ name: 'bob', role: 'admin' }, nowS());
  });
  after(async () => {
    await f?.close();
  });

  it('records the admin identity and source address behind each approval and revocation', async () => {
    const from = await lastEventSeq(f.base, f.adminToken);
    const t0 = nowS();
    const a = await f.pendingDevice();
    const b = await f.pendingDevice();
    assert.equal((await call(f.base, 'POST', `/api/v1/pending/${a.id}/approve`, { token: alice, json: { fingerprint: a.fingerprint } })).status, 200);
    assert.equal((await call(f.base, 'POST', `/api/v1/pending/${b.id}/approve`, { token: bob, json: { fingerprint: b.fingerprint } })).status, 200);
    assert.equal((await a.provision()).status, 'approved');
    assert.equal((await b.provision()).status, 'approved');
    assert.equal((await call(f.base, 'POST', `/api/v1/devices/${a.id}/revoke`, { token: bob, json: { reason: 'stolen' } })).status, 204);
    assert.equal((await call(f.base, 'POST', `/api/v1/devices/${b.id}/revoke`, { token: alice })).status, 204);
    assert.equal((await a.refresh()).errName, 'revoked');

    const log = await events(f, from);
    const one = (kind: string, id: string) => {
      const found = log.filter((e) => e.kind === kind && e.deviceId === id);
      assert.equal(found.length, 1, `one ${kind} of ${id} in ${JSON.stringify(log, null, 1)}`);
      const e = found[0]!;
      assert.ok(Date.parse(e.at) / 1000 >= t0 - 1, 'when');
      return e;
    };
    const approvals = [one('admin.approve', a.id), one('admin.approve', b.id)];
    assert.deepEqual(approvals.map((e) => e.actor), ['admin:alice', 'admin:bob']);
    assert.deepEqual(approvals.map((e) => e.source), ['127.0.0.1', '127.0.0.1']);
    assert.deepEqual(approvals.map((e) => e.detail?.['fingerprint']), [a.fingerprint, b.fingerprint], 'what exactly was approved');
    const revocations = [one('admin.revoke', a.id), one('admin.revoke', b.id)];
    assert.deepEqual(revocations.map((e) => e.actor), ['admin:bob', 'admin:alice']);
    assert.deepEqual(revocations.map((e) => e.source), ['127.0.0.1', '127.0.0.1']);
    assert.equal(revocations[0]!.detail?.['reason'], 'stolen');

    // The devices' own decisions, in order, each with the device as actor and its address.
    for (const c of [a, b]) {
      const mine = log.filter((e) => e.deviceId === c.id).map((e) => e.kind);
      assert.deepEqual(mine.filter((k) => k !== 'refresh.refused'), ['provision.pending', 'admin.approve', 'provision.approved', 'admin.revoke']);
      const approved = one('provision.approved', c.id);
      assert.equal(approved.actor, 'device');
      assert.match(approved.source ?? '', /^127\.0\.0\.1:\d+$/);
    }
    assert.equal(one('refresh.refused', a.id).detail?.['code'], 'revoked');
    const seqs = log.map((e) => e.seq);
    assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y), 'append-only: in commit order');
  });

  it('records rejections, the provisioning switch and flag clearing with the admin identity', async () => {
    const from = await lastEventSeq(f.base, f.adminToken);
    const c = await f.pendingDevice();
    await f.device({ id: c.id }).provision();
    assert.equal((await call(f.base, 'POST', `/api/v1/pending/${c.id}/reject`, { token: alice, json: { reason: 'unknown board' } })).status, 204);
    assert.equal((await call(f.base, 'PUT', '/api/v1/provisioning', { token: bob, json: { enabled: false, reason: 'maintenance' } })).status, 200);
    assert.equal((await call(f.base, 'PUT', '/api/v1/provisioning', { token: bob, json: { enabled: true } })).status, 200);
    const flag = (await call(f.base, 'GET', '/api/v1/flags', { token: alice })).json.items.find((x: { deviceIds: string[] }) => x.deviceIds.includes(c.id));
    assert.equal((await call(f.base, 'POST', `/api/v1/flags/${flag.id}/clear`, { token: alice })).status, 200);
    const log = await events(f, from);
    const by = (kind: string) => log.filter((e) => e.kind === kind).map((e) => `${e.actor}@${e.source}`);
    assert.deepEqual(by('admin.reject'), ['admin:alice@127.0.0.1']);
    assert.deepEqual(by('admin.disable'), ['admin:bob@127.0.0.1']);
    assert.deepEqual(by('admin.enable'), ['admin:bob@127.0.0.1']);
    assert.deepEqual(by('flag.cleared'), ['admin:alice@127.0.0.1']);
    assert.deepEqual(by('flag.raised'), [`system@${log.find((e) => e.kind === 'flag.raised')!.source}`]);
  });
});
