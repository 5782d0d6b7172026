/**
 * The one normaliser of source addresses (issue #11 F4, review finding 7): what the nonce binding,
 * the service's budgets, the CoAP GET limit and the DTLS handshake table all count by. Pure: text in,
 * text out, no socket API, no imports — a leaf that every layer may use. An IPv4 peer is one address;
 * an IPv6 peer is its address and its /64 prefix, because a host can use any of the 2^64 addresses of
 * the prefix it was given (SLAAC, privacy addresses): a limit per IPv6 address alone would be 2^64
 * limits for one host. Its /56 and /48 are given too: the allocations a home or a site gets (RFC 6177),
 * for budgets that grow by level. IPv4-mapped and NAT64 (`64:ff9b::/96`) addresses are the IPv4
 * address they carry, decided here once.
 */

/**
 * Where a datagram came from, as its socket reported it: the structured peer every layer passes (the
 * transports' `Peer` extends it). Never an `addr:port` string for a consumer to parse back.
 */
export interface PeerAddress {
  address: string;
  port: number;
}

/** Where a request came from, for the limits: the keys of every bucket it is charged to. */
export interface AddressScope {
  /** The canonical address: dotted IPv4 (also for `::ffff:a.b.c.d` and `64:ff9b::a.b.c.d`), or the full lowercase IPv6. */
  address: string;
  /** `<first four groups>::/64` for IPv6 (zone kept), absent for IPv4 and unparsable text. */
  prefix?: string;
  /** The /56 of an IPv6 address (`2001:0db8:0001:0200::/56`, zone kept), absent with `prefix`. */
  prefix56?: string;
  /** The /48 of an IPv6 address (`2001:0db8:0001::/48`, zone kept), absent with `prefix`. */
  prefix48?: string;
}

/** A source as the transports name it (the shape `src/transport/source.ts` has always exported). */
export type Source = AddressScope;

/** The address part of `addr:port`, `[v6]:port` or a bare address. */
function hostOf(source: string): string {
  if (source.startsWith('[')) {
    const end = source.indexOf(']');
    return end > 0 ? source.slice(1, end) : source;
  }
  const i = source.lastIndexOf(':');
  return i > 0 && source.indexOf(':') === i ? source.slice(0, i) : source;
}

const V4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function v4Bytes(s: string): number[] | undefined {
  const m = V4.exec(s);
  if (!m) return undefined;
  const b = m.slice(1).map(Number);
  return b.every((x) => x <= 255) ? b : undefined;
}

/** The eight 16-bit groups of an IPv6 address (embedded IPv4 tail allowed), or undefined. */
function v6Groups(s: string): number[] | undefined {
  if (s.length > 45 || !/^[0-9a-fA-F:.]+$/.test(s)) return undefined;
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const parse = (part: string): number[] | undefined => {
    if (part === '') return [];
    const out: number[] = [];
    const items = part.split(':');
    for (let i = 0; i < items.length; i++) {
      const it = items[i]!;
      if (i === items.length - 1 && it.includes('.')) {
        const b = v4Bytes(it);
        if (!b) return undefined;
        out.push((b[0]! << 8) | b[1]!, (b[2]! << 8) | b[3]!);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(it)) out.push(parseInt(it, 16));
      else return undefined;
    }
    return out;
  };
  const head = parse(halves[0]!);
  const tail = halves.length === 2 ? parse(halves[1]!) : [];
  if (!head || !tail) return undefined;
  if (halves.length === 1) return head.length === 8 ? head : undefined;
  const fill = 8 - head.length - tail.length;
  if (fill < 1) return undefined;
  return [...head, ...new Array<number>(fill).fill(0), ...tail];
}

const hex4 = (g: number): string => g.toString(16).padStart(4, '0');

/**
 * The limit scope of `source` (`addr:port`, `[v6]:port` or a bare address). IPv4-mapped
 * (`::ffff:0:0/96`) and NAT64 well-known-prefix (`64:ff9b::/96`) addresses count as the IPv4 address
 * they carry: otherwise every IPv4 peer of a dual-stack socket would share one /64. Text that is not
 * an IP address (an in-memory test transport) is its own scope.
 */
export function addressScope(source: string): AddressScope {
  const host = hostOf(source);
  const pct = host.indexOf('%');
  const bare = pct >= 0 ? host.slice(0, pct) : host;
  const zone = pct >= 0 ? host.slice(pct) : '';
  if (v4Bytes(bare)) return { address: bare };
  const g = v6Groups(bare);
  if (!g) return { address: host };
  const mapped = g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff;
  const nat64 = g[0] === 0x64 && g[1] === 0xff9b && g.slice(2, 6).every((x) => x === 0);
  if (mapped || nat64) return { address: `${g[6]! >> 8}.${g[6]! & 0xff}.${g[7]! >> 8}.${g[7]! & 0xff}` };
  const full = g.map(hex4).join(':') + zone;
  return {
    address: full,
    prefix: `${g.slice(0, 4).map(hex4).join(':')}::/64${zone}`,
    prefix56: `${[g[0]!, g[1]!, g[2]!, g[3]! & 0xff00].map(hex4).join(':')}::/56${zone}`,
    prefix48: `${g.slice(0, 3).map(hex4).join(':')}::/48${zone}`,
  };
}

/**
 * The {@link Source} of an address as `node:dgram` reports it (or `addr:port`): the same function
 * as {@link addressScope}, under the name the transports use. Never throws.
 */
export const sourceOf: (address: string) => Source = addressScope;

/** The bucket keys of a scope's address and /64 (the per-address budgets): its address, then its /64 when it has one. */
export function scopeKeys(s: AddressScope): string[] {
  return s.prefix ? [s.address, s.prefix] : [s.address];
}

/** A peer as the transports report it: an address (no port) and a port. Carried as is, never as text. */
export interface PeerAddress {
  address: string;
  port: number;
}

/**
 * A peer as records and logs show it: `a.b.c.d:port` (also for an IPv4-mapped IPv6 address),
 * `[v6]:port`. For people and the event log only: nothing parses it back.
 */
export function peerText(p: PeerAddress): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(p.address);
  if (m) return `${m[1]}:${p.port}`;
  return p.address.includes(':') ? `[${p.address}]:${p.port}` : `${p.address}:${p.port}`;
}
