/**
 * DNS-SD records of docs/spec/idprov-coap-v1.md §7 and the mDNS answering rules (RFC 6762, RFC 6763), as pure
 * functions: a {@link ServiceInfo} in, dns-packet records out; a received query in, an
 * {@link AnswerPlan} (what to send, and to whom) out. No sockets, no clock.
 */
import type mdns from 'multicast-dns';

export type Answer = mdns.Answer;
export type Question = mdns.Question;

/** The DNS-SD service type of docs/spec/idprov-coap-v1.md §7. */
export const SERVICE_TYPE = '_idprov._udp.local';
/** RFC 6763 §9: service type enumeration. */
export const SERVICE_ENUMERATION = '_services._dns-sd._udp.local';
/** RFC 6762 §10: TTL of records that carry a host name (SRV, A, AAAA). */
export const TTL_HOST = 120;
/** RFC 6762 §10: TTL of the other records (PTR, TXT). */
export const TTL_OTHER = 4500;
/** RFC 6762 §6.7: the largest TTL in a reply to a legacy unicast query. */
export const TTL_LEGACY = 10;
/** The mDNS port (RFC 6762 §3). */
export const MDNS_PORT = 5353;
/** The IPv4 mDNS group. */
export const MDNS_GROUP_V4 = '224.0.0.251';
/** Longest DNS label in bytes. */
const MAX_LABEL = 63;

/** What the server publishes. */
export interface ServiceInfo {
  /** Instance label, e.g. `idprov-gateway` or `idprov-gateway (2)` after a rename. */
  instance: string;
  /** Host name the SRV points to, e.g. `gateway.local`. */
  host: string;
  /** The CoAP (UDP) port (SRV). */
  port: number;
  /** TXT key/value pairs in order (see {@link txtPairs}). */
  txt: readonly (readonly [string, string])[];
  /** Addresses for the host's A and AAAA records. */
  ipv4: readonly string[];
  ipv6: readonly string[];
}

/** The TXT inputs of docs/spec/idprov-coap-v1.md §7. */
export interface TxtInput {
  /** Hex kid of the current token key. */
  kid: string;
  /** The CoAP/DTLS port, once a DTLS server listens. */
  coaps?: number | undefined;
  /** base64url SHA-256 of the DTLS certificate's SubjectPublicKeyInfo, once there is one. */
  fp?: string | undefined;
  /** Defaults to `/idprov/request`. */
  path?: string;
}

/** TXT pairs in the order of docs/spec/idprov-coap-v1.md §7: `v`, `path`, `coaps`, `kid`, `fp` (absent ones left out). */
export function txtPairs(t: TxtInput): [string, string][] {
  const out: [string, string][] = [
    ['v', '1'],
    ['path', t.path ?? '/idprov/request'],
  ];
  if (t.coaps !== undefined) out.push(['coaps', String(t.coaps)]);
  out.push(['kid', t.kid]);
  if (t.fp !== undefined && t.fp !== '') out.push(['fp', t.fp]);
  return out;
}

/** RFC 6763 §6: `key=value` strings. */
export function encodeTxt(pairs: readonly (readonly [string, string])[]): string[] {
  return pairs.map(([k, v]) => `${k}=${v}`);
}

/**
 * RFC 6763 §6.4: parse TXT strings into a map. Keys are case-insensitive (lower-cased here); the first
 * occurrence of a key wins; a string without `=` is a boolean attribute (value '').
 */
export function decodeTxt(data: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  const items = Array.isArray(data) ? data : data === undefined || data === null ? [] : [data];
  for (const item of items) {
    const s = Buffer.isBuffer(item) ? item.toString('utf8') : typeof item === 'string' ? item : '';
    if (s === '' || s.startsWith('=')) continue;
    const eq = s.indexOf('=');
    const key = (eq < 0 ? s : s.slice(0, eq)).toLowerCase();
    if (!(key in out)) out[key] = eq < 0 ? '' : s.slice(eq + 1);
  }
  return out;
}

/** Lower-case and strip a trailing dot: DNS names compare case-insensitively. */
export function canonicalName(name: string): string {
  return name.replace(/\.$/, '').toLowerCase();
}

/** `<instance>._idprov._udp.local`. */
export function instanceFqdn(instance: string): string {
  return `${instance}.${SERVICE_TYPE}`;
}

/** The instance label of a service instance name, or undefined when it is not an `_idprov._udp` one. */
export function instanceOf(fqdn: string): string | undefined {
  const suffix = `.${SERVICE_TYPE}`;
  if (!canonicalName(fqdn).endsWith(suffix)) return undefined;
  const label = fqdn.replace(/\.$/, '').slice(0, -suffix.length);
  return label === '' ? undefined : label;
}

/** The default instance name of docs/spec/idprov-coap-v1.md §7: `idprov-<hostname>` (first label of the host name). */
export function defaultInstanceName(hostname: string): string {
  return truncateLabel(`idprov-${hostLabel(hostname)}`);
}

/** A host name usable as `<label>.local`: first label, characters outside [A-Za-z0-9-] replaced. */
export function hostLabel(hostname: string): string {
  const first = hostname.split('.')[0] ?? '';
  const clean = first.replace(/[^A-Za-z0-9-]/g, '-').replace(/^-+|-+$/g, '');
  return truncateLabel(clean || 'idprov');
}

/** Cut a label to 63 bytes of UTF-8 without splitting a character. */
export function truncateLabel(label: string): string {
  let out = '';
  for (const ch of label) {
    if (Buffer.byteLength(out + ch) > MAX_LABEL) break;
    out += ch;
  }
  return out;
}

/** Why an instance name cannot be used, or undefined when it can. */
export function instanceNameProblem(name: string): string | undefined {
  if (name === '') return 'must not be empty';
  if (Buffer.byteLength(name) > MAX_LABEL) return 'must be at most 63 bytes of UTF-8';
  if (name.includes('.')) return 'must not contain "."';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) return 'must not contain control characters';
  return undefined;
}

/**
 * RFC 6762 §9 / RFC 6763 §7: the name to try after a conflict: `idprov-host (2)`, `(3)`, … An
 * existing ` (n)` suffix is replaced, and the base is shortened so that the label stays ≤ 63 bytes.
 */
export function renameInstance(name: string, attempt: number): string {
  const suffix = ` (${attempt})`;
  let base = [...name.replace(/ \(\d+\)$/, '')];
  while (base.length > 1 && Buffer.byteLength(base.join('') + suffix) > MAX_LABEL) base = base.slice(0, -1);
  return base.join('') + suffix;
}

/** The records of one published service. */
export interface RecordSet {
  /** `_idprov._udp.local` PTR → instance (shared). */
  ptr: Answer;
  /** `_services._dns-sd._udp.local` PTR → `_idprov._udp.local` (shared). */
  enumeration: Answer;
  /** Instance SRV → host:port (unique, cache-flush). */
  srv: Answer;
  /** Instance TXT (unique, cache-flush). */
  txt: Answer;
  /** Host A and AAAA records (unique, cache-flush). */
  addresses: Answer[];
}

/** Build the records of docs/spec/idprov-coap-v1.md §7 for `info`. `ttlScale` 0 gives the goodbye records (TTL 0). */
export function buildRecords(info: ServiceInfo, ttlScale: 0 | 1 = 1): RecordSet {
  const fqdn = instanceFqdn(info.instance);
  const host = TTL_HOST * ttlScale;
  const other = TTL_OTHER * ttlScale;
  return {
    ptr: { name: SERVICE_TYPE, type: 'PTR', ttl: other, data: fqdn },
    enumeration: { name: SERVICE_ENUMERATION, type: 'PTR', ttl: other, data: SERVICE_TYPE },
    srv: { name: fqdn, type: 'SRV', ttl: host, flush: true, data: { priority: 0, weight: 0, port: info.port, target: info.host } },
    txt: { name: fqdn, type: 'TXT', ttl: other, flush: true, data: encodeTxt(info.txt) },
    addresses: [
      ...info.ipv4.map((a): Answer => ({ name: info.host, type: 'A', ttl: host, flush: true, data: a })),
      ...info.ipv6.map((a): Answer => ({ name: info.host, type: 'AAAA', ttl: host, flush: true, data: stripScope(a) })),
    ],
  };
}

/** Every record of a set: an announcement (RFC 6762 §8.3) or, built with TTL 0, a goodbye (§10.1). */
export function allRecords(r: RecordSet): Answer[] {
  return [r.ptr, r.srv, r.txt, ...r.addresses, r.enumeration];
}

function stripScope(addr: string): string {
  const i = addr.indexOf('%');
  return i < 0 ? addr : addr.slice(0, i);
}

/**
 * dns-packet 5.6 decodes a question's class to a string before testing the QU bit, so `IN` with the
 * unicast-response bit arrives as `UNKNOWN_32769`. Returns the class number and the QU bit.
 */
export function questionClass(cls: string | number | undefined): { klass: number; qu: boolean } {
  if (cls === undefined || cls === 'IN') return { klass: 1, qu: false };
  if (typeof cls === 'number') return { klass: cls & 0x7fff, qu: (cls & 0x8000) !== 0 };
  if (cls === 'ANY') return { klass: 255, qu: false };
  const m = /^UNKNOWN_(\d+)$/.exec(cls);
  if (m) {
    const n = Number(m[1]);
    return { klass: n & 0x7fff, qu: (n & 0x8000) !== 0 };
  }
  const named: Record<string, number> = { CS: 2, CH: 3, HS: 4 };
  return { klass: named[cls] ?? 0, qu: false };
}

/** A canonical text form of a record's data, for comparisons. */
export function rdataKey(a: Pick<Answer, 'type' | 'data'>): string {
  switch (a.type) {
    case 'SRV': {
      const d = a.data as mdns.SrvData;
      return `${d.priority ?? 0} ${d.weight ?? 0} ${d.port} ${canonicalName(d.target)}`;
    }
    case 'TXT':
      return (Array.isArray(a.data) ? a.data : [a.data]).map((x) => (Buffer.isBuffer(x) ? x.toString('utf8') : String(x))).join('\u0000');
    case 'PTR':
      return canonicalName(String(a.data));
    default:
      return String(a.data).toLowerCase();
  }
}

/** Same owner name, type and data (TTL and cache-flush bit ignored). */
export function sameRecord(a: Answer, b: Answer): boolean {
  return canonicalName(a.name) === canonicalName(b.name) && a.type === b.type && rdataKey(a) === rdataKey(b);
}

/** Where and how to send an answer. */
export type AnswerRoute =
  /** Multicast to the group (RFC 6762 §6). */
  | { kind: 'multicast' }
  /** RFC 6762 §5.4: a QU question is answered by unicast to the querier. */
  | { kind: 'unicast'; address: string; port: number }
  /** RFC 6762 §6.7: a query from a port other than 5353 is a legacy query: unicast, ID echoed, questions repeated, TTL ≤ 10, no cache-flush bits. */
  | { kind: 'legacy'; address: string; port: number; id: number; questions: Question[] };

/** What to send in reply to one query. */
export interface AnswerPlan {
  route: AnswerRoute;
  answers: Answer[];
  additionals: Answer[];
}

/** The query as received, with where it came from. */
export interface ReceivedQuery {
  id?: number | undefined;
  questions: readonly Question[];
  /** Known answers (RFC 6762 §7.1). */
  answers: readonly Answer[];
  source: { address: string; port: number };
}

const matches = (q: Question, name: string, type: string): boolean =>
  canonicalName(q.name) === canonicalName(name) && (q.type === type || q.type === 'ANY');

/**
 * Answer a query from our records (RFC 6762 §6, RFC 6763 §12): PTR for `_idprov._udp.local` (SRV, TXT,
 * A and AAAA as additionals), SRV/TXT for our instance, A/AAAA for our host, and the service type
 * enumeration. Known answers whose TTL is at least half of ours are suppressed (RFC 6762 §7.1).
 * Returns undefined when there is nothing to say.
 */
export function planAnswers(q: ReceivedQuery, r: RecordSet): AnswerPlan | undefined {
  const answers: Answer[] = [];
  const additionals: Answer[] = [];
  let qu = false;
  const answered: Question[] = [];
  const v4 = r.addresses.filter((a) => a.type === 'A');
  const v6 = r.addresses.filter((a) => a.type === 'AAAA');
  const host = (r.srv.data as mdns.SrvData).target;
  for (const question of q.questions) {
    const { klass, qu: unicast } = questionClass(question.class);
    if (klass !== 1 && klass !== 255) continue;
    const before = answers.length;
    if (matches(question, SERVICE_TYPE, 'PTR')) {
      answers.push(r.ptr);
      additionals.push(r.srv, r.txt, ...r.addresses);
    }
    if (matches(question, SERVICE_ENUMERATION, 'PTR')) answers.push(r.enumeration);
    if (matches(question, r.srv.name, 'SRV')) {
      answers.push(r.srv);
      additionals.push(...r.addresses);
    }
    if (matches(question, r.txt.name, 'TXT')) answers.push(r.txt);
    if (matches(question, host, 'A')) answers.push(...v4);
    if (matches(question, host, 'AAAA')) answers.push(...v6);
    if (answers.length > before) {
      answered.push(question);
      if (unicast) qu = true;
    }
  }
  // §7.1 known-answer suppression.
  const known = (a: Answer) => q.answers.some((k) => sameRecord(k, a) && (k.ttl ?? 0) >= (a.ttl ?? 0) / 2);
  const finalAnswers = dedupe(answers).filter((a) => !known(a));
  if (finalAnswers.length === 0) return undefined;
  const finalAdditionals = dedupe(additionals).filter((a) => !finalAnswers.some((b) => sameRecord(a, b)));
  if (q.source.port !== MDNS_PORT) {
    const legacy = (a: Answer): Answer => ({ ...a, ttl: Math.min(a.ttl ?? TTL_LEGACY, TTL_LEGACY), flush: false });
    return {
      route: { kind: 'legacy', address: q.source.address, port: q.source.port, id: q.id ?? 0, questions: answered.map((x) => ({ name: x.name, type: x.type, class: 'IN' })) },
      answers: finalAnswers.map(legacy),
      additionals: finalAdditionals.map(legacy),
    };
  }
  return {
    route: qu ? { kind: 'unicast', address: q.source.address, port: q.source.port } : { kind: 'multicast' },
    answers: finalAnswers,
    additionals: finalAdditionals,
  };
}

function dedupe(list: Answer[]): Answer[] {
  const out: Answer[] = [];
  for (const a of list) if (!out.some((b) => b === a || sameRecord(a, b))) out.push(a);
  return out;
}
