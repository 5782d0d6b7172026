/**
 * The DTLS-PSK keys of the allowlist, held in memory (issue 17): a PSK handshake looks its identity up
 * here instead of reading the store, which cost a thread-pool round trip per handshake (server CPU per
 * PSK handshake 242 → 213 µs, bench scenario 4, 2026-12-02). The copy follows the allowlist:
 * - this process's writes, from their mutations (`allow.upsert`, `allow.delete`), as they commit;
 * - changes it holds no mutations for — a bulk import, another instance's commit on a shared
 *   PostgreSQL database (LISTEN/NOTIFY), another process's commit on the SQLite file (the CLI) — by
 *   reading the allowlist again, page by page, in the background; one reload at a time, and one more
 *   after it when another such change came meanwhile; a reload that fails is tried again later (when
 *   the composition root says: {@link PSK_RELOAD_RETRY_MS} there).
 * Until the first load completes, lookups read the store as before ({@link allowlistPsk}).
 *
 * The copy only decides whether a handshake completes; it authorises nothing by itself. The request
 * that follows over the session is judged against the allowlist entry the provisioning service reads
 * from the store, and a session's PSK counts as the out-of-band proof only while it is still that
 * entry's live secret ({@link sessionPskHolds}). So the moment between another instance's change and
 * the reload that follows it cannot let a removed or replaced secret provision a device.
 *
 * Memory: one map entry per allowlist entry with a secret (the ID, the secret's text and its expiry),
 * about 250 bytes each: ≈ 25 MB for 100,000 secret-bearing entries (measured with 20-character IDs).
 * Only admins write the allowlist.
 */
import type { AllowEntry } from '../domain.ts';
import type { Logger } from '../log.ts';
import { livePsk } from '../policy/psk.ts';
import { allPages } from '../store/paging.ts';
import type { Mutation, Store } from '../store/store.ts';
import type { ChangeListener } from './changes.ts';
import { allowlistPsk } from './psk.ts';

/** The part of an allowlist entry a PSK handshake needs. */
interface PskFields {
  secret: string;
  expires?: number;
}

/** Entries read per page when the index (re)loads. */
const LOAD_PAGE = 1000;

/** How long after a failed reload the index should try again (ms; the composition root's timer). */
export const PSK_RELOAD_RETRY_MS = 5000;

/** Counters, for tests and health output. */
export interface PskIndexStats {
  /** Completed full reads of the allowlist (the first load included). */
  loads: number;
  /** Lookups answered from the store because the first load had not completed. */
  storeLookups: number;
}

export class PskIndex {
  readonly stats: PskIndexStats = { loads: 0, storeLookups: 0 };
  private keys: Map<string, PskFields> | undefined;
  /** Set while a reload runs: this process's changes meanwhile, replayed onto the map it builds. */
  private duringLoad: Mutation[] | undefined;
  private loading: Promise<void> | undefined;
  private againAfterLoad = false;
  private stopped = false;
  private readonly fromStore: (id: string) => Promise<Buffer | undefined>;

  constructor(
    private readonly store: Pick<Store, 'listPsk' | 'pskOf'>,
    private readonly nowS: () => number,
    private readonly log?: Logger,
    /** Calls `again` some time later, after a failed reload (this room keeps no timers). */
    private readonly retryLater?: (again: () => void) => void,
  ) {
    this.fromStore = allowlistPsk(store, nowS);
  }

  /** True once the first load has completed. */
  get ready(): boolean {
    return this.keys !== undefined;
  }

  /** Resolves when no reload is running (at once when none is). */
  async settled(): Promise<void> {
    while (this.loading) await this.loading;
  }

  /** Secret-bearing entries held. */
  get size(): number {
    return this.keys?.size ?? 0;
  }

  /**
   * The DTLS PSK of a device ID, by the rule of {@link livePsk}: a value once loaded (the same map read
   * for a known and an unknown ID), a promise of the store's answer before.
   */
  readonly lookup = (id: string): Buffer | undefined | Promise<Buffer | undefined> => {
    if (this.keys === undefined) {
      this.stats.storeLookups++;
      return this.fromStore(id);
    }
    return livePsk(this.keys.get(id) ?? {}, this.nowS());
  };

  /** The listener to subscribe to the store's change notification (ObservedStore.subscribe). */
  readonly onChange: ChangeListener = (muts, _version, foreign) => {
    for (const m of muts) if (m.kind === 'allow.upsert' || m.kind === 'allow.delete') this.applyOwn(m);
    if (foreign !== undefined && (foreign.has('allow.upsert') || foreign.has('allow.delete'))) void this.reload();
  };

  /**
   * Reads the whole allowlist into a new map and swaps it in; resolves when the map that includes
   * every change seen so far is in place. A failure is logged and leaves the previous map (or the store
   * fallback) in use until a reload, retried through `retryLater`, succeeds.
   */
  reload(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.loading) {
      this.againAfterLoad = true;
      return this.loading;
    }
    this.loading = (async () => {
      do {
        this.againAfterLoad = false;
        await this.loadOnce();
      } while (this.againAfterLoad);
    })().finally(() => {
      this.loading = undefined;
    });
    return this.loading;
  }

  private async loadOnce(): Promise<void> {
    this.duringLoad = [];
    try {
      const next = new Map<string, PskFields>();
      for await (const page of allPages((after) => this.store.listPsk({ after, limit: LOAD_PAGE }))) {
        for (const e of page) setEntry(next, e);
      }
      for (const m of this.duringLoad) applyTo(next, m);
      this.keys = next;
      this.stats.loads++;
      this.log?.debug({ entries: next.size }, 'psk index loaded');
    } catch (e) {
      if (this.stopped) return; // the store closed under a reload: nothing to keep up to date
      this.log?.warn({ err: (e as Error).message }, 'psk index: reading the allowlist failed; keeping the previous copy until a retry succeeds');
      this.retryLater?.(() => void this.reload());
    } finally {
      this.duringLoad = undefined;
    }
  }

  /** No more reloads (the server is closing). */
  stop(): void {
    this.stopped = true;
  }

  private applyOwn(m: Extract<Mutation, { kind: 'allow.upsert' | 'allow.delete' }>): void {
    if (this.keys) applyTo(this.keys, m);
    this.duringLoad?.push(m);
  }
}

function applyTo(keys: Map<string, PskFields>, m: Mutation): void {
  if (m.kind === 'allow.upsert') setEntry(keys, m.entry);
  else if (m.kind === 'allow.delete') keys.delete(m.id);
}

/** Holds `e`'s secret, or forgets `e.id` when the entry has none (a re-import can drop it). */
function setEntry(keys: Map<string, PskFields>, e: Pick<AllowEntry, 'id' | 'secret' | 'expires'>): void {
  if (e.secret === undefined || e.secret === '') {
    keys.delete(e.id);
    return;
  }
  keys.set(e.id, e.expires === undefined ? { secret: e.secret } : { secret: e.secret, expires: e.expires });
}
