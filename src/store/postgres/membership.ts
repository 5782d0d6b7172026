/**
 * Membership of instances sharing one PostgreSQL database (issue 16): each instance refreshes its row
 * in `instances` every {@link HEARTBEAT_S} seconds and reads who else is live (seen within
 * {@link LIVE_S}). The live siblings' mDNS names join the configured `trustedServers` in
 * {@link Membership.trusted}, the list the rogue monitor reads at every classification: an instance
 * started next to the others is trusted as soon as it has sent a heartbeat, without a static list,
 * and one that stopped (or died) is no longer trusted after {@link LIVE_S}.
 */
import type { Logger } from '../../log.ts';
import type { InstanceRecord, PostgresStore } from './store.ts';

/** Seconds between heartbeats. */
export const HEARTBEAT_S = 5;
/** An instance seen within this many seconds is live (three missed heartbeats and it is not). */
export const LIVE_S = 3 * HEARTBEAT_S;

export class Membership {
  /** `trustedServers` plus the live siblings' names; updated in place (the monitor holds it). */
  readonly trusted: string[];
  private live: InstanceRecord[] = [];
  private timer: NodeJS.Timeout | undefined;
  private beating: Promise<void> | undefined;
  /** False while the last heartbeat failed (the database unreachable): {@link trusted} may be stale. */
  healthy = false;

  constructor(
    private readonly store: PostgresStore,
    private readonly self: () => Omit<InstanceRecord, 'seenAt'>,
    private readonly configured: readonly string[],
    private readonly nowS: () => number,
    private readonly log?: Logger,
  ) {
    this.trusted = [...configured];
  }

  /** The instances live at the last heartbeat (this one included). */
  get instances(): readonly InstanceRecord[] {
    return this.live;
  }

  /** First heartbeat now, then every {@link HEARTBEAT_S}. */
  async start(): Promise<void> {
    await this.beat();
    this.timer = setInterval(() => void this.beat(), HEARTBEAT_S * 1000);
    this.timer.unref();
  }

  /** One heartbeat: refresh our row, re-read the live ones, update {@link trusted}. Never throws. */
  beat(): Promise<void> {
    this.beating ??= (async () => {
      try {
        const me = this.self();
        const now = this.nowS();
        await this.store.heartbeat({ ...me, seenAt: now });
        this.live = await this.store.listInstances(now - LIVE_S);
        const names = this.live.filter((i) => i.id !== me.id && i.name !== '').map((i) => i.name);
        this.trusted.splice(0, this.trusted.length, ...new Set([...this.configured, ...names]));
        this.healthy = true;
      } catch (e) {
        this.healthy = false;
        this.log?.warn({ err: (e as Error).message }, 'membership heartbeat failed');
      } finally {
        this.beating = undefined;
      }
    })();
    return this.beating;
  }

  /** Stop the heartbeat and remove our row. */
  async stop(id: string): Promise<void> {
    clearInterval(this.timer);
    await this.beating;
    await this.store.leave(id).catch(() => undefined);
  }
}
