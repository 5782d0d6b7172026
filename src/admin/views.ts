/**
 * The JSON views the sidecar answers with: keys as hex with their fingerprint, MACs as aa:bb:…, times
 * as ISO 8601, no secrets. Each view has its TypeScript type (which `oob` and other clients import
 * instead of copying it) and its JSON schema (which serializes the response and goes into the OpenAPI
 * document).
 */
import type { AdminTokenRecord, AllowEntry, DeviceRecord, EventRecord, FlagRecord, PendingRecord, Revocation } from '../domain.ts';
import { formatMac } from '../protocol/allowlist.ts';
import { keyFingerprint, keyFingerprintsIn } from '../service/admin-queries.ts';
import { bool, int, isoTime, named, obj, str, type Schema } from './schema.ts';

export type { ImportResult as ImportView } from '../service/allowlist-import.ts';

const hex = (b: Uint8Array | undefined): string | undefined => (b ? Buffer.from(b).toString('hex') : undefined);
const iso = (t: number | undefined): string | undefined => (t === undefined ? undefined : new Date(t * 1000).toISOString());
const TYPE_NAMES = ['device', 'service', 'consumer'] as const;
export type ClientTypeName = (typeof TYPE_NAMES)[number];

/** A page of a list. */
export interface PageView<T> {
  items: T[];
  /** Pass as `after` for the following page; absent on the last one. */
  next?: string | undefined;
}

export interface AllowView {
  id: string;
  pk?: string | undefined;
  fingerprint?: string | undefined;
  mac?: string | undefined;
  hasSecret: boolean;
  type: ClientTypeName;
  expires?: string | undefined;
  createdAt?: string | undefined;
  consumedAt?: string | undefined;
  /** `PUT /allowlist/{id}` only: what the row would have been warned about in a file. */
  warnings?: string[] | undefined;
}

export interface PendingView {
  id: string;
  status: PendingRecord['status'];
  pk?: string | undefined;
  fingerprint?: string | undefined;
  mac?: string | undefined;
  type: ClientTypeName;
  source?: string | undefined;
  firstSeen?: string | undefined;
  lastSeen?: string | undefined;
  count: number;
  decidedAt?: string | undefined;
  decidedBy?: string | undefined;
  /** For a rejection: the reason the admin gave. */
  decidedReason?: string | undefined;
}

export interface DeviceView {
  id: string;
  pk: string;
  fingerprint: string;
  mac?: string | undefined;
  type: ClientTypeName;
  via: DeviceRecord['via'];
  provisionedAt?: string | undefined;
  lastSeen?: string | undefined;
  source?: string | undefined;
  tokenExp?: string | undefined;
  revoked?: { at?: string | undefined; by?: string | undefined; reason?: string | undefined } | undefined;
}

export interface FlagView {
  id: string;
  kind: string;
  status: 'open' | 'cleared';
  deviceIds: string[];
  subject: string;
  evidence: Record<string, string>;
  /** The fingerprint of each evidence value that is a key (64 hex digits), by evidence key; absent when none is. */
  fingerprints?: Record<string, string> | undefined;
  firstSeen?: string | undefined;
  lastSeen?: string | undefined;
  count: number;
  clearedAt?: string | undefined;
  clearedBy?: string | undefined;
}

export interface EventView {
  seq: number;
  at: string;
  kind: string;
  deviceId?: string | undefined;
  actor: string;
  source?: string | undefined;
  detail?: Record<string, unknown> | undefined;
}

export interface HealthView {
  status: 'ok';
  version: string;
  provisioning: ProvisioningView;
  kid: string;
  instances?: number | undefined;
}

export interface ProvisioningView {
  enabled: boolean;
  reason?: string | undefined;
}

export interface InstanceView {
  name: string;
  host: string;
  coapPort: number;
  coapsPort: number;
  adminPort: number;
  version: string;
  startedAt: number;
  seenAt: number;
}

export interface InstancesView {
  shared: boolean;
  instances: InstanceView[];
}

export interface Jwk {
  kty: 'OKP';
  crv: 'Ed25519';
  alg: 'EdDSA';
  use: 'sig';
  kid: string;
  x: string;
}

export interface JwksView {
  keys: Jwk[];
}

export type { TokenCheck as TokenCheckView } from '../service/admin-queries.ts';

/** The view functions (records in, views out). */
export const views = {
  allow: (e: AllowEntry): AllowView => ({
    id: e.id,
    pk: hex(e.pk),
    fingerprint: e.pk ? keyFingerprint(e.pk) : undefined,
    mac: e.mac ? formatMac(e.mac) : undefined,
    hasSecret: e.secret !== undefined,
    type: TYPE_NAMES[e.type],
    expires: iso(e.expires),
    createdAt: iso(e.createdAt),
    consumedAt: iso(e.consumedAt),
  }),
  pending: (p: PendingRecord): PendingView => ({
    id: p.id,
    status: p.status,
    pk: p.pk.length ? hex(p.pk) : undefined,
    fingerprint: p.pk.length ? keyFingerprint(p.pk) : undefined,
    mac: p.mac ? formatMac(p.mac) : undefined,
    type: TYPE_NAMES[p.type],
    source: p.source || undefined,
    firstSeen: iso(p.firstSeen),
    lastSeen: iso(p.lastSeen),
    count: p.count,
    decidedAt: iso(p.decidedAt),
    decidedBy: p.decidedBy,
    decidedReason: p.decidedReason,
  }),
  device: (d: DeviceRecord, r?: Revocation): DeviceView => ({
    id: d.id,
    pk: hex(d.pk)!,
    fingerprint: keyFingerprint(d.pk),
    mac: d.mac ? formatMac(d.mac) : undefined,
    type: TYPE_NAMES[d.type],
    via: d.via,
    provisionedAt: iso(d.provisionedAt),
    lastSeen: iso(d.lastSeen),
    source: d.source,
    tokenExp: iso(d.tokenExp),
    revoked: r ? { at: iso(r.at), by: r.by, reason: r.reason } : undefined,
  }),
  flag: (f: FlagRecord): FlagView => ({
    id: f.id,
    kind: f.kind,
    status: f.clearedAt === undefined ? 'open' : 'cleared',
    deviceIds: f.deviceIds,
    subject: f.subject,
    evidence: f.evidence,
    fingerprints: keyFingerprintsIn(f.evidence),
    firstSeen: iso(f.firstSeen),
    lastSeen: iso(f.lastSeen),
    count: f.count,
    clearedAt: iso(f.clearedAt),
    clearedBy: f.clearedBy,
  }),
  event: (e: EventRecord): EventView => ({
    seq: e.seq!,
    at: iso(e.at)!,
    kind: e.kind,
    deviceId: e.deviceId,
    actor: e.actor,
    source: e.source,
    detail: e.detail,
  }),
};

// ---- schemas of the views

const typeName = str('client type', { enum: [...TYPE_NAMES] });
const pkHex = str('Ed25519 public key, 64 hex digits', { pattern: '^[0-9a-f]{64}$' });
const fingerprint = str('short fingerprint of the key, as the device and the CLI show it');
const macText = str('MAC address, aa:bb:cc:dd:ee:ff (EUI-64: 8 groups)');

export const AllowSchema: Schema = named(
  'AllowEntry',
  obj(
    {
      id: str('device ID'),
      pk: pkHex,
      fingerprint,
      mac: macText,
      hasSecret: bool('an out-of-band secret is set (never shown)'),
      type: typeName,
      expires: isoTime('the entry expires then'),
      createdAt: isoTime(),
      consumedAt: isoTime('consumed by the first provisioning'),
      warnings: { type: 'array', items: str(), description: 'PUT only: what the row would have been warned about in a file' },
    },
    ['id', 'hasSecret', 'type'],
    { description: 'An allowlist entry (no secret)' },
  ),
);

export const PendingSchema: Schema = named(
  'PendingRequest',
  obj(
    {
      id: str('device ID'),
      status: str('pending, approved or rejected', { enum: ['pending', 'approved', 'rejected'] }),
      pk: pkHex,
      fingerprint,
      mac: macText,
      type: typeName,
      source: str('source address of the last request'),
      firstSeen: isoTime(),
      lastSeen: isoTime(),
      count: int('authenticated requests seen'),
      decidedAt: isoTime(),
      decidedBy: str('who decided: admin:<name> / cli'),
      decidedReason: str('for a rejection: the reason the admin gave (absent when none was given)'),
    },
    ['id', 'status', 'type', 'count'],
    { description: 'A request from an unknown device ID' },
  ),
);

export const DeviceSchema: Schema = named(
  'Device',
  obj(
    {
      id: str('device ID'),
      pk: pkHex,
      fingerprint,
      mac: macText,
      type: typeName,
      via: str('how it was provisioned', { enum: ['allowlist', 'admin', 'reprovision'] }),
      provisionedAt: isoTime(),
      lastSeen: isoTime(),
      source: str('source address of the last request'),
      tokenExp: isoTime('expiry of the last token issued'),
      revoked: obj({ at: isoTime(), by: str(), reason: str() }, [], { description: 'present when revoked' }),
    },
    ['id', 'pk', 'fingerprint', 'type', 'via'],
    { description: 'A provisioned device' },
  ),
);

export const FlagSchema: Schema = named(
  'Flag',
  obj(
    {
      id: str('flag ID'),
      kind: str('key-changed, key-mismatch, mac-mismatch, mac-changed, oob-failed, approved-key-changed, duplicate-mac, many-ids'),
      status: str(undefined, { enum: ['open', 'cleared'] }),
      deviceIds: { type: 'array', items: str() },
      subject: str('device ID, mac:<hex> or addr:<address>'),
      evidence: { type: 'object', additionalProperties: str(), description: 'non-secret evidence of the latest observation' },
      fingerprints: { type: 'object', additionalProperties: str(), description: 'the key fingerprint of each evidence value that is a key (64 hex digits), by evidence key (e.g. expected, got); absent when none is' },
      firstSeen: isoTime(),
      lastSeen: isoTime(),
      count: int('observations merged into this flag'),
      clearedAt: isoTime(),
      clearedBy: str(),
    },
    ['id', 'kind', 'status', 'deviceIds', 'subject', 'evidence', 'count'],
    { description: 'A flag of the security monitor' },
  ),
);

export const EventSchema: Schema = named(
  'Event',
  obj(
    {
      seq: int('position in the log (the cursor)'),
      at: isoTime(),
      kind: str('see docs/admin-api.md "Event kinds"'),
      deviceId: str(),
      actor: str('device, system, admin:<name>, cli'),
      source: str('source address'),
      detail: { type: 'object', additionalProperties: true, description: 'small JSON detail, no secrets' },
    },
    ['seq', 'at', 'kind', 'actor'],
    { description: 'An event of the audit trail' },
  ),
);

export const ProvisioningSchema: Schema = named('ProvisioningSwitch', obj({ enabled: bool(), reason: str('why it is off') }, ['enabled']));

export const HealthSchema: Schema = named(
  'Health',
  obj(
    {
      status: str(undefined, { enum: ['ok'] }),
      version: str(),
      provisioning: ProvisioningSchema,
      kid: str('kid of the current token key (hex)'),
      instances: int('live instances on a shared PostgreSQL'),
    },
    ['status', 'version', 'provisioning', 'kid'],
  ),
);

export const InstancesSchema: Schema = named(
  'Instances',
  obj(
    {
      shared: bool('false with SQLite (one instance)'),
      instances: {
        type: 'array',
        items: obj(
          { name: str(), host: str(), coapPort: int(), coapsPort: int(), adminPort: int(), version: str(), startedAt: int('epoch s'), seenAt: int('epoch s') },
          ['name', 'host', 'coapPort', 'coapsPort', 'adminPort', 'version', 'startedAt', 'seenAt'],
        ),
      },
    },
    ['shared', 'instances'],
  ),
);

export const JwksSchema: Schema = named(
  'Jwks',
  obj(
    {
      keys: {
        type: 'array',
        items: obj(
          {
            kty: str(undefined, { enum: ['OKP'] }),
            crv: str(undefined, { enum: ['Ed25519'] }),
            alg: str(undefined, { enum: ['EdDSA'] }),
            use: str(undefined, { enum: ['sig'] }),
            kid: str('base64url of the 8 bytes of the COSE kid (header label 4)'),
            x: str('base64url of the raw 32-byte public key'),
          },
          ['kty', 'crv', 'kid', 'x'],
        ),
      },
    },
    ['keys'],
    { description: 'The token verification keys, the signer first' },
  ),
);

export const TokenCheckSchema: Schema = named(
  'TokenCheck',
  obj(
    {
      valid: bool(),
      error: str('why not valid: a stable error code, revoked or key-mismatch'),
      claims: obj(
        {
          iss: str(),
          sub: str('device ID'),
          aud: str(),
          exp: int('epoch s'),
          iat: int('epoch s'),
          cti: str('token ID, hex'),
          role: str('device, service or consumer'),
          cnf: obj({ kty: str(), crv: str(), x: str('base64url of the key the token is bound to') }, ['kty', 'crv', 'x']),
        },
        ['sub', 'exp', 'role', 'cnf'],
      ),
    },
    ['valid'],
  ),
);

const RowProblemSchema = obj({ line: int('1-based line where the row starts'), id: str(), message: str() }, ['line', 'message']);

export const ImportSchema: Schema = named(
  'ImportResult',
  obj(
    {
      imported: bool('rows were written'),
      rows: int('rows read, valid and invalid'),
      added: int(),
      updated: int(),
      invalid: int(),
      errors: { type: 'array', items: RowProblemSchema, description: 'the first 1000 bad rows' },
      warningCount: int(),
      warnings: { type: 'array', items: RowProblemSchema, description: 'the first 1000 warnings' },
    },
    ['imported', 'rows', 'added', 'updated', 'invalid', 'errors', 'warningCount', 'warnings'],
  ),
);

/** An admin-API token of the registry (never the token text: it is not kept). */
export interface AdminTokenView {
  jti: string;
  name: string;
  role: 'admin' | 'hub';
  /** valid, expired (by the server clock) or revoked. */
  state: 'valid' | 'expired' | 'revoked';
  issuedAt: string;
  expiresAt?: string | undefined;
  revokedAt?: string | undefined;
  revokedBy?: string | undefined;
  revokedReason?: string | undefined;
}

/** An admin token record as its view, its state by the clock `now` (s). */
export function adminTokenView(t: AdminTokenRecord, now: number): AdminTokenView {
  return {
    jti: t.jti,
    name: t.name,
    role: t.role,
    state: t.revokedAt !== null ? 'revoked' : t.expiresAt !== null && t.expiresAt <= now ? 'expired' : 'valid',
    issuedAt: iso(t.issuedAt)!,
    ...(t.expiresAt !== null ? { expiresAt: iso(t.expiresAt)! } : {}),
    ...(t.revokedAt !== null ? { revokedAt: iso(t.revokedAt)! } : {}),
    ...(t.revokedBy !== null ? { revokedBy: t.revokedBy } : {}),
    ...(t.revokedReason !== null ? { revokedReason: t.revokedReason } : {}),
  };
}

export const AdminTokenSchema: Schema = named(
  'AdminToken',
  obj(
    {
      jti: str('the token ID'),
      name: str('who it was issued to (the audit trail shows admin:<name>)'),
      role: str(undefined, { enum: ['admin', 'hub'] }),
      state: str('by the server clock', { enum: ['valid', 'expired', 'revoked'] }),
      issuedAt: isoTime(),
      expiresAt: isoTime('absent: never'),
      revokedAt: isoTime(),
      revokedBy: str(),
      revokedReason: str(),
    },
    ['jti', 'name', 'role', 'state', 'issuedAt'],
    { description: 'An admin-API bearer token of the registry (never the token itself)' },
  ),
);
