/**
 * Probing and conflict resolution for the instance name (RFC 6762 §8.1, §8.2, §9), as pure functions:
 * is this response a conflict, who wins a simultaneous probe, and which records are our own echoes.
 */
import type mdns from 'multicast-dns';
import { canonicalName, rdataKey, sameRecord, type Answer } from './records.ts';

/** RFC 6762 §8.1: probes are sent 250 ms apart, three of them. */
export const PROBE_INTERVAL_MS = 250;
export const PROBE_COUNT = 3;
/** RFC 6762 §8.2: the loser of a simultaneous probe waits one second before probing again. */
export const TIEBREAK_WAIT_MS = 1000;
/** RFC 6762 §8.1: after 15 conflicts within 10 s, wait 5 s before each further probe. */
export const CONFLICT_LIMIT = 15;
export const CONFLICT_WINDOW_MS = 10_000;
export const CONFLICT_BACKOFF_MS = 5000;

/**
 * Records this responder has sent (bounded), so that its own packets looped back by the kernel
 * (IP_MULTICAST_LOOP) are recognised, including ones sent before a TXT update.
 */
export class PublishedHistory {
  private readonly items: Answer[] = [];
  constructor(private readonly max = 64) {}

  /** Remember records that were sent. */
  add(records: readonly Answer[]): void {
    for (const r of records) {
      if (this.items.some((x) => sameRecord(x, r))) continue;
      this.items.push(r);
      if (this.items.length > this.max) this.items.shift();
    }
  }

  /** Whether a record (name, type, data) is one we have sent. */
  has(record: Answer): boolean {
    return this.items.some((x) => sameRecord(x, record));
  }

  /** Forget everything (after a rename: the old name's records are no longer ours to defend). */
  clear(): void {
    this.items.length = 0;
  }
}

/** A probe query (RFC 6762 §8.1): one ANY question for the name, the proposed records as authorities. */
export function probeQuery(fqdn: string, proposed: readonly Answer[]): mdns.Packet {
  return {
    type: 'query',
    questions: [{ name: fqdn, type: 'ANY' }],
    authorities: proposed.map((r) => ({ ...r, flush: false })),
  };
}

/**
 * RFC 6762 §8.1 and §9: a response conflicts with our unique records for `fqdn` when it carries a live
 * record (TTL > 0) with that owner name whose data is neither what we propose now nor anything we
 * have sent before (our own loopback echo). Identical data is not a conflict (§9).
 */
export function responseConflicts(packet: Pick<mdns.Packet, 'answers' | 'additionals'>, fqdn: string, ours: readonly Answer[], history?: PublishedHistory): boolean {
  const name = canonicalName(fqdn);
  for (const rec of [...(packet.answers ?? []), ...(packet.additionals ?? [])]) {
    if (canonicalName(rec.name) !== name) continue;
    if ((rec.ttl ?? 0) === 0) continue;
    if (rec.type === 'NSEC') continue; // a negative answer: says what the sender does not have
    if (ours.some((o) => sameRecord(o, rec))) continue;
    if (history?.has(rec)) continue;
    return true;
  }
  return false;
}

/**
 * A probe from someone else for the same name (RFC 6762 §8.2): a query with a question for `fqdn` and
 * authority records for it. Returns those records, or undefined when the query is not such a probe.
 */
export function competingProbe(packet: Pick<mdns.Packet, 'questions' | 'authorities'>, fqdn: string): Answer[] | undefined {
  const name = canonicalName(fqdn);
  if (!(packet.questions ?? []).some((q) => canonicalName(q.name) === name)) return undefined;
  const auth = (packet.authorities ?? []).filter((a) => canonicalName(a.name) === name);
  return auth.length ? auth : undefined;
}

const TYPE_NUMBER: Record<string, number> = { A: 1, PTR: 12, TXT: 16, AAAA: 28, SRV: 33, NSEC: 47, ANY: 255 };

function nameBytes(name: string): Buffer {
  const parts = name.replace(/\.$/, '').split('.').filter(Boolean);
  return Buffer.concat([...parts.map((p) => Buffer.concat([Buffer.from([Buffer.byteLength(p)]), Buffer.from(p)])), Buffer.from([0])]);
}

/** Uncompressed rdata bytes, as RFC 6762 §8.2.1 compares them. */
export function rdataBytes(a: Answer): Buffer {
  switch (a.type) {
    case 'SRV': {
      const d = a.data as mdns.SrvData;
      const head = Buffer.alloc(6);
      head.writeUInt16BE(d.priority ?? 0, 0);
      head.writeUInt16BE(d.weight ?? 0, 2);
      head.writeUInt16BE(d.port, 4);
      return Buffer.concat([head, nameBytes(d.target)]);
    }
    case 'TXT': {
      const items = Array.isArray(a.data) ? a.data : [a.data];
      return Buffer.concat(items.map((x) => {
        const b = Buffer.isBuffer(x) ? x : Buffer.from(String(x));
        return Buffer.concat([Buffer.from([b.length]), b]);
      }));
    }
    case 'A':
      return Buffer.from(String(a.data).split('.').map(Number));
    case 'PTR':
      return nameBytes(String(a.data));
    default:
      return Buffer.from(rdataKey(a));
  }
}

/**
 * RFC 6762 §8.2 simultaneous probe tiebreaking: both sides' authority records, sorted by class, type
 * and rdata, are compared pairwise; the lexicographically later set wins, and when one set is a prefix
 * of the other the longer one wins. `tie` means the sets are identical (e.g. our own probe looped
 * back), which is no conflict.
 */
export function probeTiebreak(ours: readonly Answer[], theirs: readonly Answer[]): 'win' | 'lose' | 'tie' {
  const sorted = (list: readonly Answer[]) =>
    [...list]
      .map((a) => ({ type: TYPE_NUMBER[a.type] ?? 0, rdata: rdataBytes(a) }))
      .sort((x, y) => x.type - y.type || Buffer.compare(x.rdata, y.rdata));
  const a = sorted(ours);
  const b = sorted(theirs);
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const c = a[i]!.type - b[i]!.type || Buffer.compare(a[i]!.rdata, b[i]!.rdata);
    if (c > 0) return 'win';
    if (c < 0) return 'lose';
  }
  if (a.length === b.length) return 'tie';
  return a.length > b.length ? 'win' : 'lose';
}

/**
 * RFC 6762 §8.1 rate limit: given the times (ms) of recent conflicts, how long to wait before the next
 * probe (0, or {@link CONFLICT_BACKOFF_MS} after 15 conflicts within 10 s).
 */
export function probeDelay(conflictTimes: readonly number[], now: number): number {
  const recent = conflictTimes.filter((t) => now - t < CONFLICT_WINDOW_MS);
  return recent.length >= CONFLICT_LIMIT ? CONFLICT_BACKOFF_MS : 0;
}
