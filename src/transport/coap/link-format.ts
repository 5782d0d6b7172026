/**
 * CoRE Link Format (RFC 6690) for `/.well-known/core`: serialising resource links and applying the
 * query filters of RFC 6690 §4.1.
 */

/** The link attributes a resource advertises. */
export interface LinkDescription {
  path: string;
  rt?: string | undefined;
  ct?: number | undefined;
  title?: string | undefined;
}

/** RFC 6690 §2 quoted-string: backslash-escape `"` and `\`. */
function quote(s: string): string {
  return '"' + s.replace(/["\\]/g, (c) => '\\' + c) + '"';
}

/** One link-value, e.g. `</idprov/keys>;rt="idprov.keys";ct=102` (RFC 6690 §2). */
export function linkValue(d: LinkDescription): string {
  let s = '<' + d.path + '>';
  if (d.rt !== undefined) s += ';rt=' + quote(d.rt);
  if (d.ct !== undefined) s += ';ct=' + d.ct;
  if (d.title !== undefined) s += ';title=' + quote(d.title);
  return s;
}

/** A parsed `name=value` query filter (RFC 6690 §4.1); `prefix` when the value ended with `*`. */
export interface LinkFilter {
  name: string;
  value: string;
  prefix: boolean;
}

/** Parse Uri-Query options into filters; parameters without `=` filter on the attribute's presence. */
export function parseFilters(query: readonly string[]): LinkFilter[] {
  const out: LinkFilter[] = [];
  for (const q of query) {
    const eq = q.indexOf('=');
    const name = eq < 0 ? q : q.slice(0, eq);
    let value = eq < 0 ? '*' : q.slice(eq + 1);
    const prefix = value.endsWith('*');
    if (prefix) value = value.slice(0, -1);
    out.push({ name, value, prefix });
  }
  return out;
}

function matchValue(candidate: string, f: LinkFilter): boolean {
  return f.prefix ? candidate.startsWith(f.value) : candidate === f.value;
}

/**
 * Whether a link passes every filter (RFC 6690 §4.1). `href` matches the path, `rt` matches any of
 * its space-separated values (RFC 6690 §3.1), `ct` and `title` match their textual value; a filter on
 * an attribute the link lacks does not match.
 */
export function matches(d: LinkDescription, filters: readonly LinkFilter[]): boolean {
  for (const f of filters) {
    let ok = false;
    switch (f.name) {
      case 'href':
        ok = matchValue(d.path, f);
        break;
      case 'rt':
        if (d.rt !== undefined) for (const v of d.rt.split(' ')) if (v !== '' && matchValue(v, f)) ok = true;
        break;
      case 'ct':
        ok = d.ct !== undefined && matchValue(String(d.ct), f);
        break;
      case 'title':
        ok = d.title !== undefined && matchValue(d.title, f);
        break;
      default:
        ok = false;
    }
    if (!ok) return false;
  }
  return true;
}

/** The link-format document for `links` after `filters` (comma-separated, RFC 6690 §2). */
export function linkFormat(links: readonly LinkDescription[], filters: readonly LinkFilter[]): string {
  let s = '';
  for (const d of links) {
    if (filters.length > 0 && !matches(d, filters)) continue;
    if (s !== '') s += ',';
    s += linkValue(d);
  }
  return s;
}
