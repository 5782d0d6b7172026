/**
 * Reads for the admin sidecar and the CLI (issue 15: the sidecar is a thin layer over the service and
 * imports neither the store nor the token code): the lists with their `q` search (issue 14), single
 * records, the token key sets, record counts, and the Hub's token check (`POST /tokens/verify`).
 */
import type { AllowEntry, DeviceRecord, EventRecord, FlagRecord, PendingRecord, Revocation } from '../domain.ts';
import { isProvError } from '../errors.ts';
import type { ListOptions, Page, Store } from '../store/store.ts';
import { keyFingerprint, keyFingerprintsIn } from '../tokens/ed25519.ts';
import type { TokenKeyring } from '../tokens/keyring.ts';

export type { Page, ListOptions } from '../store/store.ts';
/** The short fingerprint of a device key, as admins are shown it (re-exported for the sidecar's views). */
export { keyFingerprint, keyFingerprintsIn };

/** Longest `q` search string (the longest device ID). */
export const MAX_QUERY_CHARS = 64;
/**
 * Rows one search request looks at at most. A search walks the list in ID order and keeps the rows
 * that match; when this budget is spent before the page is full, the page comes back short, with
 * `next`, so the client goes on from there. Bounds the work of one request on a million-row list.
 */
export const SEARCH_SCAN_ROWS = 20_000;
/** Rows read from the store per step of a search. */
const SCAN_STEP = 1000;

export interface SearchOptions extends ListOptions {
  /** Case-insensitive substring (a prefix included) of the ID; empty or absent = everything. */
  q?: string | undefined;
}

/** The result of `POST /tokens/verify`: a device token checked against the keys, revocations and the device's current key. */
export interface TokenCheck {
  valid: boolean;
  error?: string;
  claims?: {
    iss: string | undefined;
    sub: string;
    aud: string | undefined;
    exp: number;
    iat: number | undefined;
    cti: string | undefined;
    role: string;
    cnf: { kty: 'OKP'; crv: 'Ed25519'; x: string };
  };
}

/**
 * A page of `list` keeping the items `match` accepts (given `q` in lower case), at most `limit` of
 * them, scanning at most {@link SEARCH_SCAN_ROWS} rows (see there); without a search, one page of the
 * store. `key` is an item's cursor (its id, or a token's jti).
 */
export async function searchList<T>(
  list: (o: ListOptions) => Promise<Page<T>>,
  opts: SearchOptions,
  match: (t: T, q: string) => boolean,
  key: (t: T) => string,
): Promise<Page<T>> {
  const limit = opts.limit ?? 100;
  const q = opts.q?.toLowerCase();
  if (!q) return list(opts.after === undefined ? { limit } : { after: opts.after, limit });
  const items: T[] = [];
  let after = opts.after;
  let scanned = 0;
  for (;;) {
    const page = await list(after === undefined ? { limit: SCAN_STEP } : { after, limit: SCAN_STEP });
    for (const t of page.items) {
      scanned++;
      after = key(t);
      if (match(t, q)) {
        items.push(t);
        if (items.length === limit) return { items, next: after };
      }
    }
    if (!page.next) return { items };
    if (scanned >= SEARCH_SCAN_ROWS) return { items, next: after! };
  }
}

export interface AdminQueryDeps {
  store: Store;
  keyring: TokenKeyring;
}

export class AdminQueries {
  private readonly store: Store;
  private readonly keyring: TokenKeyring;

  constructor(d: AdminQueryDeps) {
    this.store = d.store;
    this.keyring = d.keyring;
  }

  private search<T extends { id: string }>(
    list: (o: ListOptions) => Promise<Page<T>>,
    opts: SearchOptions,
    match: (t: T, q: string) => boolean,
  ): Promise<Page<T>> {
    return searchList(list, opts, match, (t) => t.id);
  }

  listAllow(opts: SearchOptions): Promise<Page<AllowEntry>> {
    return this.search((o) => this.store.listAllow(o), opts, idMatches);
  }

  getAllow(id: string): Promise<AllowEntry | undefined> {
    return this.store.getAllow(id);
  }

  listPending(opts: SearchOptions & { status: PendingRecord['status'] }): Promise<Page<PendingRecord>> {
    return this.search((o) => this.store.listPending({ ...o, status: opts.status }), opts, idMatches);
  }

  getPending(id: string): Promise<PendingRecord | undefined> {
    return this.store.getPending(id);
  }

  /** Devices with their revocation, if any. */
  async listDevices(opts: SearchOptions): Promise<Page<{ device: DeviceRecord; revocation: Revocation | undefined }>> {
    const page = await this.search((o) => this.store.listDevices(o), opts, idMatches);
    const revs = await Promise.all(page.items.map((x) => this.store.getRevocation(x.id)));
    const items = page.items.map((device, i) => ({ device, revocation: revs[i] }));
    return page.next ? { items, next: page.next } : { items };
  }

  async getDevice(id: string): Promise<{ device: DeviceRecord; revocation: Revocation | undefined } | undefined> {
    const device = await this.store.getDevice(id);
    return device ? { device, revocation: await this.store.getRevocation(id) } : undefined;
  }

  /** Flags; `q` matches the flag's ID or one of its devices' IDs. */
  listFlags(opts: SearchOptions & { status: 'open' | 'cleared' | 'all' }): Promise<Page<FlagRecord>> {
    return this.search(
      (o) => this.store.listFlags(opts.status === 'all' ? o : { ...o, status: opts.status }),
      opts,
      (f, q) => f.id.toLowerCase().includes(q) || f.deviceIds.some((x) => x.toLowerCase().includes(q)),
    );
  }

  listEvents(afterSeq: number, limit: number): Promise<EventRecord[]> {
    return this.store.listEvents(afterSeq, limit);
  }

  counts(): ReturnType<Store['counts']> {
    return this.store.counts();
  }

  /** The kid of the current signing key (base64url). */
  currentKid(): string {
    return this.keyring.current.kid;
  }

  jwks(now: number): ReturnType<TokenKeyring['jwks']> {
    return this.keyring.jwks(now);
  }

  /** The COSE_KeySet (CBOR) of the token keys. */
  keySet(now: number): Buffer {
    return this.keyring.keySet(now);
  }

  /**
   * Check a device token for a Hub: signature, expiry, then that the device is not revoked and still
   * holds the key the token is bound to (`cnf`). The token is hex or base64url text.
   */
  async verifyDeviceToken(text: string, now: number): Promise<TokenCheck> {
    const bytes = /^[0-9a-fA-F]+$/.test(text) && text.length % 2 === 0 ? Buffer.from(text, 'hex') : Buffer.from(text, 'base64url');
    try {
      const c = this.keyring.verify(bytes, now);
      const revocation = await this.store.getRevocation(c.sub);
      const device = await this.store.getDevice(c.sub);
      const keyCurrent = device !== undefined && Buffer.from(device.pk).equals(Buffer.from(c.cnf));
      return {
        valid: !revocation && keyCurrent,
        ...(revocation ? { error: 'revoked' } : !keyCurrent ? { error: 'key-mismatch' } : {}),
        claims: {
          iss: c.iss,
          sub: c.sub,
          aud: c.aud,
          exp: c.exp,
          iat: c.iat,
          cti: c.cti ? Buffer.from(c.cti).toString('hex') : undefined,
          role: c.role ?? 'device',
          cnf: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(c.cnf).toString('base64url') },
        },
      };
    } catch (e) {
      if (isProvError(e)) return { valid: false, error: e.code };
      throw e;
    }
  }
}

function idMatches(t: { id: string }, q: string): boolean {
  return t.id.toLowerCase().includes(q);
}
