/**
 * Copying every record from one Store into another, then verifying the copy record by record (issue
 * 16: `idprov migrate --from sqlite:PATH --to postgres://…`, and back). Works over the Store seam
 * only, so any pair of implementations can be copied. The target must be empty (no records; settings
 * are overwritten, so the source's nonce secret wins and nonces already handed out stay valid).
 *
 * Events keep their seq numbers (`event.copy`), so a feed cursor a Hub holds stays valid after the
 * switch, and the target numbers new events after the last one copied. Used-once nonces are not copied: they expire within
 * `nonceTtl`, so stop the source's server for that long before switching, or accept that a nonce
 * issued just before the switch can be used once more.
 */
import { isDeepStrictEqual } from 'node:util';
import type { EventRecord } from '../domain.ts';
import { ProvError } from '../errors.ts';
import { allPages as pages } from './paging.ts';
import type { Mutation, Page, Store } from './store.ts';

/** Rows per page read and per transaction written. */
const BATCH = 1000;

/** Records copied per kind. */
export interface CopyReport {
  allowlist: number;
  devices: number;
  pending: number;
  revocations: number;
  keys: number;
  settings: number;
  events: number;
  flags: number;
  adminTokens: number;
}

async function* eventPages(s: Store): AsyncGenerator<Awaited<ReturnType<Store['listEvents']>>> {
  let after = 0;
  for (;;) {
    const batch = await s.listEvents(after, BATCH);
    if (batch.length === 0) return;
    yield batch;
    after = batch[batch.length - 1]!.seq!;
  }
}

/** Copies every record of `from` into the empty store `to`. */
export async function copyStore(from: Store, to: Store): Promise<CopyReport> {
  const c = await to.counts();
  const nonEmpty = Object.entries(c).filter(([, n]) => n > 0);
  if (nonEmpty.length > 0) throw new ProvError('conflict', `the target store is not empty (${nonEmpty.map(([k, n]) => `${k} ${n}`).join(', ')})`);
  const r: CopyReport = { allowlist: 0, devices: 0, pending: 0, revocations: 0, keys: 0, settings: 0, events: 0, flags: 0, adminTokens: 0 };
  const put = async (muts: Mutation[], kind: keyof CopyReport) => {
    await to.apply(muts);
    r[kind] += muts.length;
  };
  for await (const p of pages((after) => from.listAllow({ after, limit: BATCH }))) await put(p.map((entry) => ({ kind: 'allow.upsert', entry })), 'allowlist');
  for await (const p of pages((after) => from.listDevices({ after, limit: BATCH }))) await put(p.map((device) => ({ kind: 'device.upsert', device })), 'devices');
  for await (const p of pages((after) => from.listPending({ after, limit: BATCH }))) await put(p.map((pending) => ({ kind: 'pending.upsert', pending })), 'pending');
  for await (const p of pages((after) => from.listRevocations({ after, limit: BATCH }))) await put(p.map((revocation) => ({ kind: 'revocation.put', revocation })), 'revocations');
  for await (const p of pages((after) => from.listFlags({ after, limit: BATCH }))) await put(p.map((flag) => ({ kind: 'flag.put', flag })), 'flags');
  for await (const p of pages((after) => from.listAdminTokens({ after, limit: BATCH }))) await put(p.map((token) => ({ kind: 'admin-token.put', token })), 'adminTokens');
  await put((await from.listKeys()).map((key) => ({ kind: 'key.put', key })), 'keys');
  await put((await from.listSettings()).map(({ name, value }) => ({ kind: 'setting.put', name, value })), 'settings');
  for await (const batch of eventPages(from)) {
    await put(batch.map((event) => ({ kind: 'event.copy', event: event as EventRecord & { seq: number } })), 'events');
  }
  return r;
}

/**
 * Compares every record of `a` and `b` (events with their seqs, in order); returns the
 * differences found, at most `max` (empty: the copy is exact).
 */
export async function verifyCopy(a: Store, b: Store, max = 20): Promise<string[]> {
  const diffs: string[] = [];
  const same = (x: unknown, y: unknown) => isDeepStrictEqual(x, y);
  const compare = async <T extends { id: string } | { jti: string }>(kind: string, list: (s: Store) => (after: string | undefined) => Promise<Page<T>>) => {
    const key = (v: T) => ('id' in v ? v.id : v.jti);
    const ia = pages(list(a));
    const ib = pages(list(b));
    const flat = async function* (g: AsyncGenerator<T[]>) {
      for await (const p of g) yield* p;
    };
    const fa = flat(ia);
    const fb = flat(ib);
    for (;;) {
      const [x, y] = await Promise.all([fa.next(), fb.next()]);
      if (x.done && y.done) return;
      if (diffs.length >= max) return;
      if (x.done || y.done || !same(x.value, y.value)) diffs.push(`${kind}: ${x.done ? '(end)' : key(x.value)} ≠ ${y.done ? '(end)' : key(y.value)}`);
    }
  };
  await compare('allowlist', (s) => (after) => s.listAllow({ after, limit: BATCH }));
  await compare('devices', (s) => (after) => s.listDevices({ after, limit: BATCH }));
  await compare('pending', (s) => (after) => s.listPending({ after, limit: BATCH }));
  await compare('revocations', (s) => (after) => s.listRevocations({ after, limit: BATCH }));
  await compare('flags', (s) => (after) => s.listFlags({ after, limit: BATCH }));
  await compare('admin tokens', (s) => (after) => s.listAdminTokens({ after, limit: BATCH }));
  if (!same(await a.listKeys(), await b.listKeys())) diffs.push('keys differ');
  if (!same(await a.listSettings(), await b.listSettings())) diffs.push('settings differ');
  const ea = eventPages(a);
  const eb = eventPages(b);
  let n = 0;
  for (;;) {
    const [x, y] = await Promise.all([ea.next(), eb.next()]);
    if (x.done && y.done) break;
    const xs = x.done ? [] : x.value;
    const ys = y.done ? [] : y.value;
    if (!same(xs, ys)) {
      diffs.push(`events differ in the batch from #${n}`);
      break;
    }
    n += xs.length;
  }
  return diffs.slice(0, max);
}
