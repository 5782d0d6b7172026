/**
 * Row building shared by the SQL stores (SQLite and PostgreSQL): the column lists in statement order,
 * the bind parameters of each record, the records back from named-column rows, and the SQL fragments
 * both dialects write the same way (whole-row upserts, the allowlist's keep-consumption rule). Each
 * store keeps only what its database does differently (placeholders, JSON unpacking, type parsers).
 *
 * Values: times are integers (seconds), byte fields bind as Buffers and come back as Buffers (or, from
 * PostgreSQL's `row_to_json`, as `\x…` hex text), JSON fields come back as text (SQLite) or already
 * parsed (PostgreSQL's `json` type) — {@link json} takes either.
 */
import type {
  AdminTokenRecord,
  AdminTokenRole,
  AllowEntry,
  ClientType,
  DeviceRecord,
  EventRecord,
  FlagRecord,
  PendingRecord,
  PendingStatus,
  ProvisionedVia,
  Revocation,
  TokenKeyRecord,
} from '../domain.ts';
import type { PskEntry } from './store.ts';

export type Row = Record<string, unknown>;
export type Param = string | number | Buffer | null;

export const ALLOW_COLS = ['id', 'pk', 'mac', 'secret', 'type', 'expires', 'created_at', 'consumed_at'] as const;
export const DEVICE_COLS = ['id', 'pk', 'mac', 'type', 'via', 'provisioned_at', 'last_seen', 'source', 'last_cti', 'token_exp'] as const;
export const PENDING_COLS = [
  'id', 'pk', 'mac', 'type', 'source', 'first_seen', 'last_seen', 'count', 'status', 'decided_at', 'decided_by',
  'decided_reason',
] as const;
export const REVOCATION_COLS = ['id', 'at', 'by', 'reason'] as const;
export const KEY_COLS = ['kid', 'public', 'private', 'created_at', 'retired_at'] as const;
export const FLAG_COLS = [
  'id', 'kind', 'subject', 'device_ids', 'evidence', 'first_seen', 'last_seen', 'count', 'cleared_at', 'cleared_by',
] as const;
export const EVENT_COLS = ['seq', 'at', 'kind', 'device_id', 'actor', 'source', 'detail'] as const;
/** The columns an event INSERT binds (`seq` is assigned by the database). */
export const EVENT_INSERT_COLS = EVENT_COLS.slice(1);
export const ADMIN_TOKEN_COLS = ['jti', 'name', 'role', 'issued_at', 'expires_at', 'revoked_at', 'revoked_by', 'revoked_reason'] as const;

// ---------------------------------------------------------------------------------------------
// Values

/** A byte field as a bind parameter (NULL when absent). */
export function blob(v: Uint8Array | undefined): Buffer | null {
  if (v === undefined || v === null) return null;
  return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/** A byte field as hex text (for JSON-encoded rows, unhexed by the database). */
export function hex(v: Uint8Array | undefined): string | null {
  return v === undefined || v === null ? null : Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex');
}

export function opt<T extends string | number>(v: T | undefined): T | null {
  return v === undefined ? null : v;
}

/** A byte column (Buffer, or `\x…` hex text) as a plain Uint8Array view: the domain type. */
export function bytes(v: unknown): Uint8Array {
  const b = typeof v === 'string' ? Buffer.from(v.startsWith('\\x') ? v.slice(2) : v, 'hex') : (v as Buffer);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** A JSON column: text (SQLite) is parsed, an already parsed value (PostgreSQL `json`) passes. */
export function json<T>(v: unknown): T {
  return (typeof v === 'string' ? JSON.parse(v) : v) as T;
}

// ---------------------------------------------------------------------------------------------
// Records to parameters (in the column order above). `enc` encodes byte fields: {@link blob} for
// bound parameters (the default), {@link hex} for rows sent as JSON.

type Bytes = (v: Uint8Array | undefined) => Param;

export function allowParams(e: AllowEntry, enc: Bytes = blob): Param[] {
  return [e.id, enc(e.pk), enc(e.mac), opt(e.secret), e.type, opt(e.expires), e.createdAt, opt(e.consumedAt)];
}

export function deviceParams(d: DeviceRecord, enc: Bytes = blob): Param[] {
  return [d.id, enc(d.pk), enc(d.mac), d.type, d.via, d.provisionedAt, d.lastSeen, opt(d.source), opt(d.lastCti), opt(d.tokenExp)];
}

export function pendingParams(p: PendingRecord, enc: Bytes = blob): Param[] {
  return [
    p.id, enc(p.pk), enc(p.mac), p.type, p.source, p.firstSeen, p.lastSeen, p.count, p.status, opt(p.decidedAt), opt(p.decidedBy),
    opt(p.decidedReason),
  ];
}

export function revocationParams(v: Revocation): Param[] {
  return [v.id, v.at, v.by, opt(v.reason)];
}

export function keyParams(k: TokenKeyRecord): Param[] {
  return [k.kid, blob(k.publicKey), blob(k.privateKey), k.createdAt, opt(k.retiredAt)];
}

/** In {@link EVENT_INSERT_COLS} order. */
export function eventParams(e: EventRecord): Param[] {
  return [e.at, e.kind, opt(e.deviceId), e.actor, opt(e.source), e.detail === undefined ? null : JSON.stringify(e.detail)];
}

/** `seq` then {@link EVENT_INSERT_COLS}: in {@link EVENT_COLS} order. */
export function eventCopyParams(e: EventRecord & { seq: number }): Param[] {
  return [e.seq, ...eventParams(e)];
}

export function flagParams(f: FlagRecord): Param[] {
  return [
    f.id, f.kind, f.subject, JSON.stringify(f.deviceIds), JSON.stringify(f.evidence), f.firstSeen, f.lastSeen, f.count,
    opt(f.clearedAt), opt(f.clearedBy),
  ];
}

export function adminTokenParams(t: AdminTokenRecord): Param[] {
  return [t.jti, t.name, t.role, t.issuedAt, t.expiresAt, t.revokedAt, t.revokedBy, t.revokedReason];
}

/**
 * One allowlist entry as a JSON row, as the bulk statements of both stores unpack it:
 * `[id, pk hex | null, mac hex | null, secret | null, type, expires | null, createdAt, consumedAt | null]`.
 */
export type AllowRow = [string, string | null, string | null, string | null, number, number | null, number, number | null];

export function allowRow(e: AllowEntry): AllowRow {
  return allowParams(e, hex) as AllowRow;
}

/** The JSON text of `entries` as an array of {@link AllowRow}s. */
export function allowRowsJson(entries: readonly AllowEntry[]): string {
  return JSON.stringify(entries.map(allowRow));
}

// ---------------------------------------------------------------------------------------------
// Rows (named columns) to records

export function allowFromRow(r: Row): AllowEntry {
  const e: AllowEntry = { id: r.id as string, type: r.type as ClientType, createdAt: r.created_at as number };
  if (r.pk !== null) e.pk = bytes(r.pk);
  if (r.mac !== null) e.mac = bytes(r.mac);
  if (r.secret !== null) e.secret = r.secret as string;
  if (r.expires !== null) e.expires = r.expires as number;
  if (r.consumed_at !== null) e.consumedAt = r.consumed_at as number;
  return e;
}

/** A row of `listPsk` (id, secret, expires; the secret is never NULL there). */
export function pskFromRow(r: Row): PskEntry {
  return r.expires === null ? { id: r.id as string, secret: r.secret as string } : { id: r.id as string, secret: r.secret as string, expires: r.expires as number };
}

export function deviceFromRow(r: Row): DeviceRecord {
  const d: DeviceRecord = {
    id: r.id as string,
    pk: bytes(r.pk),
    type: r.type as ClientType,
    via: r.via as ProvisionedVia,
    provisionedAt: r.provisioned_at as number,
    lastSeen: r.last_seen as number,
  };
  if (r.mac !== null) d.mac = bytes(r.mac);
  if (r.source !== null) d.source = r.source as string;
  if (r.last_cti !== null) d.lastCti = r.last_cti as string;
  if (r.token_exp !== null) d.tokenExp = r.token_exp as number;
  return d;
}

export function pendingFromRow(r: Row): PendingRecord {
  const p: PendingRecord = {
    id: r.id as string,
    pk: bytes(r.pk),
    type: r.type as ClientType,
    source: r.source as string,
    firstSeen: r.first_seen as number,
    lastSeen: r.last_seen as number,
    count: r.count as number,
    status: r.status as PendingStatus,
  };
  if (r.mac !== null) p.mac = bytes(r.mac);
  if (r.decided_at !== null) p.decidedAt = r.decided_at as number;
  if (r.decided_by !== null) p.decidedBy = r.decided_by as string;
  // `undefined`: a row from before the column (or a projection without it) reads as no reason.
  if (r.decided_reason !== null && r.decided_reason !== undefined) p.decidedReason = r.decided_reason as string;
  return p;
}

export function revocationFromRow(r: Row): Revocation {
  const v: Revocation = { id: r.id as string, at: r.at as number, by: r.by as string };
  if (r.reason !== null) v.reason = r.reason as string;
  return v;
}

export function keyFromRow(r: Row): TokenKeyRecord {
  const k: TokenKeyRecord = {
    kid: r.kid as string,
    publicKey: bytes(r.public),
    privateKey: bytes(r.private),
    createdAt: r.created_at as number,
  };
  if (r.retired_at !== null) k.retiredAt = r.retired_at as number;
  return k;
}

export function eventFromRow(r: Row): EventRecord {
  const e: EventRecord = { seq: r.seq as number, at: r.at as number, kind: r.kind as string, actor: r.actor as string };
  if (r.device_id !== null) e.deviceId = r.device_id as string;
  if (r.source !== null) e.source = r.source as string;
  if (r.detail !== null) e.detail = json<Record<string, unknown>>(r.detail);
  return e;
}

export function flagFromRow(r: Row): FlagRecord {
  const f: FlagRecord = {
    id: r.id as string,
    kind: r.kind as string,
    subject: r.subject as string,
    deviceIds: json<string[]>(r.device_ids),
    evidence: json<Record<string, string>>(r.evidence),
    firstSeen: r.first_seen as number,
    lastSeen: r.last_seen as number,
    count: r.count as number,
  };
  if (r.cleared_at !== null) f.clearedAt = r.cleared_at as number;
  if (r.cleared_by !== null) f.clearedBy = r.cleared_by as string;
  return f;
}

export function adminTokenFromRow(r: Row): AdminTokenRecord {
  return {
    jti: r.jti as string,
    name: r.name as string,
    role: r.role as AdminTokenRole,
    issuedAt: r.issued_at as number,
    expiresAt: (r.expires_at as number | null) ?? null,
    revokedAt: (r.revoked_at as number | null) ?? null,
    revokedBy: (r.revoked_by as string | null) ?? null,
    revokedReason: (r.revoked_reason as string | null) ?? null,
  };
}

// ---------------------------------------------------------------------------------------------
// SQL both dialects write alike

/** `ON CONFLICT (key) DO UPDATE SET` every other column to the new row's value. */
export function onConflictReplace(key: string, columns: readonly string[]): string {
  return `ON CONFLICT (${key}) DO UPDATE SET ` + columns.filter((c) => c !== key).map((c) => `${c} = excluded.${c}`).join(', ');
}

/**
 * `INSERT … VALUES (…) ON CONFLICT … DO UPDATE` of a whole row; `placeholder(i)` writes parameter
 * `i` (0-based): `?` for SQLite, `$i+1` for PostgreSQL.
 */
export function upsertSql(table: string, key: string, columns: readonly string[], placeholder: (i: number) => string): string {
  return `INSERT INTO ${table} (${columns.join(', ')}) VALUES (${columns.map((_, i) => placeholder(i)).join(', ')}) ${onConflictReplace(key, columns)}`;
}

/**
 * The ON CONFLICT clause of an allowlist upsert. Re-importing an entry keeps its consumption when its
 * factors (pk, mac, secret) are unchanged, so an accidental re-upload of the same file does not
 * re-arm spent pre-approvals; an entry with new factors (e.g. an admin re-keying a device) is usable
 * again. To re-arm an unchanged entry, delete it and import it again. (`IS NOT DISTINCT FROM`: NULL
 * equals NULL; SQLite has it since 3.39.)
 */
export const ALLOW_UPDATE =
  'ON CONFLICT (id) DO UPDATE SET ' +
  ALLOW_COLS.filter((c) => c !== 'id' && c !== 'consumed_at')
    .map((c) => `${c} = excluded.${c}`)
    .concat(
      'consumed_at = CASE WHEN excluded.consumed_at IS NOT NULL THEN excluded.consumed_at ' +
        'WHEN allowlist.pk IS NOT DISTINCT FROM excluded.pk AND allowlist.mac IS NOT DISTINCT FROM excluded.mac ' +
        'AND allowlist.secret IS NOT DISTINCT FROM excluded.secret THEN allowlist.consumed_at ELSE NULL END',
    )
    .join(', ');
