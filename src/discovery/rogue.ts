/**
 * Rogue-server classification (docs/spec/idprov-coap-v1.md §7): any `_idprov._udp` instance on the link that is not
 * this server and not listed as trusted is a rogue. {@link RogueTracker} is a pure state machine: mDNS
 * packets and the time (ms) go in, actions come out (query to resolve an instance, raise an alert,
 * note that a rogue left). It does no I/O and reads no clock.
 */
import type mdns from 'multicast-dns';
import { canonicalName, decodeTxt, instanceOf, rdataKey, SERVICE_TYPE, type Answer } from './records.ts';

/** How long to wait for an instance's SRV and TXT before alerting with what is known. */
export const RESOLVE_TIMEOUT_MS = 3000;

/** What this server publishes, as the tracker needs to know it. */
export interface SelfView {
  /** Our current instance label (after any rename), or undefined when we do not advertise. */
  instance?: string | undefined;
  /** Whether a record (name, type, data) is one we sent (our loopback echo). */
  isOurs(record: Answer): boolean;
}

/** How an observed instance is classified. */
export type Classification = 'self' | 'trusted' | 'rogue';

/** A rogue as the alert names it. */
export interface RogueReport {
  /** Instance label, e.g. `evil (2)`. */
  instance: string;
  /** SRV target host, when known. */
  host?: string;
  /** SRV port, when known. */
  port?: number;
  /** TXT pairs, when known. */
  txt?: Record<string, string>;
  /** A/AAAA addresses of the host seen in the same packets. */
  addresses: string[];
  /** Source address of the packet that revealed it. */
  source: string;
  /** True when it uses our own instance name with other data (impersonation). */
  impersonates: boolean;
  /** True when SRV or TXT could not be resolved in time. */
  partial: boolean;
}

/** What the I/O shell should do. */
export type RogueAction =
  /** Ask for the instance's SRV and TXT (it was seen by PTR only). */
  | { kind: 'resolve'; fqdn: string }
  /** Raise the alert and disable provisioning. */
  | { kind: 'alert'; rogue: RogueReport }
  /** A rogue sent a goodbye or its records expired (provisioning stays disabled). */
  | { kind: 'gone'; instance: string; source: string };

/** Trusted-list entries match an instance label or its full name, case-insensitively. */
export function isTrusted(instance: string, trusted: readonly string[]): boolean {
  const label = canonicalName(instance);
  const full = canonicalName(`${instance}.${SERVICE_TYPE}`);
  return trusted.some((t) => {
    const c = canonicalName(t.trim());
    return c === label || c === full;
  });
}

/**
 * Classify an instance: `self` when it has our name and only records we sent, `trusted` when its name
 * is listed, `rogue` otherwise — including an instance that uses our name with other data.
 */
export function classifyInstance(instance: string, records: readonly Answer[], self: SelfView, trusted: readonly string[]): Classification {
  if (self.instance !== undefined && canonicalName(instance) === canonicalName(self.instance)) {
    return records.every((r) => self.isOurs(r)) ? 'self' : 'rogue';
  }
  return isTrusted(instance, trusted) ? 'trusted' : 'rogue';
}

interface Entry {
  instance: string;
  fqdn: string;
  srv?: Answer;
  txt?: Answer;
  addresses: Set<string>;
  source: string;
  expiresAt: number;
  resolveBy?: number;
  alertedKey?: string;
  impersonates: boolean;
}

/** The rogue tracker. */
export class RogueTracker {
  private readonly entries = new Map<string, Entry>();
  private readonly trusted: readonly string[];

  constructor(
    private readonly self: SelfView,
    trusted: readonly string[],
    private readonly resolveTimeoutMs = RESOLVE_TIMEOUT_MS,
  ) {
    this.trusted = trusted;
  }

  /** Instances currently tracked as rogue (alerted or being resolved). */
  get rogues(): string[] {
    return [...this.entries.values()].map((e) => e.instance);
  }

  /** Feed one received mDNS response. `now` in ms. */
  observe(packet: Pick<mdns.Packet, 'answers' | 'additionals'>, source: string, now: number): RogueAction[] {
    const records = [...(packet.answers ?? []), ...(packet.additionals ?? [])];
    const actions: RogueAction[] = [];
    const touched = new Set<string>();
    const hostAddrs = new Map<string, Set<string>>();
    for (const r of records) {
      if ((r.type === 'A' || r.type === 'AAAA') && (r.ttl ?? 0) > 0) {
        const k = canonicalName(r.name);
        if (!hostAddrs.has(k)) hostAddrs.set(k, new Set());
        hostAddrs.get(k)!.add(String(r.data));
      }
    }
    for (const r of records) {
      let fqdn: string | undefined;
      if (r.type === 'PTR' && canonicalName(r.name) === SERVICE_TYPE) fqdn = String(r.data);
      else if ((r.type === 'SRV' || r.type === 'TXT') && instanceOf(r.name) !== undefined) fqdn = r.name;
      if (fqdn === undefined) continue;
      const instance = instanceOf(fqdn);
      if (instance === undefined) continue;
      const key = canonicalName(fqdn);
      const ttl = r.ttl ?? 0;
      if (ttl === 0) {
        // RFC 6762 §10.1 goodbye. A goodbye for the PTR (or SRV) means the instance left.
        if (r.type === 'PTR' || r.type === 'SRV') {
          const e = this.entries.get(key);
          if (e && !this.self.isOurs(r)) {
            this.entries.delete(key);
            if (e.alertedKey !== undefined) actions.push({ kind: 'gone', instance: e.instance, source });
          }
        }
        continue;
      }
      if (classifyInstance(instance, [r], this.self, this.trusted) !== 'rogue') continue;
      let e = this.entries.get(key);
      if (!e) {
        e = { instance, fqdn, addresses: new Set(), source, expiresAt: now + ttl * 1000, impersonates: false };
        this.entries.set(key, e);
      }
      e.expiresAt = Math.max(e.expiresAt, now + ttl * 1000);
      e.source = source;
      if (this.self.instance !== undefined && canonicalName(instance) === canonicalName(this.self.instance)) e.impersonates = true;
      if (r.type === 'SRV') e.srv = r;
      if (r.type === 'TXT') e.txt = r;
      touched.add(key);
    }
    for (const key of touched) {
      const e = this.entries.get(key)!;
      if (e.srv) {
        const target = canonicalName((e.srv.data as mdns.SrvData).target);
        for (const a of hostAddrs.get(target) ?? []) e.addresses.add(a);
      }
      const a = this.maybeAlert(e, now, false);
      if (a) actions.push(a);
      else if ((!e.srv || !e.txt) && e.resolveBy === undefined) {
        e.resolveBy = now + this.resolveTimeoutMs;
        actions.push({ kind: 'resolve', fqdn: e.fqdn });
      }
    }
    return actions;
  }

  /** Advance time: alert with partial data after the resolve timeout; forget expired instances. */
  tick(now: number): RogueAction[] {
    const actions: RogueAction[] = [];
    for (const [key, e] of this.entries) {
      if (e.expiresAt <= now) {
        this.entries.delete(key);
        if (e.alertedKey !== undefined) actions.push({ kind: 'gone', instance: e.instance, source: e.source });
        continue;
      }
      if (e.alertedKey === undefined && e.resolveBy !== undefined && e.resolveBy <= now) {
        const a = this.maybeAlert(e, now, true);
        if (a) actions.push(a);
      }
    }
    return actions;
  }

  /** The earliest time (ms) at which {@link tick} has something to do, or undefined. */
  nextDeadline(): number | undefined {
    let t: number | undefined;
    for (const e of this.entries.values()) {
      const d = e.alertedKey === undefined && e.resolveBy !== undefined ? Math.min(e.resolveBy, e.expiresAt) : e.expiresAt;
      if (t === undefined || d < t) t = d;
    }
    return t;
  }

  /**
   * Alert once per rogue identity (name, host, port, TXT) while it stays on the link: an admin who
   * re-enables provisioning while it is still there is not overruled, but a change in what it
   * publishes, or a return after it left, alerts again.
   */
  private maybeAlert(e: Entry, _now: number, force: boolean): RogueAction | undefined {
    const complete = e.srv !== undefined && e.txt !== undefined;
    if (!complete && !force) return undefined;
    const srv = e.srv?.data as mdns.SrvData | undefined;
    const key = [e.fqdn.toLowerCase(), srv ? `${canonicalName(srv.target)}:${srv.port}` : '?', e.txt ? rdataKey(e.txt) : '?'].join('|');
    if (e.alertedKey === key) return undefined;
    // A partial alert is not repeated when the missing records arrive later.
    if (e.alertedKey !== undefined && e.alertedKey.includes('?')) {
      e.alertedKey = key;
      return undefined;
    }
    e.alertedKey = key;
    const rogue: RogueReport = {
      instance: e.instance,
      addresses: [...e.addresses],
      source: e.source,
      impersonates: e.impersonates,
      partial: !complete,
    };
    if (srv) {
      rogue.host = srv.target;
      rogue.port = srv.port;
    }
    if (e.txt) rogue.txt = decodeTxt(e.txt.data);
    return { kind: 'alert', rogue };
  }
}

/** One line naming the rogue: instance, host, port, TXT and where it was seen. */
export function describeRogue(r: RogueReport): string {
  const where = r.host !== undefined ? `${r.host}:${r.port}` : 'host unknown';
  const txt = r.txt ? Object.entries(r.txt).map(([k, v]) => `${k}=${v}`).join(' ') : 'TXT unknown';
  const addrs = r.addresses.length ? ` [${r.addresses.join(', ')}]` : '';
  return `"${r.instance}" at ${where}${addrs} (${txt}) from ${r.source}${r.impersonates ? ', using this server\'s name' : ''}`;
}
