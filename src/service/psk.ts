/**
 * The PSK lookup the DTLS transport asks for a PSK identity (= device ID), over the store and the
 * rule of {@link livePsk}.
 */
import { livePsk } from '../policy/psk.ts';
import type { Store } from '../store/store.ts';

/**
 * The DTLS PSK of a device ID: its out-of-band secret from an unexpired allowlist entry, else
 * undefined. The same steps run for an unknown ID, an entry without a secret and a live one, down to
 * the store read (one row either way; issue 11 F11); the transport then derives a dummy key for the
 * first two (src/transport/dtls/psk.ts).
 */
export function allowlistPsk(store: Pick<Store, 'pskOf'>, nowS: () => number): (id: string) => Promise<Buffer | undefined> {
  return async (id) => livePsk(await store.pskOf(id), nowS());
}

/**
 * Whether a DTLS-PSK session still proves its device's out-of-band secret: the session's key
 * (`matches`, from the transport) is the live PSK of the entry the store holds now. A session outlives
 * the entry it was made with — the secret replaced, the entry removed or expired since the handshake,
 * or a handshake accepted from the in-memory copy ({@link import('./psk-index.ts').PskIndex}) before
 * another instance's change reached it — and then proves nothing.
 */
export function sessionPskHolds(matches: ((key: Uint8Array) => boolean) | undefined, entry: { secret?: string; expires?: number } | undefined, nowS: number): boolean {
  if (matches === undefined || entry === undefined) return false;
  const key = livePsk(entry, nowS);
  return key !== undefined && matches(key);
}
