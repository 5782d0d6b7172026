/**
 * The device simulator's CoAP client (docs/spec/idprov-coap-v1.md §1), on node-coap's client — a real, independent
 * CoAP implementation, unlike the server's own engine (docs/architecture.md "The CoAP engine: node-coap's server is not fit").
 *
 * {@link Exchange} is the narrow seam the {@link DeviceClient} talks to: one request in, one response
 * out. {@link CoapUdpExchange} sends it as a confirmable CoAP message over UDP (retransmitted by
 * node-coap as RFC 7252 §4.2 says); tests may plug in an in-process exchange instead.
 */
import { isIP } from 'node:net';
import * as coap from 'coap';
import { DeviceSimError } from './errors.ts';

/** One CoAP request, as the device builds it. */
export interface ExchangeRequest {
  method: 'GET' | 'POST';
  /** e.g. `/idprov/request`. */
  path: string;
  /** Uri-Query without the `?`, e.g. `rt=idprov*`. */
  query?: string;
  payload?: Uint8Array;
  /** Content-Format option (§1: 18 for the signed POST bodies); omitted when undefined. */
  contentFormat?: number;
}

/** The response to an {@link ExchangeRequest}. */
export interface ExchangeResponse {
  /** Response code as `c.dd`, e.g. `2.01`. */
  code: string;
  payload: Buffer;
  /** Content-Format option of the response, when present. */
  contentFormat?: number;
  /** Max-Age option (s), when present (§4: the server repeats `retry` there). */
  maxAge?: number;
}

/** A way to exchange one request for one response. */
export interface Exchange {
  request(req: ExchangeRequest): Promise<ExchangeResponse>;
  /** Release sockets so the process can exit. */
  close(): Promise<void>;
}

/** Where the server is and how long to wait for it. */
export interface CoapUdpOptions {
  /** Host name or IP literal (IPv6 without brackets). */
  host: string;
  /** UDP port; 5683 by default (§1). */
  port?: number;
  /**
   * Give up on a request after this many ms (default 30 000). node-coap retransmits a confirmable
   * request at about 2, 6, 14 and 30 s before that (RFC 7252 §4.8 ACK_TIMEOUT, MAX_RETRANSMIT).
   */
  timeoutMs?: number;
}

/** Default CoAP/UDP port (docs/spec/idprov-coap-v1.md §1). */
export const COAP_PORT = 5683;
/** Default request timeout in ms. */
export const DEFAULT_TIMEOUT_MS = 30_000;

/** CoAP option numbers (RFC 7252 §5.10) read from responses. */
const OPT_CONTENT_FORMAT = 12;
const OPT_MAX_AGE = 14;

type Agent = InstanceType<typeof coap.Agent>;
type RawOption = { name: string | number; value: Buffer | number | string };

/** Content-Formats node-coap reports by name (docs/spec/idprov-coap-v1.md §1 and RFC 7252 §12.3). */
const FORMAT_NUMBERS: Readonly<Record<string, number>> = {
  'text/plain': 0,
  'text/plain; charset=utf-8': 0,
  'application/cose; cose-type="cose-sign1"': 18,
  'application/link-format': 40,
  'application/octet-stream': 42,
  'application/json': 50,
  'application/cbor': 60,
  'application/cose-key-set': 102,
};

/** A uint option value (RFC 7252 §3.2: big-endian, leading zeros stripped; empty = 0). */
function uintOption(b: Buffer): number {
  let n = 0;
  for (const byte of b) n = n * 256 + byte;
  return n;
}

/** Find an option in a node-coap packet by number or by node-coap's name for it. */
function option(options: readonly RawOption[] | undefined, num: number, name: string): number | undefined {
  const o = options?.find((x) => x.name === num || x.name === name);
  if (!o) return undefined;
  // node-coap hands registered options over decoded: Max-Age as a number, Content-Format as its name.
  if (typeof o.value === 'number') return o.value;
  if (typeof o.value === 'string') return FORMAT_NUMBERS[o.value];
  return Buffer.isBuffer(o.value) ? uintOption(o.value) : undefined;
}

/**
 * CoAP over UDP with node-coap's client. One dedicated agent (one socket) per exchange object, made on
 * first use; {@link close} closes it so that the process can exit.
 */
export class CoapUdpExchange implements Exchange {
  readonly host: string;
  readonly port: number;
  readonly timeoutMs: number;
  private agent: Agent | undefined;
  /** Requests in flight, so that {@link close} can fail them instead of leaving them hanging. */
  private readonly inFlight = new Set<(e: Error) => void>();

  constructor(o: CoapUdpOptions) {
    this.host = o.host.replace(/^\[(.*)\]$/, '$1');
    this.port = o.port ?? COAP_PORT;
    this.timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  private getAgent(): Agent {
    // node-coap wants one agent per address family: udp6 for an IPv6 literal, udp4 otherwise
    // (a host name is resolved by the udp4 socket).
    this.agent ??= new coap.Agent({ type: isIP(this.host) === 6 ? 'udp6' : 'udp4' });
    return this.agent;
  }

  request(r: ExchangeRequest): Promise<ExchangeResponse> {
    const agent = this.getAgent();
    return new Promise<ExchangeResponse>((resolve, reject) => {
      const params: Parameters<typeof coap.request>[0] & object = {
        hostname: this.host,
        port: this.port,
        method: r.method,
        pathname: r.path,
        confirmable: true,
        agent,
      };
      if (r.query !== undefined) params.query = r.query;
      if (r.contentFormat !== undefined) params.contentFormat = r.contentFormat;
      const req = coap.request(params);
      let settled = false;
      const fail = (e: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.inFlight.delete(fail);
        reject(e);
      };
      this.inFlight.add(fail);
      const timer = setTimeout(() => {
        agent.abort(req);
        fail(new DeviceSimError('timeout', `no response from ${this.host}:${this.port} within ${this.timeoutMs} ms (${r.method} ${r.path})`));
      }, this.timeoutMs);
      req.on('response', (res) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.inFlight.delete(fail);
        const options = (res as unknown as { options?: RawOption[] }).options;
        const out: ExchangeResponse = { code: res.code, payload: Buffer.from(res.payload ?? Buffer.alloc(0)) };
        const cf = option(options, OPT_CONTENT_FORMAT, 'Content-Format');
        if (cf !== undefined) out.contentFormat = cf;
        const maxAge = option(options, OPT_MAX_AGE, 'Max-Age');
        if (maxAge !== undefined) out.maxAge = maxAge;
        resolve(out);
      });
      req.on('error', (err: Error) => fail(new DeviceSimError('transport', `${r.method} ${r.path} to ${this.host}:${this.port}: ${err.message}`)));
      req.end(r.payload ? Buffer.from(r.payload) : undefined);
    });
  }

  close(): Promise<void> {
    for (const fail of [...this.inFlight]) fail(new DeviceSimError('transport', 'the client was closed'));
    const agent = this.agent;
    this.agent = undefined;
    // node-coap already closes the agent's socket once no request is outstanding; `close` is then a
    // no-op whose callback never runs, so only wait when a socket is still open.
    if (!agent || agent._sock == null) return Promise.resolve();
    return new Promise<void>((resolve) => {
      agent.once('close', () => resolve());
      // Aborted in-flight requests normally lead to 'close'; never let shutdown hang on it.
      setTimeout(resolve, 1000).unref();
      try {
        agent.close();
      } catch {
        resolve(); // the socket was already closing
      }
    });
  }
}
