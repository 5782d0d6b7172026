/**
 * The RFC 7252 §4.8 transmission parameters and the §4.8.2 times derived from them, which the
 * reliability layer (retransmission, deduplication lifetimes) runs on.
 */

/** RFC 7252 §4.8 transmission parameters. */
export interface TransmissionParameters {
  ackTimeoutMs: number;
  ackRandomFactor: number;
  maxRetransmit: number;
}

/** The RFC 7252 §4.8.2 times derived from {@link TransmissionParameters}. */
export interface CoapTimings extends TransmissionParameters {
  maxTransmitSpanMs: number;
  maxTransmitWaitMs: number;
  maxLatencyMs: number;
  processingDelayMs: number;
  exchangeLifetimeMs: number;
  nonLifetimeMs: number;
}

/**
 * Derive the RFC 7252 §4.8.2 times from the transmission parameters (defaults: ACK_TIMEOUT 2 s,
 * ACK_RANDOM_FACTOR 1.5, MAX_RETRANSMIT 4 → EXCHANGE_LIFETIME 247 s, NON_LIFETIME 145 s).
 */
export function coapTimings(p: Partial<TransmissionParameters> = {}): CoapTimings {
  const ackTimeoutMs = p.ackTimeoutMs ?? 2000;
  const ackRandomFactor = p.ackRandomFactor ?? 1.5;
  const maxRetransmit = p.maxRetransmit ?? 4;
  const maxTransmitSpanMs = ackTimeoutMs * (2 ** maxRetransmit - 1) * ackRandomFactor;
  const maxTransmitWaitMs = ackTimeoutMs * (2 ** (maxRetransmit + 1) - 1) * ackRandomFactor;
  const maxLatencyMs = 100_000;
  const processingDelayMs = ackTimeoutMs;
  return Object.freeze({
    ackTimeoutMs,
    ackRandomFactor,
    maxRetransmit,
    maxTransmitSpanMs,
    maxTransmitWaitMs,
    maxLatencyMs,
    processingDelayMs,
    exchangeLifetimeMs: maxTransmitSpanMs + 2 * maxLatencyMs + processingDelayMs,
    nonLifetimeMs: maxTransmitSpanMs + maxLatencyMs,
  });
}
