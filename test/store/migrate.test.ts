/**
 * `idprov migrate` (issue 16): SQLite → PostgreSQL → SQLite through the CLI, verified record by record,
 * and the verification itself shown to catch a difference.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { FlagRecord } from '../../src/domain.ts';
import { copyStore, verifyCopy } from '../../src/store/copy.ts';
import { PostgresStore } from '../../src/store/postgres/store.ts';
import { SqliteStore } from '../../src/store/sqlite/store.ts';
import type { Mutation } from '../../src/store/store.ts';
import { tempDir } from '../support/temp-dir.ts';
import { TestPostgres } from '../support/postgres.ts';
import {
  T0,
  adminToken,
  currentKey,
  fullAllow,
  fullDevice,
  fullPending,
  fullRevocation,
  minimalAllow,
  minimalDevice,
  minimalPending,
  rejectsWith,
  retiredKey,
  upsertAllow,
} from '../support/store-contract.ts';

const flag: FlagRecord = {
  id: 'flag-1', kind: 'duplicate-mac', subject: 'aa:bb', deviceIds: ['dev-full', 'dev-min'], evidence: { mac: 'aa:bb', 'é"': 'x' },
  firstSeen: T0, lastSeen: T0 + 5, count: 2, clearedAt: T0 + 9, clearedBy: 'admin:alice',
};

/** A second flag, still open: `flag` without its clearing. */
const { clearedAt: _clearedAt, clearedBy: _clearedBy, ...openFlag } = flag;

function records(): Mutation[] {
  const ms: Mutation[] = [
    { kind: 'allow.upsert', entry: fullAllow },
    { kind: 'allow.upsert', entry: minimalAllow },
    { kind: 'device.upsert', device: fullDevice },
    { kind: 'device.upsert', device: minimalDevice },
    { kind: 'pending.upsert', pending: fullPending },
    { kind: 'pending.upsert', pending: minimalPending },
    { kind: 'revocation.put', revocation: fullRevocation },
    { kind: 'key.put', key: retiredKey },
    { kind: 'key.put', key: currentKey },
    { kind: 'setting.put', name: 'nonce.secret', value: 'ab'.repeat(32) },
    { kind: 'setting.put', name: 'provisioning.enabled', value: 'false' },
    { kind: 'flag.put', flag },
    { kind: 'flag.put', flag: { ...openFlag, id: 'flag-2', subject: 'cc' } },
    { kind: 'admin-token.put', token: adminToken('jti-admin', { expiresAt: T0 + 86_400 }) },
    { kind: 'admin-token.put', token: adminToken('jti-hub', { role: 'hub', name: 'hub-1', revokedAt: T0 + 9, revokedBy: 'admin:alice', revokedReason: 'rotated' }) },
  ];
  for (let i = 0; i < 2500; i++) ms.push(upsertAllow(`bulk-${String(i).padStart(4, '0')}`, i % 7 ? {} : { consumedAt: T0 + i, secret: `s-${i}` }));
  for (let i = 0; i < 1200; i++) ms.push({ kind: 'event', event: { at: T0 + i, kind: `k${i % 5}`, actor: 'system', ...(i % 3 ? { deviceId: `d${i}`, detail: { i, nested: [i, 'x'] } } : {}) } });
  return ms;
}

const cli = (...args: string[]) => promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/cli/idprov.ts', ...args], { timeout: 120_000 });

describe('idprov migrate', function () {
  this.timeout(180_000);
  let pg: TestPostgres;
  const t = tempDir('idprov-migrate-');
  before(async () => {
    pg = await TestPostgres.start();
  });
  after(async () => {
    await pg?.stop();
    t.cleanup();
  });

  it('copies a SQLite database into PostgreSQL and back, every record equal to the original', async () => {
    const src = join(t.dir, 'src.db');
    const s = await SqliteStore.open(src);
    await s.apply(records());
    // The oldest 100 events pruned, as retention does: the feed's seqs now start at 101.
    await s.apply([{ kind: 'events.prune', before: T0 + 100, max: 1_000_000, limit: 10_000 }]);
    await s.close();
    const url = pg.createDatabase('migrate');
    const out = JSON.parse((await cli('migrate', '--from', `sqlite:${src}`, '--to', url)).stdout) as { copied: Record<string, number>; verified: boolean };
    assert.equal(out.verified, true);
    assert.deepEqual(out.copied, { allowlist: 2502, devices: 2, pending: 2, revocations: 1, keys: 2, settings: 2, events: 1100, flags: 2, adminTokens: 2 });
    const back = join(t.dir, 'back.db');
    const again = JSON.parse((await cli('migrate', '--from', url, '--to', `sqlite:${back}`)).stdout) as { verified: boolean };
    assert.equal(again.verified, true);
    const [a, b] = await Promise.all([SqliteStore.open(src), SqliteStore.open(back)]);
    try {
      assert.deepEqual(await verifyCopy(a, b), [], 'the round trip is exact');
      assert.deepEqual(await b.getAllow('dev-full'), fullAllow);
      assert.equal(await b.getSetting('nonce.secret'), 'ab'.repeat(32), "the source's nonce secret replaced the target's own");
      assert.equal((await b.getAdminToken('jti-hub'))?.revokedReason, 'rotated', 'the token registry came along, revocations included');
      // A Hub that had read the feed up to seq 1150 on the source goes on from there on the copy.
      assert.deepEqual(await b.listEvents(1150, 5), await a.listEvents(1150, 5));
      assert.deepEqual((await b.listEvents(1150, 5)).map((e) => e.seq), [1151, 1152, 1153, 1154, 1155]);
      assert.equal((await b.listEvents(0, 1))[0]?.seq, 101, 'seqs are kept, not renumbered from 1');
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('reports a record that differs, and refuses a target that already holds records', async () => {
    const a = await SqliteStore.open(':memory:');
    const b = await PostgresStore.open(pg.createDatabase('verify'));
    try {
      await a.apply(records().slice(0, 15));
      await copyStore(a, b);
      assert.deepEqual(await verifyCopy(a, b), []);
      await b.apply([{ kind: 'device.upsert', device: { ...fullDevice, lastSeen: fullDevice.lastSeen + 1 } }]);
      assert.deepEqual(await verifyCopy(a, b), ['devices: dev-full ≠ dev-full']);
      await b.apply([{ kind: 'device.upsert', device: fullDevice }, { kind: 'admin-token.revoke', jti: 'jti-admin', at: T0 + 1, by: 'admin:x', reason: null }]);
      assert.deepEqual(await verifyCopy(a, b), ['admin tokens: jti-admin ≠ jti-admin'], 'a revocation in one copy only is a difference');
      await rejectsWith(copyStore(a, b), 'conflict');
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});
