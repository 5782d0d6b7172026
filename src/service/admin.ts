/**
 * Admin use cases: approve, reject, revoke, re-enable, the provisioning switch, one allowlist entry
 * (put, delete) and token-key rotation; imports go through `allowlist-import.ts`, the one import
 * path. Every action is recorded in the event log with who did it. The HTTP sidecar and the CLI are
 * thin layers over this.
 */
import type { AllowEntry, EventRecord, FlagRecord, PendingRecord } from '../domain.ts';
import { ProvError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { entryProblem } from '../protocol/allowlist.ts';
import type { Mutation, Store } from '../store/store.ts';
import { fingerprintMatches, keyFingerprint } from '../tokens/ed25519.ts';
import { newTokenKey, type TokenKeyring } from '../tokens/keyring.ts';
import type { SecurityMonitor } from './monitor/security-monitor.ts';
import { SETTING_NONCE_SECRET, nonceSecretRotation } from './nonce-secret.ts';
import type { ProvisioningSwitch } from './switch.ts';

export const SETTING_ENABLED = 'provisioning.enabled';
export const SETTING_REASON = 'provisioning.reason';

/** Who performs an admin action (`admin:<name>`, `cli`, `system`) and from where. */
export interface Actor {
  by: string;
  source?: string;
}

/** Dependencies of the admin service. `monitor` and `switch` are absent in offline CLI commands. */
export interface AdminDeps {
  store: Store;
  keyring: TokenKeyring;
  log: Logger;
  /** Seconds since the epoch. */
  now: () => number;
  /** The security monitor the running provisioning service shares (its open flags are cleared here). */
  monitor?: SecurityMonitor;
  /** The provisioning switch the running provisioning service reads (turned here). */
  switch?: ProvisioningSwitch;
}

export class AdminService {
  private readonly store: Store;
  private readonly keyring: TokenKeyring;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly monitor: SecurityMonitor | undefined;
  private readonly switch: ProvisioningSwitch | undefined;

  constructor(d: AdminDeps) {
    this.store = d.store;
    this.keyring = d.keyring;
    this.log = d.log;
    this.now = d.now;
    this.monitor = d.monitor;
    this.switch = d.switch;
  }

  private event(kind: string, actor: Actor, deviceId?: string, detail?: Record<string, unknown>): Mutation {
    const event: EventRecord = { at: this.now(), kind, actor: actor.by };
    if (deviceId) event.deviceId = deviceId;
    if (actor.source) event.source = actor.source;
    if (detail) event.detail = detail;
    this.log.info({ evt: 'admin', kind, id: deviceId, by: actor.by, src: actor.source }, kind);
    return { kind: 'event', event };
  }

  /** Load the persisted provisioning switch (at start). */
  async loadSwitch(): Promise<void> {
    const enabled = (await this.store.getSetting(SETTING_ENABLED)) !== 'false';
    const reason = await this.store.getSetting(SETTING_REASON);
    this.switch?.set(enabled ? { enabled } : { enabled, reason: reason || 'provisioning is disabled by an admin' });
  }

  /** Enable or disable `/idprov/request` (refresh keeps working). Durable before it takes effect. */
  async setProvisioning(enabled: boolean, reason: string | undefined, actor: Actor): Promise<void> {
    await this.store.apply([
      { kind: 'setting.put', name: SETTING_ENABLED, value: String(enabled) },
      { kind: 'setting.put', name: SETTING_REASON, value: enabled ? '' : (reason ?? '') },
      this.event(enabled ? 'admin.enable' : 'admin.disable', actor, undefined, reason ? { reason } : undefined),
    ]);
    this.switch?.set(enabled ? { enabled } : { enabled, reason: reason || 'provisioning is disabled by an admin' });
  }

  /**
   * Record an alert the server raised itself (e.g. `alert.rogue-server`, docs/spec/idprov-coap-v1.md §7) in the event
   * log, so that it shows in the event feed. Does not change the provisioning switch.
   */
  async recordAlert(kind: `alert.${string}`, detail: Record<string, unknown>, actor: Actor = { by: 'system' }): Promise<void> {
    await this.store.apply([this.event(kind, actor, undefined, detail)]);
  }

  /**
   * Approve a pending request, pinned to the key the admin was shown: `fingerprint` (as listed, in any
   * spelling `canonicalFingerprint` accepts, or in the format before issue 14) or the full key hex must
   * match the pending record's key, else `conflict`.
   */
  async approve(id: string, pin: { fingerprint?: string; pkHex?: string }, actor: Actor): Promise<PendingRecord> {
    const p = await this.store.getPending(id);
    if (!p) throw new ProvError('not-found', `no pending request for ${id}`);
    if (p.status === 'rejected') throw new ProvError('conflict', `${id} was rejected; re-admit it first`);
    if (!pin.fingerprint && !pin.pkHex) throw new ProvError('malformed', 'approval must name the key shown (fingerprint or pk)');
    const fp = keyFingerprint(p.pk);
    if ((pin.fingerprint && !fingerprintMatches(p.pk, pin.fingerprint)) || (pin.pkHex && pin.pkHex.toLowerCase() !== Buffer.from(p.pk).toString('hex'))) {
      throw new ProvError('conflict', `the key of ${id} changed since it was shown (now ${fp}); review it again`);
    }
    const next: PendingRecord = { ...withoutReason(p), status: 'approved', decidedAt: this.now(), decidedBy: actor.by };
    await this.store.apply([{ kind: 'pending.upsert', pending: next }, this.event('admin.approve', actor, id, { fingerprint: fp })]);
    return next;
  }

  /** Reject a device ID: its requests get 4.03 `rejected`, even if an allowlist entry exists. */
  async reject(id: string, reason: string | undefined, actor: Actor): Promise<void> {
    const p = await this.store.getPending(id);
    const now = this.now();
    const decision = { status: 'rejected' as const, decidedAt: now, decidedBy: actor.by, ...(reason ? { decidedReason: reason } : {}) };
    const next: PendingRecord = p
      ? { ...withoutReason(p), ...decision }
      : { id, pk: new Uint8Array(0), type: 0, source: '', firstSeen: now, lastSeen: now, count: 0, ...decision };
    await this.store.apply([{ kind: 'pending.upsert', pending: next }, this.event('admin.reject', actor, id, reason ? { reason } : undefined)]);
  }

  /** Undo a rejection: the ID is unknown again (its next request waits for approval). */
  async unreject(id: string, actor: Actor): Promise<void> {
    const p = await this.store.getPending(id);
    if (p?.status !== 'rejected') throw new ProvError('not-found', `${id} is not rejected`);
    await this.store.apply([{ kind: 'pending.delete', id }, this.event('admin.unreject', actor, id)]);
  }

  /** Revoke a provisioned device: refresh stops at once, requests get 4.03 `revoked`. */
  async revoke(id: string, reason: string | undefined, actor: Actor): Promise<void> {
    const dev = await this.store.getDevice(id);
    if (!dev) throw new ProvError('not-found', `no device ${id}`);
    const revocation = { id, at: this.now(), by: actor.by, ...(reason ? { reason } : {}) };
    await this.store.apply([{ kind: 'revocation.put', revocation }, this.event('admin.revoke', actor, id, reason ? { reason } : undefined)]);
  }

  /** Lift a revocation. */
  async reenable(id: string, actor: Actor): Promise<void> {
    if (!(await this.store.getRevocation(id))) throw new ProvError('not-found', `${id} is not revoked`);
    await this.store.apply([{ kind: 'revocation.delete', id }, this.event('admin.reenable', actor, id)]);
  }

  /**
   * Clear a flag of the security monitor (README "Security monitor"): it closes, stays in the list
   * as cleared (with who and when), and no longer holds its devices. The same observation later
   * raises a new flag.
   */
  async clearFlag(id: string, note: string | undefined, actor: Actor): Promise<FlagRecord> {
    const stored = await this.store.getFlag(id);
    if (!stored) throw new ProvError('not-found', `no flag ${id}`);
    if (stored.clearedAt !== undefined) throw new ProvError('conflict', `flag ${id} was already cleared by ${stored.clearedBy ?? '?'}`);
    // The running monitor's copy is the newest (count, last seen); take it out before the write so
    // that no observation can re-open the row in between.
    const current = this.monitor?.takeFlag(id) ?? stored;
    const cleared: FlagRecord = { ...current, clearedAt: this.now(), clearedBy: actor.by };
    const detail: Record<string, unknown> = { flag: id, kind: cleared.kind, deviceIds: cleared.deviceIds, count: cleared.count };
    if (note) detail['note'] = note;
    await this.store.apply([{ kind: 'flag.put', flag: cleared }, this.event('flag.cleared', actor, cleared.deviceIds[0], detail)]);
    this.monitor?.flagCleared(cleared);
    return cleared;
  }

  /**
   * Add or replace one allowlist entry (`PUT /api/v1/allowlist/{id}`, `oob allow`), validated like a
   * row of a file. Written with its event `admin.allowlist.put` in one transaction. Returns the entry
   * and whether it is new. @throws ProvError `malformed` for an entry over the bounds of a row.
   */
  async putAllow(entry: AllowEntry, actor: Actor): Promise<{ entry: AllowEntry; created: boolean }> {
    const problem = entryProblem(entry);
    if (problem) throw new ProvError('malformed', `allowlist entry ${JSON.stringify(entry.id.slice(0, 80))}: ${problem}`);
    const created = (await this.store.getAllow(entry.id)) === undefined;
    const detail = { created, pk: entry.pk !== undefined, mac: entry.mac !== undefined, secret: entry.secret !== undefined };
    await this.store.apply([{ kind: 'allow.upsert', entry }, this.event('admin.allowlist.put', actor, entry.id, detail)]);
    return { entry, created };
  }

  /** Delete an allowlist entry. */
  async deleteAllow(id: string, actor: Actor): Promise<void> {
    if (!(await this.store.getAllow(id))) throw new ProvError('not-found', `no allowlist entry ${id}`);
    await this.store.apply([{ kind: 'allow.delete', id }, this.event('admin.allowlist.delete', actor, id)]);
  }

  /**
   * Rotate the nonce secret kept in the database (docs/scale-out.md "Nonce secret"): a fresh one makes
   * nonces from now on; the one it replaces is still accepted for `graceS` seconds (one nonce lifetime
   * plus the pick-up time), so no device is turned away mid-flight. Written with its
   * `admin.nonce-secret.rotate` event in one transaction. Returns when the previous secret stops.
   */
  async rotateNonceSecret(graceS: number, actor: Actor): Promise<{ previousUntil: number }> {
    const now = this.now();
    const current = await this.store.getSetting(SETTING_NONCE_SECRET);
    const { mutations, previousUntil } = nonceSecretRotation(current, now, graceS);
    await this.store.apply([...mutations, this.event('admin.nonce-secret.rotate', actor, undefined, { previousUntil })]);
    return { previousUntil };
  }

  /**
   * Add a new token key and make it the signer; the previous key is retired but keeps verifying (and
   * stays in the key set) until every token it signed has expired.
   */
  async rotateKey(actor: Actor): Promise<string> {
    const keys = await this.store.listKeys();
    const now = this.now();
    const fresh = newTokenKey(now);
    const muts: Mutation[] = keys.filter((k) => k.retiredAt === undefined).map((k) => ({ kind: 'key.put', key: { ...k, retiredAt: now } }) as Mutation);
    muts.push({ kind: 'key.put', key: fresh }, this.event('admin.keys.rotate', actor, undefined, { kid: fresh.kid }));
    await this.store.apply(muts);
    this.keyring.load(await this.store.listKeys());
    return fresh.kid;
  }
}

/** Make sure a token key exists (first start); returns the keys, newest first. */
export async function ensureTokenKey(store: Store, now: number): Promise<Awaited<ReturnType<Store['listKeys']>>> {
  let keys = await store.listKeys();
  if (keys.length === 0) {
    await store.apply([{ kind: 'key.put', key: newTokenKey(now) }]);
    keys = await store.listKeys();
  }
  return keys;
}

/** `p` without a rejection reason (a new decision replaces the old one whole). */
function withoutReason(p: PendingRecord): PendingRecord {
  const { decidedReason: _reason, ...rest } = p;
  return rest;
}
