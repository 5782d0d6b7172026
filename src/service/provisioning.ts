/**
 * The provisioning use cases (docs/spec/idprov-coap-v1.md §3–§5): authenticate → load → decide → record → issue.
 * This is the one place that sequences side effects: a token leaves only after the store has
 * committed the record behind it. Transport-neutral: callers hand in payload bytes and get back an
 * {@link Outcome} (the decision as a value: kind, error, retry, body; src/service/outcome.ts).
 */
import type { ClientType, DeviceRecord, EventRecord, PendingRecord, SubjectRecords } from '../domain.ts';
import { ROLE_OF_TYPE, withChanges } from '../domain.ts';
import { ERROR_TABLE, ProvError, isProvError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { bytesEqual, decide, decideRefresh, type Decision, type PolicySettings } from '../policy/decide.ts';
import { addressScope, peerText, scopeKeys, type AddressScope } from '../net/address.ts';
import { MAX_MAC_PEERS, duplicateMacNote, holdFlagged, manyIdsNote, raiserOf } from '../policy/monitor/flag-rules.ts';
import { takeEvery } from '../policy/ratelimit.ts';
import { claimKey, isVouched, keyStanding, oobAttempt, type KeyStanding } from '../policy/standing.ts';
import { parseSign1, sigStructure } from '../protocol/cose.ts';
import { STATUS, parseRefreshBody, parseRequestBody, type ResponseBody } from '../protocol/messages.ts';
import { formatCode } from '../protocol/coap-codes.ts';
import { outcomeCode } from '../protocol/outcomes.ts';
import { checkNonce, makeNonce, nonceExpiry, type NonceKey } from '../protocol/nonce.ts';
import type { Mutation, Page, Store } from '../store/store.ts';
import { MAX_PAGE, allPages } from '../store/paging.ts';
import type { ChangeListener } from './changes.ts';
import { PublicKeyCache, ed25519Verify, keyFingerprint, keyFingerprintsIn } from '../tokens/ed25519.ts';
import type { TokenKeyring } from '../tokens/keyring.ts';
import { sealToken } from '../tokens/seal.ts';
import { SecurityMonitor, type MonitorSettings } from './monitor/security-monitor.ts';
import { sessionPskHolds } from './psk.ts';
import { errorOutcome, isOutcome, rateLimited, type Outcome, type OutcomeKind, type RequestContext } from './outcome.ts';
import { sweep, type SweepResult } from './sweep.ts';
import { KeyedMutex, PartitionedNonces } from './nonces.ts';
import { PendingSightings } from './pending-seen.ts';
import { WaitingView } from './waiting-view.ts';
import { ProvisioningSwitch, type SwitchState } from './switch.ts';

export { PREFIX48_FACTOR, PREFIX56_FACTOR, type MonitorSettings } from './monitor/security-monitor.ts';
export type { SwitchState } from './switch.ts';

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
  /**
   * Cap of the used-once set's part for requests signed with a vouched key (allowlisted, provisioned,
   * admin-approved, OOB-proven; issue #11 F3).
   */
  maxUsedNonces: number;
  /** Cap of its part for every other request (unknown IDs, waiting requests, other keys). */
  maxUsedNoncesUnvouched: number;
  policy: PolicySettings;
  /** Security monitor, rate limits and bounded growth (issue #6). */
  monitor: MonitorSettings;
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
  /** Secret for stateless nonces (shared by instances that accept each other's nonces); a rotation's secrets, updated in place. */
  nonceSecret: NonceKey;
  settings: ServiceSettings;
  /** The security monitor shared with the admin service (default: one of its own, from `settings.monitor`). */
  monitor?: SecurityMonitor;
  /** The provisioning switch the admin service turns (default: one of its own, enabled). */
  switch?: ProvisioningSwitch;
  /**
   * The store is shared by several instances (PostgreSQL): its `nonce.use` is the cross-instance
   * used-once check, so even a poll whose sighting waits in memory writes its nonce (default: false,
   * one process: the in-memory used-once set is the whole truth and a poll writes nothing).
   */
  sharedStore?: boolean;
  /** Called once per answered request (metrics). */
  observe?: (op: 'request' | 'refresh', outcome: OutcomeKind, code: string, ms: number) => void;
}

export { errorOutcome, type Outcome, type OutcomeKind, type RequestContext } from './outcome.ts';
export type { SweepResult } from './sweep.ts';

/** Max-Age (s) of the 5.03 a request gets while the store cannot be reached (see `failure`). */
export const STORE_UNAVAILABLE_RETRY_S = 5;

/**
 * Waiting requests the waiting view holds at most (src/service/waiting-view.ts): the cap of the table
 * (`maxPending`, default 100,000) up to this, a few hundred bytes each; polls of the others read the
 * store as before.
 */
export const MAX_WAITING_VIEW = 200_000;

/** Sightings of waiting devices kept in memory before a flush is started at once (src/service/pending-seen.ts). */
export const MAX_UNFLUSHED_SIGHTINGS = 20_000;

export class ProvisioningService {
  private readonly used: PartitionedNonces;
  private readonly mutex = new KeyedMutex();
  private readonly pkCache = new PublicKeyCache(50_000);
  /** Repeat polls of waiting requests not yet written (src/service/pending-seen.ts). */
  private readonly sightings = new PendingSightings(MAX_UNFLUSHED_SIGHTINGS);
  private flushing: Promise<number> | undefined;
  /**
   * Waiting requests whose device has nothing else on record, for repeat polls without a store read
   * (src/service/waiting-view.ts). Subscribe {@link ProvisioningService.onStoreChange} to the
   * store's change notification, or it stays empty.
   */
  private readonly waiting: WaitingView;
  private watched = false;
  /** The security monitor: rate limits, the `many-ids` tracker, the open flags (shared with the admin service). */
  readonly monitor: SecurityMonitor;
  /** The provisioning switch (turned by the admin service). */
  readonly switch: ProvisioningSwitch;

  constructor(private readonly d: ServiceDeps) {
    this.used = new PartitionedNonces({ vouched: d.settings.maxUsedNonces, other: d.settings.maxUsedNoncesUnvouched });
    this.monitor = d.monitor ?? new SecurityMonitor(d.settings.monitor, d.random);
    this.switch = d.switch ?? new ProvisioningSwitch();
    this.waiting = new WaitingView(Math.min(this.monitor.settings.maxPending, MAX_WAITING_VIEW));
  }

  /**
   * The listener to subscribe to the store's change notification (ObservedStore.subscribe): only a
   * service that sees every commit may answer repeat polls from memory.
   */
  get onStoreChange(): ChangeListener {
    this.watched = true;
    return this.waiting.onChange;
  }

  /**
   * Fill the waiting view from the store (at start, in the background, after subscribing
   * {@link onStoreChange}): the waiting requests whose ID has no allowlist entry, device or
   * revocation, so that the first poll of each after a restart needs no read either. A change seen
   * while the scans run discards them (the view then fills poll by poll). Returns how many it added.
   */
  async loadWaitingView(): Promise<number> {
    if (!this.watched) return 0;
    const epoch = this.waiting.epoch;
    const st = this.d.store;
    const waiting = new Map<string, PendingRecord>();
    for await (const page of allPages((after) => st.listPending({ status: 'pending', after, limit: MAX_PAGE }))) {
      for (const p of page) if (waiting.size < this.waiting.max) waiting.set(p.id, p);
    }
    if (waiting.size === 0) return 0;
    const others: Array<(after: string | undefined) => Promise<Page<{ id: string }>>> = [
      (after) => st.listAllow({ after, limit: MAX_PAGE }),
      (after) => st.listDevices({ after, limit: MAX_PAGE }),
      (after) => st.listRevocations({ after, limit: MAX_PAGE }),
    ];
    for (const list of others) {
      for await (const page of allPages(list)) for (const r of page) waiting.delete(r.id);
      if (epoch !== this.waiting.epoch) return 0;
    }
    return this.waiting.fill(waiting.values(), epoch);
  }

  /** Waiting requests held in memory (metrics, tests). */
  get waitingViewSize(): number {
    return this.waiting.size;
  }

  /** Load the open flags from the store (once, at start). */
  async start(): Promise<void> {
    await this.monitor.load(this.d.store);
  }

  /** Seconds since the epoch. */
  now(): number {
    return Math.floor(this.d.clock() / 1000);
  }

  get provisioning(): SwitchState {
    return this.switch.state;
  }

  /** Size of the used-once nonce set, both parts (metrics, tests). */
  get usedNonceCount(): number {
    const s = this.used.sizes;
    return s.vouched + s.other;
  }

  /** Size of each part of the used-once set (tests). */
  get usedNonceSizes(): { vouched: number; other: number } {
    return this.used.sizes;
  }

  /** A fresh nonce for `id` valid for `validS` seconds, bound to the address `peer` it is sent to. */
  private nonce(id: string, validS: number, now: number, peer: string): Buffer {
    return makeNonce(this.d.nonceSecret, id, now + validS, this.d.random(8), peer);
  }

  private challenge(id: string, code: 'nonce' | 'bad-signature' | 'oob-mismatch', diag: string, now: number, peer: string): Outcome {
    return { kind: 'challenged', error: code, body: { nonce: this.nonce(id, this.d.settings.nonceTtl, now, peer), err: ERROR_TABLE[code].err!, diag } };
  }

  /**
   * The gate before any signature check (issue #11 F4; docs/spec/idprov-coap-v1.md §3). A request without a valid
   * nonce for its ID and source address, or with one already used, gets a 4.01 challenge: one HMAC,
   * no state, an answer smaller than the request, so it is never rate-limited and a spoofer cannot
   * starve a device of nonces. A valid, unused nonce shows that the sender receives at the source
   * address: only then is a token taken from the address's (and /64's) signature budget, and a
   * signature may be checked. Returns an outcome when the request stops here.
   */
  private admit(id: string, nonce: Uint8Array | undefined, scope: AddressScope, now: number, nowMs: number): Outcome | undefined {
    const fault = checkNonce(this.d.nonceSecret, id, nonce, now, scope.address);
    if (fault) return this.challenge(id, 'nonce', fault === 'missing' ? 'a server nonce is required (key 4)' : `nonce ${fault}`, now, scope.address);
    if (this.used.has(nonce!, nonceExpiry(nonce!))) return this.challenge(id, 'nonce', 'nonce already used', now, scope.address);
    const t = takeEvery(this.monitor.signatureCharges(scope), nowMs);
    return t.ok ? undefined : rateLimited(t.retryS);
  }

  /**
   * A nonce whose request failed its signature (or token) check is used up: each signature check costs
   * the sender a nonce fetched to an address it receives at. Burned in the part of the used-once set
   * that unvouched requests share; when that part is full it is not remembered, and the signature
   * budget of the address alone bounds the checks.
   */
  private burn(nonce: Uint8Array, now: number): void {
    this.used.use(nonce, nonceExpiry(nonce), now, 'other');
  }

  /**
   * The claim's budget, then the used-once mark (issue #11 F1, F3), once the signature verified and the
   * ID's records are loaded. A vouched key (the ID's allowlisted, provisioned or approved key, or one
   * that proves the entry's OOB secret) spends the ID's bucket; any other key spends the bucket of
   * this ID *and that key*, in a table of its own — so a request signed with another key never spends
   * the device's budget, nor a second key for an unknown ID the first one's. Then the nonce is marked
   * used in the part of the set for its standing. A claim over its limit consumes no nonce. Either
   * part full: 4.29 with Max-Age until entries expire, never acceptance.
   */
  private spend(id: string, pk: Uint8Array, standing: KeyStanding, nonce: Uint8Array, peer: string, now: number, nowMs: number): Outcome | undefined {
    const vouched = isVouched(standing);
    // A duplicate that raced this one through the signature check spends no budget.
    if (this.used.has(nonce, nonceExpiry(nonce))) return this.challenge(id, 'nonce', 'nonce already used', now, peer);
    const t = vouched ? this.monitor.deviceLimits.take(id, nowMs) : this.monitor.claimLimits.take(claimKey(id, pk), nowMs);
    if (!t.ok) return rateLimited(t.retryS);
    const u = this.used.use(nonce, nonceExpiry(nonce), now, vouched ? 'vouched' : 'other');
    if (u.ok) return undefined;
    if (u.why === 'used') return this.challenge(id, 'nonce', 'nonce already used', now, peer);
    this.d.log.warn({ evt: 'nonces-full', part: vouched ? 'vouched' : 'other', id }, 'the used-once nonce set is full for this kind of request');
    return rateLimited(u.retryS);
  }

  /**
   * What every POST shares: the source's address scope, then `work`; any error becomes its protocol
   * outcome; one log line and one metrics observation per answer. `work` reports the device ID as soon
   * as it is decoded, for the log line.
   */
  private async handle(
    op: 'request' | 'refresh',
    ctx: RequestContext,
    work: (now: number, t0: number, setId: (id: string) => void, scope: AddressScope) => Promise<Outcome>,
  ): Promise<Outcome> {
    const t0 = this.d.clock();
    let id: string | undefined;
    let out: Outcome;
    try {
      out = await work(this.now(), t0, (x) => (id = x), addressScope(ctx.source.address));
    } catch (e) {
      out = this.failure(e, op, id, ctx);
    }
    this.logOutcome(op, id, ctx, out, t0);
    return out;
  }

  /**
   * Decode with `fn`; a request that does not decode spends a token of its address's (and /64's)
   * bucket for unproven answers, and past that gets 4.29 instead of its 4.00: the bucket bounds how
   * many answers larger than their request (a 4.00 carries a diagnostic; so does the 5.03 while
   * provisioning is disabled) anyone can draw to an address, and only such requests spend it.
   */
  private decode<T>(scope: AddressScope, nowMs: number, fn: () => T): T | Outcome {
    try {
      return fn();
    } catch (e) {
      if (!isProvError(e)) throw e;
      const t = this.monitor.junkLimits.takeAll(scopeKeys(scope), nowMs);
      if (!t.ok) return rateLimited(t.retryS);
      throw e;
    }
  }

  /** `POST /idprov/request` (docs/spec/idprov-coap-v1.md §2, §3, §5). Never throws. */
  request(payload: Uint8Array, ctx: RequestContext): Promise<Outcome> {
    return this.handle('request', ctx, async (now, t0, setId, scope) => {
      // The admin's reason (which may name a rogue server's address) stays on the admin side. With
      // its diagnostic the answer is larger than the smallest POST, so it spends the bucket of
      // unproven answers; past that bucket the 5.03 keeps its retry and Max-Age but drops the
      // diagnostic (smaller than any request): a spoofer must not turn a device's long back-off into
      // a 4.29 it retries within seconds (review finding 10).
      if (!this.switch.enabled) {
        const retry = this.d.settings.disabledRetryS;
        const t = this.monitor.junkLimits.takeAll(scopeKeys(scope), t0);
        if (!t.ok) return { kind: 'refused', error: 'disabled', retry, body: { err: ERROR_TABLE.disabled.err!, retry } };
        return errorOutcome('disabled', 'provisioning is disabled; retry later', retry);
      }
      const got = this.decode(scope, t0, () => {
        const env = parseSign1(payload, 'request');
        return { env, body: parseRequestBody(env.payload) };
      });
      if (isOutcome(got)) return got;
      const { env, body } = got;
      setId(body.id);
      const gate = this.admit(body.id, body.nonce, scope, now, t0);
      if (gate) return gate;
      if (!ed25519Verify(this.pkCache, body.pk, sigStructure(env.protectedBytes, env.payload), env.signature)) {
        this.burn(body.nonce!, now);
        return this.challenge(body.id, 'bad-signature', 'the signature does not verify', now, scope.address);
      }
      return this.mutex.run(body.id, () =>
        this.provision({ ...body, nonce: body.nonce!, source: peerText(ctx.source), ...(ctx.pskIdentity ? { pskIdentity: ctx.pskIdentity } : {}) }, scope.address, t0, ctx.pskMatches),
      );
    });
  }

  /**
   * Load, spend the claim's budget and its nonce, decide, record, answer (under the ID's mutex). A
   * DTLS-PSK identity counts only while the session's key (`pskMatches`) is still the entry's live
   * secret in the records just loaded (service/psk.ts).
   */
  private async provision(
    claimed: Parameters<typeof decide>[0] & { xk?: Uint8Array },
    peer: string,
    t0: number,
    pskMatches?: (key: Uint8Array) => boolean,
  ): Promise<Outcome> {
    const now = this.now();
    const m = this.monitor.settings;
    // A repeat poll the view answers with "still pending" needs no read (module comment of
    // waiting-view.ts); a MAC needs the store's other holders of it, anything else the store's word.
    const viewed = this.watched && claimed.mac === undefined ? this.waiting.subject(claimed.id) : undefined;
    let stored: SubjectRecords;
    let macPeers: string[] = [];
    if (viewed && this.repeatsWaiting(claimed, viewed, now)) stored = viewed;
    else {
      const epoch = this.waiting.epoch;
      [stored, macPeers] = await Promise.all([
        this.d.store.loadSubject(claimed.id),
        claimed.mac ? this.d.store.macPeers(claimed.mac, claimed.id, MAX_MAC_PEERS) : Promise.resolve([]),
      ]);
      if (this.watched) this.waiting.learn(claimed.id, stored, epoch);
    }
    const seen = this.sightings.overlay(stored.pending);
    const rec: SubjectRecords = seen ? withChanges(stored, { pending: seen }) : stored;
    const req = claimed.pskIdentity === undefined || sessionPskHolds(pskMatches, rec.allow, now) ? claimed : withoutPsk(claimed);
    const stop = this.spend(req.id, req.pk, keyStanding(req, rec, now), req.nonce, peer, now, t0);
    if (stop) return stop;
    const guessed = this.guessGate(req, rec, peer, now, t0);
    if (guessed) return guessed;
    let decision = decide(req, rec, this.d.settings.policy, now);
    const notes = [...decision.flags];
    const dup = duplicateMacNote(req, macPeers);
    if (dup) notes.push(dup);
    const many = this.monitor.tracker.observe(peer, req.id, now);
    if (many) notes.push(manyIdsNote(many, req.id, m.manyIdsWindowS));
    for (const f of notes) this.d.log.warn({ evt: 'flag', kind: f.kind, id: f.deviceId, evidence: f.evidence, keys: keyFingerprintsIn(f.evidence) }, 'suspicious device');
    // Who raises a flag (this ID and key): its fingerprint is a SHA-256, worked out only when a flag is
    // raised or an open one may hold the device (issue 17: ~3 µs a provisioning otherwise spent for nothing).
    let raiser: string | undefined;
    const raiserNow = (): string => (raiser ??= raiserOf(req.id, keyFingerprint(req.pk)));
    const flagMuts = notes.length > 0 ? this.monitor.flags.raise(notes, now, raiserNow()).muts : [];
    const open = this.monitor.flags.openFor(req.id);
    decision = holdFlagged(decision, req.id, open, { holdFlagged: m.holdFlagged, retryS: this.d.settings.policy.pendingInitialS }, open.length > 0 ? raiserNow() : undefined);
    switch (decision.kind) {
      case 'approve':
        if (decision.clearPending) this.sightings.forget(req.id);
        return this.approve(decision, req.xk, now, [...flagMuts, usedOnce(req.nonce)], peer);
      case 'hold': {
        await this.d.store.apply([...flagMuts, this.event(now, 'provision.held', req.id, 'device', req.source, { flags: decision.heldBy })]);
        const retry = decision.retryS;
        return { kind: 'pending', retry, body: { status: STATUS.pending, nonce: this.nonce(req.id, retry + this.d.settings.nonceTtl, now, peer), retry } };
      }
      case 'pending': {
        const retry = decision.retryS;
        const answer: Outcome = { kind: 'pending', retry, body: { status: STATUS.pending, nonce: this.nonce(req.id, retry + this.d.settings.nonceTtl, now, peer), retry } };
        const rp = recordPending(rec.pending, decision.pending);
        if (rp.kind === 'pending.seen') {
          // A repeat poll: nothing durable changes (module comment of pending-seen.ts). Flags raised
          // by it, and the nonce of a shared store, are still written before the answer.
          if (this.sightings.note(decision.pending)) this.flushSoon();
          this.waiting.noted(decision.pending);
          const durable: Mutation[] = [...flagMuts];
          if (this.d.sharedStore) durable.push(usedOnce(req.nonce));
          if (durable.length > 0) await this.d.store.apply(durable);
          return answer;
        }
        this.sightings.forget(req.id);
        const muts: Mutation[] = [rp, ...flagMuts, usedOnce(req.nonce)];
        // One event when the request first arrives (not per poll: 100k waiting devices poll often).
        if (decision.pending.count === 1) muts.push(this.event(now, 'provision.pending', req.id, 'device', req.source, { type: req.type }));
        // A new waiting request may push the table over its cap: drop the least recently seen.
        // (`removed` tells the waiting view whether it went on to drop anyone.)
        if (!rec.pending) muts.push({ kind: 'pending.trim', max: m.maxPending, keep: req.id, removed: { count: 0 } });
        await this.d.store.apply(muts);
        return answer;
      }
      case 'refuse': {
        await this.d.store.apply([...flagMuts, this.event(now, 'provision.refused', req.id, 'device', req.source, { code: decision.code })]);
        if (decision.code === 'oob-mismatch') return this.challenge(req.id, 'oob-mismatch', decision.reason, now, peer);
        return errorOutcome(decision.code, decision.reason, decision.retryS);
      }
    }
  }

  /** True when `viewed` answers `claimed` with "still pending" and writes nothing but its sighting. */
  private repeatsWaiting(claimed: Parameters<typeof decide>[0], viewed: SubjectRecords, now: number): boolean {
    if (oobAttempt(claimed, viewed, now) !== undefined) return false;
    const d = decide(claimed, viewed, this.d.settings.policy, now);
    return d.kind === 'pending' && d.flags.length === 0 && recordPending(viewed.pending, d.pending).kind === 'pending.seen';
  }

  /**
   * The per-ID bound on guesses at an entry's out-of-band secret (review of F1). A wrong proof spends
   * the ID's guess bucket, whatever key signed it; while that bucket is empty no proof for the ID is
   * judged in the answer: right and wrong proofs alike get 2.05 "pending" with a fresh nonce and the
   * first pending retry, nothing is recorded, and no token is issued — so guesses beyond the bucket
   * learn nothing, a lucky one is never issued a token, and the genuine device is held (polling at
   * its pending retry), never refused, until the guessing stops. A right proof held this way is
   * logged with its key, for an admin who may bind that key to the entry.
   */
  private guessGate(req: Parameters<typeof decide>[0], rec: SubjectRecords, peer: string, now: number, nowMs: number): Outcome | undefined {
    const attempt = oobAttempt(req, rec, now);
    if (attempt === undefined) return undefined;
    const t = attempt === 'wrong' ? this.monitor.oobGuessLimits.take(req.id, nowMs) : this.monitor.oobGuessLimits.peek(req.id, nowMs);
    if (t.ok) return undefined;
    if (attempt === 'right') {
      this.d.log.warn(
        { evt: 'oob-guessing', id: req.id, pk: Buffer.from(req.pk).toString('hex'), src: req.source },
        'a right out-of-band proof held: wrong proofs for this ID are over their limit',
      );
    }
    const retry = this.d.settings.policy.pendingInitialS;
    return { kind: 'pending', retry, body: { status: STATUS.pending, nonce: this.nonce(req.id, retry + this.d.settings.nonceTtl, now, peer), retry } };
  }

  private async approve(d: Extract<Decision, { kind: 'approve' }>, xk: Uint8Array | undefined, now: number, extra: Mutation[], peer: string): Promise<Outcome> {
    const ttl = this.d.settings.provisionTokenTtl;
    const { token, exp, cti } = this.mint(d.device.id, d.device.pk, d.device.type, ttl, now);
    const device: DeviceRecord = withChanges(d.device, { lastCti: cti, tokenExp: exp });
    const muts: Mutation[] = [{ kind: 'device.upsert', device }, ...extra];
    if (d.consumeAllow) muts.push({ kind: 'allow.consume', id: device.id, at: now });
    if (d.clearPending) muts.push({ kind: 'pending.delete', id: device.id });
    muts.push(this.event(now, 'provision.approved', device.id, 'device', device.source, { via: d.via, cti, exp }));
    // Durability (docs/architecture.md "Durability"): the token leaves only after this commit.
    await this.d.store.apply(muts);
    return this.issued(device.id, token, exp, ttl, xk, now, peer);
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

  /**
   * The 2.01. It carries the nonce for the device's next POST (its refresh) in key 4, valid until the
   * token expires and bound to the address it is sent to (docs/spec/idprov-coap-v1.md §3, issue 17):
   * a device that keeps it refreshes in one round trip instead of two; one that ignores it starts its
   * refresh without a nonce and gets a 4.01 challenge, as before.
   */
  private issued(id: string, token: Buffer, exp: number, ttl: number, xk: Uint8Array | undefined, now: number, peer: string): Outcome {
    const body: ResponseBody = { status: STATUS.approved, nonce: this.nonce(id, exp - now, now, peer), exp, ttl };
    if (xk) body.sealed = sealToken(token, xk);
    else body.token = token;
    if (this.d.settings.hubUri) body.hub = this.d.settings.hubUri;
    return { kind: 'approved', body };
  }

  /**
   * `POST /idprov/refresh` (docs/spec/idprov-coap-v1.md §2, §5). Works while provisioning is disabled. Never throws.
   * The nonce gate comes before the token's signature, so a request without a valid nonce for its
   * address costs no verify (§3); a token or request signature that fails burns the nonce.
   */
  refresh(payload: Uint8Array, ctx: RequestContext): Promise<Outcome> {
    return this.handle('refresh', ctx, async (now, t0, setId, scope) => {
      const got = this.decode(scope, t0, () => {
        const env = parseSign1(payload, 'refresh');
        return { env, body: parseRefreshBody(env.payload) };
      });
      if (isOutcome(got)) return got;
      const { env, body } = got;
      setId(body.id);
      const gate = this.admit(body.id, body.nonce, scope, now, t0);
      if (gate) return gate;
      const nonce = body.nonce!;
      let cnf: Uint8Array;
      try {
        const claims = this.d.keyring.verify(body.token, now);
        if (claims.sub !== body.id) throw new ProvError('key-mismatch', 'the token was issued to another device ID');
        cnf = claims.cnf;
      } catch (e) {
        this.burn(nonce, now);
        throw e;
      }
      if (!ed25519Verify(this.pkCache, cnf, sigStructure(env.protectedBytes, env.payload), env.signature)) {
        this.burn(nonce, now);
        return this.challenge(body.id, 'bad-signature', 'the signature does not verify', now, scope.address);
      }
      return this.mutex.run(body.id, async () => {
        const t = this.now();
        const rec = await this.d.store.loadSubject(body.id);
        const stop = this.spend(body.id, cnf, keyStanding({ id: body.id, pk: cnf }, rec, t), nonce, scope.address, t, t0);
        if (stop) return stop;
        const source = peerText(ctx.source);
        const d = decideRefresh({ id: body.id, cnf, source }, rec, this.d.settings.policy, t);
        if (d.kind === 'refuse') {
          await this.d.store.apply([this.event(t, 'refresh.refused', body.id, 'device', source, { code: d.code })]);
          return errorOutcome(d.code, d.reason, d.retryS);
        }
        const ttl = this.d.settings.tokenTtl;
        const { token, exp, cti } = this.mint(d.device.id, d.device.pk, d.device.type, ttl, t);
        await this.d.store.apply([
          usedOnce(nonce),
          { kind: 'device.upsert', device: withChanges(d.device, { lastCti: cti, tokenExp: exp }) },
          this.event(t, 'refresh.issued', body.id, 'device', source, { cti, exp }),
        ]);
        return this.issued(body.id, token, exp, ttl, body.xk, t, scope.address);
      });
    });
  }

  /** The COSE_KeySet of `/idprov/keys`. */
  keySet(): Buffer {
    return this.d.keyring.keySet(this.now());
  }

  private failure(e: unknown, op: string, id: string | undefined, ctx: RequestContext): Outcome {
    if (isProvError(e) && e.code === 'unavailable') {
      // The database is down or unreachable (a shared PostgreSQL restarting): the device retries after
      // Max-Age, possibly at another instance. Its message names the database: logged, not sent.
      this.d.log.warn({ err: e.message, op, id, src: peerText(ctx.source) }, 'store unavailable');
      return errorOutcome('unavailable', 'the server cannot reach its database; retry later', STORE_UNAVAILABLE_RETRY_S);
    }
    if (isProvError(e)) {
      const retry = ERROR_TABLE[e.code].coap === '4.03' ? this.d.settings.policy.rejectedRetryS : undefined;
      return errorOutcome(e.code, e.message, retry);
    }
    this.d.log.error({ err: e, op, id, src: peerText(ctx.source) }, 'internal error while handling a request');
    return errorOutcome('internal', 'internal error');
  }

  private logOutcome(op: 'request' | 'refresh', id: string | undefined, ctx: RequestContext, out: Outcome, t0: number): void {
    const outcome = out.kind;
    const code = formatCode(outcomeCode(out));
    const ms = this.d.clock() - t0;
    this.d.log.info(
      { evt: 'provision', op, id, outcome, code, err: out.body.err, src: peerText(ctx.source), psk: ctx.pskIdentity !== undefined || undefined, ms },
      out.body.diag ?? outcome,
    );
    this.d.observe?.(op, outcome, code, ms);
  }

  private event(at: number, kind: string, deviceId: string, actor: string, source: string | undefined, detail?: Record<string, unknown>): Mutation {
    const event: EventRecord = { at, kind, deviceId, actor };
    if (source) event.source = source;
    if (detail) event.detail = detail;
    return { kind: 'event', event };
  }

  /**
   * The maintenance sweep over this service's store and monitor settings (src/service/sweep.ts),
   * after a flush of the sightings (expiry and trimming go by when a request was last seen).
   */
  async sweep(): Promise<SweepResult> {
    await this.flushSightings();
    return sweep(this.d.store, this.d.log, this.now(), this.monitor.settings);
  }

  /** Sightings of waiting devices not yet written (metrics, tests). */
  get unflushedSightings(): number {
    return this.sightings.size;
  }

  /**
   * Write the sightings of waiting devices noted since the last flush, in one transaction
   * (src/service/pending-seen.ts): the composition root calls it every few seconds and at close.
   * Resolves with how many were written; after a failure they are kept for the next flush.
   */
  flushSightings(): Promise<number> {
    if (this.flushing) return this.flushing.then(() => this.flushSightings());
    if (this.sightings.size === 0) return Promise.resolve(0);
    const { muts, restore } = this.sightings.drain();
    const run = this.d.store.apply(muts).then(
      () => muts.length,
      (e: unknown) => {
        restore();
        throw e;
      },
    );
    this.flushing = run.finally(() => (this.flushing = undefined)).catch(() => 0);
    return run;
  }

  private flushSoon(): void {
    if (this.flushing) return;
    this.flushSightings().catch((e: unknown) => this.d.log.warn({ err: (e as Error).message }, 'writing the sightings of waiting devices failed'));
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

/**
 * The used-once mark of `nonce` for the store, in the same transaction as the records of the answer it
 * buys: a store shared by several instances refuses it there when another instance used it first
 * (issue 16; see the `nonce.use` mutation).
 */
function usedOnce(nonce: Uint8Array): Mutation {
  return { kind: 'nonce.use', nonce, expires: nonceExpiry(nonce) };
}

/** `req` without its DTLS-PSK identity (a session whose key no longer proves the secret). */
function withoutPsk<T extends { pskIdentity?: string }>(req: T): T {
  const { pskIdentity: _dropped, ...rest } = req;
  return rest as T;
}
