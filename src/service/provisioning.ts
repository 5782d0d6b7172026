/**
 * The provisioning use cases (PROTOCOL.md §3–§5): authenticate → load → decide → record → issue.
 * This is the one place that sequences side effects: a token leaves only after the store has
 * committed the record behind it. Transport-neutral: callers hand in payload bytes and get back an
 * {@link Outcome} (CoAP code, response body, Max-Age).
 */
import type { ClientType, DeviceRecord, EventRecord, PendingRecord, SubjectRecords } from '../domain.ts';
import { ROLE_OF_TYPE } from '../domain.ts';
import { ERROR_TABLE, ProvError, isProvError, type ProvErrorCode } from '../errors.ts';
import type { Logger } from '../log.ts';
import { bytesEqual, decide, decideRefresh, type Decision, type PolicySettings } from '../policy/decide.ts';
import { AddressTracker, MAX_MAC_PEERS, duplicateMacNote, holdFlagged, manyIdsNote } from '../policy/monitor.ts';
import { BucketTable, addressOf } from '../policy/ratelimit.ts';
import { parseSign1, sigStructure } from '../protocol/cose.ts';
import { STATUS, parseRefreshBody, parseRequestBody, type ResponseBody } from '../protocol/messages.ts';
import { checkNonce, makeNonce, nonceExpiry } from '../protocol/nonce.ts';
import type { Mutation, Store } from '../store/store.ts';
import { PublicKeyCache, ed25519Verify } from '../tokens/ed25519.ts';
import type { TokenKeyring } from '../tokens/keyring.ts';
import { sealToken } from '../tokens/seal.ts';
import { FlagBook } from './flags.ts';
import { KeyedMutex, UsedNonces } from './nonces.ts';

/** Settings of the provisioning service (validated by the config layer). */
export interface ServiceSettings {
  /** `iss` claim. */
  issuer: string;
  /** `aud` claim, when set. */
  audience?: string;
  /** Hub URI sent in key 14, when set. */
  hubUri?: string;
  /** Lifetime of tokens from `/idprov/request` (s). */
  provisionTokenTtl: number;
  /** Lifetime of tokens from `/idprov/refresh` (s). */
  tokenTtl: number;
  /** Nonce validity (s). */
  nonceTtl: number;
  /** Retry hint while provisioning is disabled (s). */
  disabledRetryS: number;
  /** Cap of the used-once nonce set. */
  maxUsedNonces: number;
  policy: PolicySettings;
  /** Security monitor, rate limits and bounded growth (issue #6); defaults: {@link DEFAULT_MONITOR}. */
  monitor?: Partial<MonitorSettings>;
}

/**
 * Settings of the security monitor, the rate limits and the caps (README "Security monitor" explains
 * each default). Rates are per second; a rate of 0 turns that limit off.
 */
export interface MonitorSettings {
  /** Requests per second per source address (refill), and the burst it may save up. */
  addressRate: number;
  addressBurst: number;
  /** Authenticated requests per second per device ID, and the burst. */
  deviceRate: number;
  deviceBurst: number;
  /** Keys (addresses, IDs) each rate-limit table tracks at most (least recently used dropped). */
  maxTracked: number;
  /** Distinct IDs from one address within `manyIdsWindowS` that raise `many-ids` (0 = off). */
  manyIds: number;
  manyIdsWindowS: number;
  /** Addresses the many-IDs tracker follows at most. */
  maxAddresses: number;
  /** Hold flagged devices pending instead of issuing tokens. */
  holdFlagged: boolean;
  /** Open flags at most (and flag rows in the database). */
  maxFlags: number;
  /** Waiting requests at most; the least recently seen is dropped for a new one. */
  maxPending: number;
  /** A waiting request not seen for this long is deleted by the sweep (s). */
  pendingExpiryS: number;
  /** Events older than this are deleted by the sweep (s). */
  eventRetentionS: number;
  /** Events kept at most; the sweep deletes the oldest beyond. */
  maxEvents: number;
}

export const DEFAULT_MONITOR: Readonly<MonitorSettings> = Object.freeze({
  addressRate: 50,
  addressBurst: 500,
  deviceRate: 2,
  deviceBurst: 10,
  maxTracked: 100_000,
  manyIds: 50,
  manyIdsWindowS: 60,
  maxAddresses: 10_000,
  holdFlagged: false,
  maxFlags: 10_000,
  maxPending: 100_000,
  pendingExpiryS: 7 * 86_400,
  eventRetentionS: 365 * 86_400,
  maxEvents: 1_000_000,
});

/** What one maintenance sweep removed. */
export interface SweepResult {
  /** Waiting requests not seen for `pendingExpiry`. */
  pendingExpired: number;
  /** Waiting requests beyond `maxPending`. */
  pendingTrimmed: number;
  /** Events past `eventRetention` or beyond `maxEvents`. */
  eventsPruned: number;
}

/** What a transport needs to answer. */
export interface Outcome {
  /** CoAP response code `c.dd`. */
  code: string;
  body: ResponseBody;
  /** Max-Age option (s), set with `retry`. */
  maxAge?: number;
}

/** Where a request came from. */
export interface RequestContext {
  /** `addr:port` of the peer. */
  source: string;
  /** DTLS-PSK identity of the session, when the request came over coaps with a PSK suite. */
  pskIdentity?: string;
}

/** Dependencies, chosen by the composition root. */
export interface ServiceDeps {
  store: Store;
  keyring: TokenKeyring;
  log: Logger;
  /** Wall clock in milliseconds (injectable for tests). */
  clock: () => number;
  /** Cryptographic randomness. */
  random: (n: number) => Buffer;
  /** Secret for stateless nonces (shared by instances that accept each other's nonces). */
  nonceSecret: Uint8Array;
  settings: ServiceSettings;
  /** Called once per answered request (metrics). */
  observe?: (op: 'request' | 'refresh', outcome: OutcomeKind, code: string, ms: number) => void;
}

/** Coarse outcome of one request, for logs and metrics. */
export type OutcomeKind = 'approved' | 'pending' | 'refused' | 'challenged' | 'malformed' | 'error';

/** Provisioning state the service keeps in memory (persisted through the store). */
export interface SwitchState {
  enabled: boolean;
  reason?: string;
}

export class ProvisioningService {
  private readonly used: UsedNonces;
  private readonly mutex = new KeyedMutex();
  private readonly pkCache = new PublicKeyCache(50_000);
  private switchState: SwitchState = { enabled: true };
  /** The monitor's settings, defaults filled in. */
  readonly monitor: Readonly<MonitorSettings>;
  /** Rate-limit buckets per source address and per device ID (shared by request and refresh). */
  readonly addressLimits: BucketTable;
  readonly deviceLimits: BucketTable;
  /** Distinct IDs per source address (the `many-ids` flag). */
  readonly tracker: AddressTracker;
  /** The open flags. */
  readonly flags: FlagBook;

  constructor(private readonly d: ServiceDeps) {
    this.used = new UsedNonces(d.settings.maxUsedNonces);
    const m: MonitorSettings = { ...DEFAULT_MONITOR, ...d.settings.monitor };
    this.monitor = Object.freeze(m);
    this.addressLimits = new BucketTable({ rate: m.addressRate, burst: m.addressBurst }, m.maxTracked);
    this.deviceLimits = new BucketTable({ rate: m.deviceRate, burst: m.deviceBurst }, m.maxTracked);
    this.tracker = new AddressTracker({ threshold: m.manyIds, windowS: m.manyIdsWindowS, maxAddresses: m.maxAddresses });
    this.flags = new FlagBook(m.maxFlags, d.random);
  }

  /** Load the open flags from the store (once, at start). */
  async start(): Promise<void> {
    await this.flags.load(this.d.store);
  }

  /** Seconds since the epoch. */
  now(): number {
    return Math.floor(this.d.clock() / 1000);
  }

  get provisioning(): SwitchState {
    return this.switchState;
  }

  /** Set the in-memory switch (the admin service persists it). */
  setSwitch(s: SwitchState): void {
    this.switchState = { ...s };
  }

  /** Size of the used-once nonce set (metrics, tests). */
  get usedNonceCount(): number {
    return this.used.size;
  }

  /** A fresh nonce for `id` valid for `validS` seconds. */
  private nonce(id: string, validS: number, now: number): Buffer {
    return makeNonce(this.d.nonceSecret, id, now + validS, this.d.random(8));
  }

  private challenge(id: string, code: 'nonce' | 'bad-signature' | 'oob-mismatch', diag: string, now: number): Outcome {
    return { code: '4.01', body: { nonce: this.nonce(id, this.d.settings.nonceTtl, now), err: ERROR_TABLE[code].err!, diag } };
  }

  /**
   * Check the nonce (cheap MAC) before the signature (PROTOCOL.md §3), then the signature, then mark
   * the nonce used. Returns a 4.01 outcome on failure.
   */
  private authenticate(id: string, nonce: Uint8Array | undefined, signer: Uint8Array, env: ReturnType<typeof parseSign1>, now: number): Outcome | undefined {
    const fault = checkNonce(this.d.nonceSecret, id, nonce, now);
    if (fault) return this.challenge(id, 'nonce', fault === 'missing' ? 'a server nonce is required (key 4)' : `nonce ${fault}`, now);
    const exp = nonceExpiry(nonce!);
    if (this.used.has(nonce!, exp)) return this.challenge(id, 'nonce', 'nonce already used', now);
    if (!ed25519Verify(this.pkCache, signer, sigStructure(env.protectedBytes, env.payload), env.signature)) {
      return this.challenge(id, 'bad-signature', 'the signature does not verify', now);
    }
    if (!this.used.use(nonce!, exp, now)) return this.challenge(id, 'nonce', 'nonce already used', now);
    return undefined;
  }

  /**
   * What every POST shares: the per-address limit first (before any decoding), then `work`; any
   * error becomes its protocol outcome; one log line and one metrics observation per answer.
   * `work` reports the device ID as soon as it is decoded, for the log line.
   */
  private async handle(
    op: 'request' | 'refresh',
    ctx: RequestContext,
    work: (now: number, t0: number, setId: (id: string) => void) => Promise<Outcome>,
  ): Promise<Outcome> {
    const t0 = this.d.clock();
    let id: string | undefined;
    let out: Outcome;
    try {
      out = this.limitAddress(ctx, t0) ?? (await work(this.now(), t0, (x) => (id = x)));
    } catch (e) {
      out = this.failure(e, op, id, ctx);
    }
    this.logOutcome(op, id, ctx, out, t0);
    return out;
  }

  /** `POST /idprov/request` (PROTOCOL.md §2, §3, §5). Never throws. */
  request(payload: Uint8Array, ctx: RequestContext): Promise<Outcome> {
    return this.handle('request', ctx, async (now, t0, setId) => {
      // The admin's reason (which may name a rogue server's address) stays on the admin side.
      if (!this.switchState.enabled) return this.errorOutcome('disabled', 'provisioning is disabled; retry later', this.d.settings.disabledRetryS);
      const env = parseSign1(payload, 'request');
      const body = parseRequestBody(env.payload);
      setId(body.id);
      return (
        this.authenticate(body.id, body.nonce, body.pk, env, now) ??
        this.limitDevice(body.id, t0) ??
        (await this.mutex.run(body.id, () =>
          this.provision({ ...body, nonce: body.nonce!, source: ctx.source, ...(ctx.pskIdentity ? { pskIdentity: ctx.pskIdentity } : {}) }),
        ))
      );
    });
  }

  /**
   * The per-address bucket (issue #6), checked before anything else: no decoding, no crypto, no
   * store access for a sender over its limit. 4.29 with Max-Age and `err` 9 (PROTOCOL.md §4).
   */
  private limitAddress(ctx: RequestContext, nowMs: number): Outcome | undefined {
    const t = this.addressLimits.take(addressOf(ctx.source), nowMs);
    return t.ok ? undefined : this.rateLimited(t.retryS);
  }

  /**
   * The per-device bucket, checked once the request is authenticated: only the key holder can spend
   * a device's budget, so nobody can lock a device out by sending requests in its name.
   */
  private limitDevice(id: string, nowMs: number): Outcome | undefined {
    const t = this.deviceLimits.take(id, nowMs);
    return t.ok ? undefined : this.rateLimited(t.retryS);
  }

  /** 4.29: `retry` (key 10, also Max-Age) and `err` 9 (key 15), as PROTOCOL.md §4 lists for it. */
  private rateLimited(retryS: number): Outcome {
    return { code: ERROR_TABLE['rate-limited'].coap, body: { retry: retryS, err: ERROR_TABLE['rate-limited'].err! }, maxAge: retryS };
  }

  private async provision(req: Parameters<typeof decide>[0] & { xk?: Uint8Array }): Promise<Outcome> {
    const now = this.now();
    const m = this.monitor;
    const [rec, macPeers] = await Promise.all([
      this.d.store.loadSubject(req.id),
      req.mac ? this.d.store.macPeers(req.mac, req.id, MAX_MAC_PEERS) : Promise.resolve([]),
    ]);
    let decision = decide(req, rec, this.d.settings.policy, now);
    const notes = [...decision.flags];
    const dup = duplicateMacNote(req, macPeers);
    if (dup) notes.push(dup);
    const many = this.tracker.observe(addressOf(req.source), req.id, now);
    if (many) notes.push(manyIdsNote(many, req.id, m.manyIdsWindowS));
    for (const f of notes) this.d.log.warn({ evt: 'flag', kind: f.kind, id: f.deviceId, evidence: f.evidence }, 'suspicious device');
    const flagMuts = this.flags.raise(notes, now).muts;
    decision = holdFlagged(decision, req.id, this.flags.openFor(req.id), { holdFlagged: m.holdFlagged, retryS: this.d.settings.policy.pendingInitialS });
    switch (decision.kind) {
      case 'approve':
        return this.approve(decision, req.xk, now, flagMuts);
      case 'hold': {
        await this.d.store.apply([...flagMuts, this.event(now, 'provision.held', req.id, 'device', req.source, { flags: decision.heldBy })]);
        const retry = decision.retryS;
        return {
          code: '2.05',
          body: { status: STATUS.pending, nonce: this.nonce(req.id, retry + this.d.settings.nonceTtl, now), retry },
          maxAge: retry,
        };
      }
      case 'pending': {
        const muts: Mutation[] = [recordPending(rec.pending, decision.pending), ...flagMuts];
        // One event when the request first arrives (not per poll: 100k waiting devices poll often).
        if (decision.pending.count === 1) muts.push(this.event(now, 'provision.pending', req.id, 'device', req.source, { type: req.type }));
        // A new waiting request may push the table over its cap: drop the least recently seen.
        if (!rec.pending) muts.push({ kind: 'pending.trim', max: m.maxPending, keep: req.id });
        await this.d.store.apply(muts);
        const retry = decision.retryS;
        return {
          code: '2.05',
          body: { status: STATUS.pending, nonce: this.nonce(req.id, retry + this.d.settings.nonceTtl, now), retry },
          maxAge: retry,
        };
      }
      case 'refuse': {
        await this.d.store.apply([...flagMuts, this.event(now, 'provision.refused', req.id, 'device', req.source, { code: decision.code })]);
        if (decision.code === 'oob-mismatch') return this.challenge(req.id, 'oob-mismatch', decision.reason, now);
        return this.errorOutcome(decision.code, decision.reason, decision.retryS);
      }
    }
  }

  private async approve(d: Extract<Decision, { kind: 'approve' }>, xk: Uint8Array | undefined, now: number, extra: Mutation[]): Promise<Outcome> {
    const ttl = this.d.settings.provisionTokenTtl;
    const { token, exp, cti } = this.mint(d.device.id, d.device.pk, d.device.type, ttl, now);
    const device: DeviceRecord = { ...d.device, lastCti: cti, tokenExp: exp };
    const muts: Mutation[] = [{ kind: 'device.upsert', device }, ...extra];
    if (d.consumeAllow) muts.push({ kind: 'allow.consume', id: device.id, at: now });
    if (d.clearPending) muts.push({ kind: 'pending.delete', id: device.id });
    muts.push(this.event(now, 'provision.approved', device.id, 'device', device.source, { via: d.via, cti, exp }));
    // Durability (DESIGN.md): the token leaves only after this commit.
    await this.d.store.apply(muts);
    return this.issued(token, exp, ttl, xk);
  }

  private mint(id: string, pk: Uint8Array, type: ClientType, ttl: number, now: number): { token: Buffer; exp: number; cti: string } {
    const cti = this.d.random(8);
    const exp = now + ttl;
    const role = ROLE_OF_TYPE[type];
    const token = this.d.keyring.issue({
      iss: this.d.settings.issuer,
      sub: id,
      ...(this.d.settings.audience ? { aud: this.d.settings.audience } : {}),
      exp,
      iat: now,
      cti,
      cnf: pk,
      ...(role ? { role } : {}),
    });
    return { token, exp, cti: cti.toString('hex') };
  }

  private issued(token: Buffer, exp: number, ttl: number, xk: Uint8Array | undefined): Outcome {
    const body: ResponseBody = { status: STATUS.approved, exp, ttl };
    if (xk) body.sealed = sealToken(token, xk);
    else body.token = token;
    if (this.d.settings.hubUri) body.hub = this.d.settings.hubUri;
    return { code: '2.01', body };
  }

  /** `POST /idprov/refresh` (PROTOCOL.md §2, §5). Works while provisioning is disabled. Never throws. */
  refresh(payload: Uint8Array, ctx: RequestContext): Promise<Outcome> {
    return this.handle('refresh', ctx, async (now, t0, setId) => {
      const env = parseSign1(payload, 'refresh');
      const body = parseRefreshBody(env.payload);
      setId(body.id);
      // The nonce (one HMAC) before the token's signature, so a request without one costs no verify (§3).
      const fault = checkNonce(this.d.nonceSecret, body.id, body.nonce, now);
      if (fault) return this.challenge(body.id, 'nonce', fault === 'missing' ? 'a server nonce is required (key 4)' : `nonce ${fault}`, now);
      const claims = this.d.keyring.verify(body.token, now);
      if (claims.sub !== body.id) throw new ProvError('key-mismatch', 'the token was issued to another device ID');
      return (
        this.authenticate(body.id, body.nonce, claims.cnf, env, now) ??
        this.limitDevice(body.id, t0) ??
        (await this.mutex.run(body.id, async () => {
          const t = this.now();
          const rec = await this.d.store.loadSubject(body.id);
          const d = decideRefresh({ id: body.id, cnf: claims.cnf, source: ctx.source }, rec, this.d.settings.policy, t);
          if (d.kind === 'refuse') {
            await this.d.store.apply([this.event(t, 'refresh.refused', body.id, 'device', ctx.source, { code: d.code })]);
            return this.errorOutcome(d.code, d.reason, d.retryS);
          }
          const ttl = this.d.settings.tokenTtl;
          const { token, exp, cti } = this.mint(d.device.id, d.device.pk, d.device.type, ttl, t);
          await this.d.store.apply([
            { kind: 'device.upsert', device: { ...d.device, lastCti: cti, tokenExp: exp } },
            this.event(t, 'refresh.issued', body.id, 'device', ctx.source, { cti, exp }),
          ]);
          return this.issued(token, exp, ttl, body.xk);
        }))
      );
    });
  }

  /** The COSE_KeySet of `/idprov/keys`. */
  keySet(): Buffer {
    return this.d.keyring.keySet(this.now());
  }

  /** Outcome for an error code: 4.03 bodies carry status 2 and retry (PROTOCOL.md §4). */
  errorOutcome(code: ProvErrorCode, diag: string, retry?: number): Outcome {
    const info = ERROR_TABLE[code];
    const body: ResponseBody = { diag };
    if (info.err !== undefined) body.err = info.err;
    if (info.coap === '4.03') body.status = STATUS.rejected;
    if (retry !== undefined) body.retry = retry;
    return retry !== undefined ? { code: info.coap, body, maxAge: retry } : { code: info.coap, body };
  }

  private failure(e: unknown, op: string, id: string | undefined, ctx: RequestContext): Outcome {
    if (isProvError(e)) {
      const retry = ERROR_TABLE[e.code].coap === '4.03' ? this.d.settings.policy.rejectedRetryS : undefined;
      return this.errorOutcome(e.code, e.message, retry);
    }
    this.d.log.error({ err: e, op, id, src: ctx.source }, 'internal error while handling a request');
    return this.errorOutcome('internal', 'internal error');
  }

  private logOutcome(op: 'request' | 'refresh', id: string | undefined, ctx: RequestContext, out: Outcome, t0: number): void {
    const outcome: OutcomeKind =
      out.body.status === STATUS.approved
        ? 'approved'
        : out.body.status === STATUS.pending
          ? 'pending'
          : out.code === '4.01'
            ? 'challenged'
            : out.code === '4.00'
              ? 'malformed'
              : out.code.startsWith('5.00')
                ? 'error'
                : 'refused';
    const ms = this.d.clock() - t0;
    this.d.log.info(
      { evt: 'provision', op, id, outcome, code: out.code, err: out.body.err, src: ctx.source, psk: ctx.pskIdentity !== undefined || undefined, ms },
      out.body.diag ?? outcome,
    );
    this.d.observe?.(op, outcome, out.code, ms);
  }

  private event(at: number, kind: string, deviceId: string, actor: string, source: string | undefined, detail?: Record<string, unknown>): Mutation {
    const event: EventRecord = { at, kind, deviceId, actor };
    if (source) event.source = source;
    if (detail) event.detail = detail;
    return { kind: 'event', event };
  }

  /**
   * The periodic sweep (bounded growth, issue #6): delete waiting requests not seen for
   * `pendingExpiry` and those beyond `maxPending` (least recently seen first), events past
   * `eventRetention` or beyond `maxEvents`, cleared flags beyond `maxFlags`. One transaction; a
   * `system.sweep` event records what went when anything did.
   */
  async sweep(): Promise<SweepResult> {
    const now = this.now();
    const m = this.monitor;
    const expired = { count: 0 };
    const trimmed = { count: 0 };
    const pruned = { count: 0 };
    await this.d.store.apply([
      { kind: 'pending.expire', before: now - m.pendingExpiryS, removed: expired },
      { kind: 'pending.trim', max: m.maxPending, removed: trimmed },
      { kind: 'events.prune', before: now - m.eventRetentionS, max: m.maxEvents, limit: 100_000, removed: pruned },
      { kind: 'flags.trim', max: m.maxFlags },
    ]);
    const r: SweepResult = { pendingExpired: expired.count, pendingTrimmed: trimmed.count, eventsPruned: pruned.count };
    if (r.pendingExpired || r.pendingTrimmed || r.eventsPruned) {
      this.d.log.info({ evt: 'sweep', ...r }, 'removed stale records');
      await this.d.store.apply([{ kind: 'event', event: { at: now, kind: 'system.sweep', actor: 'system', detail: { ...r } } }]);
    }
    return r;
  }

  /** Records about one device (admin views). */
  load(id: string): Promise<SubjectRecords> {
    return this.d.store.loadSubject(id);
  }
}

/**
 * The mutation that records a waiting request after a poll. A repeat poll that changes nothing but
 * when and from where the device was seen (the common case: 100,000 devices polling) writes only
 * those columns (`pending.seen`), never the status: an admin's approval or rejection committed
 * between this poll's read and its write stands. A new request, or one whose key, type or MAC
 * changed, is written whole.
 */
export function recordPending(prev: PendingRecord | undefined, next: PendingRecord): Mutation {
  const seenOnly =
    prev !== undefined &&
    prev.status === next.status &&
    prev.type === next.type &&
    prev.firstSeen === next.firstSeen &&
    bytesEqual(prev.pk, next.pk) &&
    (prev.mac === undefined ? next.mac === undefined : bytesEqual(prev.mac, next.mac));
  return seenOnly
    ? { kind: 'pending.seen', id: next.id, lastSeen: next.lastSeen, count: next.count, source: next.source }
    : { kind: 'pending.upsert', pending: next };
}
