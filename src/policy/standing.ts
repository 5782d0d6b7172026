/**
 * How the key that signed a request stands to the records of its device ID (issue #11, F1/F3). The
 * signature only proves that the sender holds the key it presents — any key, for any ID. What that
 * key is worth comes from the records: the server spends an ID's budget, and a place in the part of
 * the used-once set that forgers cannot reach, only for a key an admin vouched for. Pure: no I/O, the
 * clock is an argument.
 */
import type { SubjectRecords } from '../domain.ts';
import { verifyOobProof } from '../protocol/oob.ts';
import { activeAllowEntry, bytesEqual } from './decide.ts';

/**
 * The standing of a key for an ID:
 * - `allowlisted`: the key of the ID's active allowlist entry;
 * - `oob-proven`: the entry holds no key, and the request proves the entry's out-of-band secret (key 7,
 *   or a DTLS-PSK session whose identity is the ID);
 * - `provisioned`: the key of the provisioned device;
 * - `approved`: the key an admin approved for a waiting request;
 * - `waiting`: the key of a waiting request (first come, nobody vouched for it);
 * - `unknown`: anything else, including every key of a revoked or rejected ID.
 */
export type KeyStanding = 'allowlisted' | 'oob-proven' | 'provisioned' | 'approved' | 'waiting' | 'unknown';

/** What the standing needs from an authenticated request. */
export interface KeyClaim {
  id: string;
  /** The key that signed the request (`/idprov/request`: key 2; `/idprov/refresh`: the token's cnf). */
  pk: Uint8Array;
  /** The nonce and key 7, for the OOB proof; the DTLS-PSK identity of the session. */
  nonce?: Uint8Array;
  oob?: Uint8Array;
  pskIdentity?: string;
}

/** The standing of `c.pk` for `c.id` given the ID's records at `now`. */
export function keyStanding(c: KeyClaim, rec: SubjectRecords, now: number): KeyStanding {
  if (rec.revocation || rec.pending?.status === 'rejected') return 'unknown';
  const allow = activeAllowEntry(rec.allow, now);
  if (allow?.pk) return bytesEqual(allow.pk, c.pk) ? 'allowlisted' : 'unknown';
  if (allow?.secret !== undefined) {
    const viaPsk = c.pskIdentity !== undefined && c.pskIdentity === c.id;
    if (viaPsk || oobAttempt(c, rec, now) === 'right') return 'oob-proven';
  }
  if (rec.device && bytesEqual(rec.device.pk, c.pk)) return 'provisioned';
  const p = rec.pending;
  if (p && bytesEqual(p.pk, c.pk)) return p.status === 'approved' ? 'approved' : 'waiting';
  return 'unknown';
}

/**
 * Whether `c` is a guess at the out-of-band secret of its ID's entry (review of F1): `right` or `wrong`
 * when the ID's active entry holds a secret and no key, the request carries a proof (key 7) and no
 * DTLS-PSK session proves the secret for it; undefined otherwise (no proof sent is no guess). Wrong
 * proofs spend the ID's guess budget, whatever key signed them.
 */
export function oobAttempt(c: KeyClaim, rec: SubjectRecords, now: number): 'right' | 'wrong' | undefined {
  if (rec.revocation || rec.pending?.status === 'rejected') return undefined;
  const allow = activeAllowEntry(rec.allow, now);
  if (!allow || allow.pk || allow.secret === undefined || c.oob === undefined || c.nonce === undefined) return undefined;
  if (c.pskIdentity !== undefined && c.pskIdentity === c.id) return undefined;
  return verifyOobProof(allow.secret, c.nonce, c.pk, c.oob) ? 'right' : 'wrong';
}

/** True for the standings an admin vouched for (through the allowlist, an approval or a provisioning). */
export function isVouched(s: KeyStanding): boolean {
  return s === 'allowlisted' || s === 'oob-proven' || s === 'provisioned' || s === 'approved';
}

/**
 * The key of the rate-limit bucket of an unvouched claim: the ID and the key together, so that a
 * request signed with another key never spends the budget of the key holder (nor does a second key
 * for an unknown ID spend the first one's). Vouched keys spend the ID's own bucket: an ID has one
 * vouched key at a time (or the holders of its entry's OOB secret, who are as good as the device).
 */
export function claimKey(id: string, pk: Uint8Array): string {
  return `${id}\n${Buffer.from(pk).toString('base64')}`;
}
