/**
 * The in-memory store (src/store/memory/): the shared Store contract (contract.ts), then what is its
 * own — a staging area of another store refused, and nothing kept across instances.
 */
import assert from 'node:assert/strict';
import { MemoryStore } from '../../../src/store/memory/store.ts';
import { SqliteStore } from '../../../src/store/sqlite/store.ts';
import { copyStore, verifyCopy } from '../../../src/store/copy.ts';
import { T0, adminToken, allowEntry, fullAllow, fullDevice, rejectsWith, storeContract, upsertAllow } from '../../support/store-contract.ts';

storeContract('MemoryStore', { open: () => MemoryStore.open() });

describe('MemoryStore', () => {
  it('refuses a bulk import staged by another store', async () => {
    const [m, s] = [await MemoryStore.open(), await SqliteStore.open(':memory:')];
    const staged = await s.stageAllow();
    try {
      await staged.write([allowEntry('x')]);
      await rejectsWith(m.bulkUpsertAllow(staged), 'internal');
      assert.equal(await m.getAllow('x'), undefined);
    } finally {
      await staged.discard();
      await Promise.all([m.close(), s.close()]);
    }
  });

  it('keeps nothing across instances: a new store is empty', async () => {
    const a = await MemoryStore.open();
    await a.apply([upsertAllow('kept?')]);
    await a.close();
    const b = await MemoryStore.open();
    assert.deepEqual(Object.values(await b.counts()), [0, 0, 0, 0, 0, 0, 0, 0]);
    await b.close();
  });

  it('copies to and from SQLite record for record (idprov migrate works over the seam)', async () => {
    const [m, s, back] = [await MemoryStore.open(), await SqliteStore.open(':memory:'), await MemoryStore.open()];
    try {
      await s.apply([
        { kind: 'allow.upsert', entry: fullAllow },
        { kind: 'device.upsert', device: fullDevice },
        { kind: 'admin-token.put', token: adminToken('jti-1') },
        { kind: 'setting.put', name: 'nonce.secret', value: 'ab' },
        ...Array.from({ length: 1500 }, (_, i) => upsertAllow(`m-${i}`)),
        ...Array.from({ length: 1100 }, (_, i) => ({ kind: 'event', event: { at: T0 + i, kind: 'k', actor: 'system', detail: { i } } }) as const),
      ]);
      const r = await copyStore(s, m);
      assert.deepEqual([r.allowlist, r.devices, r.adminTokens, r.settings, r.events], [1501, 1, 1, 1, 1100]);
      assert.deepEqual(await verifyCopy(s, m), []);
      await copyStore(m, back);
      assert.deepEqual(await verifyCopy(s, back), []);
    } finally {
      await Promise.all([m.close(), s.close(), back.close()]);
    }
  });
});
