/**
 * Which network interfaces discovery uses (setting `discoveryInterfaces`), chosen from a table shaped
 * like `os.networkInterfaces()` — passed in, so the choice is a pure function.
 */
/** One address of an interface, as `os.networkInterfaces()` lists it. */
export interface IfaceAddress {
  address: string;
  family: 'IPv4' | 'IPv6' | number;
  internal: boolean;
  scopeid?: number;
}

/** An interface chosen for discovery. */
export interface SelectedInterface {
  name: string;
  ipv4: string[];
  ipv6: string[];
  internal: boolean;
}

const v4 = (a: IfaceAddress) => a.family === 'IPv4' || a.family === 4;

/**
 * Select interfaces: each `spec` entry is an interface name (`eth0`) or one of its addresses; an empty
 * list means every interface that is not loopback and has an address. Unknown entries are returned
 * in `unknown` (the caller warns).
 */
export function selectInterfaces(
  table: Readonly<Record<string, readonly IfaceAddress[] | undefined>>,
  spec: readonly string[],
): { selected: SelectedInterface[]; unknown: string[] } {
  const all: SelectedInterface[] = Object.entries(table)
    .filter((e): e is [string, readonly IfaceAddress[]] => Array.isArray(e[1]) && e[1].length > 0)
    .map(([name, addrs]) => ({
      name,
      ipv4: addrs.filter(v4).map((a) => a.address),
      ipv6: addrs.filter((a) => !v4(a)).map((a) => a.address),
      internal: addrs.every((a) => a.internal),
    }));
  if (spec.length === 0) return { selected: all.filter((i) => !i.internal), unknown: [] };
  const selected: SelectedInterface[] = [];
  const unknown: string[] = [];
  for (const raw of spec) {
    const s = raw.trim();
    const hit = all.find((i) => i.name === s || [...i.ipv4, ...i.ipv6].some((a) => a.split('%')[0] === s));
    if (!hit) unknown.push(s);
    else if (!selected.includes(hit)) selected.push(hit);
  }
  return { selected, unknown };
}

/** The interface that owns `address` (for a server bound to one address), if any. */
export function interfaceOf(table: Readonly<Record<string, readonly IfaceAddress[] | undefined>>, address: string): SelectedInterface | undefined {
  return selectInterfaces(table, [address]).selected[0];
}

/** Whether `address` is a wildcard (`0.0.0.0`, `::`). */
export function isWildcard(address: string): boolean {
  return address === '0.0.0.0' || address === '::' || address === '::0' || address === '0:0:0:0:0:0:0:0';
}
