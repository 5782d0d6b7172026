/**
 * The reliability layer of the CoAP engine (RFC 7252 §4): message types and IDs of responses
 * (piggybacked ACK, separate CON, NON; §5.2), deduplication (§4.5, `dedup.ts`), the handlers in
 * flight with the one sweep timer that sends Empty ACKs for slow ones (§5.2.2) and abandons those
 * past their time-out, and the retransmission of separate CON responses with exponential back-off
 * until ACK or RST (§4.2, §4.8). Every table is bounded; only separate CON responses, themselves
 * capped, carry a timer of their own.
 */
import type { CoapStats } from './api.ts';
import { TYPE_ACK, TYPE_CON, TYPE_NON, emptyMessage } from './codec.ts';
import { DedupCache, type DedupEntry, type DedupLimits } from './dedup.ts';
import { type Endpoint, type Exchange, exchangeKey } from './exchange.ts';
import type { CoapTimings } from './timings.ts';

/** A separate CON response awaiting its ACK. */
interface PendingCon {
  key: string;
  ep: Endpoint;
  peer: Exchange['peer'];
  data: Buffer;
  timeoutMs: number;
  attempts: number;
  timer: NodeJS.Timeout | undefined;
}

/** The settings of a {@link Reliability} layer (validated by the engine's options). */
export interface ReliabilitySettings {
  timings: CoapTimings;
  dedup: DedupLimits;
  /** How long a CON / a NON exchange is remembered. */
  conLifetimeMs: number;
  nonLifetimeMs: number;
  /** Empty ACK for a CON whose handler has not answered after this long. */
  separateResponseAfterMs: number;
  handlerTimeoutMs: number;
  maxPendingConfirmable: number;
}

/** What the reliability layer calls back into the server for. */
export interface ReliabilityHooks {
  now(): number;
  random(): number;
  /** A handler ran past `handlerTimeoutMs` (the exchange is already finished): answer it. */
  handlerTimedOut(ex: Exchange, now: number): void;
  logError(obj: Record<string, unknown>, msg: string): void;
}

export class Reliability {
  private readonly dedup: DedupCache;
  /** Exchanges whose handler answers with a promise, oldest first. */
  private readonly inflight = new Map<string, Exchange>();
  /** In-flight unicast CON exchanges that have not had an Empty ACK yet, oldest first. */
  private readonly ackQueue = new Set<Exchange>();
  private readonly pending = new Map<string, PendingCon>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweepDue = Infinity;
  private nextMid: number;
  private closed = false;
  private readonly conLifetime: number;
  private readonly nonLifetime: number;
  private readonly sepMs: number;
  private readonly handlerTimeoutMs: number;
  private readonly maxPending: number;
  private readonly timings: CoapTimings;

  constructor(
    s: ReliabilitySettings,
    private readonly stats: CoapStats,
    private readonly hooks: ReliabilityHooks,
  ) {
    this.dedup = new DedupCache(s.dedup);
    this.timings = s.timings;
    this.conLifetime = s.conLifetimeMs;
    this.nonLifetime = s.nonLifetimeMs;
    this.sepMs = s.separateResponseAfterMs;
    this.handlerTimeoutMs = s.handlerTimeoutMs;
    this.maxPending = s.maxPendingConfirmable;
    this.nextMid = Math.floor(hooks.random() * 0x10000) & 0xffff;
  }

  get dedupEntries(): number {
    return this.dedup.size;
  }

  get dedupPeers(): number {
    return this.dedup.peerCount;
  }

  /** Handlers running (answering with a promise). */
  get inFlight(): number {
    return this.inflight.size;
  }

  get pendingConfirmable(): number {
    return this.pending.size;
  }

  // -------------------------------------------------------------------------------------------
  // §4.5 deduplication

  /** The exchange of message `mid` of `peerId` whose handler still runs, if any. */
  running(peerId: string, mid: number): Exchange | undefined {
    // No key built while no handler runs (the common case: handlers that answer at once).
    return this.inflight.size === 0 ? undefined : this.inflight.get(exchangeKey(peerId, mid));
  }

  /** What answered message `mid` of `peerId` before, within its lifetime. */
  answered(peerId: string, mid: number, now: number): DedupEntry | undefined {
    return this.dedup.get(peerId, mid, now);
  }

  /** Remember that `ex` was answered with `data` as message `type` (a CON's duplicates get the Empty ACK). */
  rememberAnswer(ex: Exchange, type: number, data: Buffer, now: number): void {
    const replay = type === TYPE_CON ? emptyMessage(TYPE_ACK, ex.messageId) : data;
    this.dedup.set(ex.peerId, ex.messageId, replay, now + this.lifetimeOf(ex), now);
  }

  /** Remember that `ex` gets no answer: its duplicates are ignored too. */
  rememberSilence(ex: Exchange, now: number): void {
    this.dedup.set(ex.peerId, ex.messageId, null, now + this.lifetimeOf(ex), now);
  }

  /** Remember a rejected NON (or a group CON) for NON_LIFETIME: its duplicates are ignored. */
  rememberRejectedNon(ex: Exchange, now: number): void {
    this.dedup.set(ex.peerId, ex.messageId, null, now + this.nonLifetime, now);
  }

  private lifetimeOf(ex: Exchange): number {
    return ex.type === TYPE_CON ? this.conLifetime : this.nonLifetime;
  }

  // -------------------------------------------------------------------------------------------
  // §5.2 response message layer

  /** The type of the response to `ex`: piggybacked ACK, separate CON, or NON. */
  responseType(ex: Exchange): number {
    if (ex.con && !ex.separate) return TYPE_ACK;
    return ex.con ? TYPE_CON : TYPE_NON;
  }

  /** The Message ID of a response of `type` to `ex`: the request's for an ACK, else a fresh one. */
  responseMid(ex: Exchange, type: number): number {
    if (type === TYPE_ACK) return ex.messageId;
    const mid = this.nextMid;
    this.nextMid = (mid + 1) & 0xffff;
    return mid;
  }

  // -------------------------------------------------------------------------------------------
  // Handlers in flight

  /** A handler answers with a promise: track it for the Empty ACK and the time-out. */
  begin(ex: Exchange, now: number): void {
    ex.started = now;
    ex.tracked = true;
    this.inflight.set(ex.key, ex);
    if (ex.con) this.ackQueue.add(ex);
    this.armSweep(now, now + (ex.con && this.sepMs < this.handlerTimeoutMs ? this.sepMs : this.handlerTimeoutMs));
  }

  /** Mark an exchange finished; false when it already was (it timed out). */
  finish(ex: Exchange): boolean {
    if (ex.done) return false;
    ex.done = true;
    if (ex.tracked) {
      this.inflight.delete(ex.key);
      this.ackQueue.delete(ex);
    }
    return true;
  }

  /**
   * Make sure the sweep runs by `due`, the new exchange's earliest deadline. Invariant: a timer is
   * armed whenever an exchange is in flight, so with none armed the new exchange is the only one,
   * and an armed one only needs moving earlier. (No iteration here: this is on the hot path.)
   */
  private armSweep(now: number, due: number): void {
    if (this.sweepTimer !== undefined) {
      if (this.sweepDue <= due) return;
      clearTimeout(this.sweepTimer);
    }
    this.sweepDue = due;
    this.sweepTimer = setTimeout(this.sweep, Math.max(0, due - now));
  }

  /** After a sweep: arm the timer for the oldest exchange still waiting, if any. */
  private rearm(now: number): void {
    let due = Infinity;
    const a = this.ackQueue.values().next();
    if (!a.done) due = a.value.started + this.sepMs;
    const f = this.inflight.values().next();
    if (!f.done) due = Math.min(due, f.value.started + this.handlerTimeoutMs);
    if (due === Infinity || (this.sweepTimer !== undefined && this.sweepDue <= due)) return;
    if (this.sweepTimer !== undefined) clearTimeout(this.sweepTimer);
    this.sweepDue = due;
    this.sweepTimer = setTimeout(this.sweep, Math.max(0, due - now));
  }

  private readonly sweep = (): void => {
    this.sweepTimer = undefined;
    this.sweepDue = Infinity;
    if (this.closed) return;
    try {
      this.sweepAt(this.hooks.now());
    } catch (err) {
      // Not reachable by design; a timer callback must never throw.
      this.hooks.logError({ err }, 'coap: internal error in sweep');
    }
  };

  private sweepAt(now: number): void {
    // §5.2.2: the handler is slow; acknowledge now, answer later in a separate CON.
    for (const ex of this.ackQueue) {
      if (ex.started + this.sepMs > now) break;
      this.ackQueue.delete(ex);
      ex.separate = true;
      this.stats.separate++;
      ex.ep.t.send(emptyMessage(TYPE_ACK, ex.messageId), ex.peer);
    }
    for (const ex of this.inflight.values()) {
      if (ex.started + this.handlerTimeoutMs > now) break;
      this.finish(ex);
      this.hooks.handlerTimedOut(ex, now);
    }
    this.rearm(now);
  }

  // -------------------------------------------------------------------------------------------
  // §4.2 separate CON responses

  /** Retransmit a separate CON response with exponential back-off until ACK/RST. */
  trackConfirmable(ex: Exchange, data: Buffer, mid: number): void {
    if (this.pending.size >= this.maxPending) return; // sent once, untracked (bounded state)
    const t = this.timings;
    const p: PendingCon = {
      key: exchangeKey(ex.peerId, mid),
      ep: ex.ep,
      peer: ex.peer,
      data,
      timeoutMs: t.ackTimeoutMs * (1 + this.hooks.random() * (t.ackRandomFactor - 1)),
      attempts: 0,
      timer: undefined,
    };
    const old = this.pending.get(p.key);
    if (old !== undefined) clearTimeout(old.timer);
    this.pending.set(p.key, p);
    p.timer = setTimeout(this.retransmit, p.timeoutMs, p);
  }

  private readonly retransmit = (p: PendingCon): void => {
    if (this.closed || this.pending.get(p.key) !== p) return;
    if (p.attempts >= this.timings.maxRetransmit) {
      this.pending.delete(p.key);
      this.stats.giveUps++;
      return;
    }
    p.attempts++;
    this.stats.retransmissions++;
    p.timeoutMs *= 2;
    p.timer = setTimeout(this.retransmit, p.timeoutMs, p);
    try {
      p.ep.t.send(p.data, p.peer);
    } catch (err) {
      this.hooks.logError({ err }, 'coap: transport send threw');
    }
  };

  /** An ACK or RST for message `mid` to `peerId`: end its retransmission. False when none was pending. */
  settle(peerId: string, mid: number): boolean {
    const key = exchangeKey(peerId, mid);
    const p = this.pending.get(key);
    if (p === undefined) return false;
    clearTimeout(p.timer);
    this.pending.delete(key);
    return true;
  }

  /** Cancel every timer and forget every table. */
  close(): void {
    this.closed = true;
    for (const p of this.pending.values()) clearTimeout(p.timer);
    this.pending.clear();
    if (this.sweepTimer !== undefined) clearTimeout(this.sweepTimer);
    this.sweepTimer = undefined;
    this.inflight.clear();
    this.ackQueue.clear();
    this.dedup.clear();
  }
}
