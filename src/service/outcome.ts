/**
 * What the provisioning service answers, as values (issue 15): an {@link Outcome} carries the
 * decision — its kind, the error of src/errors.ts, the retry — and the response body; the device API
 * (src/device-api/resources.ts) encodes it to CoAP once. The constructors of the error outcomes are
 * here, pure.
 */
import { ERROR_TABLE, type ProvErrorCode } from '../errors.ts';
import type { PeerAddress } from '../net/address.ts';
import { STATUS, type ResponseBody } from '../protocol/messages.ts';
import { kindOfError, type OutcomeKind } from '../protocol/outcomes.ts';

export type { OutcomeKind } from '../protocol/outcomes.ts';

/**
 * The decision a request ends in, as a value: the transport encodes it once
 * (src/device-api/resources.ts; the CoAP code of each kind and error: src/protocol/outcomes.ts).
 */
export interface Outcome {
  kind: OutcomeKind;
  /** Why, for every kind but approved and pending (the registry of src/errors.ts). */
  error?: ProvErrorCode;
  /** Seconds the device should wait before asking again (CoAP Max-Age), when the answer says. */
  retry?: number;
  body: ResponseBody;
}

/** Where a request came from. */
export interface RequestContext {
  /** The peer's address and port. */
  source: PeerAddress;
  /** DTLS-PSK identity of the session, when the request came over coaps with a PSK suite. */
  pskIdentity?: string;
  /** With `pskIdentity`: whether `key` is the session's PSK (see service/psk.ts `sessionPskHolds`). */
  pskMatches?: (key: Uint8Array) => boolean;
}

/** Outcome for an error code: 4.03 bodies carry status 2 and retry (docs/spec/idprov-coap-v1.md §4). */
export function errorOutcome(code: ProvErrorCode, diag: string, retry?: number): Outcome {
  const info = ERROR_TABLE[code];
  const body: ResponseBody = { diag };
  if (info.err !== undefined) body.err = info.err;
  if (info.coap === '4.03') body.status = STATUS.rejected;
  if (retry !== undefined) body.retry = retry;
  return retry !== undefined ? { kind: kindOfError(code), error: code, retry, body } : { kind: kindOfError(code), error: code, body };
}

/** 4.29: `retry` (key 10, also Max-Age) and `err` 9 (key 15), as docs/spec/idprov-coap-v1.md §4 lists for it. */
export function rateLimited(retryS: number): Outcome {
  return { kind: 'refused', error: 'rate-limited', retry: retryS, body: { retry: retryS, err: ERROR_TABLE['rate-limited'].err! } };
}

/** True for an {@link Outcome} (as opposed to a decoded request). */
export function isOutcome(x: unknown): x is Outcome {
  return typeof x === 'object' && x !== null && 'kind' in x && 'body' in x;
}
