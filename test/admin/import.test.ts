/**
 * The streamed allowlist importer (security review F7): it never holds the event loop for more than
 * one piece of an upload, stops reading at a fatal error, and imports nothing of a file it could not
 * read to its end, whatever the mode.
 */
import assert from 'node:assert/strict';
import { AllowlistImporter, PIECE } from '../../src/service/allowlist-import.ts';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../src/config.ts';
import { isProvError } from '../../src/errors.ts';
import { silentLogger } from '../../src/log.ts';
import { importAllowlistFile } from '../../src/server.ts';
import { SqliteStore } from '../../src/store/sqlite/store.ts';
import { tempDir } from '../support/temp-dir.ts';
import { assertError, call, startAdminServer, type AdminFixture } from '../support/admin-server.ts';

const NOW = 1_767_225_600;
const actor = { by: 'admin:test' };
const mac = (i: number): string => `24:0b:${Buffer.from([i >> 24, i >> 16, i >> 8, i]).toString('hex').replace(/(..)(?!$)/g, '$1:')}`;

/** Counts turns of the event loop (setImmediate callbacks) until stopped. */
function loopTurns(): { readonly count: number; stop(): void } {
  let count = 0;
  let on = true;
  const tick = () => {
    count++;
    if (on) setImmediate(tick);
  };
  setImmediate(tick);
  return {
    get count() {
      return count;
    },
    stop() {
      on = false;
    },
  };
}

describe('allowlist importer', () => {
  let tmp: ReturnType<typeof tempDir>;
  let store: SqliteStore;
  let importer: AllowlistImporter;
  before(async () => {
    tmp = tempDir('idprov-import-');
    store = await SqliteStore.open(`${tmp.dir}/idprov.db`);
    importer = new AllowlistImporter(store, () => NOW, 12);
  });
  after(async () => {
    await store.close();
    tmp.cleanup();
  });

  for (const format of ['json', 'csv'] as const) {
    it(`lets the event loop turn between every two pieces of a ${format.toUpperCase()} upload whose pieces are all ready at once`, async () => {
      // 40 pieces of 64 kB, every one available without waiting (as when the socket buffer is full).
      const row = (i: number) => (format === 'json' ? `${i ? ',' : '['}{"id":"y-${i}","mac":"${mac(i)}"}` : `${i ? '' : 'id,mac\n'}y-${i},${mac(i)}\n`);
      const pieces: string[] = [];
      let piece = '';
      for (let i = 0; pieces.length < 40; i++) {
        piece += row(i);
        if (piece.length >= PIECE) {
          pieces.push(piece);
          piece = '';
        }
      }
      pieces.push(`${piece}${format === 'json' ? ']' : ''}`);
      const turns = loopTurns();
      const seenAt: number[] = [];
      async function* body(): AsyncGenerator<string> {
        for (const p of pieces) {
          seenAt.push(turns.count);
          yield p;
        }
      }
      try {
        const r = await importer.import(body(), { format: 'auto', mode: 'all', actor });
        assert.equal(r.invalid, 0, JSON.stringify(r.errors));
        assert.equal(r.imported, true);
      } finally {
        turns.stop();
      }
      // Every piece is asked for only after at least one more turn of the event loop.
      for (let k = 1; k < seenAt.length; k++) assert.ok(seenAt[k]! > seenAt[k - 1]!, `piece ${k} read in the same turn as piece ${k - 1}`);
    });
  }

  it('splits one big string into pieces and turns the event loop between them', async () => {
    const text = `id,mac\n${Array.from({ length: 40_000 }, (_, i) => `z-${i},${mac(i)}`).join('\n')}\n`;
    assert.ok(text.length > 10 * PIECE);
    const turns = loopTurns();
    let during = 0;
    try {
      const r = await importer.import(text, { format: 'auto', mode: 'all', actor, onProgress: () => (during = turns.count) });
      assert.equal(r.added, 40_000);
    } finally {
      turns.stop();
    }
    assert.ok(during >= Math.floor(text.length / PIECE), `only ${during} turns while parsing ${Math.ceil(text.length / PIECE)} pieces`);
  });

  it('imports nothing of a file cut short by a fatal error, even with mode valid, and stops reading its body', async () => {
    let pulled = 0;
    async function* body(): AsyncGenerator<Buffer> {
      yield Buffer.from('id,mac\nok-1,24:0a:c4:00:00:01\nok-2,');
      for (let i = 0; i < 400; i++) {
        pulled++;
        yield Buffer.alloc(64 * 1024, 0x61);
      }
    }
    const r = await importer.import(body(), { format: 'auto', mode: 'valid', actor });
    assert.equal(r.imported, false);
    assert.equal(r.errors.length, 1);
    assert.equal(r.errors[0]!.line, 3);
    assert.match(r.errors[0]!.message, /longer than/);
    assert.equal(pulled, 400, 'the body is drained to its end');
    assert.equal(await store.getAllow('ok-1'), undefined);
  });
});

describe('importing a program\'s own entries (importEntries: the one import path for tests and tools)', () => {
  let tmp: ReturnType<typeof tempDir>;
  let store: SqliteStore;
  let importer: AllowlistImporter;
  beforeEach(async () => {
    tmp = tempDir('idprov-import-entries-');
    store = await SqliteStore.open(`${tmp.dir}/idprov.db`);
    importer = new AllowlistImporter(store, () => NOW, 12);
  });
  afterEach(async () => {
    await store.close();
    tmp.cleanup();
  });

  it('writes the entries in one bulk transaction with one admin.allowlist.import event, counting added and updated', async () => {
    const applied: number[] = [];
    const apply = store.apply.bind(store);
    store.apply = (m) => (applied.push(m.length), apply(m));
    const pk = new Uint8Array(32).fill(3);
    assert.deepEqual(await importer.importEntries([{ id: 'e-1', pk, type: 0, createdAt: NOW }, { id: 'e-2', secret: 'ABCD-EFGH-JKLM', type: 1, createdAt: NOW }], { actor, source: 'a test' }), { added: 2, updated: 0 });
    assert.deepEqual(await importer.importEntries([{ id: 'e-2', mac: new Uint8Array(6).fill(1), type: 0, createdAt: NOW }], { actor }), { added: 0, updated: 1 });
    assert.deepEqual(applied, [], 'no per-row apply: the bulk path');
    assert.deepEqual((await store.getAllow('e-1'))?.pk, pk);
    assert.deepEqual((await store.getAllow('e-2'))?.mac, new Uint8Array(6).fill(1));
    const evs = (await store.listEvents(0, 100)).filter((e) => e.kind === 'admin.allowlist.import');
    assert.deepEqual(evs.map((e) => [e.actor, e.detail]), [
      ['admin:test', { rows: 2, invalid: 0, mode: 'all', source: 'a test' }],
      ['admin:test', { rows: 1, invalid: 0, mode: 'all' }],
    ]);
    assert.deepEqual(readdirSync(tmp.dir).filter((n) => !n.startsWith('idprov.db')), [], 'no staging file left');
  });

  it('refuses an entry over the bounds of a row (malformed) and writes nothing of the call', async () => {
    await assert.rejects(
      importer.importEntries([{ id: 'ok-1', secret: 'ABCD-EFGH-JKLM', type: 0, createdAt: NOW }, { id: 'bad key', pk: new Uint8Array(31), type: 0, createdAt: NOW }], { actor }),
      (e: unknown) => isProvError(e) && e.code === 'malformed' && /pk: must be 32 bytes|id:/.test(e.message),
    );
    assert.equal(await store.getAllow('ok-1'), undefined);
  });
});

describe('allowlist files (idprov allowlist import, the allowlist setting at startup)', () => {
  let tmp: ReturnType<typeof tempDir>;
  let store: SqliteStore;
  before(async () => {
    tmp = tempDir('idprov-file-import-');
    store = await SqliteStore.open(join(tmp.dir, 'idprov.db'));
  });
  after(async () => {
    await store.close();
    tmp.cleanup();
  });
  const cfg = () => loadConfig({ env: {}, flags: { dataDir: tmp.dir } });

  it('goes through the streamed bulk importer: one bulk transaction, no apply call, no staging file left', async () => {
    const file = join(tmp.dir, 'fleet.csv');
    writeFileSync(file, `id,mac\n${Array.from({ length: 30_000 }, (_, i) => `f-${i},${mac(i)}`).join('\n')}\n`);
    const before = { ...store.stats };
    const n = await importAllowlistFile(store, file, cfg(), NOW, silentLogger);
    assert.equal(n, 30_000);
    assert.equal((await store.counts()).allowlist, 30_000);
    assert.equal(store.stats.transactions - before.transactions, 1, 'one transaction for the whole file');
    assert.equal(store.stats.calls - before.calls, 0, 'not one mutation per row through apply');
    const [event] = await store.listEvents(0, 10);
    assert.deepEqual([event?.kind, event?.actor, event?.detail?.['source'], event?.detail?.['rows']], ['admin.allowlist.import', 'cli', file, 30_000]);
    assert.deepEqual(readdirSync(tmp.dir).filter((f) => f.startsWith('.import-')), [], 'the staging file is gone');
  });

  it('refuses a file with a bad row, naming its line, and imports nothing of it', async () => {
    const file = join(tmp.dir, 'bad.csv');
    writeFileSync(file, 'id,mac\nok-1,aa:bb:cc:dd:ee:01\nbad id,aa:bb:cc:dd:ee:02\n');
    const before = (await store.counts()).allowlist;
    await assert.rejects(importAllowlistFile(store, file, cfg(), NOW, silentLogger), (e: unknown) => {
      assert.ok(isProvError(e) && e.code === 'malformed');
      assert.match(e.message, /1 bad row\(s\), nothing imported:\n {2}line 3 \(bad id\)/);
      return true;
    });
    assert.equal((await store.counts()).allowlist, before);
    assert.equal(await store.getAllow('ok-1'), undefined);
    assert.deepEqual(readdirSync(tmp.dir).filter((f) => f.startsWith('.import-')), []);
  });
});

describe('allowlist uploads through the sidecar (F7)', () => {
  let f: AdminFixture;
  before(async () => {
    f = await startAdminServer('imp');
  });
  after(async () => f?.close());

  it('answers a 10 MB single-line CSV with 422 naming its line, and imports nothing', async () => {
    const body = `id,secret\nline-2,${'x'.repeat(10 * 1024 * 1024)}`;
    const a = await call(f.base, 'POST', '/api/v1/allowlist', { token: f.adminToken, body, contentType: 'text/csv' });
    assert.equal(a.status, 422, a.text.slice(0, 300));
    assert.deepEqual([a.json.imported, a.json.errors.length, a.json.errors[0].line], [false, 1, 2]);
    assert.match(a.json.errors[0].message, /longer than 16384 characters/);
    assertError(await call(f.base, 'GET', '/api/v1/allowlist/line-2', { token: f.adminToken }), 404, 'not-found');
  });

  it('answers CoAP while a big upload is being parsed', async () => {
    // A 30 MB JSON upload streamed as fast as the loopback takes it, and a device asking meanwhile.
    const c = f.device();
    const total = 30 * 1024 * 1024;
    let sent = 0;
    let answeredDuring = false;
    let uploadDone = false;
    const stream = new ReadableStream<Uint8Array>({
      pull(ctl) {
        if (sent === 0) {
          ctl.enqueue(new TextEncoder().encode('['));
          sent = 1;
          return;
        }
        if (sent >= total) {
          ctl.enqueue(new TextEncoder().encode(`{"id":"last","mac":"24:0a:c4:00:00:01"}]`));
          ctl.close();
          return;
        }
        const chunk = `{"id":"p-${sent}","mac":"24:0a:c4:00:00:02"${' '.repeat(10_000)}},`;
        sent += chunk.length;
        ctl.enqueue(new TextEncoder().encode(chunk));
      },
    });
    const upload = fetch(`${f.base}/api/v1/allowlist?mode=valid`, {
      method: 'POST',
      headers: { authorization: `Bearer ${f.adminToken}`, 'content-type': 'application/json' },
      body: stream,
      duplex: 'half',
    } as RequestInit).then(async (res) => {
      uploadDone = true;
      return { status: res.status, json: (await res.json()) as { rows: number } };
    });
    while (sent < total / 2) await new Promise((r) => setTimeout(r, 5));
    const r = await c.provision();
    answeredDuring = !uploadDone;
    assert.equal(r.status, 'pending');
    const u = await upload;
    assert.equal(u.status, 200);
    assert.ok(u.json.rows > 400, `${u.json.rows} rows`);
    assert.equal(answeredDuring, true, 'the device was answered before the upload finished');
  });
});
