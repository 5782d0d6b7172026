/**
 * Schema upgrades: a database written by the previous release's own code (commit d20115d; see
 * fixtures/upgrade/generate.ts for how the dump was made) opens with today's code, which applies its
 * newer migrations, and every record the old code read from it is still there, unchanged; then a
 * server on it provisions a device the old server had approved.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sqlite3 from 'sqlite3';
import { loadConfig } from '../../src/config.ts';
import { silentLogger } from '../../src/log.ts';
import { startServer } from '../../src/server.ts';
import { MIGRATIONS, SqliteStore } from '../../src/store/sqlite/store.ts';
import { DeviceClient } from '../../tools/device-sim/client.ts';
import { snapshot } from '../../fixtures/upgrade/snapshot.ts';
import { tempDir } from '../support/temp-dir.ts';

const REV = 'd20115d';
const dump = readFileSync(new URL(`../../fixtures/upgrade/${REV}.sql`, import.meta.url), 'utf8');
const expected = (JSON.parse(readFileSync(new URL(`../../fixtures/upgrade/${REV}.json`, import.meta.url), 'utf8')) as { records: Record<string, Record<string, unknown>[]> }).records;

/** Replay an SQL dump into a new database file. */
function load(path: string, sql: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const db = new sqlite3.Database(path, (e) => {
      if (e) return reject(e);
      db.exec(sql, (ee) => db.close((ce) => (ee ?? ce ? reject(ee ?? ce) : resolve())));
    });
  });
}

function rowCounts(path: string): Promise<Record<string, number>> {
  return new Promise((resolve, reject) => {
    const db = new sqlite3.Database(path, sqlite3.OPEN_READONLY, (e) => {
      if (e) return reject(e);
      db.all("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'", async (err, rows: { name: string }[]) => {
        if (err) return reject(err);
        const out: Record<string, number> = {};
        for (const { name } of rows) {
          out[name] = await new Promise<number>((ok, ko) => db.get(`SELECT count(*) AS n FROM "${name}"`, (ge, r: { n: number }) => (ge ? ko(ge) : ok(r.n))));
        }
        db.close(() => resolve(out));
      });
    });
  });
}

/** `actual` has every field of `old` with the same value (a newer schema may add fields). */
function assertKeeps(actual: unknown, old: Record<string, unknown>, where: string): void {
  assert.ok(actual && typeof actual === 'object', `${where} is missing`);
  for (const [k, v] of Object.entries(old)) assert.deepEqual((actual as Record<string, unknown>)[k], v, `${where}.${k}`);
}

describe(`upgrading a database of the previous release (${REV})`, function () {
  this.timeout(60_000);
  const t = tempDir();
  const dataDir = join(t.dir, 'data');
  const db = join(dataDir, 'idprov.db');
  after(() => t.cleanup());

  before(async () => {
    const { mkdirSync } = await import('node:fs');
    mkdirSync(dataDir, { mode: 0o700 });
    await load(db, dump);
  });

  it('opens with today\'s code, applying only the migrations the old schema lacks', async () => {
    const before = await rowCounts(db);
    const store = await SqliteStore.open(db, { log: silentLogger });
    try {
      const oldVersion = [...dump.matchAll(/INSERT INTO schema_migrations VALUES\((\d+),/g)].length;
      assert.equal(store.stats.migrationsApplied, MIGRATIONS.length - oldVersion);
    } finally {
      await store.close();
    }
    const after = await rowCounts(db);
    for (const [table, n] of Object.entries(before)) assert.ok((after[table] ?? 0) >= n, `table ${table} kept its ${n} rows (now ${after[table]})`);
  });

  it('keeps every record the old code read: allowlist, devices, waiting and decided requests, revocations, flags, keys, events, settings', async () => {
    const store = await SqliteStore.open(db, { log: silentLogger });
    try {
      const now = await snapshot(store);
      for (const [kind, records] of Object.entries(expected)) {
        assert.ok(records.length > 0 || kind === 'settings', `the fixture has ${kind}`);
        assert.equal(now[kind]?.length, records.length, `${kind}: as many records as before`);
        records.forEach((r, i) => assertKeeps(now[kind]![i], r, `${kind}[${i}]`));
      }
    } finally {
      await store.close();
    }
  });

  it('serves from the upgraded database: a device the old server approved gets a token signed by the rotated key', async () => {
    const cfg = loadConfig({ env: {}, flags: { dataDir, bind: '127.0.0.1', coapPort: 0, coapsPort: 0, adminPort: 0, mdns: false } });
    const s = await startServer(cfg, silentLogger);
    const c = new DeviceClient({ host: '127.0.0.1', port: s.coapPort, id: 'waiting-01', seed: Buffer.alloc(32, 'waiting-01'.length + 'waiting-01'.charCodeAt(0)), timeoutMs: 10_000 });
    try {
      const r = await c.provision();
      assert.equal(r.status, 'approved', `${r.code} ${r.errName ?? ''}`);
      const current = (expected['keys'] as { kid: string; retiredAt?: number }[]).find((k) => k.retiredAt === undefined)!;
      assert.equal(s.keyring.current.kid, current.kid);
    } finally {
      await c.close();
      await s.close();
    }
  });
});
