/**
 * The Store seam (docs/architecture.md "store"): what the service needs from persistence, nothing more.
 * Writes are expressed as {@link Mutation} values and applied atomically by {@link Store.apply}:
 * when the returned promise resolves, the mutations are committed (durable) — the service sends a
 * token only after that. Implementations may group several concurrent `apply` calls into one
 * transaction (group commit) as long as each call's promise resolves only after its commit.
 */
import type {
  AdminTokenRecord,
  AllowEntry,
  DeviceRecord,
  EventRecord,
  FlagRecord,
  PendingRecord,
  Revocation,
  SubjectRecords,
  TokenKeyRecord,
} from '../domain.ts';

/** One atomic change. */
export type Mutation =
  /**
   * Insert or replace an allowlist entry. Re-importing an entry whose factors (pk, mac, secret) are
   * unchanged keeps its consumption (an accidental re-upload does not re-arm spent pre-approvals)
   * unless the new entry carries its own `consumedAt`; new factors make it usable again.
   */
  | { kind: 'allow.upsert'; entry: AllowEntry }
  | { kind: 'allow.delete'; id: string }
  /**
   * Marks the entry consumed at `at`. Consumes at most once: when the entry is missing or already
   * consumed, the whole call fails with `conflict` (so two concurrent provisionings cannot both
   * spend one pre-approval).
   */
  | { kind: 'allow.consume'; id: string; at: number }
  | { kind: 'device.upsert'; device: DeviceRecord }
  | { kind: 'device.delete'; id: string }
  | { kind: 'pending.upsert'; pending: PendingRecord }
  | { kind: 'pending.delete'; id: string }
  /**
   * A waiting device polled again: sets `lastSeen`, `count` and `source` of its request and nothing
   * else — never `status`, so a poll that read the request before an admin decided it cannot undo
   * that decision. No-op when the request is gone.
   */
  | { kind: 'pending.seen'; id: string; lastSeen: number; count: number; source: string }
  | { kind: 'revocation.put'; revocation: Revocation }
  | { kind: 'revocation.delete'; id: string }
  | { kind: 'key.put'; key: TokenKeyRecord }
  | { kind: 'setting.put'; name: string; value: string }
  | { kind: 'event'; event: EventRecord }
  /**
   * Insert an event with the seq it already has (copying a store: `idprov migrate`), so that a feed
   * cursor a Hub holds stays valid; later events get higher seqs. Fails with `conflict` when the
   * target already has an event of that seq.
   */
  | { kind: 'event.copy'; event: EventRecord & { seq: number } }
  /** Insert or replace a flag (by id). */
  | { kind: 'flag.put'; flag: FlagRecord }
  | { kind: 'flag.delete'; id: string }
  /** Insert or replace an admin-API token of the registry (by jti). */
  | { kind: 'admin-token.put'; token: AdminTokenRecord }
  /**
   * Revoke the admin-API token `jti`: sets `revokedAt`, `revokedBy`, `revokedReason`. A no-op when the
   * token is unknown or already revoked (the first revocation stays as it was).
   */
  | { kind: 'admin-token.revoke'; jti: string; at: number; by: string; reason: string | null }
  /**
   * Marks a server nonce used (its `expires`, seconds, is when it stops being valid anyway). A store
   * shared by several instances (PostgreSQL) records it in the database: when the nonce was already
   * used — at any instance — the whole call fails with `nonce`, so a signed request replayed to
   * another instance issues nothing. A store used by one process (SQLite) ignores it: the service's
   * in-memory used-once set is the whole truth there.
   */
  | { kind: 'nonce.use'; nonce: Uint8Array; expires: number }
  /** Forget used nonces that expired before `before` (they fail the expiry check anyway). */
  | { kind: 'nonces.prune'; before: number }
  /** Delete the oldest cleared flags until at most `max` flags remain (open ones are never touched). */
  | { kind: 'flags.trim'; max: number }
  /**
   * Delete waiting requests (status `pending`; approvals and rejections are admin decisions and stay)
   * beyond `max`, least recently seen first, never `keep` (the request just recorded).
   */
  | { kind: 'pending.trim'; max: number; keep?: string; removed?: Removed }
  /** Delete waiting requests (status `pending`) last seen before `before`. */
  | { kind: 'pending.expire'; before: number; removed?: Removed }
  /**
   * Delete events older than `before` and, beyond that, the oldest ones past the newest `max`; at most
   * `limit` rows per call (a sweep that keeps the writer's transactions short).
   */
  | { kind: 'events.prune'; before: number; max: number; limit: number; removed?: Removed };

/** Filled in by the store when the deleting mutation commits: how many rows it removed. */
export interface Removed {
  count: number;
}

/** What {@link Store.bulkUpsertAllow} wrote. */
export interface BulkResult {
  /** Entries upserted. */
  rows: number;
  /** Of those, ids that were not in the allowlist before. */
  added: number;
}

/** An allowlist entry's DTLS-PSK fields ({@link Store.listPsk}). */
export interface PskEntry {
  id: string;
  secret: string;
  /** The entry's expiry (epoch s); absent = never. */
  expires?: number;
}

/** Page of a list, ordered by id; pass `next` as `after` for the following page. */
export interface Page<T> {
  items: T[];
  next?: string;
}

export interface ListOptions {
  /** Return items with id > after (undefined: from the start, as pagers pass it). */
  after?: string | undefined;
  /** At most this many (default 100, max 1000). */
  limit?: number | undefined;
}

/** The tables {@link Store.counts} reports. */
export type StoreTable = 'allowlist' | 'devices' | 'pending' | 'revocations' | 'keys' | 'events' | 'flags' | 'adminTokens';

export interface Store {
  /** All records about one device ID, read consistently. */
  loadSubject(id: string): Promise<SubjectRecords>;
  /** Apply mutations in one transaction; resolves once committed. */
  apply(mutations: readonly Mutation[]): Promise<void>;
  /**
   * A new, empty staging area for a bulk allowlist import ({@link AllowStaging}), kept in this store's
   * own format (SQLite and PostgreSQL: a temporary file next to the data, mode 0600; memory: an array).
   */
  stageAllow(): Promise<AllowStaging>;
  /**
   * Bulk allowlist import: upsert every entry written to `staged` (a staging area of this store's
   * {@link stageAllow}), then `after`, in ONE transaction — all or nothing. Entries are read back
   * and written batch by batch, so memory stays bounded by a batch whatever their number. Each upsert
   * follows `allow.upsert` (an unchanged entry keeps its consumption); of an id repeated, the last
   * entry wins. Returns how many entries were written and how many ids were new. Does not discard
   * `staged` (its owner does, also after a failure).
   */
  bulkUpsertAllow(staged: AllowStaging, after?: readonly Mutation[]): Promise<BulkResult>;

  getAllow(id: string): Promise<AllowEntry | undefined>;
  /**
   * The DTLS PSK fields of `id`'s allowlist entry, empty when there is none. The same work whether
   * the entry exists or not (one row either way), so a PSK handshake's time does not tell whether
   * an ID is allowlisted (issue 11 F11).
   */
  pskOf(id: string): Promise<{ secret?: string; expires?: number }>;
  getDevice(id: string): Promise<DeviceRecord | undefined>;
  getPending(id: string): Promise<PendingRecord | undefined>;
  getRevocation(id: string): Promise<Revocation | undefined>;

  listAllow(opts?: ListOptions): Promise<Page<AllowEntry>>;
  /**
   * The allowlist entries that hold a printed secret, with only their DTLS-PSK fields, by id (keyset
   * pagination as {@link listAllow}). SQLite and PostgreSQL read them through an index of those entries
   * alone, so the cost follows how many have a secret, not the allowlist's size (the PSK index loads
   * with it: `service/psk-index.ts`).
   */
  listPsk(opts?: ListOptions): Promise<Page<PskEntry>>;
  listDevices(opts?: ListOptions): Promise<Page<DeviceRecord>>;
  listPending(opts?: ListOptions & { status?: PendingRecord['status'] }): Promise<Page<PendingRecord>>;
  listRevocations(opts?: ListOptions): Promise<Page<Revocation>>;

  /** Token keys, newest first. */
  listKeys(): Promise<TokenKeyRecord[]>;
  getSetting(name: string): Promise<string | undefined>;
  /** Every setting, by name (for copying a database: `idprov migrate`). */
  listSettings(): Promise<Array<{ name: string; value: string }>>;
  /** Flags by id; `status` open (default: all). Keyset pagination as for the other lists. */
  listFlags(opts?: ListOptions & { status?: 'open' | 'cleared' }): Promise<Page<FlagRecord>>;
  getFlag(id: string): Promise<FlagRecord | undefined>;
  /** The admin-API token `jti` of the registry, if recorded. */
  getAdminToken(jti: string): Promise<AdminTokenRecord | undefined>;
  /** Admin-API tokens by jti; keyset pagination as for the other lists (`next` is the last jti). */
  listAdminTokens(opts: { after?: string | undefined; limit: number }): Promise<Page<AdminTokenRecord>>;
  /**
   * IDs other than `exceptId` whose device or pending request holds `mac` (duplicate-MAC check), at
   * most `limit`.
   */
  macPeers(mac: Uint8Array, exceptId: string, limit: number): Promise<string[]>;
  /** Waiting requests (status `pending`), from a counter kept by the database itself. */
  pendingWaiting(): Promise<number>;
  /** Events with seq > afterSeq, oldest first. */
  listEvents(afterSeq: number, limit: number): Promise<EventRecord[]>;
  /** Row counts per table (for health and tests). */
  counts(): Promise<Record<StoreTable, number>>;

  /**
   * Where another writer can commit to the same data (another instance on a shared PostgreSQL
   * database, another process on a SQLite file): calls `fn` after such a commit, with its mutation
   * kinds when the store knows them, else `'unknown'`. Resolves, once watching, to a function that
   * stops. Absent where nothing else can write (the in-memory store).
   */
  onForeignChange?(fn: (kinds: readonly Mutation['kind'][] | 'unknown') => void): Promise<() => void>;

  /** Flush pending writes and close. */
  close(): Promise<void>;
}

/**
 * Where validated allowlist entries wait between reading an import and writing it (the streamed
 * importer, `service/allowlist-import.ts`): appended batch by batch while the file or upload is read,
 * then written by {@link Store.bulkUpsertAllow}, so a slow upload never holds the write transaction
 * and a million entries never sit in memory. Made by {@link Store.stageAllow}; how entries are kept is
 * the store's business.
 */
export interface AllowStaging {
  /** Appends `entries` (in order; the store reads them back in the same order). */
  write(entries: readonly AllowEntry[]): Promise<void>;
  /** Entries written so far. */
  readonly count: number;
  /** Deletes what was staged; call it once done, also after a failure. */
  discard(): Promise<void>;
}
