/**
 * Change notification over the Store seam: {@link ObservedStore} decorates a Store so that every
 * committed `apply` bumps a version number and wakes listeners. The admin sidecar uses the version for
 * ETags (cheap Hub polling) and the wake-ups for the long-poll / server-sent event feed.
 */
import { randomBytes } from 'node:crypto';
import type { Mutation, Store } from '../store/store.ts';

/**
 * Called after each commit: `muts` are this process's mutations. Changes whose mutations this process
 * does not have come with their mutation kinds in `foreign`: a commit by another instance on a shared
 * database or by another process on the same SQLite file (see {@link ObservedStore.foreign}; `muts`
 * empty), and a bulk allowlist import (`allow.upsert`, its entries never held in memory at once).
 */
export type ChangeListener = (muts: readonly Mutation[], version: number, foreign?: ReadonlySet<Mutation['kind']>) => void;

/** What changed, coarsely, for ETags per collection. */
export type Collection = 'allowlist' | 'devices' | 'pending' | 'revocations' | 'keys' | 'settings' | 'events' | 'flags' | 'nonces' | 'adminTokens';

const COLLECTION_OF: Record<Mutation['kind'], Collection> = {
  'allow.upsert': 'allowlist',
  'allow.delete': 'allowlist',
  'allow.consume': 'allowlist',
  'device.upsert': 'devices',
  'device.delete': 'devices',
  'pending.upsert': 'pending',
  'pending.delete': 'pending',
  'pending.seen': 'pending',
  'revocation.put': 'revocations',
  'revocation.delete': 'revocations',
  'key.put': 'keys',
  'setting.put': 'settings',
  event: 'events',
  'event.copy': 'events',
  'flag.put': 'flags',
  'flag.delete': 'flags',
  'flags.trim': 'flags',
  'admin-token.put': 'adminTokens',
  'admin-token.revoke': 'adminTokens',
  'nonce.use': 'nonces',
  'nonces.prune': 'nonces',
  'pending.trim': 'pending',
  'pending.expire': 'pending',
  'events.prune': 'events',
};

/** What a bulk allowlist import changes without listing it. */
const BULK_KINDS: ReadonlySet<Mutation['kind']> = new Set(['allow.upsert']);

export class ObservedStore {
  /** Changes with each process start, so ETags from before a restart never match. */
  readonly bootId = randomBytes(6).toString('base64url');
  private versionCounter = 0;
  private readonly perCollection = new Map<Collection, number>();
  private readonly listeners = new Set<ChangeListener>();

  /** The decorated store: use it wherever a Store is needed. */
  readonly store: Store;

  constructor(inner: Store) {
    // A Proxy keeps every other Store method as it is, including ones added later.
    this.store = new Proxy(inner, {
      get: (target, prop, recv) => {
        if (prop === 'apply') {
          return async (muts: readonly Mutation[]) => {
            await target.apply(muts);
            this.committed(muts);
          };
        }
        if (prop === 'bulkUpsertAllow') {
          return async (source: Parameters<Store['bulkUpsertAllow']>[0], after: readonly Mutation[] = []) => {
            const r = await target.bulkUpsertAllow(source, after);
            this.committed(after, ['allowlist'], BULK_KINDS);
            return r;
          };
        }
        const v = Reflect.get(target, prop, recv);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
  }

  /**
   * Record a commit made outside `apply` (e.g. a bulk import) and wake listeners; `unlisted` are the
   * kinds of mutations it made that are not in `muts`.
   */
  committed(muts: readonly Mutation[], extra: Collection[] = [], unlisted?: ReadonlySet<Mutation['kind']>): void {
    const v = ++this.versionCounter;
    for (const m of muts) this.perCollection.set(COLLECTION_OF[m.kind], v);
    for (const c of extra) this.perCollection.set(c, v);
    for (const l of this.listeners) l(muts, v, unlisted);
  }

  /**
   * Record a commit made by another instance on a shared database (PostgreSQL LISTEN/NOTIFY) or by
   * another process on the same SQLite file: bumps the versions (so ETags change) and wakes listeners. `'unknown'` (after a lost notification
   * connection) counts as a change of everything.
   */
  foreign(kinds: readonly Mutation['kind'][] | 'unknown'): void {
    const set = new Set<Mutation['kind']>(kinds === 'unknown' ? (Object.keys(COLLECTION_OF) as Mutation['kind'][]) : kinds);
    const v = ++this.versionCounter;
    for (const k of set) this.perCollection.set(COLLECTION_OF[k], v);
    for (const l of this.listeners) l([], v, set);
  }

  /** Global version (increments on every commit). */
  get version(): number {
    return this.versionCounter;
  }

  /** Version of the last commit that touched any of `cols`. */
  versionOf(...cols: Collection[]): number {
    let v = 0;
    for (const c of cols) v = Math.max(v, this.perCollection.get(c) ?? 0);
    return v;
  }

  subscribe(l: ChangeListener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
}
