/**
 * The /56 and /48 around an IPv6 source, for fair shares that an attacker with a whole /48 (a free
 * tunnel broker hands one out) cannot take over one /64 at a time (issue 11 review finding 4).
 *
 * LEAD: after the fix-svc merge the unified address module may carry these on `Source` itself;
 * then point the callers (handshake-slots.ts) at its fields and delete this file.
 */
import type { Source } from './source.ts';

/** The /56 and /48 of a source, as strings with the zone of a link-local one. */
export interface WiderPrefixes {
  p56: string;
  p48: string;
}

/** The /56 and /48 of an IPv6 source (from its /64 `prefix`); undefined for IPv4 and malformed ones. */
export function widerPrefixesOf(s: Pick<Source, 'prefix'>): WiderPrefixes | undefined {
  const p = s.prefix;
  if (p === undefined) return undefined;
  const at = p.indexOf('::/64');
  if (at < 0) return undefined;
  const zone = p.slice(at + 5);
  const g = p.slice(0, at).split(':');
  if (g.length !== 4) return undefined;
  const fourth = Number.parseInt(g[3]!, 16);
  if (!Number.isInteger(fourth) || fourth < 0 || fourth > 0xffff) return undefined;
  const head = g.slice(0, 3).join(':');
  return { p48: `${head}::/48${zone}`, p56: `${head}:${(fourth & 0xff00).toString(16)}::/56${zone}` };
}
