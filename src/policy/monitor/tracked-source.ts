/**
 * The unit the `many-ids` tracker counts by (issue 11 F14): an IPv4 address as it is, an IPv6 address
 * by its /64 prefix. One IPv6 host is handed a whole /64 (RFC 6177, SLAAC privacy addresses), so counting
 * per IPv6 address would give a single attacker 2^64 fresh sources. The parsing is the one normaliser
 * the rate limits and transports use (`src/net/address.ts`); the monitor only drops the zone, so one
 * host's link-local addresses count once whatever interface they came in on. Pure: no I/O.
 */
import { addressScope } from '../../net/address.ts';

/**
 * The source a request is counted under: `a.b.c.d` for IPv4 (also when written IPv4-mapped,
 * `::ffff:a.b.c.d`, or NAT64), the full-form `xxxx:xxxx:xxxx:xxxx::/64` for IPv6 (lower case, zone
 * dropped). Anything that parses as neither is returned unchanged.
 */
export function monitorSource(address: string): string {
  const s = addressScope(address.replace(/%.*$/, ''));
  return s.prefix ?? s.address;
}
