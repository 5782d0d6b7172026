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
 *           better-sqlite3 running the same SQL synchronously, bare (`better all`) and as a
 *           synchronous store would serve it behind the async Store interface (an async function
 *           with the same row mapping, `subjectFromSlots`, 16 awaited in flight).
 *   read in context — a micro loop keeps the caches warm for the binding; the server runs each read
 *           between Ed25519 verifications. So the same reads again, each after one `crypto.verify`,
 *           16 in flight, minus the verifications alone: the read's cost among crypto work.
 *   write — the group-commit fast path: one `run()` of WRITE_SQL.applyBatch (the INSTEAD OF trigger of
 *           BATCH_SCHEMA) per group of 16 provisionings (device row, allowlist consumption, event),
 *           groups one after another as the writer runs them, on a writer connection with the
 *           store's PRAGMAs (WAL, synchronous=FULL, foreign_keys, cache_size) in each binding. The
 *           parameters are built before the clock starts, so only the binding and SQLite are timed.
 *           better-sqlite3 runs it on the main thread (`better applyBatch`: the upper bound, but the
 *           fsync would block the event loop) and, as a port would, on a worker thread that owns the
 *           writer connection (`better applyBatch worker`: parameters posted, a reply posted back).
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
 *     [--rounds 5] [--calls 20000] [--ctx-calls 10000] [--batches 500] [--group 16] [--prov-us 467]
 *
 * `--ctx-calls 0` skips the reads in context. `--prov-us` is the server CPU per provisioning today (bench scenario 2 at N=16), against which the
 * saving is set: the issue asks for ≥ 1.3× less CPU per provisioning. `--group` should match the
 * server's groups: at N=16 it committed once per ~7 provisionings (fdatasync count, 2026-12-02).
 *
 * Measured 2026-12-02 (pinned, 2-CPU Xeon, better-sqlite3 12.11.1): ≈ 7 µs saved per read and, per
 * commit, ≈ 50 µs (writer on the main thread) or ≈ 21 µs (writer on a worker thread) — ≈ 16 µs per
 * provisioning at groups of 7, 55 µs even at groups of 1, against the ≈ 108 µs that 1.3× needs.
 */
import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
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
const CTX_CALLS = arg('--ctx-calls', 10_000);
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
/** Allowlist entries the write rounds consume: warm-up + rounds, three write variants. */
const WRITE_IDS = (ROUNDS + 1) * 3 * BATCHES * GROUP;

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

/**
 * A better-sqlite3 writer on a worker thread, as a synchronous port would run it (the fsync off the
 * event loop): `run(params)` posts one applyBatch's parameters and resolves on the worker's reply.
 */
class WorkerWriter {
  private readonly worker: Worker;
  private waiting: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];

  constructor(path: string, pragmas: string[]) {
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const Better = require('node:module').createRequire(workerData.from)('better-sqlite3');
      const db = new Better(workerData.path);
      for (const p of workerData.pragmas) db.pragma(p);
      db.exec(workerData.schema);
      const st = db.prepare(workerData.sql);
      parentPort.on('message', (m) => {
        if (m === 'close') { db.close(); parentPort.close(); return; }
        try { st.run(m); parentPort.postMessage(null); } catch (e) { parentPort.postMessage(String(e && e.message)); }
      });`;
    this.worker = new Worker(code, { eval: true, workerData: { from: join(SQLAB, 'noop.js'), path, pragmas, schema: BATCH_SCHEMA, sql: WRITE_SQL.applyBatch } });
    this.worker.on('message', (err: string | null) => {
      const w = this.waiting.shift();
      if (err === null) w?.resolve();
      else w?.reject(new Error(err));
    });
    this.worker.on('error', (e) => {
      for (const w of this.waiting.splice(0)) w.reject(e);
    });
  }

  run(params: Param[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.worker.postMessage(params);
    });
  }

  async close(): Promise<void> {
    const exited = new Promise((r) => this.worker.once('exit', r));
    this.worker.postMessage('close');
    await exited;
  }
}

// ------------------------------------------------------------------------------------------------
// Main

const dir = mkdtempSync(join(tmpdir(), 'idprov-sqlab-'));
const path = join(dir, 'db.sqlite');
const store = await SqliteStore.open(path);
const opened: Database[] = [];
const prepared: Statement[] = [];
const better: BDatabase[] = [];
let worker: WorkerWriter | undefined;
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
  const writerPragmas = ['busy_timeout = 5000', 'journal_mode = WAL', 'journal_size_limit = 67108864', 'synchronous = FULL', 'foreign_keys = ON', `cache_size = -${WRITER_CACHE_KIB}`];
  const bwr = new Better(path);
  better.push(bwr);
  for (const p of writerPragmas) bwr.pragma(p);
  bwr.exec(BATCH_SCHEMA);
  worker = new WorkerWriter(path, writerPragmas);
  const bworker = worker;
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

  /** loadSubject as a store on better-sqlite3 would serve it: synchronous inside, async outside. */
  const betterLoadSubject = async (id: string): Promise<ReturnType<typeof subjectFromSlots>> => subjectFromSlots(bread.all({ 1: id }), id);

  // ---- The variants, each given how many units to perform.
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
    'better loadSubject x16': (calls) => inFlight(calls, (i) => betterLoadSubject(readId(i))),
  };
  // The reads again, each after one Ed25519 verification (the server's work around them).
  const keys = generateKeyPairSync('ed25519');
  const msg = Buffer.alloc(120, 7);
  const sig = sign(null, msg, keys.privateKey);
  const check = (): void => {
    if (!verify(null, msg, keys.publicKey, sig)) throw new Error('verify failed');
  };
  const inContext: Record<string, (calls: number) => Promise<void> | void> = {
    'verify alone x16': (calls) => inFlight(calls, async () => check()),
    'verify+store.load x16': (calls) => inFlight(calls, (i) => (check(), store.loadSubject(readId(i)))),
    'verify+better.load x16': (calls) => inFlight(calls, (i) => (check(), betterLoadSubject(readId(i)))),
  };
  const nextWrite = { n: 0 };
  const writes: Record<string, (params: Param[][]) => Promise<void> | void> = {
    'sqlite3 applyBatch': async (params) => {
      for (const p of params) await run(wst, p);
    },
    'better applyBatch': (params) => {
      for (const p of params) bwrite.run(p);
    },
    'better applyBatch worker': async (params) => {
      for (const p of params) await bworker.run(p);
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
    if (CTX_CALLS > 0) {
      const ctxCalls = warm ? Math.ceil(CTX_CALLS / 4) : CTX_CALLS;
      const ctxOrder = r % 2 === 1 ? Object.keys(inContext) : Object.keys(inContext).reverse();
      for (const k of ctxOrder) {
        const s = await meter(ctxCalls, inContext[k]!.bind(null, ctxCalls));
        if (!warm) (results[k] ??= []).push(s);
        console.log(`${label.padEnd(8)} ctx   ${k.padEnd(22)} µs/call         ${fmt(s)}`);
      }
    }
    const writeOrder = r % 2 === 1 ? Object.keys(writes) : Object.keys(writes).reverse();
    for (const k of writeOrder) {
      const params = batchParams(nextWrite);
      const s = await meter(params.length * GROUP, writes[k]!.bind(null, params));
      if (!warm) (results[k] ??= []).push(s);
      console.log(`${label.padEnd(8)} write ${k.padEnd(24)} µs/provisioning ${fmt(s)}  (×${GROUP} per batch: cpu ${(s.cpuUs * GROUP).toFixed(0)})`);
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
    console.log(`  ${k.padEnd(24)} cpu ${med(k, 'cpuUs').toFixed(1).padStart(6)} [${v.map((x) => x.toFixed(1)).join(', ')}]  main ${med(k, 'mainUs').toFixed(1).padStart(6)}  wall ${med(k, 'wallUs').toFixed(1).padStart(6)}`);
  }
  const c = (k: string): number => med(k, 'cpuUs');
  const readRaw = c('sqlite3 all x16') - c('better all');
  const readStore = c('store.loadSubject x16') - c('better loadSubject x16');
  const readCtx = CTX_CALLS > 0 ? c('verify+store.load x16') - c('verify+better.load x16') : NaN;
  const writeMain = c('sqlite3 applyBatch') - c('better applyBatch');
  const writeWorker = c('sqlite3 applyBatch') - c('better applyBatch worker');
  const read = Math.max(readStore, Number.isNaN(readCtx) ? -Infinity : readCtx);
  const total = read + writeMain;
  const ratio = PROV_US / (PROV_US - total);
  console.log(`\nCPU saved per provisioning by better-sqlite3 (medians, µs; positive = better-sqlite3 cheaper):`);
  console.log(`  read, statement alone (sqlite3 all x16 − better all):                    ${readRaw.toFixed(1)}`);
  console.log(`  read, store path (store.loadSubject x16 − better loadSubject x16):       ${readStore.toFixed(1)}`);
  if (CTX_CALLS > 0) {
    console.log(`  read among verifies (verify+store.load x16 − verify+better.load x16):    ${readCtx.toFixed(1)}`);
    console.log(`    (each read's CPU there: node-sqlite3 ${(c('verify+store.load x16') - c('verify alone x16')).toFixed(1)}, better-sqlite3 ${(c('verify+better.load x16') - c('verify alone x16')).toFixed(1)})`);
  }
  console.log(`  write, one applyBatch per ${GROUP}, per provisioning: main thread ${writeMain.toFixed(1)}, worker thread ${writeWorker.toFixed(1)}`);
  console.log(`  upper bound (larger read figure + main-thread write): ${total.toFixed(1)} µs of ${PROV_US} µs per provisioning = ${((100 * total) / PROV_US).toFixed(1)}% → ${ratio.toFixed(3)}× less CPU (the issue asks ≥ 1.3×, i.e. ≥ ${(PROV_US - PROV_US / 1.3).toFixed(0)} µs saved)`);
} finally {
  await worker?.close();
  for (const b of better) b.close();
  await Promise.all(prepared.map(finalize));
  for (const db of opened) await closeDatabase(db).catch(() => undefined);
  await store.close();
  rmSync(dir, { recursive: true, force: true });
}
