/**
 * A minimal CoAP/UDP client for tests (raw dgram + coap-packet): one CON request, retransmitted per
 * RFC 7252 §4.2 until its piggybacked or separate response arrives. A block-wise GET response (RFC
 * 7959 Block2, which the server uses to bound what an unverified address receives) is reassembled.
 */
import { createSocket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { generate, parse, type ParsedPacket } from 'coap-packet';

export interface CoapReply {
  code: string;
  payload: Buffer;
  options: ParsedPacket['options'];
  maxAge?: number;
  contentFormat?: number;
}

const uint = (b: Buffer): number => (b.length === 0 ? 0 : b.readUIntBE(0, b.length));

export interface CoapRequestOptions {
  host?: string;
  port: number;
  method?: 'GET' | 'POST';
  path: string;
  query?: string[];
  payload?: Buffer;
  contentFormat?: number;
  timeoutMs?: number;
  /** Local address to send from (another loopback address is another source). */
  localAddress?: string;
  /** Block2 option value to send (RFC 7959 §2.2: NUM·16 + M·8 + SZX). */
  block2?: number;
}

/** One request; a GET whose answer comes block-wise is followed to its last block (RFC 7959 §2.4). */
export async function coapRequest(opts: CoapRequestOptions): Promise<CoapReply> {
  const first = await coapExchange(opts);
  if ((opts.method ?? 'GET') !== 'GET' || opts.block2 !== undefined) return first;
  let r = first;
  const parts = [first.payload];
  for (let i = 0; i < 1000; i++) {
    const b2 = r.options.find((o) => o.name === 'Block2');
    const v = b2 ? uint(b2.value as Buffer) : 0;
    if (!r.code.startsWith('2.') || (v & 8) === 0) break;
    r = await coapExchange({ ...opts, block2: (Math.floor(v / 16) + 1) * 16 + (v & 7) });
    parts.push(r.payload);
  }
  return { ...first, payload: Buffer.concat(parts) };
}

/** One CON request and its response (no block-wise following). */
export async function coapExchange(opts: CoapRequestOptions): Promise<CoapReply> {
  const host = opts.host ?? '127.0.0.1';
  const sock = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  const token = randomBytes(4);
  const messageId = randomBytes(2).readUInt16BE(0);
  const options: Array<{ name: string; value: Buffer }> = opts.path
    .split('/')
    .filter(Boolean)
    .map((seg) => ({ name: 'Uri-Path', value: Buffer.from(seg) }));
  if (opts.contentFormat !== undefined) {
    const v = Buffer.alloc(2);
    v.writeUInt16BE(opts.contentFormat);
    options.push({ name: 'Content-Format', value: opts.contentFormat < 256 ? Buffer.from([opts.contentFormat]) : v });
  }
  for (const q of opts.query ?? []) options.push({ name: 'Uri-Query', value: Buffer.from(q) });
  if (opts.block2 !== undefined) {
    const v = opts.block2;
    options.push({ name: 'Block2', value: v === 0 ? Buffer.alloc(0) : v < 256 ? Buffer.from([v]) : v < 65536 ? Buffer.from([v >> 8, v & 255]) : Buffer.from([v >> 16, (v >> 8) & 255, v & 255]) });
  }
  const msg = generate({ code: opts.method ?? 'GET', confirmable: true, messageId, token, options, payload: opts.payload ?? Buffer.alloc(0) } as never);
  return new Promise<CoapReply>((resolve, reject) => {
    let tries = 0;
    let timer: NodeJS.Timeout;
    const deadline = setTimeout(() => finish(new Error(`no CoAP response from ${host}:${opts.port}${opts.path}`)), opts.timeoutMs ?? 10_000);
    const finish = (err: Error | null, r?: CoapReply) => {
      clearTimeout(timer);
      clearTimeout(deadline);
      sock.close();
      if (err) reject(err);
      else resolve(r!);
    };
    const send = () => {
      sock.send(msg, opts.port, host);
      timer = setTimeout(send, 1000 * 2 ** tries++);
    };
    sock.on('message', (data) => {
      let p: ParsedPacket;
      try {
        p = parse(data);
      } catch {
        return;
      }
      if (p.ack && p.code === '0.00') {
        clearTimeout(timer); // empty ACK: a separate response follows
        return;
      }
      if (!Buffer.from(p.token).equals(token)) return;
      if (p.confirmable) sock.send(generate({ code: '0.00', ack: true, messageId: p.messageId, token: Buffer.alloc(0) } as never), opts.port, host);
      const mo = p.options.find((o) => o.name === 'Max-Age');
      const cf = p.options.find((o) => o.name === 'Content-Format');
      const r: CoapReply = { code: p.code, payload: p.payload, options: p.options };
      if (mo) r.maxAge = uint(mo.value as Buffer);
      if (cf) r.contentFormat = uint(cf.value as Buffer);
      finish(null, r);
    });
    sock.on('error', (e) => finish(e));
    if (opts.localAddress !== undefined) sock.bind(0, opts.localAddress, send);
    else send();
  });
}
