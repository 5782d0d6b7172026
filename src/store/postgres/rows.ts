/**
 * Value mapping between the domain records and the PostgreSQL store's rows: column lists in
 * statement order, parameters out, records in. BYTEA comes back as a Buffer (or, through
 * `row_to_json`, as `\x…` hex text), BIGINT as a number (see `TYPES` in store.ts).
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
} from '../../domain.ts';

export type Row = Record<string, unknown>;
export type Param = string | number | Buffer | null;

export const ALLOW_COLS = ['id', 'pk', 'mac', 'secret', 'type', 'expires', 'created_at', 'consumed_at'] as const;
export const DEVICE_COLS = ['id', 'pk', 'mac', 'type', 'via', 'provisioned_at', 'last_seen', 'source', 'last_cti', 'token_exp'] as const;
export const PENDING_COLS = [
  'id', 'pk', 'mac', 'type', 'source', 'first_seen', 'last_seen', 'count', 'status', 'decided_at', 'decided_by',
] as const;
export const REVOCATION_COLS = ['id', 'at', 'by', 'reason'] as const;
export const KEY_COLS = ['kid', 'public', 'private', 'created_at', 'retired_at'] as const;
export const FLAG_COLS = [
  'id', 'kind', 'subject', 'device_ids', 'evidence', 'first_seen', 'last_seen', 'count', 'cleared_at', 'cleared_by',
] as const;
export const ADMIN_TOKEN_COLS = ['jti', 'name', 'role', 'issued_at', 'expires_at', 'revoked_at', 'revoked_by', 'revoked_reason'] as const;
export const EVENT_COLS = ['seq', 'at', 'kind', 'device_id', 'actor', 'source', 'detail'] as const;

/** A byte field as a bind parameter (NULL when absent). */
export function blob(v: Uint8Array | undefined): Buffer | null {
  if (v === undefined || v === null) return null;
  return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/** A byte field as hex text (for JSON-encoded bulk rows). */
export function hex(v: Uint8Array | undefined): string | null {
  return v === undefined || v === null ? null : Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex');
}

export function opt<T extends string | number>(v: T | undefined): T | null {
  return v === undefined ? null : v;
}

/** A BYTEA value (Buffer, or `\x…` text from `row_to_json`) as a plain Uint8Array view. */
export function bytes(v: unknown): Uint8Array {
  const b = typeof v === 'string' ? Buffer.from(v.startsWith('\\x') ? v.slice(2) : v, 'hex') : (v as Buffer);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

export function allowParams(e: AllowEntry): Param[] {
  return [e.id, blob(e.pk), blob(e.mac), opt(e.secret), e.type, opt(e.expires), e.createdAt, opt(e.consumedAt)];
}

export function deviceParams(d: DeviceRecord): Param[] {
  return [d.id, blob(d.pk), blob(d.mac), d.type, d.via, d.provisionedAt, d.lastSeen, opt(d.source), opt(d.lastCti), opt(d.tokenExp)];
}

export function pendingParams(p: PendingRecord): Param[] {
  return [p.id, blob(p.pk), blob(p.mac), p.type, p.source, p.firstSeen, p.lastSeen, p.count, p.status, opt(p.decidedAt), opt(p.decidedBy)];
}

export function eventParams(e: EventRecord): Param[] {
  return [e.at, e.kind, opt(e.deviceId), e.actor, opt(e.source), e.detail === undefined ? null : JSON.stringify(e.detail)];
}

export function flagParams(f: FlagRecord): Param[] {
  return [
    f.id, f.kind, f.subject, JSON.stringify(f.deviceIds), JSON.stringify(f.evidence), f.firstSeen, f.lastSeen, f.count,
    opt(f.clearedAt), opt(f.clearedBy),
  ];
}

export function allowFromRow(r: Row): AllowEntry {
  const e: AllowEntry = { id: r.id as string, type: r.type as ClientType, createdAt: r.created_at as number };
  if (r.pk !== null) e.pk = bytes(r.pk);
  if (r.mac !== null) e.mac = bytes(r.mac);
  if (r.secret !== null) e.secret = r.secret as string;
  if (r.expires !== null) e.expires = r.expires as number;
  if (r.consumed_at !== null) e.consumedAt = r.consumed_at as number;
  return e;
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
  if (r.detail !== null) e.detail = r.detail as Record<string, unknown>;
  return e;
}

export function flagFromRow(r: Row): FlagRecord {
  const f: FlagRecord = {
    id: r.id as string,
    kind: r.kind as string,
    subject: r.subject as string,
    deviceIds: r.device_ids as string[],
    evidence: r.evidence as Record<string, string>,
    firstSeen: r.first_seen as number,
    lastSeen: r.last_seen as number,
    count: r.count as number,
  };
  if (r.cleared_at !== null) f.clearedAt = r.cleared_at as number;
  if (r.cleared_by !== null) f.clearedBy = r.cleared_by as string;
  return f;
}

export function adminTokenParams(t: AdminTokenRecord): Param[] {
  return [t.jti, t.name, t.role, t.issuedAt, t.expiresAt, t.revokedAt, t.revokedBy, t.revokedReason];
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
