/**
 * The outcomes of `/idprov/request` and `/idprov/refresh` and their CoAP response codes
 * (docs/spec/idprov-coap-v1.md §4.2): approved → 2.01, pending → 2.05, every other outcome the code
 * its error has in the registry (src/errors.ts). The one place this mapping is written; the device API
 * encodes with it, and the service's log line and metrics name the code with it.
 */
import { ERROR_TABLE, type ProvErrorCode } from '../errors.ts';
import { CoapCode, codeNumber } from './coap-codes.ts';

/** Coarse outcome of one request, for the answer, logs and metrics. */
export type OutcomeKind = 'approved' | 'pending' | 'refused' | 'challenged' | 'malformed' | 'error';

/** The errors whose answer is a challenge (4.01: a fresh nonce, docs/spec/idprov-coap-v1.md §3). */
const CHALLENGES: ReadonlySet<ProvErrorCode> = new Set<ProvErrorCode>(['nonce', 'bad-signature', 'oob-mismatch', 'unauthenticated']);

/** The kind of outcome an error is. */
export function kindOfError(code: ProvErrorCode): Exclude<OutcomeKind, 'approved' | 'pending'> {
  if (code === 'malformed') return 'malformed';
  if (code === 'internal') return 'error';
  return CHALLENGES.has(code) ? 'challenged' : 'refused';
}

const ERROR_CODES = new Map<ProvErrorCode, CoapCode>(Object.entries(ERROR_TABLE).map(([k, v]) => [k as ProvErrorCode, codeNumber(v.coap) as CoapCode]));

/** The CoAP response code of an outcome: its kind, and for every kind but approved and pending its error. */
export function outcomeCode(o: { kind: OutcomeKind; error?: ProvErrorCode }): CoapCode {
  if (o.kind === 'approved') return CoapCode.Created;
  if (o.kind === 'pending') return CoapCode.Content;
  return ERROR_CODES.get(o.error ?? 'internal')!;
}
