/**
 * The rogue monitor (docs/spec/idprov-coap-v1.md §7): browses `_idprov._udp.local` continuously — a PTR query at
 * start, then at doubling intervals up to `maxQueryIntervalMs` (RFC 6762 §5.2) — and listens to every
 * mDNS response on the link, so an announcement is noticed the moment it is sent. The decisions are
 * {@link RogueTracker}'s; this class only moves packets, timers and callbacks.
 */
import type { Logger } from '../log.ts';
import { realSleep, type Sleep } from './advertiser.ts';
import type { MdnsEndpoint } from './mdns.ts';
import { SERVICE_TYPE } from './records.ts';
import { RogueTracker, describeRogue, type RogueReport, type SelfView } from './rogue.ts';

/** Options of {@link RogueMonitor}. */
export interface MonitorOptions {
  endpoint: MdnsEndpoint;
  self: SelfView;
  /** Instance names (labels or full names) that are not rogue. */
  trusted: readonly string[];
  /** Called once per rogue identity; errors are logged. */
  onRogue: (r: RogueReport) => Promise<void> | void;
  log: Logger;
  /** Milliseconds. */
  now: () => number;
  sleep?: Sleep;
  /** First re-query interval (RFC 6762 §5.2: at least 1 s). */
  minQueryIntervalMs?: number;
  /** Longest interval between browse queries. */
  maxQueryIntervalMs?: number;
}

export class RogueMonitor {
  private readonly tracker: RogueTracker;
  private readonly abort = new AbortController();
  private readonly sleep: Sleep;
  private unsubscribe: (() => void) | undefined;
  private tickTimer: NodeJS.Timeout | undefined;
  private loop: Promise<void> | undefined;
  private readonly inFlight = new Set<Promise<void>>();

  constructor(private readonly o: MonitorOptions) {
    this.tracker = new RogueTracker(o.self, o.trusted);
    this.sleep = o.sleep ?? realSleep;
  }

  /** Instances currently tracked as rogue. */
  get rogues(): string[] {
    return this.tracker.rogues;
  }

  /** Start listening and browsing. */
  start(): void {
    if (this.unsubscribe) return;
    this.unsubscribe = this.o.endpoint.onResponse((p, from) => this.handle(this.tracker.observe(p, from.address, this.o.now())));
    this.loop = this.browse();
  }

  /** Wait for alert callbacks in progress (tests, shutdown). */
  async settled(): Promise<void> {
    while (this.inFlight.size) await Promise.all([...this.inFlight]);
  }

  async close(): Promise<void> {
    this.abort.abort();
    this.unsubscribe?.();
    if (this.tickTimer) clearTimeout(this.tickTimer);
    await this.loop;
    await this.settled();
  }

  private async browse(): Promise<void> {
    const min = this.o.minQueryIntervalMs ?? 1000;
    const max = this.o.maxQueryIntervalMs ?? 60_000;
    let interval = min;
    while (!this.abort.signal.aborted) {
      await this.o.endpoint.multicast({ type: 'query', questions: [{ name: SERVICE_TYPE, type: 'PTR' }] });
      await this.sleep(interval, this.abort.signal);
      interval = Math.min(interval * 2, max);
    }
  }

  private handle(actions: ReturnType<RogueTracker['observe']>): void {
    for (const a of actions) {
      if (a.kind === 'resolve') {
        void this.o.endpoint.multicast({
          type: 'query',
          questions: [
            { name: a.fqdn, type: 'SRV' },
            { name: a.fqdn, type: 'TXT' },
          ],
        });
      } else if (a.kind === 'gone') {
        this.o.log.warn({ evt: 'alert', kind: 'rogue-gone', instance: a.instance, src: a.source }, `rogue provisioning server "${a.instance}" left; provisioning stays disabled until an admin enables it`);
      } else {
        this.o.log.debug({ rogue: describeRogue(a.rogue) }, 'mdns: rogue observed');
        const p = Promise.resolve()
          .then(() => this.o.onRogue(a.rogue))
          .catch((err: unknown) => this.o.log.error({ err: (err as Error).message }, 'rogue alert handling failed'))
          .finally(() => this.inFlight.delete(p));
        this.inFlight.add(p);
      }
    }
    this.schedule();
  }

  private schedule(): void {
    if (this.abort.signal.aborted) return;
    if (this.tickTimer) clearTimeout(this.tickTimer);
    const due = this.tracker.nextDeadline();
    if (due === undefined) return;
    this.tickTimer = setTimeout(() => this.handle(this.tracker.tick(this.o.now())), Math.max(0, due - this.o.now()) + 5);
    this.tickTimer.unref();
  }
}
