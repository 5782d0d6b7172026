/**
 * Slots of the event feed's watchers (long polls and event streams; security review F13). Each open
 * watcher holds a connection, a subscription and a timer, so their number is capped — and shared so
 * that no one token can starve the others: one bearer token holds at most `perToken` slots, and the
 * `hub` role as a whole at most `max - adminReserve`, so hub tokens (which integrations spread around)
 * can never take the slots the admin's page and `oob watch` need.
 */
import type { Principal } from './auth.ts';

export interface WatcherLimits {
  /** Watchers at most. */
  max: number;
  /** Watchers one token may hold at most. */
  perToken: number;
  /** Slots only admin tokens may use (default a quarter of `max`, at least 1). */
  adminReserve?: number;
}

/** Why a watcher was refused (for the 429 message). */
export type WatcherRefusal = 'total' | 'role' | 'token';

export class WatcherSlots {
  private total = 0;
  private hub = 0;
  private readonly byToken = new Map<string, number>();
  private readonly reserve: number;

  constructor(private readonly limits: WatcherLimits) {
    this.reserve = Math.min(limits.max - 1, limits.adminReserve ?? Math.max(1, Math.ceil(limits.max / 4)));
  }

  /** Slots in use (total, by hub tokens). */
  get inUse(): { total: number; hub: number } {
    return { total: this.total, hub: this.hub };
  }

  /**
   * Take a slot for `p`: a release function (idempotent), or why there is none. The token is told
   * apart by its `jti` (every minted token has one), else by its name and role.
   */
  acquire(p: Principal): (() => void) | WatcherRefusal {
    const key = `${p.role}:${p.jti || `name:${p.name}`}`;
    const mine = this.byToken.get(key) ?? 0;
    if (this.total >= this.limits.max) return 'total';
    if (p.role === 'hub' && this.hub >= this.limits.max - this.reserve) return 'role';
    if (mine >= this.limits.perToken) return 'token';
    this.total++;
    if (p.role === 'hub') this.hub++;
    this.byToken.set(key, mine + 1);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.total--;
      if (p.role === 'hub') this.hub--;
      const n = (this.byToken.get(key) ?? 1) - 1;
      if (n > 0) this.byToken.set(key, n);
      else this.byToken.delete(key);
    };
  }
}

/** The 429 message of a refusal. */
export function refusalMessage(r: WatcherRefusal, l: WatcherLimits): string {
  if (r === 'token') return `this token already holds ${l.perToken} event watchers (long polls and streams); close one first`;
  if (r === 'role') return 'the event watcher slots of hub tokens are all in use (the rest are kept for admin tokens)';
  return `all ${l.max} event watcher slots are in use`;
}
