/**
 * Promise helpers over node-sqlite3's callback API, the mapping of SQLite failures to
 * {@link ProvError}s, and the gate that keeps reads and writes of one shared connection apart.
 */
import sqlite3 from 'sqlite3';
import type { Database, RunResult, Statement } from 'sqlite3';
import { ProvError } from '../../errors.ts';
import type { Param, Row } from '../rows.ts';

// ---------------------------------------------------------------------------------------------
// Promise helpers over the callback API

export function openDatabase(path: string): Promise<Database> {
  return new Promise((resolve, reject) => {
    const mode = sqlite3.OPEN_READWRITE | sqlite3.OPEN_CREATE | sqlite3.OPEN_FULLMUTEX;
    const db: Database = new sqlite3.Database(path, mode, (err) => (err ? reject(err) : resolve(db)));
  });
}

export function closeDatabase(db: Database): Promise<void> {
  return new Promise((resolve, reject) => db.close((err) => (err ? reject(err) : resolve())));
}

export function execSql(db: Database, sql: string): Promise<void> {
  return new Promise((resolve, reject) => db.exec(sql, (err) => (err ? reject(err) : resolve())));
}

export function queryDb(db: Database, sql: string, params: Param[] = []): Promise<Row[]> {
  return new Promise((resolve, reject) =>
    db.all<Row>(sql, params, (err, rows) => (err ? reject(err) : resolve(rows))),
  );
}

/** The one row a statement that always yields one (a PRAGMA, an aggregate) returns. */
export async function queryRow(db: Database, sql: string, params: Param[] = []): Promise<Row> {
  const [r] = await queryDb(db, sql, params);
  if (r === undefined) throw new ProvError('internal', `no row from ${sql}`);
  return r;
}

export function prepare(db: Database, sql: string): Promise<Statement> {
  return new Promise((resolve, reject) => {
    const st: Statement = db.prepare(sql, (err) => (err ? reject(err) : resolve(st)));
  });
}

export function run(st: Statement, params: Param[] = []): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    st.run(params, function (this: RunResult, err: Error | null) {
      if (err) reject(err);
      else resolve(this);
    });
  });
}

/**
 * Reads always use `all`, never `get`: node-sqlite3's `get` leaves the statement un-reset after a
 * row, which keeps the connection's read transaction — and so its snapshot — open until that
 * statement is used again; later reads on the connection would then miss newer commits.
 */
export function all(st: Statement, params: Param[]): Promise<Row[]> {
  return new Promise((resolve, reject) =>
    st.all<Row>(params, (err, rows) => (err ? reject(err) : resolve(rows))),
  );
}

export function finalize(st: Statement): Promise<void> {
  return new Promise((resolve) => st.finalize(() => resolve()));
}

// ---------------------------------------------------------------------------------------------
// Errors

interface SqliteError {
  errno?: number;
  code?: string;
  message?: string;
}

/** Marks a failure confined to one `apply` call (its statements rolled back, the transaction intact). */
export function isCallLocal(e: unknown): boolean {
  if (e instanceof ProvError) return true;
  const errno = (e as SqliteError | null)?.errno;
  // No errno: a JS error raised before the statement ran (bad value, unknown kind).
  // CONSTRAINT / MISMATCH / RANGE / TOOBIG fail one statement and leave the transaction open.
  return (
    errno === undefined ||
    errno === sqlite3.CONSTRAINT ||
    errno === sqlite3.MISMATCH ||
    errno === sqlite3.RANGE ||
    errno === sqlite3.TOOBIG
  );
}

/**
 * Wraps a failure in a {@link ProvError}: a UNIQUE / PRIMARY KEY / FOREIGN KEY violation becomes
 * `conflict`; everything else (including CHECK / NOT NULL / datatype violations, which mean the
 * caller built an invalid record) becomes `internal`.
 */
export function toProvError(e: unknown, op: string): ProvError {
  if (e instanceof ProvError) return e;
  const err = (e ?? {}) as SqliteError;
  const message = err.message ?? String(e);
  const detail: Record<string, unknown> = { op };
  if (err.code !== undefined) detail.sqlite = err.code;
  if (err.errno === sqlite3.CONSTRAINT && /UNIQUE|PRIMARY KEY|FOREIGN KEY/.test(message)) {
    return new ProvError('conflict', `store ${op}: ${message}`, detail);
  }
  return new ProvError('internal', `store ${op}: ${message}`, detail);
}

export function closedError(): ProvError {
  return new ProvError('internal', 'the SqliteStore is closed');
}

// ---------------------------------------------------------------------------------------------
// The gate of a shared connection

/**
 * Reads and write transactions of one connection. A file database reads on separate connections (WAL:
 * each read sees the commits made before it started), so only the count of running reads matters
 * (close waits for them). A `':memory:'` database has one connection for both: there new reads wait
 * while a write transaction is open, and a transaction waits until running reads finish.
 */
export class ReadGate {
  private txOpen = false;
  private activeReads = 0;
  private gateWaiters: Array<() => void> = [];
  private drainWaiters: Array<() => void> = [];

  constructor(readonly shared: boolean) {}

  /** Before a read: waits while a write transaction holds a shared connection. */
  async enterRead(): Promise<void> {
    if (this.shared) {
      while (this.txOpen) await new Promise<void>((r) => this.gateWaiters.push(r));
    }
    this.activeReads++;
  }

  /** After a read (also when it failed). */
  exitRead(): void {
    if (--this.activeReads === 0) {
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const wake of waiters) wake();
    }
  }

  /** Resolves once no read is running. */
  async drained(): Promise<void> {
    while (this.activeReads > 0) await new Promise<void>((r) => this.drainWaiters.push(r));
  }

  /** Before a write transaction: on a shared connection, closes the gate to new reads and drains running ones. */
  async beginWrite(): Promise<void> {
    if (!this.shared) return;
    this.txOpen = true; // new reads wait from now on
    await this.drained();
  }

  /** After a write transaction: opens the gate again. */
  endWrite(): void {
    if (!this.shared) return;
    this.txOpen = false;
    const waiters = this.gateWaiters;
    this.gateWaiters = [];
    for (const wake of waiters) wake();
  }
}
