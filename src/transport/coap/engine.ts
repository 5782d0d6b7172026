/**
 * The CoAP server engine (RFC 7252, with RFC 7959 Block2 and RFC 6690 discovery).
 *
 * It serves typed requests to resource handlers over any number of {@link DatagramTransport}s (UDP
 * v4/v6, DTLS sessions, in-memory pairs) and knows nothing of provisioning. It is built to stay up
 * under hostile input: every datagram is decoded strictly and never throws out of the receive path;
 * every piece of per-peer state (deduplication, block cache, handlers in flight, confirmable
 * responses awaiting an ACK) has a hard bound; and there are no per-request timers — one sweep timer
 * drives empty ACKs and handler time-outs, and only separate (CON) responses, themselves capped,
 * carry a retransmission timer.
 *
 * Behaviour and the choices the RFCs leave open:
 * - CON request → piggybacked response in the ACK (§5.2.1). When the handler has not answered after
 *   `separateResponseAfterMs`, an Empty ACK is sent and the response follows as a separate CON
 *   (§5.2.2), retransmitted with exponential back-off until ACKed or RST (§4.2, §4.8).
 * - NON request → NON response (§5.2.3). Empty CON ("ping") → RST (§4.3).
 * - Duplicates (§4.5): a retransmitted CON or NON (same peer and Message ID) within
 *   EXCHANGE_LIFETIME / NON_LIFETIME is answered by replaying the encoded response; a duplicate that
 *   arrives while the handler still runs is ignored, or answered with the Empty ACK when one was
 *   already sent. The handler never runs twice for one message.
 * - Message format errors (§3, §4.2/§4.3): a CON with a readable header is rejected with RST;
 *   anything else malformed is dropped silently. Datagrams that are not CoAP version 1 are ignored.
 * - Option problems in a well-formed request: unrecognised critical option → 4.02 for CON, and the
 *   NON is rejected with RST (§5.4.1); a recognised option with an invalid value (Block2 SZX 7,
 *   non-UTF-8 Uri-Path/Uri-Query) → 4.00; Proxy-Uri/Proxy-Scheme → 5.05 (§5.10.2).
 * - Block1 on a request → 4.13 with Size1 = `maxPayload`: this server does not reassemble request
 *   bodies (RFC 7959 §2.9.3); its requests fit in one datagram by contract (docs/spec/idprov-coap-v1.md §1).
 * - Payload over `maxPayload` → 4.13 with Size1 (RFC 7959 §4). Content-Format present and not in
 *   the resource's `accepts` → 4.15 (§5.10.3). Accept present and different from the resource's
 *   declared `ct` → 4.06 (§5.10.4), checked before the handler runs.
 * - Multicast requests (§8.2): answered NON, error responses suppressed, never RST; a
 *   `/.well-known/core` query that matches nothing is not answered (RFC 6690 §4.1). No Leisure
 *   delay is applied (§8.2 makes it a SHOULD for large groups; discovery here is one server).
 * - Requests from an unverified address (no DTLS session: the source may be spoofed, §11.3) can be
 *   bounded with `unverified`: `admit` is asked first (a refusal is 4.29 with Max-Age, silence to a
 *   group), and no answer is larger than `amplificationFactor` times the request datagram: a larger
 *   success goes block-wise with a block small enough (RFC 7959 §2.2: the server may pick a smaller
 *   block than asked), an error loses its diagnostic payload, and what still does not fit is not
 *   sent. A DTLS session's address is proven by its handshake, so its answers are not bounded — unless
 *   a Connection ID record moved it to an address it has not proven (`peer.addressUnproven`).
 * - Handler exceptions or invalid handler results → 5.00 and a (rate-limited) log line. Handlers in
 *   flight are capped (`maxInFlight`, beyond it 5.03 with Max-Age 1, not cached so that the client's
 *   retransmission can succeed) and time out after `handlerTimeoutMs` (5.03).
 * - Not implemented: Observe (RFC 7641, the option is ignored as elective), No-Response (RFC 7967,
 *   ignored), conditional requests (If-Match/If-None-Match are critical → 4.02), NSTART limiting of
 *   separate responses per client (§4.7; they are rare and globally capped instead).
 *
 * The engine is in layers over the datagram connector, as Californium's CoapUdpStack stacks them:
 * - `server.ts`: attaches transports, sorts datagrams, admits unverified sources, dispatches
 *   requests to resources (`resources.ts`), and runs the send path through the layers below; a
 *   peer's key in the tables comes from `peer-ids.ts`;
 * - `options.ts`: what a request's options allow, handler answers checked, response options written;
 * - `block2.ts`: block-wise responses and their cache (`block-cache.ts`), within the amplification bound;
 * - `reliability.ts`: CON/ACK/RST and message IDs, deduplication (`dedup.ts`), handlers in flight
 *   and their one sweep timer, retransmission of separate responses (`timings.ts`);
 * - `api.ts`: the types resources and the composition root see; `settings.ts`: the options checked.
 */
export * from './api.ts';
export { coapTimings, type CoapTimings, type TransmissionParameters } from './timings.ts';
export { CoapServer } from './server.ts';
