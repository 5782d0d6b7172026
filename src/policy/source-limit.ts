/**
 * A token bucket per source address and, for IPv6, per /64 (issue 11 F5, F6): a request passes only
 * when both its address's and its prefix's bucket have a token. One IPv6 host usually holds a whole
 * /64, so the prefix bucket is what stops it from cycling addresses; it is larger than an address's
 * (`prefixFactor` times the rate and burst) so that the devices of one site's /64 do not all share
 * one address's budget. Pure: the caller passes the address, its prefix and the clock.
 */
import { BucketTable, type BucketLimit, type Take } from './ratelimit.ts';

/** How much the /64 bucket holds and refills compared with an address's. */
export const PREFIX_FACTOR = 4;

/** Buckets per address and per /64. */
export class SourceLimit {
  private readonly byAddress: BucketTable;
  private readonly byPrefix: BucketTable;

  /**
   * @param limit per address (`rate` 0 = no limit)
   * @param maxKeys addresses (and, separately, prefixes) tracked at most, least recently used dropped
   */
  constructor(
    readonly limit: BucketLimit,
    maxKeys: number,
  ) {
    this.byAddress = new BucketTable(limit, maxKeys);
    this.byPrefix = new BucketTable({ rate: limit.rate * PREFIX_FACTOR, burst: limit.burst * PREFIX_FACTOR }, maxKeys);
  }

  /** Addresses and prefixes tracked now. */
  get size(): number {
    return this.byAddress.size + this.byPrefix.size;
  }

  /**
   * Take a token for `address` (and its `prefix`, when given) at `nowMs`. A refused request takes
   * nothing from the prefix when its address is over, so one noisy address does not drain its /64.
   */
  take(address: string, prefix: string | undefined, nowMs: number): Take {
    const a = this.byAddress.take(address, nowMs);
    if (!a.ok || prefix === undefined) return a;
    return this.byPrefix.take(prefix, nowMs);
  }
}
