/**
 * The CoAP engine's options, checked once and with their defaults filled in. Every problem is
 * reported in one RangeError, so a bad configuration fails at start-up with all its mistakes named.
 */
import { performance } from 'node:perf_hooks';
import type { CoapServerOptions, UnverifiedLimits } from './api.ts';
import type { BlockCacheLimits } from './block-cache.ts';
import { szxOf } from './block-cache.ts';
import type { ReliabilitySettings } from './reliability.ts';
import { coapTimings } from './timings.ts';

/** Everything the layers of the engine run on. */
export interface EngineSettings {
  now: () => number;
  random: () => number;
  maxPayload: number;
  /** Our Block2 block size as SZX. */
  szx: number;
  blockCache: BlockCacheLimits;
  reliability: ReliabilitySettings;
  maxInFlight: number;
  /** Largest answer to an unverified address, as a multiple of its request (Infinity: no bound). */
  amplification: number;
  admit: UnverifiedLimits['admit'];
}

export function resolveSettings(opts: CoapServerOptions): EngineSettings {
  const problems: string[] = [];
  const check = (name: string, v: number | undefined, min: number, max: number): number | undefined => {
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) problems.push(`${name} must be in ${min}..${max}`);
    return v;
  };
  const maxPayload = check('maxPayload', opts.maxPayload, 0, 65_000) ?? 1024;
  const separateResponseAfterMs = check('separateResponseAfterMs', opts.separateResponseAfterMs, 0, 3_600_000) ?? 1500;
  let szx = 6;
  try {
    if (opts.blockSize !== undefined) szx = szxOf(opts.blockSize);
  } catch {
    problems.push('blockSize must be a power of two 16..1024');
  }
  const tp = opts.transmission ?? {};
  check('transmission.ackTimeoutMs', tp.ackTimeoutMs, 1, 600_000);
  check('transmission.ackRandomFactor', tp.ackRandomFactor, 1, 10);
  check('transmission.maxRetransmit', tp.maxRetransmit, 0, 20);
  const timings = coapTimings(tp);
  const d = opts.dedup ?? {};
  const maxEntries = check('dedup.maxEntries', d.maxEntries, 1, 10_000_000) ?? 20_000;
  const perPeer = check('dedup.perPeer', d.perPeer, 1, 65_536) ?? 32;
  const conLifetimeMs = check('dedup.lifetimeMs', d.lifetimeMs, 0, 86_400_000) ?? timings.exchangeLifetimeMs;
  const nonLifetimeMs = Math.min(check('dedup.nonLifetimeMs', d.nonLifetimeMs, 0, 86_400_000) ?? timings.nonLifetimeMs, conLifetimeMs);
  const bc = opts.blockCache ?? {};
  const blockCache = {
    maxEntries: check('blockCache.maxEntries', bc.maxEntries, 0, 1_000_000) ?? 1024,
    maxBytes: check('blockCache.maxBytes', bc.maxBytes, 0, 1 << 30) ?? 16 << 20,
    lifetimeMs: check('blockCache.lifetimeMs', bc.lifetimeMs, 0, 86_400_000) ?? 60_000,
  };
  const maxInFlight = check('maxInFlight', opts.maxInFlight, 1, 10_000_000) ?? 4096;
  const handlerTimeoutMs = check('handlerTimeoutMs', opts.handlerTimeoutMs, 1, 86_400_000) ?? 60_000;
  const maxPendingConfirmable = check('maxPendingConfirmable', opts.maxPendingConfirmable, 0, 10_000_000) ?? 4096;
  const amplification = check('unverified.amplificationFactor', opts.unverified?.amplificationFactor, 1, 1000) ?? Infinity;
  if (problems.length > 0) throw new RangeError(`invalid CoapServer options: ${problems.join('; ')}`);
  return {
    now: opts.now ?? (() => performance.now()),
    random: opts.random ?? Math.random,
    maxPayload,
    szx,
    blockCache,
    reliability: {
      timings,
      dedup: { maxEntries, perPeer },
      conLifetimeMs,
      nonLifetimeMs,
      separateResponseAfterMs,
      handlerTimeoutMs,
      maxPendingConfirmable,
    },
    maxInFlight,
    amplification,
    admit: opts.unverified?.admit,
  };
}
