/**
 * Provisioning decisions as values (docs/spec/idprov-coap-v1.md §5). `decide` and `decideRefresh` look at
 * an authenticated request and the records about its device ID, and return what should happen. They do
 * no I/O and take the clock as an argument; the service records and answers.
 */
import { timingSafeEqual } from 'node:crypto';
import { withChanges, type AllowEntry, type ClientType, type DeviceRecord, type PendingRecord, type ProvisionedVia, type SubjectRecords } from '../domain.ts';
import type { ProvErrorCode } from '../errors.ts';
import { verifyOobProof } from '../protocol/oob.ts';

/**
 * Kinds of suspicious observations (the security monitor, README "Security monitor"). `decide` raises
 * the first six; `duplicate-mac` and `many-ids` come from the monitor (src/policy/monitor/flag-rules.ts).
 */
export type FlagKind =
  | 'key-changed'
  | 'key-mismatch'
  | 'mac-mismatch'
  | 'mac-changed'
  | 'oob-failed'
  | 'approved-key-changed'
  | 'duplicate-mac'
  | 'many-ids';

/** Every flag kind, in the order the README explains them. */
export const FLAG_KINDS: readonly FlagKind[] = [
  'key-changed',
  'key-mismatch',
  'mac-mismatch',
  'mac-changed',
  'oob-failed',
  'approved-key-changed',
  'duplicate-mac',
  'many-ids',
];

/** A suspicious observation about a device ID, with non-secret evidence. */
export interface FlagNote {
  kind: FlagKind;
  deviceId: string;
  evidence: Record<string, string>;
  /** Other device IDs involved (e.g. the IDs that share a MAC). */
  others?: string[];
  /**
   * What repeated observations are merged by (with the kind): the device ID when absent,
   * `mac:<hex>` for `duplicate-mac`, `addr:<address>` for `many-ids`.
   */
  subject?: string;
}

/**
 * Retry and backoff settings (docs/spec/idprov-coap-v1.md §4 "Retry guidance"). The defaults are
 * src/config.ts `SETTINGS` (`pendingRetry*`, `rejectedRetry`), mapped by src/service/settings.ts.
 */
export interface PolicySettings {
  /** First pending retry hint (s). */
  pendingInitialS: number;
  /** Added per authenticated repeat (s). */
  pendingStepS: number;
  /** Upper bound (s). */
  pendingMaxS: number;
  /** Retry hint for rejected / forbidden outcomes (s). */
  rejectedRetryS: number;
}

/** What the policy needs from an authenticated `/idprov/request`. */
export interface ProvisionFacts {
  id: string;
  pk: Uint8Array;
  mac?: Uint8Array;
  type: ClientType;
  /** The server nonce the request answered (already verified). */
  nonce: Uint8Array;
  /** Key 7, if sent. */
  oob?: Uint8Array;
  /** DTLS-PSK identity of the session the request came over, if any. */
  pskIdentity?: string;
  /** The sender as records show it (`peerText` of src/net/address.ts). */
  source: string;
}

/** The outcome of a provisioning request. */
export type Decision =
  | {
      kind: 'approve';
      via: ProvisionedVia;
      /** The device record to store (new or updated). */
      device: DeviceRecord;
      /** Consume this allowlist entry (rule 1). */
      consumeAllow: boolean;
      /** Delete the (approved) pending record (rule 3). */
      clearPending: boolean;
      flags: FlagNote[];
    }
  | { kind: 'pending'; pending: PendingRecord; retryS: number; flags: FlagNote[] }
  | { kind: 'refuse'; code: Extract<ProvErrorCode, 'rejected' | 'revoked' | 'key-mismatch' | 'mac-mismatch' | 'oob-mismatch'>; retryS: number; reason: string; flags: FlagNote[] }
  /**
   * An approval held back because the device has open flags and `holdFlagged` is on
   * ({@link import('./monitor/flag-rules.ts').holdFlagged}): answered like pending, no token, nothing recorded
   * but the flags, until an admin clears them.
   */
  | { kind: 'hold'; retryS: number; flags: FlagNote[]; heldBy: string[] };

const hexOf = (b: Uint8Array | undefined): string => (b ? Buffer.from(b).toString('hex') : '');

/** Constant-time byte equality (lengths may differ). */
export function bytesEqual(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (!a || !b || a.length !== b.length) return false;
  return timingSafeEqual(a, b);
}

/** An allowlist entry that is usable at `now`: not consumed, not expired. */
export function activeAllowEntry(e: AllowEntry | undefined, now: number): AllowEntry | undefined {
  if (!e || e.consumedAt !== undefined) return undefined;
  if (e.expires !== undefined && e.expires <= now) return undefined;
  return e;
}

/** Pending retry hint after `count` authenticated requests: 60, 90, 120, … capped at 600 by default. */
export function pendingRetry(count: number, s: PolicySettings): number {
  return Math.min(s.pendingInitialS + s.pendingStepS * Math.max(0, count - 1), s.pendingMaxS);
}

function refuse(
  code: Extract<Decision, { kind: 'refuse' }>['code'],
  reason: string,
  s: PolicySettings,
  flags: FlagNote[] = [],
): Decision {
  return { kind: 'refuse', code, reason, retryS: s.rejectedRetryS, flags };
}

/**
 * Decide an authenticated `/idprov/request` (docs/spec/idprov-coap-v1.md §5).
 * Order: revoked → rejected (a reject always overrides an approval, rule 5) → allowlist entry (rule 1)
 * → provisioned device (rule 2) → admin-approved or waiting request (rule 3) → new pending request.
 */
export function decide(req: ProvisionFacts, rec: SubjectRecords, s: PolicySettings, now: number): Decision {
  const { id } = req;
  if (rec.revocation) return refuse('revoked', 'the device was revoked by an admin', s);
  if (rec.pending?.status === 'rejected') return refuse('rejected', 'an admin rejected this device', s);

  // Rule 1: every factor the allowlist entry holds must match.
  const allow = activeAllowEntry(rec.allow, now);
  if (allow) {
    if (allow.pk && !bytesEqual(allow.pk, req.pk)) {
      return refuse('key-mismatch', 'the key differs from the allowlisted key', s, [
        { kind: 'key-mismatch', deviceId: id, evidence: { expected: hexOf(allow.pk), got: hexOf(req.pk), source: req.source } },
      ]);
    }
    if (allow.mac && !bytesEqual(allow.mac, req.mac)) {
      return refuse('mac-mismatch', req.mac ? 'the MAC differs from the allowlisted MAC' : 'the allowlist entry requires a MAC (key 3)', s, [
        { kind: 'mac-mismatch', deviceId: id, evidence: { expected: hexOf(allow.mac), got: hexOf(req.mac), source: req.source } },
      ]);
    }
    if (allow.secret !== undefined) {
      const viaPsk = req.pskIdentity !== undefined && req.pskIdentity === id;
      const viaProof = req.oob !== undefined && verifyOobProof(allow.secret, req.nonce, req.pk, req.oob);
      if (!viaPsk && !viaProof) {
        return refuse('oob-mismatch', req.oob ? 'the out-of-band proof does not match' : 'the out-of-band secret must be proven (key 7 or DTLS-PSK)', s, [
          { kind: 'oob-failed', deviceId: id, evidence: { proofSent: req.oob ? 'yes' : 'no', source: req.source } },
        ]);
      }
    }
    return {
      kind: 'approve',
      via: 'allowlist',
      device: deviceRecord(req, allow.type, 'allowlist', rec.device, now, allow.mac),
      consumeAllow: true,
      clearPending: rec.pending !== undefined,
      flags: [],
    };
  }

  // Rule 2: a provisioned device re-provisions with the same key; another key needs an admin.
  if (rec.device) {
    if (!bytesEqual(rec.device.pk, req.pk)) {
      return refuse('key-mismatch', 'the device is provisioned with another key; a key change needs an admin', s, [
        { kind: 'key-changed', deviceId: id, evidence: { recorded: hexOf(rec.device.pk), got: hexOf(req.pk), source: req.source } },
      ]);
    }
    const flags: FlagNote[] = [];
    if (rec.device.mac && req.mac && !bytesEqual(rec.device.mac, req.mac)) {
      flags.push({ kind: 'mac-changed', deviceId: id, evidence: { recorded: hexOf(rec.device.mac), got: hexOf(req.mac), source: req.source } });
    }
    return { kind: 'approve', via: 'reprovision', device: deviceRecord(req, rec.device.type, rec.device.via, rec.device, now), consumeAllow: false, clearPending: false, flags };
  }

  // Rule 3: unknown IDs wait for an admin, who approves exactly the key shown to them.
  const p = rec.pending;
  if (p?.status === 'approved') {
    if (bytesEqual(p.pk, req.pk)) {
      return { kind: 'approve', via: 'admin', device: deviceRecord(req, p.type, 'admin', undefined, now), consumeAllow: false, clearPending: true, flags: [] };
    }
    const pending: PendingRecord = { ...p, lastSeen: now, count: p.count + 1, source: req.source };
    return {
      kind: 'pending',
      pending,
      retryS: pendingRetry(pending.count, s),
      flags: [{ kind: 'approved-key-changed', deviceId: id, evidence: { approved: hexOf(p.pk), got: hexOf(req.pk), source: req.source } }],
    };
  }
  const flags: FlagNote[] = [];
  if (p && !bytesEqual(p.pk, req.pk)) {
    flags.push({ kind: 'key-changed', deviceId: id, evidence: { previous: hexOf(p.pk), got: hexOf(req.pk), source: req.source } });
  }
  const pending: PendingRecord = {
    id,
    pk: req.pk,
    type: req.type,
    source: req.source,
    firstSeen: p?.firstSeen ?? now,
    lastSeen: now,
    count: (p?.count ?? 0) + 1,
    status: 'pending',
  };
  if (req.mac) pending.mac = req.mac;
  return { kind: 'pending', pending, retryS: pendingRetry(pending.count, s), flags };
}

function deviceRecord(
  req: ProvisionFacts,
  type: ClientType,
  via: ProvisionedVia,
  prev: DeviceRecord | undefined,
  now: number,
  allowMac?: Uint8Array,
): DeviceRecord {
  const d: DeviceRecord = {
    id: req.id,
    pk: req.pk,
    type,
    via,
    provisionedAt: prev?.provisionedAt ?? now,
    lastSeen: now,
    source: req.source,
  };
  const mac = req.mac ?? allowMac ?? prev?.mac;
  if (mac) d.mac = mac;
  return d;
}

/** What the policy needs from an authenticated `/idprov/refresh` (token already verified). */
export interface RefreshFacts {
  id: string;
  /** The key the token is bound to (cnf), which signed the request. */
  cnf: Uint8Array;
  source: string;
}

/** The outcome of a refresh. */
export type RefreshDecision =
  | { kind: 'issue'; device: DeviceRecord }
  | { kind: 'refuse'; code: Extract<ProvErrorCode, 'revoked' | 'rejected' | 'key-mismatch'>; retryS: number; reason: string };

/**
 * Decide an authenticated `/idprov/refresh` (docs/spec/idprov-coap-v1.md §5): the device must still be provisioned,
 * unrevoked, with the key its token is bound to.
 */
export function decideRefresh(req: RefreshFacts, rec: SubjectRecords, s: PolicySettings, now: number): RefreshDecision {
  if (rec.revocation) return { kind: 'refuse', code: 'revoked', retryS: s.rejectedRetryS, reason: 'the device was revoked by an admin' };
  if (rec.pending?.status === 'rejected') return { kind: 'refuse', code: 'rejected', retryS: s.rejectedRetryS, reason: 'an admin rejected this device' };
  if (!rec.device) return { kind: 'refuse', code: 'revoked', retryS: s.rejectedRetryS, reason: 'the device is no longer provisioned' };
  if (!bytesEqual(rec.device.pk, req.cnf)) {
    return { kind: 'refuse', code: 'key-mismatch', retryS: s.rejectedRetryS, reason: 'the device key was changed by an admin; provision again' };
  }
  return { kind: 'issue', device: withChanges(rec.device, { lastSeen: now, source: req.source }) };
}
