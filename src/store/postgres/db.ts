/**
 * The PostgreSQL store's connection-level pieces: the type parsers its pool uses and the mapping of
 * failures (SQLSTATEs, socket errors) to {@link ProvError}s.
 */
import pg from 'pg';
import { ProvError } from '../../errors.ts';
import { SQL } from './statements.ts';

/** `pg`'s Pool, with the types our options use. */
export type Pool = InstanceType<typeof pg.Pool>;

/** BIGINT (int8, OID 20) as a JavaScript number: every BIGINT here is a time in seconds or a seq. */
export const TYPES = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === 20 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

/** A SQLSTATE class that fails one statement and is the caller's fault (22 data, 23 integrity). */
export function isCallLocal(e: unknown): boolean {
  if (e instanceof ProvError) return true;
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^2[23]/.test(code);
}

/** Connection-level failures: the database is down, restarting or unreachable. */
export function isUnavailable(e: unknown): boolean {
  const err = e as { code?: unknown; message?: unknown } | null;
  const code = typeof err?.code === 'string' ? err.code : '';
  if (/^(08|57P0[123]|53)/.test(code)) return true;
  if (['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND'].includes(code)) return true;
  const msg = typeof err?.message === 'string' ? err.message : '';
  return /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error|Query read timeout/i.test(msg);
}

/**
 * A failure as a {@link ProvError}: unique / foreign-key violations are `conflict`; a database that
 * cannot be reached (down, restarting, connection lost) `unavailable` (5.03 with Max-Age to a device);
 * everything else `internal`.
 */
export function toProvError(e: unknown, op: string): ProvError {
  if (e instanceof ProvError) return e;
  const err = (e ?? {}) as { code?: string; message?: string };
  const message = err.message ?? String(e);
  const detail: Record<string, unknown> = { op };
  if (err.code !== undefined) detail.sqlstate = err.code;
  if (err.code === '23505' || err.code === '23503') return new ProvError('conflict', `store ${op}: ${message}`, detail);
  if (isUnavailable(e)) return new ProvError('unavailable', `store ${op}: ${message}`, detail);
  return new ProvError('internal', `store ${op}: ${message}`, detail);
}

export function closedError(): ProvError {
  return new ProvError('internal', 'the PostgresStore is closed');
}

/**
 * A name for each fixed statement of statements.ts, and only for those: each pooled connection keeps
 * every named statement it has prepared for its lifetime, so a text made at run time (one that
 * interpolated a value) must never get a name, or the map and every connection would grow without
 * bound. Such a text runs unnamed (parsed each time).
 */
const statementNames = new Map<string, string>(Object.values(SQL).map((text, i) => [text, `idprov_${i + 1}`]));

/**
 * `sql` with `values` as a named (prepared) statement when `sql` is one of the fixed statements of
 * statements.ts: each pooled connection parses and plans it once, then only binds and executes it,
 * which saves PostgreSQL the parse and plan of every row written or read. Any other text is sent
 * unnamed.
 */
export function prepared(sql: string, values: unknown[] = []): { name?: string; text: string; values: unknown[] } {
  const name = statementNames.get(sql);
  return name === undefined ? { text: sql, values } : { name, text: sql, values };
}

/** Whether `sql` runs as a named statement (for tests). */
export function isNamedStatement(sql: string): boolean {
  return statementNames.has(sql);
}
