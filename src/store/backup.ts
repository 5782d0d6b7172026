/**
 * Online backup and restore of the SQLite database with SQLite's backup API (node-sqlite3
 * `Database#backup`): a backup reads one consistent snapshot through its own read-only connection,
 * so it runs while the server serves (WAL: readers never block the writer, nor it them); a restore
 * writes the backup's pages into the live database file through SQLite, so its WAL and shared memory
 * stay consistent. See docs/operations.md "Backup and restore".
 */
import { chmodSync, existsSync, renameSync, rmSync } from 'node:fs';
import sqlite3 from 'sqlite3';

/** node-sqlite3's Backup handle (its typings do not declare it). */
interface SqliteBackup {
  step(pages: number, cb: (err: Error | null) => void): void;
  finish(cb?: (err: Error | null) => void): void;
  readonly completed: boolean;
  readonly failed: boolean;
  readonly pageCount: number;
}
type BackupDatabase = sqlite3.Database & {
  backup(filename: string, destName: string, sourceName: string, filenameIsDest: boolean, cb: (err: Error | null) => void): SqliteBackup;
};

/** What a backup or restore copied, and the check of the result. */
export interface BackupResult {
  /** Database pages copied. */
  pages: number;
  /** Highest schema migration recorded in the copy (0 when the file has none). */
  schemaVersion: number;
}

function open(path: string, mode: number): Promise<BackupDatabase> {
  return new Promise((ok, fail) => {
    const db = new sqlite3.Database(path, mode, (e) => (e ? fail(e) : ok(db as BackupDatabase)));
  });
}
const close = (db: sqlite3.Database): Promise<void> => new Promise((ok, fail) => db.close((e) => (e ? fail(e) : ok())));
const all = <T>(db: sqlite3.Database, sql: string): Promise<T[]> => new Promise((ok, fail) => db.all(sql, (e, rows) => (e ? fail(e) : ok(rows as T[]))));
const run = (db: sqlite3.Database, sql: string): Promise<void> => new Promise((ok, fail) => db.exec(sql, (e) => (e ? fail(e) : ok())));

/** Copy every page of `db`'s main database to (`toFile` true) or from `file` in one step. */
function copy(db: BackupDatabase, file: string, toFile: boolean): Promise<number> {
  return new Promise((ok, fail) => {
    const b = db.backup(file, 'main', 'main', toFile, (e) => {
      if (e) return fail(e);
      b.step(-1, (se) => {
        const pages = b.pageCount;
        b.finish(() => (se ? fail(se) : b.failed ? fail(new Error('backup failed')) : ok(pages)));
      });
    });
  });
}

/**
 * Check that `path` is an intact idprov database: `PRAGMA quick_check` passes and it has the schema
 * table. @returns its schema version. @throws Error saying what is wrong.
 */
export async function checkDatabase(path: string): Promise<number> {
  const db = await open(path, sqlite3.OPEN_READONLY);
  try {
    const [qc] = await all<{ quick_check: string }>(db, 'PRAGMA quick_check');
    if (qc?.quick_check !== 'ok') throw new Error(`${path} is damaged: ${qc?.quick_check ?? 'no answer'}`);
    const t = await all<{ name: string }>(db, "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'");
    if (t.length === 0) throw new Error(`${path} is not an idprov database (no schema_migrations table)`);
    const [v] = await all<{ v: number }>(db, 'SELECT coalesce(max(version), 0) AS v FROM schema_migrations');
    return Number(v?.v ?? 0);
  } finally {
    await close(db);
  }
}

/**
 * Write a consistent copy of the database `dbPath` to `toFile` (a new file: written next to it as
 * `<toFile>.partial`, checked, made mode 0600, then renamed, so a failed backup leaves no half file). Safe while a
 * server uses the database.
 */
export async function backupDatabase(dbPath: string, toFile: string): Promise<BackupResult> {
  if (!existsSync(dbPath)) throw new Error(`no database at ${dbPath}`);
  if (existsSync(toFile)) throw new Error(`${toFile} already exists (a backup never overwrites a file)`);
  const partial = `${toFile}.partial`;
  rmSync(partial, { force: true });
  const db = await open(dbPath, sqlite3.OPEN_READONLY);
  let pages: number;
  try {
    pages = await copy(db, partial, true);
  } catch (e) {
    rmSync(partial, { force: true });
    throw e;
  } finally {
    await close(db);
  }
  try {
    // A standalone file: the copy keeps the source's WAL flag; make it a rollback-journal file.
    const out = await open(partial, sqlite3.OPEN_READWRITE);
    await run(out, 'PRAGMA journal_mode = DELETE').finally(() => close(out));
    const schemaVersion = await checkDatabase(partial);
    chmodSync(partial, 0o600); // it holds the token signing keys and the out-of-band secrets
    renameSync(partial, toFile);
    return { pages, schemaVersion };
  } catch (e) {
    rmSync(partial, { force: true });
    throw e;
  }
}

/**
 * Replace the content of the database `dbPath` (created when missing) with the backup `fromFile`,
 * after checking the backup. Run only while no server uses the database (the CLI checks).
 */
export async function restoreDatabase(fromFile: string, dbPath: string): Promise<BackupResult> {
  if (!existsSync(fromFile)) throw new Error(`no backup at ${fromFile}`);
  await checkDatabase(fromFile);
  const db = await open(dbPath, sqlite3.OPEN_READWRITE | sqlite3.OPEN_CREATE);
  let pages: number;
  try {
    pages = await copy(db, fromFile, false);
    await run(db, 'PRAGMA wal_checkpoint(TRUNCATE)');
  } finally {
    await close(db);
  }
  return { pages, schemaVersion: await checkDatabase(dbPath) };
}
