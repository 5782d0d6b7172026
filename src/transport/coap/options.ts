/**
 * The options layer of the CoAP engine: what a request's options allow (RFC 7252 §5.4, §5.10;
 * RFC 7959 §2.9.3), whether a handler's answer is a valid response, and the response's options
 * written in order around the handler's own (§3.1).
 *
 * The checks read the decoded message in place (the codec's scratch `DecodedMessage`) and allocate
 * only for the error they answer with.
 */
import { CoapCode, isResponseCode } from '../../protocol/coap-codes.ts';
import type { CoapMethod, CoapOption, CoapResponse } from './api.ts';
import { type DecodedMessage, MessageWriter, OPT } from './codec.ts';
import { EMPTY, type Out, diag, isUint } from './exchange.ts';

/** Request methods by code detail (RFC 7252 §5.8, RFC 8132). */
export const METHOD_BY_CODE: readonly (CoapMethod | undefined)[] = [
  undefined,
  'GET',
  'POST',
  'PUT',
  'DELETE',
  'FETCH',
  'PATCH',
  'iPATCH',
];

/** What a resource declares that the options layer checks a request against. */
export interface OptionRules {
  /** Allowed request Content-Formats (undefined: any). */
  readonly accepts: ReadonlySet<number> | undefined;
  /** The Content-Format of its responses (undefined: Accept is not checked). */
  readonly ct: number | undefined;
}

/**
 * True when the engine refuses the request itself, before any resource sees it (for the `admit`
 * callback, which then gets the path '').
 */
export function refusedByEngine(m: DecodedMessage): boolean {
  return m.badCritical !== 0 || m.badRequest !== '' || m.proxy || m.block1 >= 0 || m.pathOverflow;
}

/**
 * The answer to a request whose options the engine does not take, before the resource is looked
 * up: an option value that is recognised but invalid → 4.00; Proxy-Uri/Proxy-Scheme → 5.05
 * (§5.10.2); Block1 → 4.13 with Size1 (RFC 7959 §2.9.3); an unknown method code → 4.05 (§5.8).
 * Undefined when none applies. (Unrecognised critical options are the caller's: a NON is rejected.)
 */
export function requestOptionError(m: DecodedMessage, maxPayload: number): Out | undefined {
  if (m.badRequest !== '') return diag(CoapCode.BadRequest, m.badRequest);
  // §5.10.2: we are not a forward proxy.
  if (m.proxy) return diag(CoapCode.ProxyingNotSupported, 'proxying not supported');
  // RFC 7959 §2.9.3: request bodies are not reassembled; say how much fits (Size1).
  if (m.block1 >= 0) return diag(CoapCode.RequestEntityTooLarge, 'block-wise requests not supported', { size1: maxPayload });
  if (METHOD_BY_CODE[m.code] === undefined) return diag(CoapCode.MethodNotAllowed, 'unknown method');
  return undefined;
}

/**
 * The answer to a request the resource cannot take, checked before its handler runs: a payload over
 * `maxPayload` → 4.13 with Size1; a Content-Format it does not take → 4.15 (§5.10.3); an Accept it
 * cannot honour → 4.06 (§5.10.4); too many Uri-Query options → 4.00. Undefined when it can.
 */
export function resourceOptionError(m: DecodedMessage, rules: OptionRules, payloadLength: number, maxPayload: number): Out | undefined {
  if (payloadLength > maxPayload) return diag(CoapCode.RequestEntityTooLarge, 'payload too large', { size1: maxPayload });
  if (m.contentFormat >= 0 && rules.accepts !== undefined && !rules.accepts.has(m.contentFormat)) {
    return diag(CoapCode.UnsupportedContentFormat, 'unsupported content-format');
  }
  if (m.accept >= 0 && rules.ct !== undefined && m.accept !== rules.ct) return diag(CoapCode.NotAcceptable, 'not acceptable');
  if (m.queryOverflow) return diag(CoapCode.BadRequest, 'too many Uri-Query options');
  return undefined;
}

/** Option numbers the engine writes itself; handler copies are dropped. */
const MANAGED = new Set<number>([OPT.CONTENT_FORMAT, OPT.MAX_AGE, OPT.BLOCK2, OPT.BLOCK1, OPT.SIZE2, OPT.SIZE1]);

/** Validate a handler's answer; throws on a bad one (a handler error → 5.00). */
export function normalizeResponse(res: CoapResponse): Out {
  if (res === null || typeof res !== 'object') throw new TypeError('handler returned no response object');
  const code = res.code;
  if (!isResponseCode(code)) throw new TypeError(`invalid response code ${String(code)}`);
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

/** The Block2 part of one response: which slice, and the options that say so (-1: absent). */
export interface BlockOptions {
  start: number;
  end: number;
  /** Block2 option value, -1 for none. */
  block2: number;
  /** Size2 option value, -1 for none. */
  size2: number;
  etag: Buffer | undefined;
}

/**
 * Encodes responses into one reused scratch buffer: the engine's options (ETag, Content-Format,
 * Max-Age, Block2, Size2, Size1) merged in number order with the handler's extra options.
 */
export class ResponseEncoder {
  private readonly writer = new MessageWriter();

  /** The datagram of `out` as message `type`/`mid` with `token`, carrying the slice `b` of its payload. */
  encode(type: number, out: Out, mid: number, token: Buffer, b: BlockOptions): Buffer {
    const w = this.writer.begin(type, out.code, mid, token);
    const xs = out.options;
    let xi = 0;
    if (xs !== undefined) xi = this.extras(xs, xi, OPT.ETAG);
    if (b.etag !== undefined) w.option(OPT.ETAG, b.etag);
    if (xs !== undefined) xi = this.extras(xs, xi, OPT.CONTENT_FORMAT);
    if (out.contentFormat !== undefined) w.optionUint(OPT.CONTENT_FORMAT, out.contentFormat);
    if (xs !== undefined) xi = this.extras(xs, xi, OPT.MAX_AGE);
    if (out.maxAge !== undefined) w.optionUint(OPT.MAX_AGE, out.maxAge);
    if (xs !== undefined) xi = this.extras(xs, xi, OPT.BLOCK2);
    if (b.block2 >= 0) w.optionUint(OPT.BLOCK2, b.block2);
    if (xs !== undefined) xi = this.extras(xs, xi, OPT.SIZE2);
    if (b.size2 >= 0) w.optionUint(OPT.SIZE2, b.size2);
    if (xs !== undefined) xi = this.extras(xs, xi, OPT.SIZE1);
    if (out.size1 !== undefined) w.optionUint(OPT.SIZE1, out.size1);
    if (xs !== undefined) this.extras(xs, xi, 0x10000);
    return w.payload(out.payload, b.start, b.end).finish();
  }

  /** Write the handler's options from index `from` whose numbers are below `below`; the next index. */
  private extras(xs: readonly CoapOption[], from: number, below: number): number {
    let i = from;
    while (i < xs.length && xs[i]!.number < below) {
      this.writer.option(xs[i]!.number, xs[i]!.value);
      i++;
    }
    return i;
  }
}
