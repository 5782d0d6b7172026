/**
 * Who sent a datagram, for fair shares and rate limits: the source address, normalised, and for
 * IPv6 its /64 prefix. One IPv6 host (or one attacker) usually holds a whole /64, so anything counted
 * per address is also counted per /64; an IPv4 address, and an IPv4 peer seen through a dual-stack
 * socket (`::ffff:192.0.2.7`), has no prefix (counting all of IPv4 as one "/64" would lump every
 * IPv4 device together).
 */
import { isIPv4 } from 'node:net';

/** A source address and, for IPv6, its /64. */
export interface Source {
  /** The address: plain IPv4 for IPv4-mapped IPv6, lower-case IPv6 with its zone (`fe80::1%eth0`). */
  address: string;
  /** The /64 prefix (`2001:db8:0:1::/64`, with the zone for link-local), undefined for IPv4. */
  prefix: string | undefined;
}

const MAPPED = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i;

/** The {@link Source} of an address as `node:dgram` reports it. Never throws. */
export function sourceOf(address: string): Source {
  const m = MAPPED.exec(address);
  if (m) return { address: m[1]!, prefix: undefined };
  if (isIPv4(address) || !address.includes(':')) return { address, prefix: undefined };
  const lower = address.toLowerCase();
  const pct = lower.indexOf('%');
  const zone = pct >= 0 ? lower.slice(pct) : '';
  const groups = expand(pct >= 0 ? lower.slice(0, pct) : lower);
  if (groups === undefined) return { address: lower, prefix: undefined };
  return { address: lower, prefix: `${groups.slice(0, 4).join(':')}::/64${zone}` };
}

/** The eight 16-bit groups of an IPv6 address (hex, no leading zeros), undefined when malformed. */
function expand(a: string): string[] | undefined {
  let head = a;
  let tail = '';
  const dbl = a.indexOf('::');
  if (dbl >= 0) {
    head = a.slice(0, dbl);
    tail = a.slice(dbl + 2);
  }
  const h = head === '' ? [] : head.split(':');
  const t = tail === '' ? [] : tail.split(':');
  // An embedded IPv4 tail (`::1.2.3.4`) is two groups; only the first four groups matter here.
  const last = t.length > 0 ? t : h;
  if (last.length > 0 && last[last.length - 1]!.includes('.')) last.splice(last.length - 1, 1, '0', '0');
  const missing = 8 - h.length - t.length;
  if (dbl >= 0 ? missing < 1 : missing !== 0) return undefined;
  const all = [...h, ...Array<string>(dbl >= 0 ? missing : 0).fill('0'), ...t];
  if (!all.every((g) => /^[0-9a-f]{1,4}$/.test(g))) return undefined;
  return all.map((g) => g.replace(/^0+(?=.)/, ''));
}
