/**
 * Issue 17, lever "the thread-pool hop per statement": an upper bound on what moving the SQLite store
 * from the `sqlite3` package (async; every statement is a libuv thread-pool round trip) to
 * better-sqlite3 (synchronous, on the calling thread) could save per provisioning, before anyone
 * rewrites the store. It measures the two things every provisioning sends to SQLite:
 *
 *   read  — `loadSubject` (READ_SQL.loadSubject, one `all()`), for an allowlisted, not yet provisioned
 *           ID (the provisioning case: one row back). node-sqlite3 on reader connections opened as the
 *           store opens them (2 connections × READ_STATEMENT_COPIES statements, round robin), awaited
 *           one at a time (`seq`) and with 16 in flight (`x16`, what the server sees at N=16); the
 *           store's own `SqliteStore.loadSubject` (gate, round robin, row mapping) likewise; and
 *           better-sqlite3 running the same SQL synchronously, bare and with the same row mapping
 *           (`subjectFromSlots`).
 *   write — the group-commit fast path: one `run()` of WRITE_SQL.applyBatch (the INSTEAD OF trigger of
 *           BATCH_SCHEMA) per group of 16 provisionings (device row, allowlist consumption, event),
 *           groups one after another as the writer runs them, on a writer connection with the
 *           store's PRAGMAs (WAL, synchronous=FULL, foreign_keys, cache_size) in each binding. The
 *           parameters are built before the clock starts, so only the binding and SQLite are timed.
 *           better-sqlite3 runs it on the main thread here; a real port would move the writer (and
 *           its fsync) to a worker thread, adding a message hop this does not count — so the
 *           saving measured is an upper bound.
 *
 * The database is built by SqliteStore itself (schema, migrations), seeded with 10,000 allowlisted
 * devices, half of them provisioned (device row, entry consumed), plus the allowlist entries the
 * write rounds consume. Variants run in alternating order, round after round, after a warm-up round;
 * every round is printed. CPU is process-wide (`process.cpuUsage()`: every thread, so the libuv
 * pool's threads and the fsyncs' system time count); `main` is the main thread alone
 * (/proc/self/task/PID/schedstat), `wall` the elapsed time.
 *
 * better-sqlite3 is not a project dependency: it is loaded from a scratch directory (default
 * /tmp/sqlab, or $SQLAB_DIR); when it is missing, the tool says so and exits 0.
 *
 *   mkdir -p /tmp/sqlab && (cd /tmp/sqlab && npm init -y && npm install better-sqlite3@12)
 *   flock /tmp/bench.lock taskset -c 0 node --expose-gc --import tsx tools/bench/ab/sqlite-binding.ts \
 *     [--rounds 5] [--calls 20000] [--batches 500] [--group 16] [--prov-us 467]
 *
 * `--prov-us` is the server CPU per provisioning today (bench scenario 2 at N=16), against which the
 * saving is set: the issue asks for ≥ 1.3× less CPU per provisioning.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Database, Statement } from 'sqlite3';
import { BATCH_SCHEMA, batchOf } from '../../../src/store/sqlite/batch.ts';
import { all, closeDatabase, execSql, finalize, openDatabase, prepare, queryDb, run } from '../../../src/store/sqlite/db.ts';
import { subjectFromSlots } from '../../../src/store/sqlite/rows.ts';
import { READ_SQL, READ_STATEMENT_COPIES, WRITER_CACHE_KIB, WRITE_SQL } from '../../../src/store/sqlite/statements.ts';
import { SqliteStore } from '../../../src/store/sqlite/store.ts';
import type { Param, Row } from '../../../src/store/rows.ts';
import type { Mutation } from '../../../src/store/store.ts';

// ------------------------------------------------------------------------------------------------
// better-sqlite3, from the scratch directory (only the few calls used here are typed)

interface BStatement {
  all(params: unknown): Row[];
  run(params: unknown): { changes: number };
}
interface BDatabase {
  prepare(sql: string): BStatement;
  exec(sql: string): void;
  pragma(source: string, opts?: { simple: boolean }): unknown;
  close(): void;
}
type BCtor = new (path: string) => BDatabase;

const SQLAB = process.env.SQLAB_DIR ?? '/tmp/sqlab';
let Better: BCtor;
let betterVersion = '?';
try {
  const req = createRequire(join(SQLAB, 'noop.js'));
  Better = req('better-sqlite3') as BCtor;
  betterVersion = (req('better-sqlite3/package.json') as { version: string }).version;
} catch (e) {
  console.log(`better-sqlite3 is not installed in ${SQLAB} (${(e as Error).message.split('\n')[0]}).`);
  console.log(`Install it there first: mkdir -p ${SQLAB} && cd ${SQLAB} && npm init -y && npm install better-sqlite3@12`);
  process.exit(0);
}

// ------------------------------------------------------------------------------------------------
// Options

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const ROUNDS = arg('--rounds', 5);
const CALLS = arg('--calls', 20_000);
const BATCHES = arg('--batches', 500);
const GROUP = arg('--group', 16);
const PROV_US = arg('--prov-us', 467);
const INFLIGHT = 16;
const DEVICES = 10_000;
const T0 = 1_800_000_000;

// ------------------------------------------------------------------------------------------------
// Meters

/** On-CPU time of the main thread, ns (the scheduler's own count, not clock ticks). */
function mainThreadNs(): number {
  return Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]);
}

interface Sample {
  cpuUs: number;
  mainUs: number;
  wallUs: number;
}

/** Per-unit costs of `body`, which performs `units` units of work. */
async function meter(units: number, body: () => Promise<void> | void): Promise<Sample> {
  (globalThis as { gc?: () => void }).gc?.();
  const m0 = mainThreadNs();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await body();
  const wall = performance.now() - t0;
  const c = process.cpuUsage(c0);
  const m = mainThreadNs() - m0;
  return { cpuUs: (c.user + c.system) / units, mainUs: m / 1e3 / units, wallUs: (wall * 1e3) / units };
}

// ------------------------------------------------------------------------------------------------
// The database

const allowEntry = (id: string, i: number): Mutation => ({ kind: 'allow.upsert', entry: { id, pk: new Uint8Array(32).fill(i & 0xff), type: 0, createdAt: T0 } });

function approval(id: string, i: number): Mutation[] {
  return [
    { kind: 'device.upsert', device: { id, pk: new Uint8Array(32).fill(i & 0xff), type: 0, via: 'allowlist', provisionedAt: T0, lastSeen: T0, source: '192.0.2.1:5683', lastCti: '00112233aabbccdd', tokenExp: T0 + 3600 } },
    { kind: 'allow.consume', id, at: T0 },
    { kind: 'event', event: { at: T0, kind: 'provision.approved', deviceId: id, actor: 'device', source: '192.0.2.1:5683', detail: { via: 'allowlist', cti: '00112233aabbccdd', exp: T0 + 3600 } } },
  ];
}

const readId = (i: number): string => `dev-${DEVICES / 2 + (i % (DEVICES / 2))}`; // the unprovisioned half
const writeId = (n: number): string => `w-${n}`;
/** Allowlist entries the write rounds consume: warm-up + rounds, both bindings. */
const WRITE_IDS = (ROUNDS + 1) * 2 * BATCHES * GROUP;

async function seed(store: SqliteStore): Promise<void> {
  const chunk = 10_000;
  for (let i = 0; i < DEVICES; i += chunk) {
    await store.apply(Array.from({ length: Math.min(chunk, DEVICES - i) }, (_, k) => allowEntry(`dev-${i + k}`, i + k)));
  }
  for (let i = 0; i < WRITE_IDS; i += chunk) {
    await store.apply(Array.from({ length: Math.min(chunk, WRITE_IDS - i) }, (_, k) => allowEntry(writeId(i + k), i + k)));
  }
  // The provisioned half, through the store's own group commit (GROUP calls at a time).
  for (let i = 0; i < DEVICES / 2; i += GROUP) {
    await Promise.all(Array.from({ length: Math.min(GROUP, DEVICES / 2 - i) }, (_, k) => store.apply(approval(`dev-${i + k}`, i + k))));
  }
}

/** The statement parameters of the next `BATCHES` groups of `GROUP` provisionings (ids from `next.n`). */
function batchParams(next: { n: number }): Param[][] {
  const out: Param[][] = [];
  for (let b = 0; b < BATCHES; b++) {
    const group = Array.from({ length: GROUP }, () => {
      const n = next.n++;
      return { mutations: approval(writeId(n), n) };
    });
    const p = batchOf(group);
    if (p === undefined) throw new Error('a provisioning group did not take the one-statement path');
    out.push(p);
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// Main

const dir = mkdtempSync(join(tmpdir(), 'idprov-sqlab-'));
const path = join(dir, 'db.sqlite');
const store = await SqliteStore.open(path);
const opened: Database[] = [];
const prepared: Statement[] = [];
const better: BDatabase[] = [];
try {
  const ts = performance.now();
  await seed(store);
  console.log(`seeded ${DEVICES} allowlisted devices (${DEVICES / 2} provisioned) + ${WRITE_IDS} entries for the write rounds in ${((performance.now() - ts) / 1000).toFixed(1)} s`);

  // node-sqlite3 readers, opened as SqliteStore.open opens them.
  const conns: Database[] = [];
  for (let c = 0; c < 2; c++) {
    const db = await openDatabase(path);
    opened.push(db);
    conns.push(db);
    await execSql(db, 'PRAGMA busy_timeout = 5000; PRAGMA query_only = ON; PRAGMA cache_size = -32768');
  }
  // The copies interleaved across the connections, as the store does: consecutive reads go to different ones.
  const readers: Statement[] = [];
  for (let k = 0; k < READ_STATEMENT_COPIES; k++) {
    for (const db of conns) readers.push(await prepare(db, READ_SQL.loadSubject));
  }
  prepared.push(...readers);
  // node-sqlite3 writer, with the store's PRAGMAs and its TEMP batch view.
  const wdb = await openDatabase(path);
  opened.push(wdb);
  await execSql(wdb, 'PRAGMA busy_timeout = 5000');
  await queryDb(wdb, 'PRAGMA journal_mode = WAL');
  await execSql(wdb, `PRAGMA journal_size_limit = 67108864; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -${WRITER_CACHE_KIB}`);
  await execSql(wdb, BATCH_SCHEMA);
  const wst = await prepare(wdb, WRITE_SQL.applyBatch);
  prepared.push(wst);

  // better-sqlite3: one reader and one writer connection, the same PRAGMAs.
  const brd = new Better(path);
  better.push(brd);
  brd.pragma('busy_timeout = 5000');
  brd.pragma('query_only = ON');
  brd.pragma('cache_size = -32768');
  // The SQL numbers its one parameter (?1, used four times); better-sqlite3 binds numbered parameters by name.
  const bread = brd.prepare(READ_SQL.loadSubject);
  const bwr = new Better(path);
  better.push(bwr);
  bwr.pragma('busy_timeout = 5000');
  bwr.pragma('journal_mode = WAL');
  bwr.pragma(`journal_size_limit = 67108864`);
  bwr.pragma('synchronous = FULL');
  bwr.pragma('foreign_keys = ON');
  bwr.pragma(`cache_size = -${WRITER_CACHE_KIB}`);
  bwr.exec(BATCH_SCHEMA);
  const bwrite = bwr.prepare(WRITE_SQL.applyBatch);
  const [sv3] = await queryDb(wdb, 'SELECT sqlite_version() AS v');
  const bsv = (brd.prepare('SELECT sqlite_version() AS v').all([]) as Row[])[0]?.v;
  console.log(`node-sqlite3 (SQLite ${String(sv3?.v)}) vs better-sqlite3 ${betterVersion} (SQLite ${String(bsv)}); node ${process.version}; synchronous: ${String(bwr.pragma('synchronous', { simple: true }))}`);

  // Both bindings must read the same rows, or the comparison means nothing.
  for (const i of [0, 1, 4999]) {
    const a = JSON.stringify(await all(readers[0]!, [readId(i)]));
    const b = JSON.stringify(bread.all({ 1: readId(i) }));
    if (a !== b || !a.includes('"t":"a"')) throw new Error(`the bindings disagree on ${readId(i)}: ${a} vs ${b}`);
  }
  const provisioned = JSON.stringify(bread.all({ 1: 'dev-0' }));
  if (!provisioned.includes('"t":"d"')) throw new Error(`dev-0 should have a device row: ${provisioned}`);

  // ---- The variants. Each performs `units` units and returns that count.
  const inFlight = async (calls: number, one: (i: number) => Promise<unknown>): Promise<void> => {
    let next = 0;
    await Promise.all(Array.from({ length: INFLIGHT }, async () => {
      while (next < calls) await one(next++);
    }));
  };
  const n = readers.length;
  const reads: Record<string, (calls: number) => Promise<void> | void> = {
    'sqlite3 all seq': async (calls) => {
      for (let i = 0; i < calls; i++) await all(readers[i % n]!, [readId(i)]);
    },
    'sqlite3 all x16': (calls) => inFlight(calls, (i) => all(readers[i % n]!, [readId(i)])),
    'store.loadSubject seq': async (calls) => {
      for (let i = 0; i < calls; i++) await store.loadSubject(readId(i));
    },
    'store.loadSubject x16': (calls) => inFlight(calls, (i) => store.loadSubject(readId(i))),
    'better all': (calls) => {
      for (let i = 0; i < calls; i++) bread.all({ 1: readId(i) });
    },
    'better all + map': (calls) => {
      for (let i = 0; i < calls; i++) {
        const id = readId(i);
        subjectFromSlots(bread.all({ 1: id }), id);
      }
    },
  };
  const nextWrite = { n: 0 };
  const writes: Record<string, (params: Param[][]) => Promise<void> | void> = {
    'sqlite3 applyBatch': async (params) => {
      for (const p of params) await run(wst, p);
    },
    'better applyBatch': (params) => {
      for (const p of params) bwrite.run(p);
    },
  };

  const results: Record<string, Sample[]> = {};
  const fmt = (s: Sample): string => `cpu ${s.cpuUs.toFixed(1).padStart(6)}  main ${s.mainUs.toFixed(1).padStart(6)}  wall ${s.wallUs.toFixed(1).padStart(6)}`;
  for (let r = 0; r <= ROUNDS; r++) {
    const warm = r === 0;
    const label = warm ? 'warm-up' : `round ${r}`;
    const calls = warm ? Math.ceil(CALLS / 4) : CALLS;
    const readOrder = r % 2 === 1 ? Object.keys(reads) : Object.keys(reads).reverse();
    for (const k of readOrder) {
      const s = await meter(calls, reads[k]!.bind(null, calls));
      if (!warm) (results[k] ??= []).push(s);
      console.log(`${label.padEnd(8)} read  ${k.padEnd(22)} µs/call         ${fmt(s)}`);
    }
    const writeOrder = r % 2 === 1 ? Object.keys(writes) : Object.keys(writes).reverse();
    for (const k of writeOrder) {
      const params = batchParams(nextWrite);
      const s = await meter(params.length * GROUP, writes[k]!.bind(null, params));
      if (!warm) (results[k] ??= []).push(s);
      console.log(`${label.padEnd(8)} write ${k.padEnd(22)} µs/provisioning ${fmt(s)}  (×${GROUP} per batch: cpu ${(s.cpuUs * GROUP).toFixed(0)})`);
    }
  }

  // Every write landed (and only once): the device rows of the write ids and their consumed entries.
  const [dv] = bwr.prepare("SELECT count(*) AS n FROM devices WHERE id LIKE 'w-%'").all([]) as Row[];
  const [cn] = bwr.prepare("SELECT count(*) AS n FROM allowlist WHERE id LIKE 'w-%' AND consumed_at IS NOT NULL").all([]) as Row[];
  if (dv?.n !== nextWrite.n || cn?.n !== nextWrite.n) throw new Error(`writes missing: ${String(dv?.n)} devices, ${String(cn?.n)} consumed, ${nextWrite.n} expected`);

  // ---- Summary
  const median = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
  const med = (k: string, f: keyof Sample): number => median(results[k]!.map((s) => s[f]));
  console.log(`\nmedians of ${ROUNDS} rounds (${CALLS} reads, ${BATCHES}×${GROUP} provisionings per round), µs:`);
  for (const k of Object.keys(results)) {
    const v = results[k]!.map((s) => s.cpuUs);
    console.log(`  ${k.padEnd(22)} cpu ${med(k, 'cpuUs').toFixed(1).padStart(6)} [${v.map((x) => x.toFixed(1)).join(', ')}]  main ${med(k, 'mainUs').toFixed(1).padStart(6)}  wall ${med(k, 'wallUs').toFixed(1).padStart(6)}`);
  }
  const readRaw = med('sqlite3 all x16', 'cpuUs') - med('better all', 'cpuUs');
  const readStore = med('store.loadSubject x16', 'cpuUs') - med('better all + map', 'cpuUs');
  const write = med('sqlite3 applyBatch', 'cpuUs') - med('better applyBatch', 'cpuUs');
  const total = readStore + write;
  const ratio = PROV_US / (PROV_US - total);
  console.log(`\nCPU saved per provisioning by better-sqlite3:`);
  console.log(`  read, statement alone (sqlite3 all x16 − better all):             ${readRaw.toFixed(1)} µs`);
  console.log(`  read, store path (store.loadSubject x16 − better all + map):      ${readStore.toFixed(1)} µs`);
  console.log(`  write, one applyBatch per ${GROUP} (sqlite3 − better, per provisioning): ${write.toFixed(1)} µs`);
  console.log(`  total (store-path read + write): ${total.toFixed(1)} µs of ${PROV_US} µs per provisioning = ${((100 * total) / PROV_US).toFixed(1)}% → ${ratio.toFixed(3)}× (the issue asks ≥ 1.3×, i.e. ≥ ${(PROV_US - PROV_US / 1.3).toFixed(0)} µs)`);
} finally {
  for (const b of better) b.close();
  await Promise.all(prepared.map(finalize));
  for (const db of opened) await closeDatabase(db).catch(() => undefined);
  await store.close();
  rmSync(dir, { recursive: true, force: true });
}
