/**
 * What the layers of the CoAP engine pass between them: the endpoint a request came in on, the
 * exchange that answers it, and a response ready for encoding (`Out`).
 */
import type { DatagramTransport, Peer } from '../datagram.ts';
import type { CoapMethod, CoapOption } from './api.ts';
import type { PeerIds } from './peer-ids.ts';

/** One attached transport; its peers' keys (`ids`) keep the exchanges of two transports apart. */
export interface Endpoint {
  t: DatagramTransport;
  ids: PeerIds;
}

/** A response ready for encoding. */
export interface Out {
  /** The header code, `class << 5 | detail`. */
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

/** One request being answered. */
export class Exchange {
  /** When its handler started (set for handlers that answer with a promise). */
  started = 0;
  /** An Empty ACK went out: the response follows as a separate CON (§5.2.2). */
  separate = false;
  done = false;
  /** In the reliability layer's in-flight table (its handler answers with a promise). */
  tracked = false;
  method: CoapMethod | undefined = undefined;
  path = '';
  query: readonly string[] = [];
  constructor(
    readonly ep: Endpoint,
    readonly peer: Peer,
    /** The peer's key in the engine's tables (endpoint tag + session or address). */
    readonly peerId: string,
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

  /** `peerId#messageId`: the exchange's key among the handlers in flight (built only for those). */
  get key(): string {
    return exchangeKey(this.peerId, this.messageId);
  }
}

/** The key of message `mid` of `peerId` in the tables of exchanges. */
export function exchangeKey(peerId: string, mid: number): string {
  return peerId + '#' + mid;
}

export const EMPTY = Buffer.alloc(0);

/** An answer with a diagnostic payload (§5.5.2). */
export function diag(code: number, text: string, extra?: Partial<Out>): Out {
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

export function isUint(v: unknown, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;
}
