/**
 * The security monitor (issue #6; README "Security monitor", docs/security.md): the state both
 * services share — the rate-limit buckets, the `many-ids` tracker and the book of open flags. The
 * composition root builds one and hands it to the provisioning service (which spends, observes and
 * raises) and to the admin service (which clears flags); neither reaches into the other.
 *
 * The rules are pure and live in src/policy/monitor/ (the tracker, the flag rules) and
 * src/policy/ratelimit.ts (the buckets); this class only holds their state, bounded.
 */
import type { FlagRecord } from '../../domain.ts';
import type { AddressScope } from '../../net/address.ts';
import { scopeKeys } from '../../net/address.ts';
import { AddressTracker } from '../../policy/monitor/id-tracker.ts';
import { BucketTable } from '../../policy/ratelimit.ts';
import type { Store } from '../../store/store.ts';
import { FlagBook } from './flag-book.ts';

/**
 * Settings of the security monitor, the rate limits and the caps (README "Security monitor" explains
 * each; the defaults are src/config.ts `SETTINGS`, mapped by src/service/settings.ts). Rates are per
 * second; a rate of 0 turns that limit off.
 */
export interface MonitorSettings {
  /**
   * Per source address (and per IPv6 /64), refill per second and burst, of each of its two buckets:
   * signature checks (requests with a valid nonce sent to that address), and requests that do not
   * decode. Nonce challenges spend neither (issue #11 F4). An IPv6 /56 and /48 get
   * {@link PREFIX56_FACTOR} and {@link PREFIX48_FACTOR} times the signature budget.
   */
  addressRate: number;
  addressBurst: number;
  /** Authenticated requests per second per device ID (its vouched key) or per ID + key (any other key), and the burst. */
  deviceRate: number;
  deviceBurst: number;
  /** Keys (addresses, prefixes, claims) each rate-limit table tracks at most (least recently used dropped). */
  maxTracked: number;
  /** Distinct IDs from one address within `manyIdsWindowS` that raise `many-ids` (0 = off). */
  manyIds: number;
  manyIdsWindowS: number;
  /** Addresses the many-IDs tracker follows at most. */
  maxAddresses: number;
  /** Hold flagged devices pending instead of issuing tokens. */
  holdFlagged: boolean;
  /** Open flags at most (and flag rows in the database). */
  maxFlags: number;
  /** Waiting requests at most; the least recently seen is dropped for a new one. */
  maxPending: number;
  /** A waiting request not seen for this long is deleted by the sweep (s). */
  pendingExpiryS: number;
  /** Events older than this are deleted by the sweep (s). */
  eventRetentionS: number;
  /** Events kept at most; the sweep deletes the oldest beyond. */
  maxEvents: number;
}

/**
 * How many times the per-address signature budget an IPv6 /56 and /48 get (review finding 5): a /56
 * is what a home or small site is given (256 /64s), a /48 what a site or an attacker's hosting
 * account can get (65,536 /64s). Growing factors bound the signature checks one allocation can buy
 * — per /48 at most 16 × `addressRate` a second — while a site's many /64s still get more than one.
 */
export const PREFIX56_FACTOR = 4;
export const PREFIX48_FACTOR = 16;

export class SecurityMonitor {
  /** The settings, frozen. */
  readonly settings: Readonly<MonitorSettings>;
  /**
   * Rate-limit buckets, shared by request and refresh (README "Rate limits", docs/security.md):
   * signature checks per source address and IPv6 /64, and (larger) per /56 and /48 (spent only by
   * requests whose nonce was sent to that address); undecodable requests per address and /64;
   * authenticated requests per device ID for its vouched key, and per device ID + key for all other
   * keys, in a table of their own.
   */
  readonly addressLimits: BucketTable;
  /** The signature budgets of IPv6 /56s and /48s ({@link PREFIX56_FACTOR}, {@link PREFIX48_FACTOR} times the address's). */
  readonly prefix56Limits: BucketTable;
  readonly prefix48Limits: BucketTable;
  readonly junkLimits: BucketTable;
  readonly deviceLimits: BucketTable;
  readonly claimLimits: BucketTable;
  /**
   * Wrong out-of-band proofs per device ID, whatever key signed them (review of F1): the bound on
   * online guessing of an entry's secret. Only wrong proofs spend it, so a guesser cannot make the
   * genuine device's right proof fail; over it, right and wrong proofs get the same held answer.
   */
  readonly oobGuessLimits: BucketTable;
  /** Distinct IDs per source address (the `many-ids` flag). */
  readonly tracker: AddressTracker;
  /** The open flags. */
  readonly flags: FlagBook;

  /** `random` names new flags. */
  constructor(settings: MonitorSettings, random: (n: number) => Buffer) {
    const m = (this.settings = Object.freeze({ ...settings }));
    this.addressLimits = new BucketTable({ rate: m.addressRate, burst: m.addressBurst }, m.maxTracked);
    this.prefix56Limits = new BucketTable({ rate: m.addressRate * PREFIX56_FACTOR, burst: m.addressBurst * PREFIX56_FACTOR }, m.maxTracked);
    this.prefix48Limits = new BucketTable({ rate: m.addressRate * PREFIX48_FACTOR, burst: m.addressBurst * PREFIX48_FACTOR }, m.maxTracked);
    this.junkLimits = new BucketTable({ rate: m.addressRate, burst: m.addressBurst }, m.maxTracked);
    this.deviceLimits = new BucketTable({ rate: m.deviceRate, burst: m.deviceBurst }, m.maxTracked);
    this.claimLimits = new BucketTable({ rate: m.deviceRate, burst: m.deviceBurst }, m.maxTracked);
    this.oobGuessLimits = new BucketTable({ rate: m.deviceRate, burst: m.deviceBurst }, m.maxTracked);
    this.tracker = new AddressTracker({ threshold: m.manyIds, windowS: m.manyIdsWindowS, maxAddresses: m.maxAddresses });
    this.flags = new FlagBook(m.maxFlags, random);
  }

  /** Load the open flags from the store (once, at start). */
  load(store: Store): Promise<void> {
    return this.flags.load(store);
  }

  /** The signature budgets a source is charged to: its address and /64, and its /56 and /48 (review finding 5). */
  signatureCharges(scope: AddressScope): Array<readonly [BucketTable, string]> {
    const c: Array<readonly [BucketTable, string]> = scopeKeys(scope).map((k) => [this.addressLimits, k] as const);
    if (scope.prefix56) c.push([this.prefix56Limits, scope.prefix56]);
    if (scope.prefix48) c.push([this.prefix48Limits, scope.prefix48]);
    return c;
  }

  /**
   * An admin is clearing the open flag `id`: take it out of the book (so that no observation re-opens
   * it before the write) and return the book's copy, the newest (count, last seen), if it holds one.
   */
  takeFlag(id: string): FlagRecord | undefined {
    return this.flags.take(id);
  }

  /** The clear of `f` is committed: the same observation no longer raises it (state kinds). */
  flagCleared(f: FlagRecord): void {
    this.flags.cleared(f);
  }

  /** Sizes of the bounded tables (metrics `idprov_monitor{size}`). */
  get sizes(): Record<string, number> {
    return {
      rate_limit_addresses: this.addressLimits.size,
      rate_limit_undecodable: this.junkLimits.size,
      rate_limit_devices: this.deviceLimits.size,
      rate_limit_claims: this.claimLimits.size,
      tracked_addresses: this.tracker.size,
      open_flags: this.flags.size,
    };
  }
}
