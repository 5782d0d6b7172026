/**
 * The security monitor's pure parts (issue #6), with the clock as an argument: the token-bucket math,
 * the bounded bucket table, the per-address tracker, the notes, the hold-flagged decision, and the
 * flag book that merges and caps flags.
 */
import assert from 'node:assert/strict';
import type { Decision, FlagNote } from '../../../src/policy/decide.ts';
import { MAX_FLAG_RAISERS, acknowledges, duplicateMacNote, holdFlagged, manyIdsNote, type OpenFlagRef } from '../../../src/policy/monitor/flag-rules.ts';
import { AddressTracker } from '../../../src/policy/monitor/id-tracker.ts';
import { peerText } from '../../../src/net/address.ts';
import { BucketTable, fullBucket, refill, take } from '../../../src/policy/ratelimit.ts';
import { CAP_ACTOR, FlagBook } from '../../../src/service/monitor/flag-book.ts';

const T = 1_800_000_000_000;

describe('token buckets (pure math)', () => {
  const limit = { rate: 2, burst: 4 };

  it('lets a full bucket spend its burst at once, then refuses with the whole seconds to wait', () => {
    let b = fullBucket(limit, T);
    for (let i = 0; i < 4; i++) {
      const t = take(b, limit, T);
      assert.equal(t.ok, true, `token ${i + 1}`);
      b = t.bucket;
    }
    const t = take(b, limit, T);
    assert.equal(t.ok, false);
    assert.equal(t.retryS, 1, 'half a second to the next token, rounded up to a whole second');
  });

  it('refills at the rate and never beyond the burst', () => {
    const empty = { tokens: 0, at: T };
    assert.equal(refill(empty, limit, T + 500).tokens, 1);
    assert.equal(refill(empty, limit, T + 60_000).tokens, 4);
    assert.equal(take(empty, limit, T + 500).ok, true);
  });

  it('gives nothing back when the clock goes backwards', () => {
    const b = { tokens: 0.5, at: T };
    const r = refill(b, limit, T - 10_000);
    assert.equal(r.tokens, 0.5);
    assert.equal(r.at, T);
  });

  it('asks for longer waits at slow rates', () => {
    const slow = { rate: 0.1, burst: 1 };
    const t = take({ tokens: 0, at: T }, slow, T);
    assert.equal(t.ok, false);
    assert.equal(t.retryS, 10);
  });

  it('never refuses when the rate is 0 (limit off)', () => {
    const off = { rate: 0, burst: 1 };
    assert.equal(take({ tokens: 0, at: T }, off, T).ok, true);
  });
});

describe('the bucket table', () => {
  it('keeps one bucket per key and refuses a key over its limit without touching others', () => {
    const table = new BucketTable({ rate: 1, burst: 2 }, 100);
    assert.equal(table.take('a', T).ok, true);
    assert.equal(table.take('a', T).ok, true);
    assert.equal(table.take('a', T).ok, false);
    assert.equal(table.take('b', T).ok, true);
    assert.equal(table.take('a', T + 1000).ok, true, 'a second later, one more');
  });

  it('never tracks more than maxKeys, dropping the least recently used', () => {
    const table = new BucketTable({ rate: 1, burst: 1 }, 3);
    for (const k of ['a', 'b', 'c']) table.take(k, T);
    table.take('a', T); // a is now the most recent; b the least
    table.take('d', T);
    assert.equal(table.size, 3);
    assert.equal(table.evicted, 1);
    assert.equal(table.take('b', T).ok, true, 'b was dropped: it starts again with a full bucket');
    assert.equal(table.take('a', T).ok, false, 'a was kept, still empty');
    for (let i = 0; i < 10_000; i++) table.take(`k${i}`, T);
    assert.equal(table.size, 3);
  });

  it('tracks nothing when the limit is off', () => {
    const table = new BucketTable({ rate: 0, burst: 1 }, 3);
    for (let i = 0; i < 10; i++) assert.equal(table.take('a', T).ok, true);
    assert.equal(table.size, 0);
  });

  // Was a test of addressOf, which parsed `addr:port` text back: peers now arrive as {address, port}
  // (the service counts by the address; test/service/forgers.test.ts shows ports of one address share
  // its budget). What is left of the text form is how records show a peer.
  it('shows a peer in records as a.b.c.d:port or [v6]:port, an IPv4-mapped one as IPv4', () => {
    assert.equal(peerText({ address: '10.0.0.7', port: 5683 }), '10.0.0.7:5683');
    assert.equal(peerText({ address: 'fe80::1', port: 40000 }), '[fe80::1]:40000');
    assert.equal(peerText({ address: '::ffff:10.0.0.7', port: 1 }), '10.0.0.7:1');
  });
});

describe('the per-address tracker of distinct IDs', () => {
  const S = { threshold: 3, windowS: 60, maxAddresses: 2 };
  const now = 1_800_000_000;

  it('reports an address at its third distinct ID in the window, and at every new one after', () => {
    const t = new AddressTracker(S);
    assert.equal(t.observe('10.0.0.1', 'a', now), undefined);
    assert.equal(t.observe('10.0.0.1', 'b', now), undefined);
    assert.equal(t.observe('10.0.0.1', 'a', now + 1), undefined, 'a repeat is not a new ID');
    const m = t.observe('10.0.0.1', 'c', now + 2);
    assert.deepEqual(m, { address: '10.0.0.1', distinct: 3, sample: ['a', 'b', 'c'] });
    assert.equal(t.observe('10.0.0.1', 'c', now + 3), undefined, 'a repeat of the ID that crossed raises nothing more');
    assert.equal(t.observe('10.0.0.1', 'd', now + 4)?.distinct, 3, 'each new ID after the threshold is reported');
  });

  it('forgets IDs that left the window', () => {
    const t = new AddressTracker(S);
    t.observe('10.0.0.1', 'a', now);
    t.observe('10.0.0.1', 'b', now);
    assert.equal(t.observe('10.0.0.1', 'c', now + 61), undefined, 'a and b are older than 60 s');
  });

  it('keeps at most maxAddresses addresses and threshold IDs per address', () => {
    const t = new AddressTracker(S);
    for (let i = 0; i < 1000; i++) t.observe(`10.0.${i % 7}.1`, `id-${i}`, now);
    assert.equal(t.size, 2);
    assert.ok(t.entries <= 2 * 3);
    assert.ok(t.evicted > 0);
  });

  it('does nothing when the threshold is 0', () => {
    const t = new AddressTracker({ ...S, threshold: 0 });
    for (let i = 0; i < 10; i++) assert.equal(t.observe('10.0.0.1', `id-${i}`, now), undefined);
    assert.equal(t.size, 0);
  });

  it('makes a many-ids note about the address, naming the recent IDs', () => {
    const n = manyIdsNote({ address: '10.0.0.1', distinct: 3, sample: ['a', 'b', 'c'] }, 'c', 60);
    assert.equal(n.kind, 'many-ids');
    assert.equal(n.subject, 'addr:10.0.0.1');
    assert.deepEqual(n.others, ['a', 'b']);
  });
});

describe('duplicate MACs', () => {
  const mac = Buffer.from('020000000001', 'hex');
  it('notes a MAC other IDs hold, naming them after the requester', () => {
    const n = duplicateMacNote({ id: 'x', mac, source: '10.0.0.1:1' }, ['y', 'z']);
    assert.deepEqual(n, { kind: 'duplicate-mac', deviceId: 'x', subject: 'mac:020000000001', others: ['y', 'z'], evidence: { mac: '020000000001', ids: 'x y z', source: '10.0.0.1:1' } });
  });
  it('notes nothing without a MAC or without other IDs', () => {
    assert.equal(duplicateMacNote({ id: 'x', source: 's' }, ['y']), undefined);
    assert.equal(duplicateMacNote({ id: 'x', mac, source: 's' }, []), undefined);
    assert.equal(duplicateMacNote({ id: 'x', mac, source: 's' }, ['x']), undefined);
  });
});

describe('the hold-flagged decision', () => {
  const approve: Decision = {
    kind: 'approve',
    via: 'allowlist',
    device: { id: 'd', pk: new Uint8Array(32), type: 0, via: 'allowlist', provisionedAt: 1, lastSeen: 1 },
    consumeAllow: true,
    clearPending: false,
    flags: [],
  };
  const flag = (kind: OpenFlagRef['kind'], ids: string[]): OpenFlagRef => ({ id: `f-${kind}`, kind, deviceIds: ids });
  const ON = { holdFlagged: true, retryS: 60 };

  it('holds an approval when the device has an open flag', () => {
    assert.deepEqual(holdFlagged(approve, 'd', [flag('duplicate-mac', ['d', 'e'])], ON), { kind: 'hold', retryS: 60, flags: [], heldBy: ['f-duplicate-mac'] });
  });
  it('lets the approval through when the setting is off', () => {
    assert.equal(holdFlagged(approve, 'd', [flag('duplicate-mac', ['d'])], { ...ON, holdFlagged: false }), approve);
  });
  it('lets the approval through without open flags, or with only flags about others', () => {
    assert.equal(holdFlagged(approve, 'd', [], ON), approve);
    assert.equal(holdFlagged(approve, 'd', [flag('key-changed', ['e'])], ON), approve);
  });
  it('does not hold for a many-ids flag (an address, not evidence against the device)', () => {
    assert.equal(holdFlagged(approve, 'd', [flag('many-ids', ['d'])], ON), approve);
  });
  it('leaves pending and refused decisions as they are', () => {
    const refuse: Decision = { kind: 'refuse', code: 'rejected', retryS: 3600, reason: 'r', flags: [] };
    assert.equal(holdFlagged(refuse, 'd', [flag('key-changed', ['d'])], ON), refuse);
  });
  it('holds only for flags that the approved key raised, when the flag knows its raisers (issue #11, F2)', () => {
    const by = (raisedBy: string[]): OpenFlagRef => ({ ...flag('mac-changed', ['d']), raisedBy });
    assert.equal(holdFlagged(approve, 'd', [by(['d@other-key'])], ON, 'd@this-key'), approve, 'raised by another key: no hold');
    assert.equal(holdFlagged(approve, 'd', [by(['e@this-key'])], ON, 'd@this-key'), approve, 'raised under another ID: no hold');
    assert.equal(holdFlagged(approve, 'd', [by(['d@other-key', 'd@this-key'])], ON, 'd@this-key').kind, 'hold');
    assert.equal(holdFlagged(approve, 'd', [flag('mac-changed', ['d'])], ON, 'd@this-key').kind, 'hold', 'a flag without raisers holds as before');
  });
});

describe('the flag book', () => {
  let serial = 0;
  const random = (n: number) => Buffer.alloc(n, ++serial);
  const note = (kind: FlagNote['kind'], id: string, extra: Partial<FlagNote> = {}): FlagNote => ({ kind, deviceId: id, evidence: { source: '10.0.0.1:1' }, ...extra });

  it('remembers who raised a flag across repeats, the first MAX_FLAG_RAISERS of them, in its evidence', () => {
    const book = new FlagBook(10, random);
    book.raise([note('oob-failed', 'a')], 100, 'a@k1');
    book.raise([note('oob-failed', 'a')], 101, 'a@k2');
    book.raise([note('oob-failed', 'a')], 102, 'a@k1');
    assert.deepEqual(book.openFor('a')[0]!.raisedBy, ['a@k1', 'a@k2']);
    for (let i = 0; i < MAX_FLAG_RAISERS + 5; i++) book.raise([note('oob-failed', 'a')], 103 + i, `a@x${i}`);
    const by = book.openFor('a')[0]!.raisedBy!;
    assert.equal(by.length, MAX_FLAG_RAISERS);
    assert.deepEqual(by.slice(0, 2), ['a@k1', 'a@k2'], 'later raisers cannot push the first ones out');
  });

  it('raises a flag once and merges repeats into it (count, last seen, device IDs)', () => {
    const book = new FlagBook(10, random);
    const first = book.raise([note('duplicate-mac', 'a', { subject: 'mac:01', others: ['b'] })], 100);
    assert.equal(first.raised.length, 1);
    assert.deepEqual(first.muts.map((m) => m.kind), ['flag.put', 'event', 'flags.trim']);
    const again = book.raise([note('duplicate-mac', 'c', { subject: 'mac:01', others: ['a'] })], 200);
    assert.equal(again.raised.length, 0);
    const put = again.muts[0] as Extract<(typeof again.muts)[number], { kind: 'flag.put' }>;
    assert.equal(put.flag.count, 2);
    assert.equal(put.flag.firstSeen, 100);
    assert.equal(put.flag.lastSeen, 200);
    assert.deepEqual(put.flag.deviceIds, ['a', 'b', 'c']);
    assert.deepEqual(book.openFor('c').map((f) => f.id), [put.flag.id]);
  });

  it('closes the least recently seen open flag to stay within maxFlags', () => {
    const book = new FlagBook(3, random);
    for (const id of ['a', 'b', 'c']) book.raise([note('key-changed', id)], 100);
    book.raise([note('key-changed', 'a')], 150); // a is now the most recent
    const r = book.raise([note('key-changed', 'd')], 200);
    assert.equal(book.size, 3);
    assert.equal(book.evicted, 1);
    const closed = r.muts.find((m) => m.kind === 'flag.put' && m.flag.clearedAt !== undefined) as Extract<(typeof r.muts)[number], { kind: 'flag.put' }>;
    assert.deepEqual(closed.flag.deviceIds, ['b']);
    assert.equal(closed.flag.clearedBy, CAP_ACTOR);
    assert.deepEqual(book.openFor('b'), []);
  });

  it('does not raise a state flag again for what an admin cleared, but does for an attempt flag', () => {
    const book = new FlagBook(10, random);
    const dup = book.raise([note('duplicate-mac', 'a', { subject: 'mac:01', others: ['b'] })], 100).raised[0]!;
    book.cleared({ ...book.take(dup.id)!, clearedAt: 110, clearedBy: 'admin:x' });
    assert.equal(book.raise([note('duplicate-mac', 'b', { subject: 'mac:01', others: ['a'] })], 120).raised.length, 0);
    assert.equal(book.raise([note('duplicate-mac', 'c', { subject: 'mac:01', others: ['a', 'b'] })], 130).raised.length, 1, 'a new ID is new evidence');
    const kc = book.raise([note('key-changed', 'k')], 100).raised[0]!;
    book.cleared({ ...book.take(kc.id)!, clearedAt: 110, clearedBy: 'admin:x' });
    assert.equal(book.raise([note('key-changed', 'k')], 120).raised.length, 1);
  });

  it('acknowledges a mac-changed only for the same two MACs', () => {
    const cleared = { kind: 'mac-changed', deviceIds: ['a'], evidence: { recorded: '01', got: '02' } };
    assert.equal(acknowledges(cleared, note('mac-changed', 'a', { evidence: { recorded: '01', got: '02' } })), true);
    assert.equal(acknowledges(cleared, note('mac-changed', 'a', { evidence: { recorded: '01', got: '03' } })), false);
  });
});
