/**
 * Who sent a datagram, for fair shares and rate limits. The one normaliser lives in
 * `src/net/address.ts` (a pure leaf both the transports and the service import); this module keeps
 * the name the transports have always imported.
 */
export { sourceOf, type Source } from '../net/address.ts';
