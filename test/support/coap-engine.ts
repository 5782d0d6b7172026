/**
 * Test helpers: a CoAP client over an in-memory pair that encodes and decodes with `coap-packet`
 * (the independent reference codec), a seeded PRNG and valid sample datagrams.
 */
import { generate, parse, type NamedOption, type Option, type Packet, type ParsedPacket } from 'coap-packet';
import { CoapServer, type CoapServerOptions } from '../../src/transport/coap/engine.ts';
import { createMemoryPair, type MemoryTransport } from './memory-transport.ts';
import { silentLogger } from '../../src/log.ts';
import type { Peer } from '../../src/transport/datagram.ts';

/** A received datagram, parsed by coap-packet. */
export type Msg = ParsedPacket;

/** Option value by number (coap-packet names known options, unknown ones are numeric strings). */
const NAME_BY_NUMBER: Record<number, string> = {
  4: 'ETag',
  8: 'Location-Path',
  12: 'Content-Format',
  14: 'Max-Age',
  23: 'Block2',
  27: 'Block1',
  28: 'Size2',
  60: 'Size1',
};

export function opt(m: Msg, num: number): Buffer | undefined {
  const name = NAME_BY_NUMBER[num] ?? String(num);
  return m.options.find((o) => o.name === name || o.name === num)?.value;
}

export function uint(b: Buffer | undefined): number | undefined {
  if (b === undefined) return undefined;
  let v = 0;
  for (const x of b) v = v * 256 + x;
  return v;
}

export function uintBuf(v: number): Buffer {
  const out: number[] = [];
  while (v > 0) {
    out.unshift(v & 0xff);
    v = Math.floor(v / 256);
  }
  return Buffer.from(out);
}

/** Options for a request path like `/a/b?x=1&y`. */
export function uriOptions(uri: string): (Option | NamedOption)[] {
  const [path, query] = uri.split('?', 2) as [string, string | undefined];
  const opts: (Option | NamedOption)[] = [];
  for (const seg of path.split('/').slice(1)) if (seg !== '') opts.push({ name: 'Uri-Path', value: Buffer.from(seg) });
  if (query !== undefined) for (const q of query.split('&')) opts.push({ name: 'Uri-Query', value: Buffer.from(q) });
  return opts;
}

export interface RequestSpec {
  method?: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'FETCH' | 'PATCH' | 'iPATCH' | string;
  uri?: string;
  type?: 'CON' | 'NON';
  messageId?: number;
  token?: Buffer;
  payload?: Buffer;
  options?: (Option | NamedOption)[];
}

let midSeq = 1000;
let tokSeq = 1;

/** Encode a request with coap-packet. */
export function encodeRequest(spec: RequestSpec): Buffer {
  const packet: Packet = {
    code: spec.method ?? 'GET',
    confirmable: (spec.type ?? 'CON') === 'CON',
    messageId: spec.messageId ?? (midSeq = (midSeq + 1) & 0xffff),
    token: spec.token ?? Buffer.from([0xa0, (tokSeq = (tokSeq + 1) & 0xff)]),
    options: [...uriOptions(spec.uri ?? '/'), ...(spec.options ?? [])],
  };
  if (spec.payload !== undefined) packet.payload = spec.payload;
  return generate(packet);
}

/** A client end of an in-memory pair. Collects every datagram it receives, in order. */
export class TestClient {
  readonly inbox: Msg[] = [];
  private waiters: (() => void)[] = [];
  private pingMid = 60000;

  constructor(
    readonly t: MemoryTransport,
    readonly server: Peer,
  ) {
    t.onMessage((data) => {
      this.inbox.push(parse(data));
      const w = this.waiters;
      this.waiters = [];
      for (const f of w) f();
    });
  }

  sendRaw(data: Buffer): void {
    this.t.send(data, this.server);
  }

  /** Wait until a received message satisfies `pred`; remove and return it. */
  async waitFor(pred: (m: Msg) => boolean): Promise<Msg> {
    for (;;) {
      const i = this.inbox.findIndex(pred);
      if (i >= 0) return this.inbox.splice(i, 1)[0]!;
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }

  /** Send a request and wait for the message that answers it (matching token, not an empty ACK). */
  async request(spec: RequestSpec): Promise<Msg> {
    const token = spec.token ?? Buffer.from([0xb0, (tokSeq = (tokSeq + 1) & 0xff), tokSeq >> 8]);
    this.sendRaw(encodeRequest({ ...spec, token }));
    return this.waitFor((m) => m.code !== '0.00' && m.token.equals(token));
  }

  /**
   * Send a CoAP ping and wait for its RST. The server handles datagrams in order and the link is
   * FIFO, so every synchronous answer to what was sent before has arrived by then: this is how tests
   * check that *nothing* was sent, without timing.
   */
  async barrier(): Promise<Msg[]> {
    const mid = (this.pingMid = this.pingMid + 1 > 65000 ? 60000 : this.pingMid + 1);
    this.sendRaw(generate({ code: '0.00', confirmable: true, messageId: mid }));
    await this.waitFor((m) => m.reset && m.messageId === mid);
    return this.inbox.splice(0);
  }
}

/** A server and a client over an in-memory pair. */
export function setup(opts: Partial<CoapServerOptions> = {}): {
  server: CoapServer;
  client: TestClient;
  serverT: MemoryTransport;
  clientT: MemoryTransport;
} {
  const [serverT, clientT] = createMemoryPair();
  const server = new CoapServer({ log: silentLogger, ...opts });
  server.attach(serverT);
  return { server, client: new TestClient(clientT, serverT.peer), serverT, clientT };
}

/** Mulberry32: a small seeded PRNG, so failures reproduce (shared with the other suites). */
export { prng } from './mutation.ts';

/** A promise with its resolver exposed. */
export function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Reassemble a Block2 transfer (RFC 7959 §2.4) by requesting blocks until M = 0. */
export async function fetchBlockwise(
  client: TestClient,
  uri: string,
  szx?: number,
): Promise<{ payload: Buffer; blocks: Msg[] }> {
  const parts: Buffer[] = [];
  const blocks: Msg[] = [];
  let num = 0;
  for (;;) {
    const options: Option[] = [];
    if (szx !== undefined || num > 0) options.push({ name: 'Block2', value: uintBuf(num * 16 + (szx ?? 6)) });
    const res = await client.request({ uri, options });
    blocks.push(res);
    if (!res.code.startsWith('2.')) throw new Error(`block ${num}: ${res.code}`);
    parts.push(res.payload);
    const b2 = uint(opt(res, 23));
    if (b2 === undefined || (b2 & 8) === 0) break;
    if (szx === undefined) szx = b2 & 7;
    num = Math.floor(b2 / 16) + 1;
  }
  return { payload: Buffer.concat(parts), blocks };
}
