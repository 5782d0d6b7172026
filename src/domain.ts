/**
 * Domain records shared by policy, service and store. Times are seconds since the epoch (integers);
 * keys and MACs are raw bytes. Nothing here does I/O.
 */

/**
 * A copy of record `r` with `changes` applied: `{ ...r, ...changes }`, written with Object.assign
 * because on Node 20 (V8 11.3) an object literal that spreads a record and then sets properties takes
 * a slow path — 1.6 µs for a device record, against 0.13 µs (measured, issue 17) — and records are
 * updated this way on every provisioning, refresh and repeat poll.
 */
export function withChanges<T extends object>(r: T, changes: Partial<T>): T {
  return Object.assign({}, r, changes);
}

/** Client type of docs/spec/idprov-coap-v1.md §2 key 5. */
export type ClientType = 0 | 1 | 2;
/** Token role claim for a client type (`undefined` for devices: the claim is absent). */
export const ROLE_OF_TYPE: Readonly<Record<ClientType, string | undefined>> = { 0: undefined, 1: 'service', 2: 'consumer' };

/** An allowlist entry uploaded out of band. At least one of pk, mac, secret is present. */
export interface AllowEntry {
  id: string;
  pk?: Uint8Array;
  mac?: Uint8Array;
  /** The printed out-of-band secret (UTF-8). Never logged. */
  secret?: string;
  type: ClientType;
  /** Entry expiry (epoch s); absent = never. */
  expires?: number;
  createdAt: number;
  /** Set when the entry was consumed by its first successful provisioning. */
  consumedAt?: number;
}

/** How a device came to be provisioned. */
export type ProvisionedVia = 'allowlist' | 'admin' | 'reprovision';

/** A provisioned device. */
export interface DeviceRecord {
  id: string;
  pk: Uint8Array;
  mac?: Uint8Array;
  type: ClientType;
  via: ProvisionedVia;
  provisionedAt: number;
  lastSeen: number;
  /** Source address of the last request (`addr:port`). */
  source?: string;
  /** The last token issued: its cti (hex) and expiry. */
  lastCti?: string;
  tokenExp?: number;
}

/** Admin state of a request from an unknown ID. */
export type PendingStatus = 'pending' | 'approved' | 'rejected';

/** A request from an unknown device ID, waiting for (or decided by) an admin. */
export interface PendingRecord {
  id: string;
  /** The key shown to the admin: the key of the last authenticated request. */
  pk: Uint8Array;
  mac?: Uint8Array;
  type: ClientType;
  source: string;
  firstSeen: number;
  lastSeen: number;
  /** Authenticated requests seen (drives the retry backoff). */
  count: number;
  status: PendingStatus;
  /** For 'approved' / 'rejected': when and by whom. */
  decidedAt?: number;
  decidedBy?: string;
  /** For 'rejected': the reason the admin gave, if any (also in the `admin.reject` event). */
  decidedReason?: string;
}

/** A revocation: the device's tokens stop refreshing, its requests get 4.03 `revoked`. */
export interface Revocation {
  id: string;
  at: number;
  by: string;
  reason?: string;
}

/** An Ed25519 token-signing key. */
export interface TokenKeyRecord {
  /** 8-byte kid as hex. */
  kid: string;
  /** Raw 32-byte public key. */
  publicKey: Uint8Array;
  /** PKCS#8 DER private key. Never logged. */
  privateKey: Uint8Array;
  createdAt: number;
  /** When a newer key took over signing; absent for the current key. */
  retiredAt?: number;
}

/** An event of the append-only log: every decision and admin action. */
export interface EventRecord {
  /** Assigned by the store (monotonic). */
  seq?: number;
  at: number;
  /** e.g. 'provision.approved', 'provision.pending', 'admin.approve', 'refresh.issued'. */
  kind: string;
  deviceId?: string;
  /** Who: 'device', 'admin:<name>', 'system'. */
  actor: string;
  /** Source address when the event came from the network. */
  source?: string;
  /** Small JSON-safe detail (no secrets). */
  detail?: Record<string, unknown>;
}

/**
 * A flag of the security monitor (README "Security monitor"): repeated observations of one kind about
 * one subject are merged into one open flag (count, first/last seen) until an admin clears it.
 */
export interface FlagRecord {
  /** Random, assigned when the flag is first raised (16 hex digits). */
  id: string;
  /** A {@link import('./policy/decide.ts').FlagKind}. */
  kind: string;
  /** What observations merge by, with the kind: a device ID, `mac:<hex>` or `addr:<address>`. */
  subject: string;
  /** Device IDs involved (the first one raised it), at most a few dozen. */
  deviceIds: string[];
  /** Non-secret evidence of the latest observation. */
  evidence: Record<string, string>;
  firstSeen: number;
  lastSeen: number;
  /** Observations merged into this flag. */
  count: number;
  /** When and by whom it was cleared; absent while open. */
  clearedAt?: number;
  clearedBy?: string;
}

/** Role of an admin-API bearer token: an admin (every route) or a Hub (the read and feed routes). */
export type AdminTokenRole = 'admin' | 'hub';

/**
 * An admin-API token in the token registry (issue 14, token lifecycle): every token carries an ID
 * (`jti`) recorded here when it is issued, so tokens can be listed and revoked; a revoked token stops
 * working at once. Times are seconds since the epoch.
 */
export interface AdminTokenRecord {
  /** The token's ID (its `jti` claim). */
  jti: string;
  /** Who or what it was issued to (e.g. `alice`, `hub-1`). */
  name: string;
  role: AdminTokenRole;
  issuedAt: number;
  /** When it stops being valid; null = never. */
  expiresAt: number | null;
  /** When it was revoked; null while it is valid. */
  revokedAt: number | null;
  revokedBy: string | null;
  revokedReason: string | null;
}

/** Everything the policy needs to know about one device ID. */
export interface SubjectRecords {
  allow?: AllowEntry;
  device?: DeviceRecord;
  pending?: PendingRecord;
  revocation?: Revocation;
}
