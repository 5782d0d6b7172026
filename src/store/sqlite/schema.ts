/**
 * The SQLite store's schema (docs/architecture.md "store"): the ordered migrations and the runner that
 * applies the ones a database has not recorded yet.
 */
import type { Database } from 'sqlite3';
import { ProvError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import { execSql, queryDb, queryRow, toProvError } from './db.ts';

/**
 * Ordered schema migrations: element `i` is schema version `i + 1`. Each runs in its own
 * transaction and is recorded in `schema_migrations`; opening a database applies only the versions
 * it has not recorded yet. Append new steps, never edit a released one.
 */
export const MIGRATIONS: readonly string[] = [
  // 1: initial schema. STRICT tables make SQLite reject a value of the wrong type (a float time, a
  // string where a blob belongs) instead of storing it; WITHOUT ROWID keeps each id-keyed table a
  // single b-tree.
  `
  CREATE TABLE allowlist (
    id          TEXT    NOT NULL PRIMARY KEY CHECK (length(id) > 0),
    pk          BLOB,
    mac         BLOB,
    secret      TEXT,
    type        INTEGER NOT NULL CHECK (type IN (0, 1, 2)),
    expires     INTEGER,
    created_at  INTEGER NOT NULL,
    consumed_at INTEGER,
    CHECK (pk IS NOT NULL OR mac IS NOT NULL OR secret IS NOT NULL)
  ) STRICT, WITHOUT ROWID;

  CREATE TABLE devices (
    id             TEXT    NOT NULL PRIMARY KEY CHECK (length(id) > 0),
    pk             BLOB    NOT NULL,
    mac            BLOB,
    type           INTEGER NOT NULL CHECK (type IN (0, 1, 2)),
    via            TEXT    NOT NULL CHECK (via IN ('allowlist', 'admin', 'reprovision')),
    provisioned_at INTEGER NOT NULL,
    last_seen      INTEGER NOT NULL,
    source         TEXT,
    last_cti       TEXT,
    token_exp      INTEGER
  ) STRICT, WITHOUT ROWID;

  CREATE TABLE pending (
    id         TEXT    NOT NULL PRIMARY KEY CHECK (length(id) > 0),
    pk         BLOB    NOT NULL,
    mac        BLOB,
    type       INTEGER NOT NULL CHECK (type IN (0, 1, 2)),
    source     TEXT    NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    count      INTEGER NOT NULL CHECK (count >= 0),
    status     TEXT    NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    decided_at INTEGER,
    decided_by TEXT
  ) STRICT, WITHOUT ROWID;
  CREATE INDEX pending_by_status ON pending (status, id);

  CREATE TABLE revocations (
    id     TEXT    NOT NULL PRIMARY KEY CHECK (length(id) > 0),
    at     INTEGER NOT NULL,
    by     TEXT    NOT NULL,
    reason TEXT
  ) STRICT, WITHOUT ROWID;

  CREATE TABLE token_keys (
    kid        TEXT    NOT NULL PRIMARY KEY CHECK (length(kid) > 0),
    public     BLOB    NOT NULL,
    private    BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    retired_at INTEGER
  ) STRICT, WITHOUT ROWID;

  CREATE TABLE settings (
    name  TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
  ) STRICT, WITHOUT ROWID;

  CREATE TABLE events (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    kind      TEXT    NOT NULL,
    device_id TEXT,
    actor     TEXT    NOT NULL,
    source    TEXT,
    detail    TEXT CHECK (detail IS NULL OR json_valid(detail))
  ) STRICT;
  CREATE INDEX events_by_device ON events (device_id, seq);
  `,
  // 2: the security monitor (issue #6). MAC indexes for the duplicate-MAC check; an age index and a
  // trigger-kept counter so that capping the waiting requests costs O(rows removed), not a count of
  // the table per insert; the flags table (one open flag per kind and subject).
  `
  CREATE INDEX devices_by_mac ON devices (mac) WHERE mac IS NOT NULL;
  CREATE INDEX pending_by_mac ON pending (mac) WHERE mac IS NOT NULL;
  CREATE INDEX pending_by_age ON pending (status, last_seen, id);

  CREATE TABLE counters (
    name TEXT    NOT NULL PRIMARY KEY,
    n    INTEGER NOT NULL
  ) STRICT, WITHOUT ROWID;
  INSERT INTO counters (name, n) SELECT 'pending.waiting', count(*) FROM pending WHERE status = 'pending';
  CREATE TRIGGER pending_waiting_insert AFTER INSERT ON pending WHEN NEW.status = 'pending'
    BEGIN UPDATE counters SET n = n + 1 WHERE name = 'pending.waiting'; END;
  CREATE TRIGGER pending_waiting_delete AFTER DELETE ON pending WHEN OLD.status = 'pending'
    BEGIN UPDATE counters SET n = n - 1 WHERE name = 'pending.waiting'; END;
  CREATE TRIGGER pending_waiting_update AFTER UPDATE OF status ON pending WHEN OLD.status <> NEW.status
    BEGIN UPDATE counters SET n = n + (NEW.status = 'pending') - (OLD.status = 'pending') WHERE name = 'pending.waiting'; END;

  CREATE TABLE flags (
    id         TEXT    NOT NULL PRIMARY KEY CHECK (length(id) > 0),
    kind       TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    device_ids TEXT    NOT NULL CHECK (json_valid(device_ids)),
    evidence   TEXT    NOT NULL CHECK (json_valid(evidence)),
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    count      INTEGER NOT NULL CHECK (count >= 1),
    cleared_at INTEGER,
    cleared_by TEXT
  ) STRICT, WITHOUT ROWID;
  CREATE UNIQUE INDEX flags_open ON flags (kind, subject) WHERE cleared_at IS NULL;
  CREATE INDEX flags_cleared ON flags (cleared_at) WHERE cleared_at IS NOT NULL;
  `,
  // 3: the admin-API token registry (issue 14): every issued token by its jti, for listing and revoking.
  `
  CREATE TABLE admin_tokens (
    jti            TEXT    NOT NULL PRIMARY KEY CHECK (length(jti) > 0),
    name           TEXT    NOT NULL,
    role           TEXT    NOT NULL CHECK (role IN ('admin', 'hub')),
    issued_at      INTEGER NOT NULL,
    expires_at     INTEGER,
    revoked_at     INTEGER,
    revoked_by     TEXT,
    revoked_reason TEXT
  ) STRICT, WITHOUT ROWID;
  `,
  // 4: the reason an admin gave when rejecting an ID, on the record itself (the Rejected view and
  // `GET /pending?status=rejected` show it; before, only the event log had it).
  `
  ALTER TABLE pending ADD COLUMN decided_reason TEXT;
  `,
  // 5: the entries with a printed secret, by id, with their DTLS-PSK fields (issue 17): the PSK index
  // loads from it (Store.listPsk) reading only those entries, where a scan of a 1,000,000-entry
  // allowlist took 6.5 s of CPU on every reload.
  `
  CREATE INDEX allowlist_psk ON allowlist (id, secret, expires) WHERE secret IS NOT NULL;
  `,
];

/** Applies the migrations `db` has not recorded yet, each in its own transaction; returns how many. */
export async function migrate(db: Database, migrations: readonly string[], log: Logger | undefined): Promise<number> {
  await execSql(
    db,
    'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL) STRICT',
  );
  let applied = 0;
  for (const [k, migration] of migrations.entries()) {
    const version = k + 1;
    await execSql(db, 'BEGIN IMMEDIATE');
    try {
      // Read inside the write transaction: another process may be migrating the same file.
      const r = await queryRow(db, 'SELECT coalesce(max(version), 0) AS v FROM schema_migrations');
      const current = r.v as number;
      if (current > migrations.length) {
        throw new ProvError(
          'internal',
          `store open: database schema version ${current} is newer than this server knows (${migrations.length})`,
        );
      }
      if (current >= version) {
        await execSql(db, 'COMMIT');
        continue;
      }
      await execSql(db, migration);
      await queryDb(db, 'INSERT INTO schema_migrations (version, applied_at) VALUES (?, unixepoch())', [version]);
      await execSql(db, 'COMMIT');
      applied++;
      log?.info({ version }, 'applied schema migration');
    } catch (e) {
      await execSql(db, 'ROLLBACK').catch(() => undefined);
      throw e instanceof ProvError ? e : toProvError(e, `migration ${version}`);
    }
  }
  return applied;
}
