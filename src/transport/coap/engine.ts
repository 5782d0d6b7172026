/**
 * Size: over 700 lines because option checks, Block2, reliability and the amplification bound live in
 * one class; issue #15 splits it into layers over the connector (as Californium's CoapUdpStack does).
 *
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
 */
import { performance } from 'node:perf_hooks';
import type { Logger } from '../../log.ts';
import { peerKey, type DatagramTransport, type Peer } from '../datagram.ts';
import {
  DECODE_FORMAT_ERROR,
  DECODE_IGNORE,
  DecodedMessage,
  MessageWriter,
  OPT,
  TYPE_ACK,
  TYPE_CON,
  TYPE_NON,
  TYPE_RST,
  decodeMessage,
  emptyMessage,
  parseResponseCode,
  pathOf,
  queryOf,
} from './codec.ts';
import { DedupCache } from './dedup.ts';
import { BlockCache, type CachedRepresentation, etagOf, szxOf } from './block-cache.ts';
import { linkFormat, parseFilters, type LinkDescription } from './link-format.ts';

/** Request methods (RFC 7252 §5.8, RFC 8132). */
export type CoapMethod = 'GET' | 'POST' | 'PUT' | 'DELETE' | 'FETCH' | 'PATCH' | 'iPATCH';

const METHOD_BY_CODE: readonly (CoapMethod | undefined)[] = [
  undefined,
  'GET',
  'POST',
  'PUT',
  'DELETE',
  'FETCH',
  'PATCH',
  'iPATCH',
];

/** A request as handed to a {@link Handler}. */
export interface CoapRequest {
  method: CoapMethod;
  /** The Uri-Path options joined as `/a/b` (`/` when there are none). */
  path: string;
  /** The Uri-Query options, in order (e.g. `['rt=idprov*']`). */
  query: string[];
  /** The request's Content-Format, when present. */
  contentFormat?: number;
  /** The request's Accept option, when present. */
  accept?: number;
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
  /** Response code `c.dd`, class 2, 4 or 5 (e.g. `'2.05'`). */
  code: string;
  contentFormat?: number;
  /** Max-Age in seconds (§5.10.5); omitted means the default of 60. */
  maxAge?: number;
  payload?: Buffer;
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

function newStats(): CoapStats {
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

interface Endpoint {
  t: DatagramTransport;
  tag: string;
}

interface ResourceEntry {
  desc: LinkDescription;
  methods: Partial<Record<CoapMethod, Handler>>;
  accepts: ReadonlySet<number> | undefined;
  ct: number | undefined;
  hidden: boolean;
  wellKnown: boolean;
}

/** A response ready for encoding. */
interface Out {
  code: number;
  contentFormat: number | undefined;
  maxAge: number | undefined;
  payload: Buffer;
  options: readonly CoapOption[] | undefined;
  /** The engine's ETag for a block-wise representation (kept with a cached one). */
  etag?: Buffer | undefined;
  /** The handler put its own ETag in `options`; the engine adds none. */
  handlerEtag?: boolean;
  size1?: number;
  /** Replay it for duplicates (false for overload answers, so a retransmission can get through). */
  cache: boolean;
  /** Multicast: nothing useful to say (RFC 6690 §4.1 no match), stay silent. */
  nothing?: boolean;
}

/** The slice of a representation one response carries (RFC 7959 §2.2). */
interface BlockPlan {
  start: number;
  end: number;
  /** Block2 option value, -1 for none. */
  block2: number;
  /** Size2 option value, -1 for none. */
  size2: number;
  etag: Buffer | undefined;
  /** The first block of a block-wise success: keep the whole representation for the next blocks. */
  cacheable: boolean;
}

/** One request being answered. */
class Exchange {
  started = 0;
  separate = false;
  done = false;
  tracked = false;
  method: CoapMethod | undefined = undefined;
  path = '';
  query: readonly string[] = [];
  constructor(
    readonly ep: Endpoint,
    readonly peer: Peer,
    readonly peerId: string,
    readonly key: string,
    readonly type: number,
    readonly messageId: number,
    readonly token: Buffer,
    /** Reply piggybacked in an ACK (a unicast CON). */
    readonly con: boolean,
    readonly multicast: boolean,
    readonly block2: number,
    readonly size2: boolean,
    /** Largest datagram this exchange may send (amplification bound), Infinity when unbounded. */
    readonly budget: number,
    /** Answer in the smallest form (16-byte blocks, no Size2, no diagnostic): the source is over its limit. */
    readonly smallest = false,
  ) {}
}

/** A separate CON response awaiting its ACK. */
interface PendingCon {
  key: string;
  ep: Endpoint;
  peer: Peer;
  data: Buffer;
  timeoutMs: number;
  attempts: number;
  timer: NodeJS.Timeout | undefined;
}

const EMPTY = Buffer.alloc(0);
/** Option numbers the engine writes itself; handler copies are dropped. */
const MANAGED = new Set<number>([OPT.CONTENT_FORMAT, OPT.MAX_AGE, OPT.BLOCK2, OPT.BLOCK1, OPT.SIZE2, OPT.SIZE1]);
const PCHARS = /^[A-Za-z0-9\-._~!$&'()*+,;=:@]*$/;

const C_2_05 = (2 << 5) | 5;
const C_4_00 = 4 << 5;
const C_4_02 = (4 << 5) | 2;
const C_4_04 = (4 << 5) | 4;
const C_4_05 = (4 << 5) | 5;
const C_4_06 = (4 << 5) | 6;
const C_4_13 = (4 << 5) | 13;
const C_4_15 = (4 << 5) | 15;
const C_4_29 = (4 << 5) | 29;
const C_5_00 = 5 << 5;
const C_5_03 = (5 << 5) | 3;
const C_5_05 = (5 << 5) | 5;
const CF_LINK_FORMAT = 40;

function diag(code: number, text: string, extra?: Partial<Out>): Out {
  return {
    code,
    contentFormat: undefined,
    maxAge: undefined,
    payload: Buffer.from(text, 'utf8'),
    options: undefined,
    cache: true,
    ...extra,
  };
}

function isUint(v: unknown, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;
}

/**
 * A CoAP server engine. Register resources, {@link attach} transports, read {@link stats}.
 *
 * @example
 * ```ts
 * const server = new CoapServer({ log });
 * server.addResource({ path: '/hello', rt: 'demo', ct: 0, methods: { GET: () => ({ code: '2.05', payload: Buffer.from('hi') }) } });
 * server.attach(await UdpTransport.bind({ address: '::', port: 5683 }));
 * ```
 */
export class CoapServer {
  /** Counters, updated in place (read them, do not write). */
  readonly stats: CoapStats = newStats();
  /** The RFC 7252 §4.8.2 times in use. */
  readonly timings: CoapTimings;

  private readonly log: Logger;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly maxPayload: number;
  private readonly sepMs: number;
  private readonly szx: number;
  private readonly conLifetime: number;
  private readonly nonLifetime: number;
  private readonly maxInFlight: number;
  private readonly handlerTimeoutMs: number;
  private readonly maxPending: number;
  private readonly amplification: number;
  private readonly admit: UnverifiedLimits['admit'];

  private readonly resources = new Map<string, ResourceEntry>();
  private readonly links: LinkDescription[] = [];
  private wellKnownDoc: Buffer | undefined;
  private readonly endpoints: Endpoint[] = [];
  private readonly dedup: DedupCache;
  private readonly blocks: BlockCache;
  private readonly inflight = new Map<string, Exchange>();
  /** In-flight unicast CON exchanges that have not had an Empty ACK yet, oldest first. */
  private readonly ackQueue = new Set<Exchange>();
  private readonly pending = new Map<string, PendingCon>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweepDue = Infinity;
  private nextMid: number;
  private closed = false;
  private readonly scratch = new DecodedMessage();
  private readonly writer = new MessageWriter();
  private logWindowStart = 0;
  private logCount = 0;
  private logSuppressed = 0;

  constructor(opts: CoapServerOptions) {
    const problems: string[] = [];
    const check = (name: string, v: number | undefined, min: number, max: number): number | undefined => {
      if (v === undefined) return undefined;
      if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) problems.push(`${name} must be in ${min}..${max}`);
      return v;
    };
    this.log = opts.log;
    this.now = opts.now ?? (() => performance.now());
    this.random = opts.random ?? Math.random;
    this.maxPayload = check('maxPayload', opts.maxPayload, 0, 65_000) ?? 1024;
    this.sepMs = check('separateResponseAfterMs', opts.separateResponseAfterMs, 0, 3_600_000) ?? 1500;
    let szx = 6;
    try {
      if (opts.blockSize !== undefined) szx = szxOf(opts.blockSize);
    } catch {
      problems.push('blockSize must be a power of two 16..1024');
    }
    this.szx = szx;
    const tp = opts.transmission ?? {};
    check('transmission.ackTimeoutMs', tp.ackTimeoutMs, 1, 600_000);
    check('transmission.ackRandomFactor', tp.ackRandomFactor, 1, 10);
    check('transmission.maxRetransmit', tp.maxRetransmit, 0, 20);
    this.timings = coapTimings(tp);
    const d = opts.dedup ?? {};
    const maxEntries = check('dedup.maxEntries', d.maxEntries, 1, 10_000_000) ?? 20_000;
    const perPeer = check('dedup.perPeer', d.perPeer, 1, 65_536) ?? 32;
    this.conLifetime = check('dedup.lifetimeMs', d.lifetimeMs, 0, 86_400_000) ?? this.timings.exchangeLifetimeMs;
    this.nonLifetime = Math.min(
      check('dedup.nonLifetimeMs', d.nonLifetimeMs, 0, 86_400_000) ?? this.timings.nonLifetimeMs,
      this.conLifetime,
    );
    const bc = opts.blockCache ?? {};
    const blockLimits = {
      maxEntries: check('blockCache.maxEntries', bc.maxEntries, 0, 1_000_000) ?? 1024,
      maxBytes: check('blockCache.maxBytes', bc.maxBytes, 0, 1 << 30) ?? 16 << 20,
      lifetimeMs: check('blockCache.lifetimeMs', bc.lifetimeMs, 0, 86_400_000) ?? 60_000,
    };
    this.maxInFlight = check('maxInFlight', opts.maxInFlight, 1, 10_000_000) ?? 4096;
    this.handlerTimeoutMs = check('handlerTimeoutMs', opts.handlerTimeoutMs, 1, 86_400_000) ?? 60_000;
    this.maxPending = check('maxPendingConfirmable', opts.maxPendingConfirmable, 0, 10_000_000) ?? 4096;
    this.amplification = check('unverified.amplificationFactor', opts.unverified?.amplificationFactor, 1, 1000) ?? Infinity;
    this.admit = opts.unverified?.admit;
    if (problems.length > 0) throw new RangeError(`invalid CoapServer options: ${problems.join('; ')}`);
    this.dedup = new DedupCache({ maxEntries, perPeer });
    this.blocks = new BlockCache(blockLimits);
    this.nextMid = Math.floor(this.random() * 0x10000) & 0xffff;
    this.resources.set('/.well-known/core', {
      desc: { path: '/.well-known/core', ct: CF_LINK_FORMAT },
      methods: {},
      accepts: undefined,
      ct: CF_LINK_FORMAT,
      hidden: true,
      wellKnown: true,
    });
  }

  /**
   * Register a resource. Throws on an invalid path, a duplicate path, or no methods — configuration
   * errors belong at start-up.
   */
  addResource(r: CoapResource): void {
    if (typeof r.path !== 'string' || !r.path.startsWith('/') || !r.path.split('/').slice(1).every((s) => PCHARS.test(s))) {
      throw new TypeError(`resource path ${JSON.stringify(r.path)} must be absolute and made of RFC 3986 pchars`);
    }
    if (this.resources.has(r.path)) throw new TypeError(`resource ${r.path} is already registered`);
    const methods: Partial<Record<CoapMethod, Handler>> = {};
    for (const [m, h] of Object.entries(r.methods ?? {})) {
      if (!METHOD_BY_CODE.includes(m as CoapMethod)) throw new TypeError(`unknown method ${m} on ${r.path}`);
      if (typeof h !== 'function') throw new TypeError(`handler for ${m} ${r.path} is not a function`);
      methods[m as CoapMethod] = h;
    }
    if (Object.keys(methods).length === 0) throw new TypeError(`resource ${r.path} has no methods`);
    if (r.ct !== undefined && !isUint(r.ct, 0xffff)) throw new TypeError(`ct of ${r.path} must be 0..65535`);
    for (const a of r.accepts ?? []) if (!isUint(a, 0xffff)) throw new TypeError(`accepts of ${r.path} must be 0..65535`);
    const desc: LinkDescription = { path: r.path, rt: r.rt, ct: r.ct, title: r.title };
    const hidden = r.hidden === true;
    this.resources.set(r.path, {
      desc,
      methods,
      accepts: r.accepts === undefined ? undefined : new Set(r.accepts),
      ct: r.ct,
      hidden,
      wellKnown: false,
    });
    if (!hidden) this.links.push(desc);
    this.wellKnownDoc = undefined;
  }

  /**
   * Serve over `t` (any number of transports at once). Exchanges are keyed per transport, so the same
   * address:port on two transports never share deduplication state.
   */
  attach(t: DatagramTransport): void {
    const ep: Endpoint = { t, tag: `${this.endpoints.length}/` };
    this.endpoints.push(ep);
    t.onMessage((data, peer) => this.receive(ep, data, peer));
  }

  /** Sizes of the bounded state. */
  memory(): CoapMemory {
    return {
      dedupEntries: this.dedup.size,
      dedupPeers: this.dedup.peerCount,
      blockEntries: this.blocks.size,
      blockBytes: this.blocks.byteCount,
      inFlight: this.inflight.size,
      pendingConfirmable: this.pending.size,
    };
  }

  /**
   * Stop: cancel retransmission and sweep timers, forget cached state, and ignore further datagrams
   * and late handler results. Transports are the caller's to close.
   */
  close(): void {
    this.closed = true;
    for (const p of this.pending.values()) clearTimeout(p.timer);
    this.pending.clear();
    if (this.sweepTimer !== undefined) clearTimeout(this.sweepTimer);
    this.sweepTimer = undefined;
    this.inflight.clear();
    this.ackQueue.clear();
    this.dedup.clear();
    this.blocks.clear();
  }

  // ---------------------------------------------------------------------------------------------
  // Receive path

  private receive(ep: Endpoint, data: Buffer, peer: Peer): void {
    this.stats.received++;
    if (this.closed) {
      this.stats.dropped++;
      return;
    }
    try {
      this.dispatch(ep, data, peer);
    } catch (err) {
      // Not reachable by design; the receive path must never throw into the transport.
      this.stats.dropped++;
      this.logError({ err, peer: peerKey(peer) }, 'coap: internal error on receive');
    }
  }

  private peerId(ep: Endpoint, peer: Peer): string {
    return ep.tag + (peer.sessionKey !== undefined ? '~' + peer.sessionKey : peerKey(peer));
  }

  private dispatch(ep: Endpoint, data: Buffer, peer: Peer): void {
    const m = this.scratch;
    const r = decodeMessage(data, m);
    if (r === DECODE_IGNORE) {
      this.stats.dropped++;
      return;
    }
    if (r === DECODE_FORMAT_ERROR) {
      // §4.2/§4.3: reject a malformed CON with RST; anything else is silently ignored.
      this.stats.malformed++;
      this.reject(ep, peer, m.type, m.messageId);
      return;
    }
    if (m.code === 0) return this.onEmpty(ep, peer, m.type, m.messageId);
    const cls = m.code >> 5;
    if (cls !== 0) return this.onNonRequest(ep, peer, m, cls);
    if (m.type === TYPE_ACK || m.type === TYPE_RST) {
      // §4.2/§4.3: ACK carries a response or nothing, RST nothing; a request in them is malformed.
      this.stats.malformed++;
      this.stats.dropped++;
      return;
    }
    this.onRequest(ep, data, peer, m);
  }

  /** §4.1/§4.2/§4.3: Empty messages. */
  private onEmpty(ep: Endpoint, peer: Peer, type: number, mid: number): void {
    if (type === TYPE_CON) {
      // §4.3: an Empty CON ("CoAP ping") is answered with RST. Never to a group (§8.2).
      if (peer.multicast === true) {
        this.stats.dropped++;
        return;
      }
      this.stats.pings++;
      this.sendRst(ep, peer, mid);
    } else if (type === TYPE_ACK || type === TYPE_RST) {
      // §4.2: an ACK or RST ends the retransmission of the matching separate response.
      this.settle(ep, peer, mid);
    } else {
      // §4.1: an Empty NON is not allowed; ignore.
      this.stats.malformed++;
      this.stats.dropped++;
    }
  }

  /** A message with a response or reserved code class arriving at a server. */
  private onNonRequest(ep: Endpoint, peer: Peer, m: DecodedMessage, cls: number): void {
    if (m.type === TYPE_ACK && (cls === 2 || cls === 4 || cls === 5)) {
      // An ACK that carries a response: still an acknowledgement of our CON with that Message ID.
      this.settle(ep, peer, m.messageId);
      return;
    }
    // A response we did not ask for, an RST with a code, or a reserved class (1, 3, 6, 7; §12.1):
    // reject a CON with RST (§4.2), ignore the rest (§4.3).
    this.reject(ep, peer, m.type, m.messageId);
  }

  private reject(ep: Endpoint, peer: Peer, type: number, mid: number): void {
    if (type === TYPE_CON && peer.multicast !== true) this.sendRst(ep, peer, mid);
    else this.stats.dropped++;
  }

  private sendRst(ep: Endpoint, peer: Peer, mid: number): void {
    this.stats.resets++;
    ep.t.send(emptyMessage(TYPE_RST, mid), peer);
  }

  /** §4.2: ACK or RST for one of our separate CON responses. */
  private settle(ep: Endpoint, peer: Peer, mid: number): void {
    const key = this.peerId(ep, peer) + '#' + mid;
    const p = this.pending.get(key);
    if (p === undefined) {
      this.stats.dropped++;
      return;
    }
    clearTimeout(p.timer);
    this.pending.delete(key);
  }

  private onRequest(ep: Endpoint, data: Buffer, peer: Peer, m: DecodedMessage): void {
    const stats = this.stats;
    const now = this.now();
    const peerId = this.peerId(ep, peer);
    const key = peerId + '#' + m.messageId;
    const multicast = peer.multicast === true;
    const unverified = peer.sessionKey === undefined || peer.addressUnproven === true;

    // §11.3: a request from an address nobody verified is admitted first, retransmissions included
    // (else replays of a cached answer would bypass the limit).
    let wait = 0;
    let smallest = false;
    if (unverified && this.admit !== undefined) {
      let a: Admission = 0;
      try {
        // The path only of a request the engine would hand to a resource ('' for one it refuses itself).
        const refused = m.badCritical !== 0 || m.badRequest !== '' || m.proxy || m.block1 >= 0 || m.pathOverflow;
        a = this.admit(peer, METHOD_BY_CODE[m.code], now, refused ? '' : pathOf(data, m));
      } catch (err) {
        this.logError({ err }, 'coap: admit threw; request served');
      }
      if (a === 'drop') {
        stats.rateLimited++;
        stats.dropped++;
        return;
      }
      if (a === 'smallest') smallest = true;
      else wait = a;
    }

    // §4.5 deduplication: a handler runs at most once per message.
    const running = wait > 0 ? undefined : this.inflight.get(key);
    if (running !== undefined) {
      stats.duplicates++;
      if (running.separate && running.con) ep.t.send(emptyMessage(TYPE_ACK, m.messageId), peer);
      return;
    }
    const seen = wait > 0 ? undefined : this.dedup.get(key, now);
    if (seen !== undefined) {
      stats.duplicates++;
      // A shorter datagram with the same Message ID must not buy the longer request's answer.
      const bound = smallest ? Math.min(this.amplification * data.length, data.length + SMALLEST_EXTRA) : this.amplification * data.length;
      if (seen.response !== null && (!unverified || seen.response.length <= bound)) ep.t.send(seen.response, peer);
      else if (seen.response !== null) stats.amplificationDropped++;
      return;
    }

    stats.requests++;
    const tkl = m.tokenLength;
    const ex = new Exchange(
      ep,
      peer,
      peerId,
      key,
      m.type,
      m.messageId,
      tkl === 0 ? EMPTY : data.subarray(4, 4 + tkl),
      m.type === TYPE_CON && !multicast,
      multicast,
      m.block2,
      m.size2,
      unverified ? Math.min(this.amplification * data.length, smallest ? data.length + SMALLEST_EXTRA : Infinity) : Infinity,
      smallest,
    );
    if (wait > 0) {
      // RFC 8516: 4.29 Too Many Requests, Max-Age = when to try again; nothing to a group (§8.2).
      stats.rateLimited++;
      if (multicast) {
        stats.dropped++;
        return;
      }
      return this.deliver(ex, { code: C_4_29, contentFormat: undefined, maxAge: Math.ceil(wait), payload: EMPTY, options: undefined, cache: false }, now);
    }

    // §5.4.1: unrecognised critical options. CON → 4.02; a NON is rejected (RST, never to a group).
    if (m.badCritical !== 0) {
      if (ex.con) return this.deliver(ex, diag(C_4_02, `unsupported critical option ${m.badCritical}`), now);
      if (!multicast) this.sendRst(ep, peer, m.messageId);
      else stats.dropped++;
      this.dedup.set(peerId, key, null, now + this.nonLifetime, now);
      return;
    }
    if (m.badRequest !== '') return this.deliver(ex, diag(C_4_00, m.badRequest), now);
    // §5.10.2: we are not a forward proxy.
    if (m.proxy) return this.deliver(ex, diag(C_5_05, 'proxying not supported'), now);
    // RFC 7959 §2.9.3: request bodies are not reassembled; say how much fits (Size1).
    if (m.block1 >= 0) return this.deliver(ex, diag(C_4_13, 'block-wise requests not supported', { size1: this.maxPayload }), now);

    const method = METHOD_BY_CODE[m.code];
    // §5.8: unknown method codes → 4.05.
    if (method === undefined) return this.deliver(ex, diag(C_4_05, 'unknown method'), now);
    const path = m.pathOverflow ? '' : pathOf(data, m);
    const res = this.resources.get(path);
    if (res === undefined) return this.deliver(ex, diag(C_4_04, 'not found'), now);
    const handler = res.methods[method];
    if (handler === undefined && !(res.wellKnown && method === 'GET')) {
      return this.deliver(ex, diag(C_4_05, 'method not allowed'), now);
    }
    const payload = m.payloadStart < data.length ? data.subarray(m.payloadStart) : EMPTY;
    if (payload.length > this.maxPayload) {
      return this.deliver(ex, diag(C_4_13, 'payload too large', { size1: this.maxPayload }), now);
    }
    // §5.10.3: a Content-Format the resource does not take → 4.15.
    if (m.contentFormat >= 0 && res.accepts !== undefined && !res.accepts.has(m.contentFormat)) {
      return this.deliver(ex, diag(C_4_15, 'unsupported content-format'), now);
    }
    // §5.10.4: an Accept we cannot honour → 4.06, before any side effect.
    if (m.accept >= 0 && res.ct !== undefined && m.accept !== res.ct) {
      return this.deliver(ex, diag(C_4_06, 'not acceptable'), now);
    }
    if (m.queryOverflow) return this.deliver(ex, diag(C_4_00, 'too many Uri-Query options'), now);
    const query = queryOf(data, m);

    // RFC 7959 §2.4: later blocks of a large response come from the cache when we still hold it.
    ex.method = method;
    ex.path = path;
    ex.query = query;
    if (m.block2 >= 16) {
      const rep = this.blocks.get(this.blockKey(ex), now);
      if (rep !== undefined) return this.deliver(ex, this.fromCache(rep), now);
      if (method !== 'GET') return this.deliver(ex, diag(C_4_00, 'block state expired, repeat the request'), now);
    }

    if (res.wellKnown) return this.deliver(ex, this.wellKnown(query, multicast), now);

    if (this.inflight.size >= this.maxInFlight) {
      stats.overloaded++;
      return this.deliver(ex, diag(C_5_03, 'overloaded', { maxAge: 1, cache: false }), now);
    }

    const req: CoapRequest = {
      method,
      path,
      query,
      contentFormat: m.contentFormat >= 0 ? m.contentFormat : undefined,
      accept: m.accept >= 0 ? m.accept : undefined,
      payload,
      peer,
      confirmable: ex.con,
      token: ex.token,
      messageId: m.messageId,
    };
    let result: Promise<CoapResponse> | CoapResponse;
    try {
      result = handler!(req);
    } catch (err) {
      return this.failed(ex, err);
    }
    if (result !== null && typeof result === 'object' && typeof (result as Promise<CoapResponse>).then === 'function') {
      ex.started = now;
      ex.tracked = true;
      this.inflight.set(key, ex);
      if (ex.con) this.ackQueue.add(ex);
      this.armSweep(now, now + (ex.con && this.sepMs < this.handlerTimeoutMs ? this.sepMs : this.handlerTimeoutMs));
      try {
        (result as Promise<CoapResponse>).then(
          (r) => this.complete(ex, r),
          (err: unknown) => this.failed(ex, err),
        );
      } catch (err) {
        this.failed(ex, err);
      }
    } else {
      this.complete(ex, result as CoapResponse, now);
    }
  }

  /** RFC 7959 §2.4: the blocks of one representation are tied by peer, method and request URI. */
  private blockKey(ex: Exchange): string {
    const q = ex.query;
    return ex.peerId + ' ' + ex.method + ' ' + ex.path + (q.length === 0 ? '' : '?' + q.join('&'));
  }

  private fromCache(rep: CachedRepresentation): Out {
    return {
      code: rep.code,
      contentFormat: rep.contentFormat,
      maxAge: rep.maxAge,
      payload: rep.payload,
      options: rep.options,
      etag: rep.etag,
      handlerEtag: rep.handlerEtag,
      cache: true,
    };
  }

  /** RFC 6690 §4: GET /.well-known/core, with §4.1 query filtering. */
  private wellKnown(query: readonly string[], multicast: boolean): Out {
    let payload: Buffer;
    if (query.length === 0) {
      payload = this.wellKnownDoc ??= Buffer.from(linkFormat(this.links, []), 'utf8');
    } else {
      payload = Buffer.from(linkFormat(this.links, parseFilters(query)), 'utf8');
    }
    // RFC 6690 §4.1: a multicast query that matches nothing gets no response at all. A unicast one
    // gets 2.05 with an empty link-format document: the resource exists and the (empty) set of
    // matching links is its correct representation, which lets a client tell "no match" apart from
    // "this server has no discovery resource" (4.04).
    return {
      code: C_2_05,
      contentFormat: CF_LINK_FORMAT,
      maxAge: undefined,
      payload,
      options: undefined,
      cache: true,
      nothing: multicast && payload.length === 0,
    };
  }

  // ---------------------------------------------------------------------------------------------
  // Completion and send path

  /** A handler answered. Never throws: it may run as a promise callback. */
  private complete(ex: Exchange, res: CoapResponse, now?: number): void {
    if (!this.finishExchange(ex)) return;
    let out: Out;
    try {
      out = this.normalize(res);
    } catch (err) {
      return this.failed(ex, err, true);
    }
    try {
      this.deliver(ex, out, now ?? this.now());
    } catch (err) {
      this.logError({ err, peer: peerKey(ex.peer) }, 'coap: internal error on send');
    }
  }

  /** A handler threw, rejected or answered nonsense: 5.00. Never throws. */
  private failed(ex: Exchange, err: unknown, alreadyFinished = false): void {
    if (!alreadyFinished && !this.finishExchange(ex)) return;
    this.stats.handlerErrors++;
    this.logError({ err, peer: peerKey(ex.peer), method: ex.method, path: ex.path }, 'coap: handler failed, answered 5.00');
    try {
      this.deliver(ex, diag(C_5_00, 'internal server error'), this.now());
    } catch (err2) {
      this.logError({ err: err2, peer: peerKey(ex.peer) }, 'coap: internal error on send');
    }
  }

  /** Mark an exchange finished; false when it already was (timed out) or the server is closed. */
  private finishExchange(ex: Exchange): boolean {
    if (ex.done) return false;
    ex.done = true;
    if (ex.tracked) {
      this.inflight.delete(ex.key);
      this.ackQueue.delete(ex);
    }
    return !this.closed;
  }

  /** Validate a handler's answer (a bad one is a handler error → 5.00). */
  private normalize(res: CoapResponse): Out {
    if (res === null || typeof res !== 'object') throw new TypeError('handler returned no response object');
    const code = parseResponseCode(res.code);
    if (code < 0) throw new TypeError(`invalid response code ${String(res.code)}`);
    if (res.contentFormat !== undefined && !isUint(res.contentFormat, 0xffff)) throw new TypeError('invalid contentFormat');
    if (res.maxAge !== undefined && !isUint(res.maxAge, 0xffffffff)) throw new TypeError('invalid maxAge');
    const payload = res.payload ?? EMPTY;
    if (!Buffer.isBuffer(payload)) throw new TypeError('payload must be a Buffer');
    let options: CoapOption[] | undefined;
    let handlerEtag = false;
    if (res.options !== undefined && res.options.length > 0) {
      options = [];
      for (const o of res.options) {
        if (o === null || typeof o !== 'object' || !isUint(o.number, 0xffff) || o.number === 0 || !Buffer.isBuffer(o.value)) {
          throw new TypeError('invalid response option');
        }
        if (MANAGED.has(o.number)) continue;
        if (o.number === OPT.ETAG) handlerEtag = true;
        options.push(o);
      }
      options.sort((a, b) => a.number - b.number);
    }
    return { code, contentFormat: res.contentFormat, maxAge: res.maxAge, payload, options, handlerEtag, cache: true };
  }

  /**
   * Send `out` for `ex`: multicast suppression (§8.2), Block2 slicing (RFC 7959), the amplification
   * bound of an unverified address (§11.3), message type (piggybacked ACK, separate CON, or NON;
   * §5.2), deduplication record (§4.5).
   */
  private deliver(ex: Exchange, out: Out, now: number): void {
    const stats = this.stats;
    const lifetime = ex.type === TYPE_CON ? this.conLifetime : this.nonLifetime;
    const cls = out.code >> 5;
    if (ex.multicast && (cls !== 2 || out.nothing === true)) {
      // §8.2: no error responses to a group request; RFC 6690 §4.1: no answer to an empty match.
      stats.suppressed++;
      this.dedup.set(ex.peerId, ex.key, null, now + lifetime, now);
      return;
    }

    let type: number;
    let mid: number;
    if (ex.con && !ex.separate) {
      type = TYPE_ACK;
      mid = ex.messageId;
    } else {
      type = ex.con ? TYPE_CON : TYPE_NON;
      mid = this.nextMid;
      this.nextMid = (this.nextMid + 1) & 0xffff;
    }

    // RFC 7959 §2.2–§2.4: Block2. The block size is ours or the client's, whichever is smaller, and
    // smaller still while the datagram exceeds the exchange's amplification budget.
    const req2 = ex.block2;
    const reqSzx = req2 >= 0 ? req2 & 7 : 7;
    let szx = reqSzx < this.szx ? reqSzx : this.szx;
    let bounded = false;
    if (ex.smallest) {
      // Over the source's limit: the smallest form from the start (RFC 7959 §2.2, RFC 7252 §5.5.2).
      bounded = true;
      if (cls === 2) szx = 0;
      else if (out.payload.length > 0) out = { ...out, payload: EMPTY };
    }
    let data: Buffer;
    let plan: BlockPlan;
    for (;;) {
      const p = this.plan(ex, out, cls, reqSzx, szx);
      if (p === undefined) return this.deliver(ex, diag(C_4_00, 'block number beyond the end of the representation'), now);
      plan = p;
      try {
        data = this.encode(type, out, mid, ex.token, p.etag, p.block2, p.size2, out.payload, p.start, p.end);
      } catch (err) {
        // Only handler-supplied options can make a message too large.
        if (out.code === C_5_00) throw err;
        this.stats.handlerErrors++;
        this.logError({ err, peer: peerKey(ex.peer) }, 'coap: response could not be encoded, answered 5.00');
        return this.deliver(ex, diag(C_5_00, 'internal server error'), now);
      }
      if (data.length <= ex.budget) break;
      bounded = true;
      const len = out.payload.length;
      if (cls === 2 && szx > 0 && len > 16) {
        // The largest block that still splits the representation, if smaller than the current one.
        szx = Math.min(szx - 1, Math.max(0, Math.ceil(Math.log2(len)) - 5));
        continue;
      }
      if (cls !== 2 && out.payload.length > 0) {
        out = { ...out, payload: EMPTY }; // the diagnostic payload is optional (§5.5.2)
        continue;
      }
      stats.amplificationDropped++;
      this.dedup.set(ex.peerId, ex.key, null, now + lifetime, now);
      return;
    }
    if (bounded) stats.amplificationBounded++;
    if (plan.cacheable) {
      // Keep the whole representation for the following blocks.
      this.blocks.set(
        this.blockKey(ex),
        {
          code: out.code,
          contentFormat: out.contentFormat,
          maxAge: out.maxAge,
          etag: plan.etag,
          handlerEtag: out.handlerEtag === true,
          payload: out.payload,
          options: out.options,
        },
        now,
      );
    }
    if (cls === 2 || cls === 4 || cls === 5) stats.responses[cls]++;

    if (out.cache) {
      const replay = type === TYPE_CON ? emptyMessage(TYPE_ACK, ex.messageId) : data;
      this.dedup.set(ex.peerId, ex.key, replay, now + lifetime, now);
    }
    ex.ep.t.send(data, ex.peer);
    if (type === TYPE_CON) this.trackConfirmable(ex, data, mid);
  }

  /**
   * Which part of `out` to send with block size SZX `szx` (the client asked in `reqSzx`, whose block
   * numbers count in its own size, §2.4). Undefined when the requested block is past the end.
   */
  private plan(ex: Exchange, out: Out, cls: number, reqSzx: number, szx: number): BlockPlan | undefined {
    const payload = out.payload;
    const len = payload.length;
    const req2 = ex.block2;
    const bs = 1 << (szx + 4);
    // Only a success is served from a later block; an error is sent from its start.
    const wantNum = cls === 2 && req2 >= 16 ? Math.floor(req2 / 16) : 0;
    const p: BlockPlan = { start: 0, end: len, block2: -1, size2: ex.size2 && cls === 2 && !ex.smallest ? len : -1, etag: undefined, cacheable: false };
    if (len > bs || wantNum > 0) {
      // The client's block number counts in its own block size; renumber in ours (§2.4).
      p.start = wantNum * (1 << (reqSzx + 4));
      if (p.start >= len) return undefined;
      p.end = p.start + bs < len ? p.start + bs : len;
      const more = p.end < len;
      p.block2 = (p.start / bs) * 16 + (more ? 8 : 0) + szx;
      if (p.start === 0 && !ex.smallest) p.size2 = len;
      if (len > bs) {
        if (out.handlerEtag !== true) p.etag = out.etag ?? etagOf(payload);
        p.cacheable = p.start === 0 && out.cache && cls === 2 && ex.method !== undefined;
      }
    } else if (req2 >= 0 && cls === 2) {
      p.block2 = szx; // NUM 0, M 0: the whole representation fits in the block the client asked for
    }
    return p;
  }

  private encode(
    type: number,
    out: Out,
    mid: number,
    token: Buffer,
    etag: Buffer | undefined,
    block2: number,
    size2: number,
    payload: Buffer,
    start: number,
    end: number,
  ): Buffer {
    const w = this.writer.begin(type, out.code, mid, token);
    const xs = out.options;
    let xi = 0;
    if (xs !== undefined) xi = this.extras(xs, xi, OPT.ETAG);
    if (etag !== undefined) w.option(OPT.ETAG, etag);
    if (xs !== undefined) xi = this.extras(xs, xi, OPT.CONTENT_FORMAT);
    if (out.contentFormat !== undefined) w.optionUint(OPT.CONTENT_FORMAT, out.contentFormat);
    if (xs !== undefined) xi = this.extras(xs, xi, OPT.MAX_AGE);
    if (out.maxAge !== undefined) w.optionUint(OPT.MAX_AGE, out.maxAge);
    if (xs !== undefined) xi = this.extras(xs, xi, OPT.BLOCK2);
    if (block2 >= 0) w.optionUint(OPT.BLOCK2, block2);
    if (xs !== undefined) xi = this.extras(xs, xi, OPT.SIZE2);
    if (size2 >= 0) w.optionUint(OPT.SIZE2, size2);
    if (xs !== undefined) xi = this.extras(xs, xi, OPT.SIZE1);
    if (out.size1 !== undefined) w.optionUint(OPT.SIZE1, out.size1);
    if (xs !== undefined) this.extras(xs, xi, 0x10000);
    return w.payload(payload, start, end).finish();
  }

  private extras(xs: readonly CoapOption[], from: number, below: number): number {
    let i = from;
    while (i < xs.length && xs[i]!.number < below) {
      this.writer.option(xs[i]!.number, xs[i]!.value);
      i++;
    }
    return i;
  }

  // ---------------------------------------------------------------------------------------------
  // Timers: one sweep for Empty ACKs and handler time-outs; one per separate CON response.

  /**
   * Make sure the sweep runs by `due`, the new exchange's earliest deadline. Invariant: a timer is
   * armed whenever an exchange is in flight, so with none armed the new exchange is the only one,
   * and an armed one only needs moving earlier. (No iteration here: this is on the hot path.)
   */
  private armSweep(now: number, due: number): void {
    if (this.sweepTimer !== undefined) {
      if (this.sweepDue <= due) return;
      clearTimeout(this.sweepTimer);
    }
    this.sweepDue = due;
    this.sweepTimer = setTimeout(this.sweep, Math.max(0, due - now));
  }

  private rearm(now: number): void {
    let due = Infinity;
    const a = this.ackQueue.values().next();
    if (!a.done) due = a.value.started + this.sepMs;
    const f = this.inflight.values().next();
    if (!f.done) due = Math.min(due, f.value.started + this.handlerTimeoutMs);
    if (due === Infinity || (this.sweepTimer !== undefined && this.sweepDue <= due)) return;
    if (this.sweepTimer !== undefined) clearTimeout(this.sweepTimer);
    this.sweepDue = due;
    this.sweepTimer = setTimeout(this.sweep, Math.max(0, due - now));
  }

  private readonly sweep = (): void => {
    this.sweepTimer = undefined;
    this.sweepDue = Infinity;
    if (this.closed) return;
    try {
      this.sweepAt(this.now());
    } catch (err) {
      // Not reachable by design; a timer callback must never throw.
      this.logError({ err }, 'coap: internal error in sweep');
    }
  };

  private sweepAt(now: number): void {
    // §5.2.2: the handler is slow; acknowledge now, answer later in a separate CON.
    for (const ex of this.ackQueue) {
      if (ex.started + this.sepMs > now) break;
      this.ackQueue.delete(ex);
      ex.separate = true;
      this.stats.separate++;
      ex.ep.t.send(emptyMessage(TYPE_ACK, ex.messageId), ex.peer);
    }
    for (const ex of this.inflight.values()) {
      if (ex.started + this.handlerTimeoutMs > now) break;
      this.finishExchange(ex);
      this.stats.handlerTimeouts++;
      this.logError({ peer: peerKey(ex.peer), method: ex.method, path: ex.path }, 'coap: handler timed out, answered 5.03');
      this.deliver(ex, diag(C_5_03, 'handler timed out'), now);
    }
    this.rearm(now);
  }

  /** §4.2: retransmit a separate CON response with exponential back-off until ACK/RST. */
  private trackConfirmable(ex: Exchange, data: Buffer, mid: number): void {
    if (this.pending.size >= this.maxPending) return; // sent once, untracked (bounded state)
    const t = this.timings;
    const p: PendingCon = {
      key: ex.peerId + '#' + mid,
      ep: ex.ep,
      peer: ex.peer,
      data,
      timeoutMs: t.ackTimeoutMs * (1 + this.random() * (t.ackRandomFactor - 1)),
      attempts: 0,
      timer: undefined,
    };
    const old = this.pending.get(p.key);
    if (old !== undefined) clearTimeout(old.timer);
    this.pending.set(p.key, p);
    p.timer = setTimeout(this.retransmit, p.timeoutMs, p);
  }

  private readonly retransmit = (p: PendingCon): void => {
    if (this.closed || this.pending.get(p.key) !== p) return;
    if (p.attempts >= this.timings.maxRetransmit) {
      this.pending.delete(p.key);
      this.stats.giveUps++;
      return;
    }
    p.attempts++;
    this.stats.retransmissions++;
    p.timeoutMs *= 2;
    p.timer = setTimeout(this.retransmit, p.timeoutMs, p);
    try {
      p.ep.t.send(p.data, p.peer);
    } catch (err) {
      this.logError({ err }, 'coap: transport send threw');
    }
  };

  /** Error logging limited to 20 lines per second, so hostile traffic cannot flood the log. */
  private logError(obj: Record<string, unknown>, msg: string): void {
    const now = this.now();
    if (now - this.logWindowStart >= 1000) {
      if (this.logSuppressed > 0) this.log.warn({ suppressed: this.logSuppressed }, 'coap: error lines suppressed');
      this.logWindowStart = now;
      this.logCount = 0;
      this.logSuppressed = 0;
    }
    if (this.logCount++ < 20) this.log.error(obj, msg);
    else this.logSuppressed++;
  }
}
