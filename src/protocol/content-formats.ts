/**
 * The CoAP Content-Format numbers idprov uses (docs/spec/idprov-coap-v1.md §1; IANA "CoAP
 * Content-Formats"). The one place they are written down: the device API, the engine's
 * `/.well-known/core` and the tools import them from here.
 */
export const CF = {
  /** application/link-format (RFC 6690): `/.well-known/core`. */
  linkFormat: 40,
  /** application/cose; cose-type="cose-sign1": the signed request envelope (§2). */
  coseSign1: 18,
  /** application/cbor: every response body (§4). */
  cbor: 60,
  /** application/cose-key-set: `/idprov/keys`. */
  coseKeySet: 102,
} as const;

/** One of {@link CF}'s numbers. */
export type ContentFormat = (typeof CF)[keyof typeof CF];
