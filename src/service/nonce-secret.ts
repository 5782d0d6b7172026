/**
 * The nonce secret kept in the database (docs/spec/idprov-coap-v1.md §3; docs/scale-out.md "Nonce
 * secret"): every instance on the database makes and checks nonces with it. A rotation
 * (`idprov nonce-secret rotate`) writes a new secret and keeps the previous one, accepted until one
 * nonce lifetime (plus the time instances take to pick the rotation up) after the rotation, so a
 * device that fetched a nonce just before it is not turned away. Instances read these settings at
 * start, at every change committed on the database (their own or, through LISTEN/NOTIFY, another
 * instance's), every {@link NONCE_SECRET_PICKUP_S}/3 s and on SIGHUP.
 */
import { randomBytes } from 'node:crypto';
import type { NonceSecrets } from '../protocol/nonce.ts';
import type { Mutation, Store } from '../store/store.ts';

export const SETTING_NONCE_SECRET = 'nonce.secret';
export const SETTING_NONCE_PREVIOUS = 'nonce.secret.previous';
export const SETTING_NONCE_PREVIOUS_UNTIL = 'nonce.secret.previous-until';
/** The settings a rotation writes (an instance re-reads the secrets when one of them changes). */
export const NONCE_SECRET_SETTINGS: readonly string[] = [SETTING_NONCE_SECRET, SETTING_NONCE_PREVIOUS, SETTING_NONCE_PREVIOUS_UNTIL];
/**
 * Seconds an instance may take to pick a rotation up (it polls every 10 s): nonces it still makes
 * with the previous secret meanwhile are accepted for their whole lifetime too.
 */
export const NONCE_SECRET_PICKUP_S = 30;

const HEX64 = /^[0-9a-f]{64}$/i;

/**
 * The secrets stored in `store`, or undefined when none is (a new database: the caller creates one).
 * A previous secret past its time, or malformed, is left out.
 */
export async function readNonceSecrets(store: Store, now: number): Promise<NonceSecrets | undefined> {
  const [current, previous, until] = await Promise.all(NONCE_SECRET_SETTINGS.map((n) => store.getSetting(n)));
  if (!current || !HEX64.test(current)) return undefined;
  const out: NonceSecrets = { current: Buffer.from(current, 'hex') };
  const previousUntil = Number(until);
  if (previous && HEX64.test(previous) && Number.isSafeInteger(previousUntil) && previousUntil >= now) {
    out.previous = Buffer.from(previous, 'hex');
    out.previousUntil = previousUntil;
  }
  return out;
}

/** Copies `next` into `into` (the object the provisioning service reads), field by field. */
export function adoptNonceSecrets(into: NonceSecrets, next: NonceSecrets): boolean {
  const same = (a: Uint8Array | undefined, b: Uint8Array | undefined) => (a === undefined ? b === undefined : b !== undefined && Buffer.from(a).equals(b));
  if (same(into.current, next.current) && same(into.previous, next.previous) && into.previousUntil === next.previousUntil) return false;
  into.current = next.current;
  into.previous = next.previous;
  into.previousUntil = next.previousUntil;
  return true;
}

/**
 * The mutations of a rotation at `now`: a fresh secret becomes current, the current one (`currentHex`)
 * stays accepted until `now + graceS`. Returns them with the time the previous one stops.
 */
export function nonceSecretRotation(currentHex: string | undefined, now: number, graceS: number): { mutations: Mutation[]; previousUntil: number } {
  const fresh = randomBytes(32).toString('hex');
  const previousUntil = now + graceS;
  const mutations: Mutation[] = [{ kind: 'setting.put', name: SETTING_NONCE_SECRET, value: fresh }];
  if (currentHex && HEX64.test(currentHex)) {
    mutations.push(
      { kind: 'setting.put', name: SETTING_NONCE_PREVIOUS, value: currentHex.toLowerCase() },
      { kind: 'setting.put', name: SETTING_NONCE_PREVIOUS_UNTIL, value: String(previousUntil) },
    );
  }
  return { mutations, previousUntil };
}
