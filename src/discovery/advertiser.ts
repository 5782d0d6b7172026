/**
 * The mDNS/DNS-SD advertiser of docs/spec/idprov-coap-v1.md §7: probes the instance name (RFC 6762 §8.1, renaming to
 * `name (2)`, `(3)`, … on conflict, §8.2 tiebreaking), announces (§8.3: twice, one second apart),
 * answers queries (§6, QU bit §5.4, legacy unicast §6.7, known answers §7.1), re-announces when the
 * TXT changes (§8.4: key rotation), defends its name and re-probes after a conflict (§9), and sends
 * goodbyes with TTL 0 on close (§10.1). The record building and conflict rules are the pure functions
 * of records.ts and probe.ts; this class only sequences them over an {@link MdnsEndpoint}.
 */
import type mdns from 'multicast-dns';
import type { Logger } from '../log.ts';
import type { MdnsEndpoint, Source } from './mdns.ts';
import {
  PROBE_COUNT,
  PROBE_INTERVAL_MS,
  PublishedHistory,
  TIEBREAK_WAIT_MS,
  competingProbe,
  probeDelay,
  probeQuery,
  probeTiebreak,
  responseConflicts,
} from './probe.ts';
import {
  allRecords,
  buildRecords,
  instanceFqdn,
  planAnswers,
  renameInstance,
  sameRecord,
  txtPairs,
  type Answer,
  type RecordSet,
  type ServiceInfo,
  type TxtInput,
} from './records.ts';

/** A cancellable wait (ms). Tests inject one that does not wait. */
export type Sleep = (ms: number, signal: AbortSignal) => Promise<void>;

/** Real timers; resolves early (without error) when aborted. */
export const realSleep: Sleep = (ms, signal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

/** Options of {@link MdnsAdvertiser}. */
export interface AdvertiserOptions {
  endpoint: MdnsEndpoint;
  /** The wanted instance label (docs/spec/idprov-coap-v1.md §7 default `idprov-<hostname>`). */
  instance: string;
  /** SRV target, e.g. `gateway.local`. */
  host: string;
  /** CoAP port for the SRV record. */
  port: number;
  txt: TxtInput;
  ipv4: readonly string[];
  ipv6: readonly string[];
  log: Logger;
  /** Milliseconds, for the probe rate limit. */
  now: () => number;
  sleep?: Sleep;
  /** Called after every successful claim of a name (first start and each rename). */
  onAnnounced?: (instance: string) => void;
}

export type AdvertiserState = 'idle' | 'probing' | 'announced' | 'closed';

export class MdnsAdvertiser {
  private info: ServiceInfo;
  private records: RecordSet;
  private readonly history = new PublishedHistory();
  private readonly abort = new AbortController();
  private readonly sleep: Sleep;
  private readonly conflictTimes: number[] = [];
  private attempt = 1;
  private flags = { conflict: false, lost: false };
  private stateValue: AdvertiserState = 'idle';
  private readonly unsubscribe: (() => void)[] = [];
  private running: Promise<void> | undefined;
  private announcing: Promise<void> = Promise.resolve();

  constructor(private readonly o: AdvertiserOptions) {
    this.sleep = o.sleep ?? realSleep;
    this.info = { instance: o.instance, host: o.host, port: o.port, txt: txtPairs(o.txt), ipv4: [...o.ipv4], ipv6: [...o.ipv6] };
    this.records = buildRecords(this.info);
  }

  /** `probing` until the name is claimed, then `announced`; `closed` after {@link close}. */
  get state(): AdvertiserState {
    return this.stateValue;
  }

  /** The instance label in use (or being probed). */
  get instanceName(): string {
    return this.info.instance;
  }

  /** The records currently published. */
  get published(): RecordSet {
    return this.records;
  }

  /** Whether a record is one this advertiser publishes or has published (its loopback echo). */
  isOurs(record: Answer): boolean {
    return allRecords(this.records).some((r) => sameRecord(r, record)) || this.history.has(record);
  }

  /** Start probing; resolves once the name is claimed and the first announcement is sent. */
  start(): Promise<void> {
    if (this.running) return this.running;
    this.unsubscribe.push(
      this.o.endpoint.onQuery((p, from) => this.onQuery(p, from)),
      this.o.endpoint.onResponse((p) => this.onResponse(p)),
    );
    this.running = this.claim();
    return this.running;
  }

  /** Resolves when the announcements in progress (the repeat one second later) have been sent. */
  announced(): Promise<void> {
    return this.announcing.catch(() => undefined);
  }

  /** Change TXT fields (e.g. `kid` after a key rotation) and announce them (RFC 6762 §8.4). */
  async setTxt(t: Partial<TxtInput>): Promise<void> {
    const next = { ...this.o.txt, ...t };
    const pairs = txtPairs(next);
    if (JSON.stringify(pairs) === JSON.stringify(this.info.txt)) return;
    this.o.txt = next;
    this.info = { ...this.info, txt: pairs };
    this.records = buildRecords(this.info);
    this.o.log.info({ evt: 'mdns', instance: this.info.instance, txt: Object.fromEntries(pairs) }, 'mdns: TXT updated');
    if (this.stateValue === 'announced') await this.announce();
  }

  /** Send goodbyes (TTL 0) for everything announced and stop answering. */
  async close(): Promise<void> {
    if (this.stateValue === 'closed') return;
    const wasAnnounced = this.stateValue === 'announced';
    this.stateValue = 'closed';
    this.abort.abort();
    for (const u of this.unsubscribe.splice(0)) u();
    await this.running?.catch(() => undefined);
    await this.announcing.catch(() => undefined);
    if (wasAnnounced) {
      await this.o.endpoint.multicast({ type: 'response', answers: allRecords(buildRecords(this.info, 0)) });
      this.o.log.info({ evt: 'mdns', instance: this.info.instance }, 'mdns: goodbye sent');
    }
  }

  private get fqdn(): string {
    return instanceFqdn(this.info.instance);
  }

  private setName(name: string): void {
    this.info = { ...this.info, instance: name };
    this.records = buildRecords(this.info);
  }

  /** RFC 6762 §8.1: probe until a name is ours, then announce. */
  private async claim(): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      this.stateValue = 'probing';
      this.flags = { conflict: false, lost: false };
      const wait = probeDelay(this.conflictTimes, this.o.now());
      if (wait > 0) await this.sleep(wait, signal);
      for (let i = 0; i < PROBE_COUNT && !signal.aborted; i++) {
        await this.o.endpoint.multicast(probeQuery(this.fqdn, [this.records.srv, this.records.txt]));
        await this.sleep(PROBE_INTERVAL_MS, signal);
        if (this.flags.conflict || this.flags.lost) break;
      }
      if (signal.aborted) return;
      if (this.flags.conflict) {
        this.conflictTimes.push(this.o.now());
        const taken = this.info.instance;
        this.attempt++;
        this.setName(renameInstance(this.o.instance, this.attempt));
        this.o.log.warn({ evt: 'mdns', taken, instance: this.info.instance }, `mdns: instance name "${taken}" is taken on the link; trying "${this.info.instance}"`);
        continue;
      }
      if (this.flags.lost) {
        // §8.2: the loser of a simultaneous probe waits one second and probes again.
        await this.sleep(TIEBREAK_WAIT_MS, signal);
        continue;
      }
      this.stateValue = 'announced';
      this.o.log.info({ evt: 'mdns', instance: this.info.instance, host: this.info.host, port: this.info.port, txt: Object.fromEntries(this.info.txt) }, 'mdns: announced');
      this.o.onAnnounced?.(this.info.instance);
      await this.announce();
      return;
    }
  }

  /** RFC 6762 §8.3: send every record now, and again one second later. */
  private announce(): Promise<void> {
    const send = async () => {
      const answers = allRecords(this.records);
      this.history.add(answers);
      await this.o.endpoint.multicast({ type: 'response', answers });
    };
    const first = send();
    this.announcing = first.then(async () => {
      await this.sleep(1000, this.abort.signal);
      if (this.stateValue === 'announced') await send();
    });
    return first;
  }

  private onQuery(p: mdns.DecodedPacket, from: Source): void {
    if (this.stateValue === 'probing') {
      const theirs = competingProbe(p, this.fqdn);
      if (theirs && probeTiebreak([this.records.srv, this.records.txt], theirs) === 'lose') this.flags.lost = true;
      return;
    }
    if (this.stateValue !== 'announced') return;
    const plan = planAnswers({ id: p.id, questions: p.questions, answers: p.answers, source: from }, this.records);
    if (!plan) return;
    const packet: mdns.Packet = { type: 'response', answers: plan.answers, additionals: plan.additionals };
    this.history.add(plan.answers);
    if (plan.route.kind === 'multicast') void this.o.endpoint.multicast(packet);
    else if (plan.route.kind === 'unicast') void this.o.endpoint.unicast(packet, plan.route);
    else void this.o.endpoint.unicast({ ...packet, id: plan.route.id, questions: plan.route.questions }, plan.route);
  }

  private onResponse(p: mdns.DecodedPacket): void {
    if (this.stateValue === 'probing') {
      if (responseConflicts(p, this.fqdn, [this.records.srv, this.records.txt])) this.flags.conflict = true;
      return;
    }
    if (this.stateValue !== 'announced') return;
    if (responseConflicts(p, this.fqdn, [this.records.srv, this.records.txt], this.history)) {
      // §9: a conflict after the name was claimed: probe again (and rename if it is defended).
      this.o.log.warn({ evt: 'mdns', instance: this.info.instance }, 'mdns: another host answers for this instance name; probing again');
      this.stateValue = 'probing';
      const previous = this.running ?? Promise.resolve();
      this.running = previous.then(() => this.claim());
    }
  }
}
