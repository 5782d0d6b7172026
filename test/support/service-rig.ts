/**
 * A provisioning service on a real SQLite store with a fake clock and no transport, for the attack
 * tests (issue #11): requests go straight to `request`/`refresh` with any source address, as a spoofer
 * would send them.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { AllowEntry } from '../../src/domain.ts';
import { silentLogger } from '../../src/log.ts';
import { DEFAULTS } from '../../src/config.ts';
import { AdminService, ensureTokenKey } from '../../src/service/admin.ts';
import { AllowlistImporter } from '../../src/service/allowlist-import.ts';
import { coapCode, toCoap } from '../../src/device-api/resources.ts';
import type { PeerAddress } from '../../src/net/address.ts';
import { formatCode } from '../../src/protocol/coap-codes.ts';
import { ProvisioningService, type MonitorSettings, type Outcome, type ServiceSettings } from '../../src/service/provisioning.ts';
import { serviceSettings } from '../../src/service/settings.ts';
import { SqliteStore } from '../../src/store/sqlite/store.ts';
import { TokenKeyring } from '../../src/tokens/keyring.ts';
import { tempDir } from './temp-dir.ts';
import { TestDevice } from './device.ts';

export const T0 = 1_800_000_000;

/** The configured defaults (src/config.ts), with a smaller used-once set. */
export const BASE_SETTINGS: ServiceSettings = { ...serviceSettings(DEFAULTS), maxUsedNonces: 10_000 };

export interface Rig {
  store: SqliteStore;
  svc: ProvisioningService;
  admin: AdminService;
  /** The one allowlist import path, on this rig's store and clock. */
  importer: AllowlistImporter;
  clock: { ms: number };
  /** Move the fake clock on by `s` seconds. */
  tick(s: number): void;
  close(): Promise<void>;
}

/** Start a service with `settings` (and `monitor`) over the defaults of {@link BASE_SETTINGS}. */
export async function rig(settings: Partial<Omit<ServiceSettings, 'monitor'>> & { monitor?: Partial<MonitorSettings> } = {}, monitor: Partial<MonitorSettings> = {}): Promise<Rig> {
  const t = tempDir();
  const store = await SqliteStore.open(join(t.dir, 'db.sqlite'));
  const clock = { ms: T0 * 1000 };
  const keyring = new TokenKeyring(await ensureTokenKey(store, T0), 30 * 86400);
  const svc = new ProvisioningService({
    store,
    keyring,
    log: silentLogger,
    clock: () => clock.ms,
    random: randomBytes,
    nonceSecret: randomBytes(32),
    settings: { ...BASE_SETTINGS, ...settings, monitor: { ...BASE_SETTINGS.monitor, ...settings.monitor, ...monitor } },
  });
  await svc.start();
  const admin = new AdminService({ store, keyring, log: silentLogger, now: () => svc.now(), monitor: svc.monitor, switch: svc.switch });
  return {
    store,
    svc,
    admin,
    importer: new AllowlistImporter(store, () => svc.now(), DEFAULTS.minSecretLength),
    clock,
    tick(s) {
      clock.ms += s * 1000;
    },
    async close() {
      await store.close();
      t.cleanup();
    },
  };
}

/**
 * A peer written as `a.b.c.d:port` or `[v6]:port`, for readable tests (the service takes
 * `{address, port}`; nothing in src/ parses such text).
 */
export function peer(text: string): PeerAddress {
  const m = /^\[(.*)\]:(\d+)$/.exec(text) ?? /^([^:]*):(\d+)$/.exec(text);
  assert.ok(m, `a peer: ${text}`);
  return { address: m[1]!, port: Number(m[2]) };
}

/** The CoAP code the device API answers `o` with, as `c.dd`. */
export const codeOf = (o: Outcome): string => formatCode(coapCode(o));

/** The Max-Age the device API answers `o` with. */
export const maxAgeOf = (o: Outcome): number | undefined => toCoap(o).maxAge;

/** Allowlist `dev`'s key (and any other factors given). */
/** Fields of an allowlist entry to override; `undefined` leaves one out (`pk: undefined`: an entry without a key). */
export type AllowOverrides = { [K in keyof AllowEntry]?: AllowEntry[K] | undefined };

export function allow(r: Rig, dev: TestDevice, extra: AllowOverrides = {}): Promise<unknown> {
  const fields = Object.entries({ id: dev.id, pk: dev.pk, type: 0, createdAt: r.svc.now(), ...extra }).filter(([, v]) => v !== undefined);
  return r.importer.importEntries([Object.fromEntries(fields) as unknown as AllowEntry], { actor: { by: 'test' } });
}

/** The nonce challenge from `source`, then the signed request with it from the same source. */
export async function ask(r: Rig, dev: TestDevice, from: string, opts: Parameters<TestDevice['request']>[0] = {}): Promise<Outcome> {
  const source = peer(from);
  const first = await r.svc.request(dev.request({ ...opts, nonce: undefined }), { source });
  assert.equal(codeOf(first), '4.01', `the challenge: ${JSON.stringify(first)}`);
  return r.svc.request(dev.request({ ...opts, nonce: first.body.nonce! }), { source });
}

/** The nonce challenge, then the signed refresh with `token`. */
export async function refresh(r: Rig, dev: TestDevice, token: Uint8Array, from: string): Promise<Outcome> {
  const source = peer(from);
  const first = await r.svc.refresh(dev.refresh(token), { source });
  assert.equal(codeOf(first), '4.01', `the challenge: ${JSON.stringify(first)}`);
  return r.svc.refresh(dev.refresh(token, first.body.nonce!), { source });
}

/** A short description of an outcome for assertion messages. */
export const show = (o: Outcome): string => `${codeOf(o)} ${JSON.stringify({ ...o.body, nonce: undefined, token: undefined })}`;
