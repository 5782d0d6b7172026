/**
 * The in-memory store's record handling: the rules the SQL schemas enforce with CHECK constraints and
 * column types (checked on every write, so a caller bug fails here as it would on SQLite), and the
 * copies made on the way in and out — a caller that changes a record after `apply`, or one it read,
 * never changes the store, and absent optional fields stay absent (as NULL columns do).
 */
import type {
  AdminTokenRecord,
  AllowEntry,
  DeviceRecord,
  EventRecord,
  FlagRecord,
  PendingRecord,
  Revocation,
  TokenKeyRecord,
} from '../../domain.ts';
import { ProvError } from '../../errors.ts';

function fail(what: string): never {
  throw new ProvError('internal', `store apply: ${what}`);
}

const isInt = (v: unknown): v is number => Number.isSafeInteger(v);
const isText = (v: unknown): v is string => typeof v === 'string';
const isBytes = (v: unknown): v is Uint8Array => v instanceof Uint8Array;
const isType = (v: unknown): boolean => v === 0 || v === 1 || v === 2;

function id(v: unknown, what: string): void {
  if (!isText(v) || v.length === 0) fail(`${what}: an id must be a non-empty string`);
}
function int(v: unknown, what: string, optional = false): void {
  if (optional && (v === undefined || v === null)) return;
  if (!isInt(v)) fail(`${what}: ${String(v)} is not an integer`);
}
function text(v: unknown, what: string, optional = false): void {
  if (optional && v === undefined) return;
  if (!isText(v)) fail(`${what}: not a string`);
}
function bytesField(v: unknown, what: string, optional = false): void {
  if (optional && v === undefined) return;
  if (!isBytes(v)) fail(`${what}: not bytes`);
}

/** A copy of `o` without its undefined properties, byte fields copied. */
function copy<T extends object>(o: T): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    if (v === undefined) continue;
    out[k] = v instanceof Uint8Array ? new Uint8Array(v) : Array.isArray(v) ? [...(v as unknown[])] : v;
  }
  return out as T;
}

/** A JSON field as the SQL stores keep it: what survives JSON.stringify and JSON.parse. */
function jsonCopy<T>(v: T, what: string): T {
  try {
    return JSON.parse(JSON.stringify(v)) as T;
  } catch {
    return fail(`${what}: not JSON`);
  }
}

export function checkAllow(e: AllowEntry): AllowEntry {
  id(e.id, 'allowlist');
  if (!isType(e.type)) fail('allowlist: type');
  int(e.createdAt, 'allowlist.createdAt');
  int(e.expires, 'allowlist.expires', true);
  int(e.consumedAt, 'allowlist.consumedAt', true);
  bytesField(e.pk, 'allowlist.pk', true);
  bytesField(e.mac, 'allowlist.mac', true);
  text(e.secret, 'allowlist.secret', true);
  if (e.pk === undefined && e.mac === undefined && e.secret === undefined) fail('allowlist: an entry needs a key, a MAC or a secret');
  return copy(e);
}

export function checkDevice(d: DeviceRecord): DeviceRecord {
  id(d.id, 'devices');
  bytesField(d.pk, 'devices.pk');
  bytesField(d.mac, 'devices.mac', true);
  if (!isType(d.type)) fail('devices: type');
  if (d.via !== 'allowlist' && d.via !== 'admin' && d.via !== 'reprovision') fail('devices: via');
  int(d.provisionedAt, 'devices.provisionedAt');
  int(d.lastSeen, 'devices.lastSeen');
  int(d.tokenExp, 'devices.tokenExp', true);
  text(d.source, 'devices.source', true);
  text(d.lastCti, 'devices.lastCti', true);
  return copy(d);
}

export function checkPending(p: PendingRecord): PendingRecord {
  id(p.id, 'pending');
  bytesField(p.pk, 'pending.pk');
  bytesField(p.mac, 'pending.mac', true);
  if (!isType(p.type)) fail('pending: type');
  text(p.source, 'pending.source');
  int(p.firstSeen, 'pending.firstSeen');
  int(p.lastSeen, 'pending.lastSeen');
  int(p.count, 'pending.count');
  if (p.count < 0) fail('pending: count');
  if (p.status !== 'pending' && p.status !== 'approved' && p.status !== 'rejected') fail('pending: status');
  int(p.decidedAt, 'pending.decidedAt', true);
  text(p.decidedBy, 'pending.decidedBy', true);
  text(p.decidedReason, 'pending.decidedReason', true);
  return copy(p);
}

export function checkRevocation(v: Revocation): Revocation {
  id(v.id, 'revocations');
  int(v.at, 'revocations.at');
  text(v.by, 'revocations.by');
  text(v.reason, 'revocations.reason', true);
  return copy(v);
}

export function checkKey(k: TokenKeyRecord): TokenKeyRecord {
  id(k.kid, 'token_keys');
  bytesField(k.publicKey, 'token_keys.public');
  bytesField(k.privateKey, 'token_keys.private');
  int(k.createdAt, 'token_keys.createdAt');
  int(k.retiredAt, 'token_keys.retiredAt', true);
  return copy(k);
}

export function checkEvent(e: EventRecord, seq: number): EventRecord {
  int(e.at, 'events.at');
  text(e.kind, 'events.kind');
  text(e.actor, 'events.actor');
  text(e.deviceId, 'events.deviceId', true);
  text(e.source, 'events.source', true);
  const out: EventRecord = copy({ ...e, seq });
  if (e.detail !== undefined) out.detail = jsonCopy(e.detail, 'events.detail');
  return out;
}

export function checkFlag(f: FlagRecord): FlagRecord {
  id(f.id, 'flags');
  text(f.kind, 'flags.kind');
  text(f.subject, 'flags.subject');
  int(f.firstSeen, 'flags.firstSeen');
  int(f.lastSeen, 'flags.lastSeen');
  int(f.count, 'flags.count');
  if (f.count < 1) fail('flags: count');
  int(f.clearedAt, 'flags.clearedAt', true);
  text(f.clearedBy, 'flags.clearedBy', true);
  const out = copy(f);
  out.deviceIds = jsonCopy(f.deviceIds, 'flags.deviceIds');
  out.evidence = jsonCopy(f.evidence, 'flags.evidence');
  return out;
}

export function checkAdminToken(t: AdminTokenRecord): AdminTokenRecord {
  id(t.jti, 'admin_tokens');
  text(t.name, 'admin_tokens.name');
  if (t.role !== 'admin' && t.role !== 'hub') fail('admin_tokens: role');
  int(t.issuedAt, 'admin_tokens.issuedAt');
  int(t.expiresAt, 'admin_tokens.expiresAt', true);
  int(t.revokedAt, 'admin_tokens.revokedAt', true);
  if (t.revokedBy !== null && !isText(t.revokedBy)) fail('admin_tokens: revokedBy');
  if (t.revokedReason !== null && !isText(t.revokedReason)) fail('admin_tokens: revokedReason');
  return { ...t };
}

/** A record as handed out: a copy (byte fields and JSON fields too), so the caller may change it. */
export function out<T extends object>(r: T): T {
  const c = copy(r) as Record<string, unknown>;
  for (const k of ['detail', 'evidence']) if (c[k] !== undefined) c[k] = structuredClone(c[k]);
  return c as T;
}
