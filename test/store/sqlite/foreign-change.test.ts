/**
 * SqliteStore.onForeignChange: another process's commits to the same file (the CLI while the server
 * runs) are noticed by `PRAGMA data_version` on the writer connection; the store's own are not.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteStore } from '../../../src/store/sqlite/store.ts';

const entry = (id: string) => ({ id, secret: 'a-printed-secret', type: 0 as const, createdAt: 1_800_000_000 });
const until = async (check: () => boolean, ms = 2000) => {
  const end = Date.now() + ms;
  while (!check() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  return check();
};

describe('SqliteStore.onForeignChange', () => {
  let dir: string;
  let store: SqliteStore;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'idprov-foreign-'));
    store = await SqliteStore.open(join(dir, 'idprov.db'));
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("calls back after another connection's commit, and not after its own", async () => {
    const calls: unknown[] = [];
    const stop = await store.onForeignChange((k) => calls.push(k), 20);
    await store.apply([{ kind: 'allow.upsert', entry: entry('own-1') }]);
    await store.apply([{ kind: 'allow.upsert', entry: entry('own-2') }]);
    await new Promise((r) => setTimeout(r, 150));
    assert.deepEqual(calls, [], 'its own commits are not foreign');
    const other = await SqliteStore.open(join(dir, 'idprov.db'));
    await other.apply([{ kind: 'allow.upsert', entry: entry('cli-1') }]);
    await other.close();
    assert.ok(await until(() => calls.length === 1));
    assert.deepEqual(calls, ['unknown']);
    stop();
  });

  it('stops looking when stopped or closed, and never calls back for a :memory: database', async () => {
    const mem = await SqliteStore.open(':memory:');
    let memCalls = 0;
    await mem.onForeignChange(() => memCalls++, 5);
    await mem.close();
    let calls = 0;
    await store.onForeignChange(() => calls++, 10);
    await store.close();
    const other = await SqliteStore.open(join(dir, 'idprov.db'));
    await other.apply([{ kind: 'allow.upsert', entry: entry('after-close') }]);
    await other.close();
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(calls, 0);
    assert.equal(memCalls, 0);
    store = await SqliteStore.open(join(dir, 'idprov.db'));
  });
});
