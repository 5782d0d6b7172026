/**
 * The unit the `many-ids` tracker counts by (issue 11 F14): an IPv4 address as it is, an IPv6 address
 * by its /64 prefix. One IPv6 host is handed a whole /64 (RFC 6177, SLAAC privacy addresses), so counting
 * per IPv6 address would give a single attacker 2^64 fresh sources. Pure: no I/O.
 */

/** `a.b.c.d` with each part 0..255, or undefined. */
function ipv4(s: string): string | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  for (const p of parts) if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return undefined;
  return parts.map(Number).join('.');
}

/** The eight 16-bit groups of an IPv6 address (an embedded IPv4 tail allowed), or undefined. */
function ipv6Groups(s: string): number[] | undefined {
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const parse = (part: string, last: boolean): number[] | undefined => {
    if (part === '') return [];
    const out: number[] = [];
    const groups = part.split(':');
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i]!;
      if (last && i === groups.length - 1 && g.includes('.')) {
        const v4 = ipv4(g);
        if (!v4) return undefined;
        const [a, b, c, d] = v4.split('.').map(Number) as [number, number, number, number];
        out.push((a << 8) | b, (c << 8) | d);
      } else if (/^[0-9a-f]{1,4}$/i.test(g)) out.push(parseInt(g, 16));
      else return undefined;
    }
    return out;
  };
  const head = parse(halves[0]!, halves.length === 1);
  const tail = halves.length === 2 ? parse(halves[1]!, true) : [];
  if (!head || !tail) return undefined;
  if (halves.length === 1) return head.length === 8 ? head : undefined;
  if (head.length + tail.length > 7) return undefined;
  return [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
}

/**
 * The source a request is counted under: `a.b.c.d` for IPv4 (also when written IPv4-mapped,
 * `::ffff:a.b.c.d`), `x:x:x:x::/64` for IPv6 (lower case, no leading zeros, zone dropped). Anything that
 * parses as neither is returned unchanged.
 */
export function monitorSource(address: string): string {
  const v4 = ipv4(address);
  if (v4) return v4;
  const g = ipv6Groups(address.replace(/%.*$/, ''));
  if (!g) return address;
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) {
    return `${g[6]! >> 8}.${g[6]! & 0xff}.${g[7]! >> 8}.${g[7]! & 0xff}`;
  }
  return `${g.slice(0, 4).map((x) => x.toString(16)).join(':')}::/64`;
}
