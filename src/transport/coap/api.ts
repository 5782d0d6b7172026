/**
 * The public face of the CoAP engine: what resources, handlers and the composition root see. The
 * engine itself is in layers over the datagram connector, as Californium stacks them: options
 * (`options.ts`), Block2 (`block2.ts`), reliability (`reliability.ts`), and the server that owns the
 * resources and dispatches requests (`server.ts`); `engine.ts` re-exports it all under one name.
 */
import type { Logger } from '../../log.ts';
import type { Peer } from '../datagram.ts';
import type { TransmissionParameters } from './timings.ts';

export { CoapCode, formatCode } from '../../protocol/coap-codes.ts';

/** Request methods (RFC 7252 §5.8, RFC 8132). */
export type CoapMethod = 'GET' | 'POST' | 'PUT' | 'DELETE' | 'FETCH' | 'PATCH' | 'iPATCH';

/** A request as handed to a {@link Handler}. */
export interface CoapRequest {
  method: CoapMethod;
  /** The Uri-Path options joined as `/a/b` (`/` when there are none). */
  path: string;
  /** The Uri-Query options, in order (e.g. `['rt=idprov*']`). */
  query: string[];
  /** The request's Content-Format, when present. */
  contentFormat?: number | undefined;
  /** The request's Accept option, when present. */
  accept?: number | undefined;
  payload: Buffer;
  /** Where it came from; `peer.multicast` is true for a request received on a group address. */
  peer: Peer;
  /** True for a CON request received by unicast. */
  confirmable: boolean;
  token: Buffer;
  messageId: number;
}

/** An extra response option (number and raw value), e.g. Location-Path (8). */
export interface CoapOption {
  number: number;
  value: Buffer;
}

/** What a {@link Handler} answers. */
export interface CoapResponse {
  /**
   * The response code as the header carries it, `class << 5 | detail`, class 2, 4 or 5: one of
   * {@link CoapCode} (`CoapCode.Content` is 2.05); `formatCode` gives its `c.dd` text for logs.
   */
  code: number;
  contentFormat?: number | undefined;
  /** Max-Age in seconds (§5.10.5); omitted (or undefined) means the default of 60. */
  maxAge?: number | undefined;
  payload?: Buffer | undefined;
  /**
   * Further options. Content-Format, Max-Age, Block1/Block2, Size1/Size2 are managed by the engine and
   * dropped from this list; an ETag here replaces the one the engine adds to block-wise responses.
   */
  options?: CoapOption[];
}

/** A resource handler. It may answer synchronously or with a promise; throwing yields 5.00. */
export type Handler = (req: CoapRequest) => Promise<CoapResponse> | CoapResponse;

/** A resource registered with {@link CoapServer.addResource}. */
export interface CoapResource {
  /** Absolute path, e.g. `/idprov/request`; segments are RFC 3986 pchars without `%`. */
  path: string;
  /** Resource type, listed in `/.well-known/core` (RFC 6690 §3.1). */
  rt?: string;
  /** The Content-Format of its responses: listed in `/.well-known/core`, checked against Accept. */
  ct?: number;
  /** Human-readable title for `/.well-known/core`. */
  title?: string;
  methods: Partial<Record<CoapMethod, Handler>>;
  /** Allowed request Content-Formats; a request whose Content-Format is present and not listed → 4.15. */
  accepts?: number[];
  /** Leave the resource out of `/.well-known/core`. */
  hidden?: boolean;
}

/** Construction options for {@link CoapServer}. */
export interface CoapServerOptions {
  log: Logger;
  /** Largest request payload accepted (bytes, default 1024); larger → 4.13 with Size1. */
  maxPayload?: number;
  dedup?: {
    /** Remembered exchanges across all peers (default 20 000). */
    maxEntries?: number;
    /** Remembered exchanges per peer (default 32). */
    perPeer?: number;
    /** How long a CON exchange is remembered (default EXCHANGE_LIFETIME, 247 000 ms). */
    lifetimeMs?: number;
    /** How long a NON exchange is remembered (default NON_LIFETIME, 145 000 ms, at most `lifetimeMs`). */
    nonLifetimeMs?: number;
  };
  /** The clock (ms, monotonic is best). Defaults to `performance.now`. */
  now?: () => number;
  /** When a CON's handler has not answered after this long, send an Empty ACK (default 1500 ms). */
  separateResponseAfterMs?: number;
  /** Block size for Block2 responses, a power of two 16..1024 (default 1024). */
  blockSize?: number;
  /** Bounds of the cache of large responses served block-wise. */
  blockCache?: { maxEntries?: number; maxBytes?: number; lifetimeMs?: number };
  /** Handlers running at once (default 4096); beyond it requests get 5.03. */
  maxInFlight?: number;
  /** A handler still running after this long is abandoned with 5.03 (default 60 000 ms). */
  handlerTimeoutMs?: number;
  /** Bounds for requests whose source address is not verified (RFC 7252 §11.3); see {@link UnverifiedLimits}. */
  unverified?: UnverifiedLimits;
  /** Separate CON responses awaiting an ACK (default 4096); beyond it they are sent once, untracked. */
  maxPendingConfirmable?: number;
  /** RFC 7252 §4.8 transmission parameters for separate responses. */
  transmission?: Partial<TransmissionParameters>;
  /** Random source in [0, 1) for retransmission jitter and Message IDs (default `Math.random`). */
  random?: () => number;
}

/**
 * Bounds on what a request from an unverified address (no DTLS session: `peer.sessionKey` unset, or a
 * session at an address it has not proven: `peer.addressUnproven`) can
 * make the server send (RFC 7252 §11.3 amplification; issue 11 F5).
 */
export interface UnverifiedLimits {
  /**
   * No response larger than this many times the request datagram (e.g. 3, QUIC's bound for an
   * unverified address, RFC 9000 §8). Larger successes are sent block-wise with a smaller block, an
   * error without its diagnostic payload; what still does not fit is dropped. Unset: no bound.
   */
  amplificationFactor?: number;
  /**
   * Asked once for every request (retransmissions included) before anything else is done with it,
   * with its Uri-Path (`/a/b`; '' when the engine refuses the request itself: a bad or unsupported
   * critical option, Proxy-Uri, Block1, a path that does not decode): 0 serves it; n > 0 refuses it with 4.29
   * and Max-Age n (RFC 8516), or silence for a group; `'smallest'` serves it with its answer in the
   * smallest form (see {@link SMALLEST_EXTRA}); `'drop'` sends nothing at all.
   */
  admit?: (peer: Peer, method: CoapMethod | undefined, nowMs: number, path: string) => Admission;
}

/** What {@link UnverifiedLimits.admit} decides for a request. */
export type Admission = number | 'smallest' | 'drop';

/**
 * An answer in the smallest form (`admit` said `'smallest'`: the source is over its rate limit) is
 * sent only when it is at most this many bytes longer than its request: a 2.05 goes in 16-byte
 * blocks (RFC 7959 §2.2: the server picks the block size) without Size2, an error without its
 * diagnostic. A spoofer so gains at most this many bytes per datagram it sends, while a genuine
 * client at the spoofed address still gets its answer, a block at a time (issue 11 review
 * finding 3).
 */
export const SMALLEST_EXTRA = 24;


/** Counters for metrics; plain numbers, updated in place. */
export interface CoapStats {
  /** Datagrams received. */
  received: number;
  /** Datagrams ignored without a reply (not CoAP, or nothing to answer). */
  dropped: number;
  /** Message format errors (a subset of the replies/drops). */
  malformed: number;
  /** Retransmitted requests answered from the cache or ignored while in flight. */
  duplicates: number;
  /** Requests dispatched (each message counted once). */
  requests: number;
  /** Empty CON pings answered with RST. */
  pings: number;
  /** RST messages sent (pings, rejected messages). */
  resets: number;
  /** Fresh responses sent, by code class (replays are counted in `duplicates`). */
  responses: { 2: number; 4: number; 5: number };
  /** Responses suppressed because the request came by multicast. */
  suppressed: number;
  /** Empty ACKs sent because a handler was slow (each starts a separate response). */
  separate: number;
  /** Retransmissions of separate CON responses. */
  retransmissions: number;
  /** Separate CON responses abandoned after MAX_RETRANSMIT. */
  giveUps: number;
  /** Handlers that threw or returned an invalid response. */
  handlerErrors: number;
  /** Handlers abandoned after `handlerTimeoutMs`. */
  handlerTimeouts: number;
  /** Requests refused with 5.03 because `maxInFlight` handlers were running. */
  overloaded: number;
  /** Requests from unverified addresses refused by `unverified.admit` (4.29, or silence to a group). */
  rateLimited: number;
  /** Responses to unverified addresses cut to fit `amplificationFactor` (smaller block, no diagnostic). */
  amplificationBounded: number;
  /** Responses to unverified addresses not sent because even the smallest form did not fit. */
  amplificationDropped: number;
}

export function newStats(): CoapStats {
  return {
    received: 0,
    dropped: 0,
    malformed: 0,
    duplicates: 0,
    requests: 0,
    pings: 0,
    resets: 0,
    responses: { 2: 0, 4: 0, 5: 0 },
    suppressed: 0,
    separate: 0,
    retransmissions: 0,
    giveUps: 0,
    handlerErrors: 0,
    handlerTimeouts: 0,
    overloaded: 0,
    rateLimited: 0,
    amplificationBounded: 0,
    amplificationDropped: 0,
  };
}

/** Sizes of the engine's bounded state, for tests and metrics. */
export interface CoapMemory {
  dedupEntries: number;
  dedupPeers: number;
  blockEntries: number;
  blockBytes: number;
  inFlight: number;
  pendingConfirmable: number;
}
