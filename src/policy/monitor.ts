/**
 * The security monitor's pure parts (issue #6): the per-address tracker of distinct device IDs, the
 * notes for a MAC seen under several IDs and for many IDs from one address, and the hold-flagged
 * decision. No I/O; the clock is an argument. The service feeds them and records what they return.
 */
import type { Decision, FlagKind, FlagNote } from './decide.ts';

const hexOf = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** Settings of the {@link AddressTracker}. */
export interface TrackerSettings {
  /** Distinct IDs from one address within `windowS` that raise `many-ids`. */
  threshold: number;
  /** The sliding window (s). */
  windowS: number;
  /** Addresses tracked at most; the least recently active is dropped for a new one. */
  maxAddresses: number;
}

/** IDs kept per address for the evidence of a `many-ids` flag. */
const SAMPLE = 5;

interface AddressWindow {
  /** 32-bit hash of an ID → last seen (s), oldest first. Never more than `threshold` entries. */
  seen: Map<number, number>;
  /** The last few IDs, for evidence. */
  sample: string[];
}

/** FNV-1a, 32 bits: IDs are counted by hash so that an address costs ~40 bytes per ID tracked. */
function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** What the tracker saw when a new ID pushed an address to (or past) the threshold. */
export interface ManyIds {
  address: string;
  /** Distinct IDs in the window (capped at the threshold: the tracker keeps no more). */
  distinct: number;
  /** The most recent IDs, newest last. */
  sample: string[];
}

/**
 * Counts distinct device IDs per source address in a sliding window. Bounded: at most `maxAddresses`
 * addresses (least recently active dropped first) and at most `threshold` IDs per address (the oldest
 * dropped first), so memory stays under `maxAddresses × threshold × ~40 bytes` whatever arrives.
 */
export class AddressTracker {
  private readonly byAddress = new Map<string, AddressWindow>();
  /** Addresses dropped to make room since creation. */
  evicted = 0;

  constructor(readonly s: TrackerSettings) {}

  /** Addresses tracked now. */
  get size(): number {
    return this.byAddress.size;
  }

  /** IDs tracked now over every address (tests, metrics). */
  get entries(): number {
    let n = 0;
    for (const w of this.byAddress.values()) n += w.seen.size;
    return n;
  }

  /**
   * Record that `id` asked from `address` at `nowS`. Returns what to flag when `id` is new in the
   * window and the address has now sent `threshold` or more distinct IDs; undefined otherwise.
   */
  observe(address: string, id: string, nowS: number): ManyIds | undefined {
    const { threshold, windowS, maxAddresses } = this.s;
    if (threshold <= 0) return undefined;
    let w = this.byAddress.get(address);
    if (w) this.byAddress.delete(address);
    else {
      if (this.byAddress.size >= maxAddresses) {
        const oldest = this.byAddress.keys().next().value;
        if (oldest !== undefined) {
          this.byAddress.delete(oldest);
          this.evicted++;
        }
      }
      w = { seen: new Map(), sample: [] };
    }
    this.byAddress.set(address, w);
    // Forget what left the window (oldest first, so stop at the first one still inside).
    for (const [h, t] of w.seen) {
      if (t > nowS - windowS) break;
      w.seen.delete(h);
    }
    const h = hash32(id);
    const isNew = !w.seen.has(h);
    w.seen.delete(h);
    if (isNew && w.seen.size >= threshold) {
      const first = w.seen.keys().next().value;
      if (first !== undefined) w.seen.delete(first);
    }
    w.seen.set(h, nowS);
    if (isNew) {
      w.sample.push(id);
      if (w.sample.length > SAMPLE) w.sample.shift();
    }
    if (!isNew || w.seen.size < threshold) return undefined;
    return { address, distinct: w.seen.size, sample: [...w.sample] };
  }
}

/** The `many-ids` note for what {@link AddressTracker.observe} returned. */
export function manyIdsNote(m: ManyIds, id: string, windowS: number): FlagNote {
  return {
    kind: 'many-ids',
    deviceId: id,
    subject: `addr:${m.address}`,
    others: m.sample.filter((x) => x !== id),
    evidence: { address: m.address, distinct: String(m.distinct), windowS: String(windowS), recent: m.sample.join(' ') },
  };
}

/** Most device IDs a `duplicate-mac` note names. */
export const MAX_MAC_PEERS = 20;

/**
 * The `duplicate-mac` note when a request's MAC is already recorded under other IDs (`peers`: the
 * devices and pending requests with that MAC, the requesting ID excluded), else undefined.
 */
export function duplicateMacNote(req: { id: string; mac?: Uint8Array; source: string }, peers: readonly string[]): FlagNote | undefined {
  if (!req.mac || peers.length === 0) return undefined;
  const mac = hexOf(req.mac);
  const others = peers.filter((p) => p !== req.id).slice(0, MAX_MAC_PEERS);
  if (others.length === 0) return undefined;
  return { kind: 'duplicate-mac', deviceId: req.id, subject: `mac:${mac}`, others, evidence: { mac, ids: [req.id, ...others].join(' '), source: req.source } };
}

/** An open flag as the hold decision sees it. */
export interface OpenFlagRef {
  id: string;
  kind: FlagKind;
  deviceIds: readonly string[];
  /**
   * Who raised it: `<device ID>@<key fingerprint>` of each request that observed it (the first
   * {@link MAX_FLAG_RAISERS}). Absent for flags recorded before the server kept it.
   */
  raisedBy?: readonly string[];
}

/** Raisers one flag remembers at most (evidence `raisedBy`). */
export const MAX_FLAG_RAISERS = 32;

/** The raiser of an observation: the request's device ID and the fingerprint of the key that signed it. */
export function raiserOf(id: string, fingerprint: string): string {
  return `${id}@${fingerprint}`;
}

/**
 * Flag kinds that do not hold a device: `many-ids` is about an address (a NAT with many devices looks
 * the same), not evidence against each device behind it.
 */
export const HOLD_EXEMPT: ReadonlySet<FlagKind> = new Set<FlagKind>(['many-ids']);

/** Settings of {@link holdFlagged}. */
export interface HoldSettings {
  /** Hold flagged devices pending instead of issuing tokens. Default false. */
  holdFlagged: boolean;
  /** Retry hint of a held device (s): the first pending retry. */
  retryS: number;
}

/**
 * The hold-flagged policy: with `holdFlagged` on, an approval for a device that has open flags (those
 * raised by this very request included) becomes a `hold` — answered like pending, no token — until an
 * admin clears the flags. Every other decision passes unchanged; so does everything when the setting
 * is off. `open` are the open flags naming `deviceId`.
 *
 * Only evidence about the key being approved holds (issue #11, F2): `approving` is the
 * {@link raiserOf} of the approval (the ID and the key it would bind the token to), and a flag holds
 * only when a request signed with that key raised it. A key-mismatch raised by some other key, an
 * OOB failure or a MAC mismatch by a key nobody vouched for, a `duplicate-mac` raised under another
 * ID: none of them proves anything about this device's key, and anyone can raise them, so they are
 * shown to admins but hold nobody. Flags without raisers (recorded by older versions) hold as before.
 */
export function holdFlagged(d: Decision, deviceId: string, open: readonly OpenFlagRef[], s: HoldSettings, approving?: string): Decision {
  if (!s.holdFlagged || d.kind !== 'approve') return d;
  const concerns = (f: OpenFlagRef): boolean => f.raisedBy === undefined || approving === undefined || f.raisedBy.includes(approving);
  const heldBy = open.filter((f) => !HOLD_EXEMPT.has(f.kind) && f.deviceIds.includes(deviceId) && concerns(f)).map((f) => f.id);
  if (heldBy.length === 0) return d;
  return { kind: 'hold', retryS: s.retryS, flags: d.flags, heldBy };
}

/**
 * Flag kinds about a state that persists (the MAC is still shared, still differs from the record, the
 * address still sends many IDs) rather than about one attempt. Clearing such a flag acknowledges what
 * it showed: the same observation does not raise it again (see {@link acknowledges}). Attempt kinds
 * (key-changed, key-mismatch, mac-mismatch, oob-failed, approved-key-changed) raise again on every new
 * attempt after a clear.
 */
export const STATE_KINDS: ReadonlySet<FlagKind> = new Set<FlagKind>(['mac-changed', 'duplicate-mac', 'many-ids']);

/**
 * True when a flag an admin cleared covers `note`, so that it is not raised again: a `duplicate-mac`
 * whose IDs were all in the cleared flag, a `mac-changed` from and to the same MACs, a `many-ids` for
 * the same address (an admin who clears it says the address is a gateway). Never for attempt kinds.
 */
export function acknowledges(cleared: { kind: string; deviceIds: readonly string[]; evidence: Readonly<Record<string, string>> }, note: FlagNote): boolean {
  if (cleared.kind !== note.kind || !STATE_KINDS.has(note.kind)) return false;
  switch (note.kind) {
    case 'duplicate-mac':
      return [note.deviceId, ...(note.others ?? [])].every((id) => cleared.deviceIds.includes(id));
    case 'mac-changed':
      return cleared.evidence['recorded'] === note.evidence['recorded'] && cleared.evidence['got'] === note.evidence['got'];
    default:
      return true;
  }
}
