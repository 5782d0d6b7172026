/**
 * What the CoAP engine allows a request from an unverified address (see {@link unverifiedLimits}).
 */
import type { Config } from '../config.ts';
import { SourceLimit } from '../policy/source-limit.ts';
import type { UnverifiedLimits } from '../transport/coap/engine.ts';
import { sourceOf } from '../transport/source.ts';
import { IDPROV_POSTS } from './resources.ts';

/**
 * What the CoAP engine allows a request from an unverified address (plain CoAP/UDP, whose source may
 * be spoofed, or a DTLS session a Connection ID moved to an address it has not proven; RFC 7252
 * §11.3, issue 11 F5 and review findings 2, 3, 6): answers at most `coapAmplificationFactor` times
 * the request, and every request that is not a POST to an idprov resource (those are limited by the
 * provisioning service) limited per source address and /64 (`rateLimitGet`, `rateBurstGet`). Anyone
 * can spend that budget with a forged source address, so going over it must not cost a genuine
 * device anything it needs:
 * - a GET (`/.well-known/core`, `/idprov/keys`, and each of their blocks) is still answered, in the
 *   smallest form (16-byte blocks, at most `SMALLEST_EXTRA` bytes longer than the request), so a
 *   spoofer gains next to nothing and the device at the forged address still gets its answer;
 * - anything else (an error: unknown path or method) and any request to a group gets no answer.
 */
export function unverifiedLimits(cfg: Pick<Config, 'coapAmplificationFactor' | 'rateLimitGet' | 'rateBurstGet' | 'rateLimitMaxKeys'>): UnverifiedLimits {
  const answers = new SourceLimit({ rate: cfg.rateLimitGet, burst: cfg.rateBurstGet }, cfg.rateLimitMaxKeys);
  return {
    ...(cfg.coapAmplificationFactor > 0 ? { amplificationFactor: cfg.coapAmplificationFactor } : {}),
    admit: (peer, method, nowMs, path) => {
      if (method === 'POST' && IDPROV_POSTS.has(path)) return 0;
      const src = sourceOf(peer.address);
      if (answers.take(src.address, src.prefix, nowMs).ok) return 0;
      return method === 'GET' && peer.multicast !== true ? 'smallest' : 'drop';
    },
  };
}
