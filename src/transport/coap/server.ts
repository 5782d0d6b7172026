/**
 * The server layer of the CoAP engine: it attaches transports, decodes each datagram, sorts it
 * (Empty, response, request; RFC 7252 §4), admits requests from unverified addresses (§11.3), and
 * dispatches a request to its resource's handler through the options, Block2 and reliability
 * layers. Behaviour and the choices the RFCs leave open are listed in `engine.ts`.
 */
import { CoapCode } from '../../protocol/coap-codes.ts';
import { peerKey, type DatagramTransport, type Peer } from '../datagram.ts';
import {
  type Admission,
  type CoapMemory,
  type CoapRequest,
  type CoapResource,
  type CoapResponse,
  type CoapServerOptions,
  type CoapStats,
  type Handler,
  SMALLEST_EXTRA,
  newStats,
} from './api.ts';
import { throttledErrorLog } from './error-log.ts';
import { BEYOND_END, Block2Layer, DOES_NOT_FIT, ENCODE_FAILED } from './block2.ts';
import { DECODE_FORMAT_ERROR, DECODE_IGNORE, DecodedMessage, TYPE_ACK, TYPE_CON, TYPE_RST, decodeMessage, emptyMessage, pathOf, queryOf } from './codec.ts';
import { EMPTY, type Endpoint, Exchange, type Out, diag } from './exchange.ts';
import { METHOD_BY_CODE, ResponseEncoder, normalizeResponse, refusedByEngine, requestOptionError, resourceOptionError } from './options.ts';
import { PeerIds } from './peer-ids.ts';
import { Reliability } from './reliability.ts';
import { ResourceTable } from './resources.ts';
import { resolveSettings, type EngineSettings } from './settings.ts';
import type { CoapTimings } from './timings.ts';

/** `admitUnverified`: send nothing at all. */
const DROP = -1;
/** `admitUnverified`: serve the request with its answer in the smallest form. */
const SMALLEST = -2;

/**
 * A CoAP server engine. Register resources, {@link attach} transports, read {@link stats}.
 *
 * @example
 * ```ts
 * const server = new CoapServer({ log });
 * server.addResource({ path: '/hello', rt: 'demo', ct: 0, methods: { GET: () => ({ code: CoapCode.Content, payload: Buffer.from('hi') }) } });
 * server.attach(await UdpTransport.bind({ address: '::', port: 5683 }));
 * ```
 */
export class CoapServer {
  /** Counters, updated in place (read them, do not write). */
  readonly stats: CoapStats = newStats();
  /** The RFC 7252 §4.8.2 times in use. */
  readonly timings: CoapTimings;

  private readonly logError: (obj: Record<string, unknown>, msg: string) => void;
  private readonly s: EngineSettings;
  private readonly now: () => number;
  private readonly resources = new ResourceTable();
  private readonly endpoints: Endpoint[] = [];
  private readonly reliability: Reliability;
  private readonly block2: Block2Layer;
  private closed = false;
  private readonly scratch = new DecodedMessage();

  constructor(opts: CoapServerOptions) {
    this.s = resolveSettings(opts);
    this.now = this.s.now;
    this.logError = throttledErrorLog(opts.log, this.now);
    this.timings = this.s.reliability.timings;
    this.reliability = new Reliability(this.s.reliability, this.stats, {
      now: this.now,
      random: this.s.random,
      handlerTimedOut: (ex, now) => this.onHandlerTimeout(ex, now),
      logError: this.logError,
    });
    this.block2 = new Block2Layer(this.s.szx, this.s.blockCache, new ResponseEncoder());
  }

  /**
   * Register a resource. Throws on an invalid path, a duplicate path, or no methods — configuration
   * errors belong at start-up.
   */
  addResource(r: CoapResource): void {
    this.resources.add(r);
  }

  /**
   * Serve over `t` (any number of transports at once). Exchanges are keyed per transport, so the same
   * address:port on two transports never share deduplication state.
   */
  attach(t: DatagramTransport): void {
    const ep: Endpoint = { t, ids: new PeerIds(`${this.endpoints.length}/`) };
    this.endpoints.push(ep);
    t.onMessage((data, peer) => this.receive(ep, data, peer));
  }

  /** Sizes of the bounded state. */
  memory(): CoapMemory {
    return {
      dedupEntries: this.reliability.dedupEntries,
      dedupPeers: this.reliability.dedupPeers,
      blockEntries: this.block2.cachedEntries,
      blockBytes: this.block2.cachedBytes,
      inFlight: this.reliability.inFlight,
      pendingConfirmable: this.reliability.pendingConfirmable,
    };
  }

  /**
   * Stop: cancel retransmission and sweep timers, forget cached state, and ignore further datagrams
   * and late handler results. Transports are the caller's to close.
   */
  close(): void {
    this.closed = true;
    this.reliability.close();
    this.block2.clear();
  }

  // ---------------------------------------------------------------------------------------------
  // Receive path: sort each datagram

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

  /** The peer's key in the engine's tables: its session when it has one, else its address. */
  private peerId(ep: Endpoint, peer: Peer): string {
    return ep.ids.of(peer);
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
    if (!this.reliability.settle(this.peerId(ep, peer), mid)) this.stats.dropped++;
  }

  // ---------------------------------------------------------------------------------------------
  // Requests

  private onRequest(ep: Endpoint, data: Buffer, peer: Peer, m: DecodedMessage): void {
    const now = this.now();
    const peerId = this.peerId(ep, peer);
    const unverified = peer.sessionKey === undefined || peer.addressUnproven === true;
    // §11.3: retransmissions included (else replays of a cached answer would bypass the limit).
    const wait = unverified ? this.admitUnverified(peer, data, m, now) : 0;
    if (wait === DROP) return;
    const smallest = wait === SMALLEST;
    if (wait <= 0 && this.answerDuplicate(ep, peer, peerId, data, m.messageId, now, unverified, smallest)) return;

    this.stats.requests++;
    const ex = this.exchangeFor(ep, peer, peerId, data, m, unverified, smallest);
    if (wait > 0) return this.refuseOverLimit(ex, wait, now);
    if (m.badCritical !== 0) return this.refuseCriticalOption(ex, m.badCritical, now);
    const refusal = requestOptionError(m, this.s.maxPayload);
    if (refusal !== undefined) return this.deliver(ex, refusal, now);

    const method = METHOD_BY_CODE[m.code]!;
    const path = m.pathOverflow ? '' : pathOf(data, m);
    const res = this.resources.get(path);
    if (res === undefined) return this.deliver(ex, diag(CoapCode.NotFound, 'not found'), now);
    const handler = res.methods[method];
    if (handler === undefined && !(res.wellKnown && method === 'GET')) {
      return this.deliver(ex, diag(CoapCode.MethodNotAllowed, 'method not allowed'), now);
    }
    const payload = m.payloadStart < data.length ? data.subarray(m.payloadStart) : EMPTY;
    const unfit = resourceOptionError(m, res, payload.length, this.s.maxPayload);
    if (unfit !== undefined) return this.deliver(ex, unfit, now);

    ex.method = method;
    ex.path = path;
    ex.query = queryOf(data, m);
    if (m.block2 >= 16 && this.serveLaterBlock(ex, now)) return;
    if (res.wellKnown) return this.deliver(ex, this.resources.wellKnown(ex.query, ex.multicast), now);
    if (this.reliability.inFlight >= this.s.maxInFlight) return this.refuseOverloaded(ex, now);
    this.runHandler(ex, handler!, this.requestOf(ex, m, payload), now);
  }

  /**
   * §11.3: ask `admit` about a request from an address nobody verified. The seconds to wait (0:
   * serve it), {@link SMALLEST} or {@link DROP} (already counted).
   */
  private admitUnverified(peer: Peer, data: Buffer, m: DecodedMessage, now: number): number {
    const admit = this.s.admit;
    if (admit === undefined) return 0;
    let a: Admission = 0;
    try {
      // The path only of a request the engine would hand to a resource ('' for one it refuses itself).
      a = admit(peer, METHOD_BY_CODE[m.code], now, refusedByEngine(m) ? '' : pathOf(data, m));
    } catch (err) {
      this.logError({ err }, 'coap: admit threw; request served');
    }
    if (a === 'drop') {
      this.stats.rateLimited++;
      this.stats.dropped++;
      return DROP;
    }
    return a === 'smallest' ? SMALLEST : a;
  }

  /**
   * §4.5: a retransmission is answered by replaying what answered it, or ignored while its handler
   * runs (with the Empty ACK when one went out). True when it was a duplicate.
   */
  private answerDuplicate(ep: Endpoint, peer: Peer, peerId: string, data: Buffer, mid: number, now: number, unverified: boolean, smallest: boolean): boolean {
    const running = this.reliability.running(peerId, mid);
    if (running !== undefined) {
      this.stats.duplicates++;
      if (running.separate && running.con) ep.t.send(emptyMessage(TYPE_ACK, mid), peer);
      return true;
    }
    const seen = this.reliability.answered(peerId, mid, now);
    if (seen === undefined) return false;
    this.stats.duplicates++;
    if (seen.response === null) return true;
    // A shorter datagram with the same Message ID must not buy the longer request's answer.
    if (!unverified || seen.response.length <= this.budgetOf(data, smallest)) ep.t.send(seen.response, peer);
    else this.stats.amplificationDropped++;
    return true;
  }

  /** The largest datagram an unverified request of this size may be answered with. */
  private budgetOf(request: Buffer, smallest: boolean): number {
    const bound = this.s.amplification * request.length;
    return smallest ? Math.min(bound, request.length + SMALLEST_EXTRA) : bound;
  }

  private exchangeFor(
    ep: Endpoint,
    peer: Peer,
    peerId: string,
    data: Buffer,
    m: DecodedMessage,
    unverified: boolean,
    smallest: boolean,
  ): Exchange {
    const tkl = m.tokenLength;
    const multicast = peer.multicast === true;
    return new Exchange(
      ep,
      peer,
      peerId,
      m.type,
      m.messageId,
      tkl === 0 ? EMPTY : data.subarray(4, 4 + tkl),
      m.type === TYPE_CON && !multicast,
      multicast,
      m.block2,
      m.size2,
      unverified ? this.budgetOf(data, smallest) : Infinity,
      smallest,
    );
  }

  /** RFC 8516: 4.29 Too Many Requests, Max-Age = when to try again; nothing to a group (§8.2). */
  private refuseOverLimit(ex: Exchange, wait: number, now: number): void {
    this.stats.rateLimited++;
    if (ex.multicast) {
      this.stats.dropped++;
      return;
    }
    const out: Out = { code: CoapCode.TooManyRequests, contentFormat: undefined, maxAge: Math.ceil(wait), payload: EMPTY, options: undefined, cache: false };
    this.deliver(ex, out, now);
  }

  /** §5.4.1: an unrecognised critical option. CON → 4.02; a NON is rejected (RST, never to a group). */
  private refuseCriticalOption(ex: Exchange, option: number, now: number): void {
    if (ex.con) return this.deliver(ex, diag(CoapCode.BadOption, `unsupported critical option ${option}`), now);
    if (!ex.multicast) this.sendRst(ex.ep, ex.peer, ex.messageId);
    else this.stats.dropped++;
    this.reliability.rememberRejectedNon(ex, now);
  }

  /**
   * RFC 7959 §2.4: a later block of a large response comes from the cache when we still hold it; a
   * non-GET whose block state expired cannot be run again (4.00). False: run the handler (a GET).
   */
  private serveLaterBlock(ex: Exchange, now: number): boolean {
    const cached = this.block2.cachedBlock(ex, now);
    if (cached !== undefined) this.deliver(ex, cached, now);
    else if (ex.method !== 'GET') this.deliver(ex, diag(CoapCode.BadRequest, 'block state expired, repeat the request'), now);
    else return false;
    return true;
  }

  /** `maxInFlight` handlers run: 5.03 with Max-Age 1, not replayed, so the retransmission can succeed. */
  private refuseOverloaded(ex: Exchange, now: number): void {
    this.stats.overloaded++;
    this.deliver(ex, diag(CoapCode.ServiceUnavailable, 'overloaded', { maxAge: 1, cache: false }), now);
  }

  private requestOf(ex: Exchange, m: DecodedMessage, payload: Buffer): CoapRequest {
    return {
      method: ex.method!,
      path: ex.path,
      query: ex.query as string[],
      contentFormat: m.contentFormat >= 0 ? m.contentFormat : undefined,
      accept: m.accept >= 0 ? m.accept : undefined,
      payload,
      peer: ex.peer,
      confirmable: ex.con,
      token: ex.token,
      messageId: ex.messageId,
    };
  }

  /** Run the handler; a synchronous answer is sent at once, a promise is tracked until it settles. */
  private runHandler(ex: Exchange, handler: Handler, req: CoapRequest, now: number): void {
    let result: Promise<CoapResponse> | CoapResponse;
    try {
      result = handler(req);
    } catch (err) {
      return this.failed(ex, err);
    }
    if (result === null || typeof result !== 'object' || typeof (result as Promise<CoapResponse>).then !== 'function') {
      return this.complete(ex, result as CoapResponse, now);
    }
    this.reliability.begin(ex, now);
    try {
      (result as Promise<CoapResponse>).then(
        (r) => this.complete(ex, r),
        (err: unknown) => this.failed(ex, err),
      );
    } catch (err) {
      this.failed(ex, err);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Completion and send path

  /** A handler answered. Never throws: it may run as a promise callback. */
  private complete(ex: Exchange, res: CoapResponse, now?: number): void {
    if (!this.finishExchange(ex)) return;
    let out: Out;
    try {
      out = normalizeResponse(res);
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
      this.deliver(ex, diag(CoapCode.InternalServerError, 'internal server error'), this.now());
    } catch (err2) {
      this.logError({ err: err2, peer: peerKey(ex.peer) }, 'coap: internal error on send');
    }
  }

  /** A handler still ran after `handlerTimeoutMs` (the reliability layer finished its exchange): 5.03. */
  private onHandlerTimeout(ex: Exchange, now: number): void {
    if (this.closed) return;
    this.stats.handlerTimeouts++;
    this.logError({ peer: peerKey(ex.peer), method: ex.method, path: ex.path }, 'coap: handler timed out, answered 5.03');
    this.deliver(ex, diag(CoapCode.ServiceUnavailable, 'handler timed out'), now);
  }

  /** Mark an exchange finished; false when it already was (timed out) or the server is closed. */
  private finishExchange(ex: Exchange): boolean {
    return this.reliability.finish(ex) && !this.closed;
  }

  /**
   * Send `out` for `ex`: multicast suppression (§8.2), Block2 slicing and the amplification bound of
   * an unverified address (`block2.ts`), message type and deduplication record (`reliability.ts`).
   */
  private deliver(ex: Exchange, out: Out, now: number): void {
    const stats = this.stats;
    const cls = out.code >> 5;
    if (ex.multicast && (cls !== 2 || out.nothing === true)) {
      // §8.2: no error responses to a group request; RFC 6690 §4.1: no answer to an empty match.
      stats.suppressed++;
      this.reliability.rememberSilence(ex, now);
      return;
    }
    const rel = this.reliability;
    const type = rel.responseType(ex);
    const mid = rel.responseMid(ex, type);
    const data = this.block2.fit(ex, out, type, mid, now);
    if (typeof data === 'number') return this.deliverUnfit(ex, data, now);
    if (this.block2.bounded) stats.amplificationBounded++;
    if (cls === 2 || cls === 4 || cls === 5) stats.responses[cls]++;
    if (this.block2.fitted!.cache) rel.rememberAnswer(ex, type, data, now);
    ex.ep.t.send(data, ex.peer);
    if (type === TYPE_CON) rel.trackConfirmable(ex, data, mid);
  }

  /** The response could not be sent as it was: answer 4.00 or 5.00 instead, or stay silent. */
  private deliverUnfit(ex: Exchange, why: number, now: number): void {
    if (why === BEYOND_END) return this.deliver(ex, diag(CoapCode.BadRequest, 'block number beyond the end of the representation'), now);
    if (why === ENCODE_FAILED) {
      this.stats.handlerErrors++;
      this.logError({ err: this.block2.encodeError, peer: peerKey(ex.peer) }, 'coap: response could not be encoded, answered 5.00');
      return this.deliver(ex, diag(CoapCode.InternalServerError, 'internal server error'), now);
    }
    if (why === DOES_NOT_FIT) {
      this.stats.amplificationDropped++;
      this.reliability.rememberSilence(ex, now);
    }
  }
}
