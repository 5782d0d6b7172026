/**
 * The DTLS-PSK rule (docs/dtls.md, docs/spec/idprov-coap-v1.md §6): which allowlist entry yields a
 * pre-shared key. Pure: the caller reads the entry and passes the clock.
 */
import { pskOf } from '../protocol/allowlist.ts';

/**
 * The PSK of an allowlist entry: its out-of-band secret when the entry is unexpired and the secret is
 * a usable key, else undefined. An over-long secret (only an old database can hold one) is no key:
 * F8 of the security review.
 */
export function livePsk(entry: { secret?: string; expires?: number }, nowS: number): Buffer | undefined {
  const secret = pskOf(entry.secret);
  const live = secret !== undefined && secret.length > 0 && !(entry.expires !== undefined && entry.expires <= nowS);
  return live ? secret : undefined;
}
