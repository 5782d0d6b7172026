/**
 * The security monitor's flag rules (issue #6): the notes for a MAC seen under several IDs and for
 * many IDs from one source, who raised an observation, the hold-flagged decision, and which cleared
 * flags acknowledge a new observation. Pure: no I/O, no clock.
 */
import type { Decision, FlagKind, FlagNote } from '../decide.ts';
import type { ManyIds } from './id-tracker.ts';

const hexOf = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** The `many-ids` note for what {@link AddressTracker.observe} returned. */
export function manyIdsNote(m: ManyIds, id: string, windowS: number): FlagNote {
  return {
    kind: 'many-ids',
    deviceId: id,
    subject: `addr:${m.address}`,
    others: m.sample.filter((x) => x !== id),
    evidence: { address: m.address, distinct: String(m.distinct), windowS: String(windowS), recent: m.sample.join(' '), ...(m.estimated ? { estimated: 'yes' } : {}) },
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
