/**
 * A small DTLS 1.2 client for tests and the benchmark: PSK and anonymous ECDHE_ECDSA with the AEAD
 * suites, HelloVerifyRequest, extended master secret, RFC 9146 Connection ID (which no Debian peer
 * speaks), optional fragmentation of its own handshake messages, flight retransmission, and a
 * `rebind()` that moves to a new local port mid-session (a NAT rebinding). It reuses the server's
 * wire and crypto helpers, so it proves behaviour (CID, loss, migration) rather than the codecs,
 * which the real peers in test/transport/dtls/interop.test.ts prove.
 */
import { X509Certificate, createECDH, createHash, randomBytes, verify, type Hash } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { RecordCipher, ReplayWindow, finishedData, innerPlaintext, keyBlock, masterSecret, pskPreMaster, safeEqual, splitInnerPlaintext } from '../../src/transport/dtls/crypto.ts';
import { spkiFingerprint } from '../../src/transport/dtls/cert.ts';
import {
  CT,
  DTLS12,
  EXT,
  GROUP_P256,
  HT,
  Reader,
  SIG_ECDSA_SHA256,
  extension,
  handshakeFragment,
  handshakeMessage,
  parseHandshakeFragments,
  parseRecords,
  u16,
  vec16,
  vec8,
  writeCidRecord,
  writeRecord,
} from '../../src/transport/dtls/wire.ts';

export interface ClientOptions {
  host: string;
  port: number;
  psk?: { identity: string; key: Buffer };
  /** Suites to offer, in order (default: PSK-CCM_8 with a PSK, else ECDHE-CCM_8). */
  suites?: number[];
  /** Offer the extended master secret (default true). */
  ems?: boolean;
  /** Offer RFC 9146 CID with this value for records sent to us (empty = we only send with CID). */
  cid?: Buffer;
  /** Fragment our handshake messages after the ClientHello into pieces of at most this many bytes. */
  fragment?: number;
  /** Check the server certificate's SPKI fingerprint (base64url) and the ServerKeyExchange signature. */
  fingerprint?: string;
  /** Skip the ServerKeyExchange signature check (benchmark only). */
  skipVerify?: boolean;
  retransmitMs?: number;
  timeoutMs?: number;
  /** Called with every datagram the client sends (tests capture them for replay and mutation). */
  tap?: (datagram: Buffer) => void;
  /** Called with every datagram the client receives, before it is processed (timing measurements). */
  onReceive?: (datagram: Buffer) => void;
  /** Local address to bind (default 127.0.0.1, or ::1 for an IPv6 host): another loopback address is another source. */
  localAddress?: string;
  /** Awaited after the server's flight 4 and before flight 5 goes out (a slow link or a slow device). */
  beforeFlight5?: () => Promise<void>;
}

/** A ClientHello body as this client sends it. */
export function clientHelloBody(o: { random: Buffer; cookie?: Buffer; suites: number[]; ems?: boolean; cid?: Buffer }): Buffer {
  const exts: Buffer[] = [
    extension(EXT.supportedGroups, vec16(u16(GROUP_P256))),
    extension(EXT.ecPointFormats, vec8(Buffer.from([0]))),
    extension(EXT.signatureAlgorithms, vec16(u16(SIG_ECDSA_SHA256))),
    extension(EXT.renegotiationInfo, vec8(Buffer.alloc(0))),
  ];
  if (o.ems !== false) exts.push(extension(EXT.extendedMasterSecret, Buffer.alloc(0)));
  if (o.cid !== undefined) exts.push(extension(EXT.connectionId, vec8(o.cid)));
  return Buffer.concat([u16(DTLS12), o.random, vec8(Buffer.alloc(0)), vec8(o.cookie ?? Buffer.alloc(0)), vec16(Buffer.concat(o.suites.map(u16))), vec8(Buffer.from([0])), vec16(Buffer.concat(exts))]);
}

/** A whole ClientHello datagram (one record, one unfragmented message). */
export function clientHelloDatagram(o: { random: Buffer; cookie?: Buffer; suites: number[]; recordSeq?: number; msgSeq?: number; ems?: boolean; cid?: Buffer }): Buffer {
  const body = clientHelloBody(o);
  return writeRecord(CT.handshake, DTLS12, 0, o.recordSeq ?? 0, handshakeFragment(HT.clientHello, o.msgSeq ?? 0, body, 0, body.length));
}

/** Raised when the handshake fails; `alert` is the server's alert description, when it sent one. */
export class HandshakeError extends Error {
  constructor(
    message: string,
    readonly alert?: number,
  ) {
    super(message);
  }
}

type Flight = Array<{ type: number; epoch: 0 | 1; body?: Buffer; msgType?: number; msgSeq?: number }>;

export class DtlsClient {
  suite = 0;
  serverCid: Buffer | undefined;
  emsNegotiated = false;
  secureRenegotiation = false;
  private sock!: Socket;
  private seq0 = 0;
  private seq1 = 0;
  private msgSeq = 0;
  private nextRecv = 0;
  private rd: RecordCipher | undefined;
  private wr: RecordCipher | undefined;
  private readonly win = new ReplayWindow();
  private onAppData: ((d: Buffer) => void) | undefined;
  private onAlertCb: ((level: number, desc: number) => void) | undefined;
  closedByPeer = false;

  private constructor(readonly opts: ClientOptions) {}

  /** Connect and complete the handshake. @throws HandshakeError */
  static async connect(opts: ClientOptions): Promise<DtlsClient> {
    const c = new DtlsClient(opts);
    await c.bindSocket();
    try {
      await c.handshake();
    } catch (e) {
      c.sock.close();
      throw e;
    }
    return c;
  }

  private bindSocket(): Promise<void> {
    this.sock = createSocket(this.opts.host.includes(':') ? 'udp6' : 'udp4');
    this.sock.on('error', () => undefined);
    return new Promise((resolve) => this.sock.bind(0, this.opts.localAddress ?? (this.opts.host.includes(':') ? '::1' : '127.0.0.1'), () => resolve()));
  }

  /** The local UDP port. */
  get localPort(): number {
    return this.sock.address().port;
  }

  /** Send raw bytes to the server (tests). */
  sendRaw(b: Buffer): void {
    this.opts.tap?.(b);
    this.sock.send(b, this.opts.port, this.opts.host);
  }

  /** Move to a new local port (a NAT rebinding); the session continues only with CID. */
  async rebind(): Promise<void> {
    const old = this.sock;
    const listeners = old.listeners('message') as Array<(m: Buffer) => void>;
    await this.bindSocket();
    for (const l of listeners) this.sock.on('message', l);
    old.close();
  }

  // -------------------------------------------------------------------------------------------

  private rec(type: number, epoch: 0 | 1, payload: Buffer): Buffer {
    if (epoch === 0) return writeRecord(type, DTLS12, 0, this.seq0++, payload);
    const seq = this.seq1++;
    const cid = this.serverCid;
    if (cid !== undefined && cid.length > 0) {
      return writeCidRecord(DTLS12, 1, seq, cid, this.wr!.seal(CT.tls12Cid, DTLS12, 1, seq, cid, innerPlaintext(type, payload)));
    }
    return writeRecord(type, DTLS12, 1, seq, this.wr!.seal(type, DTLS12, 1, seq, undefined, payload));
  }

  /** One protected record of any type (tests: renegotiation attempts, alerts). */
  protectedRecord(type: number, payload: Buffer): Buffer {
    return this.rec(type, 1, payload);
  }

  private sendFlight(f: Flight): void {
    const recs: Buffer[] = [];
    for (const m of f) {
      if (m.type !== CT.handshake) {
        recs.push(this.rec(m.type, m.epoch, m.body!));
        continue;
      }
      const body = m.body!;
      // ClientHellos stay whole (a stateless server cannot reassemble them); the rest may be split.
      const step = m.msgType !== HT.clientHello && this.opts.fragment !== undefined ? this.opts.fragment : Math.max(body.length, 1);
      let off = 0;
      do {
        const n = Math.min(step, body.length - off);
        recs.push(this.rec(CT.handshake, m.epoch, handshakeFragment(m.msgType!, m.msgSeq!, body, off, n)));
        off += n;
      } while (off < body.length);
    }
    // With fragmentation, one record per datagram (exercises reassembly across datagrams).
    if (this.opts.fragment !== undefined) for (const r of recs) this.sendRaw(r);
    else this.sendRaw(Buffer.concat(recs));
  }

  private clientHello(random: Buffer, cookie: Buffer): Buffer {
    const suites = this.opts.suites ?? [this.opts.psk ? 0xc0a8 : 0xc0ae];
    return clientHelloBody({ random, cookie, suites, ...(this.opts.ems === false ? { ems: false } : {}), ...(this.opts.cid ? { cid: this.opts.cid } : {}) });
  }

  private async handshake(): Promise<void> {
    const o = this.opts;
    const random = randomBytes(32);
    const messages: Array<{ type: number; body: Buffer }> = [];
    const reasm = new Map<number, { type: number; buf: Buffer; got: number }>();
    let flight: Flight = [];
    let timer: NodeJS.Timeout | undefined;
    let resolveMsg: (() => void) | undefined;
    let failure: HandshakeError | undefined;
    let ccsSeen = false;
    let serverFinished: Buffer | undefined;
    const wake = (): void => resolveMsg?.();
    const onMessage = (data: Buffer): void => {
      o.onReceive?.(data);
      for (const r of parseRecords(data, o.cid?.length ?? 0)) {
        if (r.type === CT.alert && r.epoch === 0 && r.fragment.length === 2) {
          failure = new HandshakeError(`alert ${r.fragment[1]}`, r.fragment[1]);
          wake();
          continue;
        }
        let type = r.type;
        let content = r.fragment;
        if (r.epoch === 1) {
          if (!this.rd || !this.win.check(r.seq)) continue;
          const p = this.rd.open(r.type, r.version, 1, r.seq, r.cid, r.fragment);
          if (!p) continue;
          this.win.update(r.seq);
          content = p;
          if (r.type === CT.tls12Cid) {
            const inner = splitInnerPlaintext(p);
            if (!inner) continue;
            type = inner.type;
            content = inner.content;
          }
          if (type === CT.appData) {
            this.onAppData?.(content);
            continue;
          }
          if (type === CT.alert) {
            this.onAlertCb?.(content[0]!, content[1]!);
            if (content[1] === 0 || content[0] === 2) this.closedByPeer = true;
            continue;
          }
        }
        if (type === CT.ccs) {
          ccsSeen = true;
          continue;
        }
        if (type !== CT.handshake) continue;
        for (const f of parseHandshakeFragments(content, 65536) ?? []) {
          if (f.msgType === HT.helloVerifyRequest && this.nextRecv === 0) {
            const rr = new Reader(f.body);
            rr.u16();
            const cookie = rr.vec8();
            messages.push({ type: HT.helloVerifyRequest, body: cookie });
            continue;
          }
          if (r.epoch === 1 && f.msgType === HT.finished) {
            serverFinished = f.body;
            continue;
          }
          if (f.msgSeq < this.nextRecv) continue;
          let m = reasm.get(f.msgSeq);
          if (!m) reasm.set(f.msgSeq, (m = { type: f.msgType, buf: Buffer.alloc(f.length), got: 0 }));
          f.body.copy(m.buf, f.fragOffset);
          m.got += f.body.length; // the server never overlaps fragments
          while (reasm.get(this.nextRecv) && reasm.get(this.nextRecv)!.got >= reasm.get(this.nextRecv)!.buf.length) {
            const done = reasm.get(this.nextRecv)!;
            reasm.delete(this.nextRecv);
            messages.push({ type: done.type, body: done.buf, seq: this.nextRecv } as never);
            this.nextRecv++;
          }
        }
      }
      wake();
    };
    this.sock.on('message', onMessage);
    const deadline = Date.now() + (o.timeoutMs ?? 10_000);
    let rto = o.retransmitMs ?? 1000;
    const arm = (): void => {
      // RFC 6347 §4.2.4.1: each new flight starts from the initial timer value.
      if (timer) clearTimeout(timer);
      rto = o.retransmitMs ?? 1000;
      timer = setTimeout(function again(this: DtlsClient) {
        this.sendFlight(flight);
        rto = Math.min(rto * 2, 4000);
        timer = setTimeout(again.bind(this), rto);
      }.bind(this), rto);
    };
    const next = async (pred: () => boolean): Promise<void> => {
      while (!pred()) {
        if (failure) throw failure;
        if (Date.now() > deadline) throw new HandshakeError('handshake timed out');
        await new Promise<void>((res) => {
          resolveMsg = res;
          setTimeout(res, 100);
        });
      }
      if (failure) throw failure;
    };
    try {
      // Flight 1 → HelloVerifyRequest → flight 3.
      const ch1 = this.clientHello(random, Buffer.alloc(0));
      flight = [{ type: CT.handshake, epoch: 0, body: ch1, msgType: HT.clientHello, msgSeq: this.msgSeq++ }];
      this.sendFlight(flight);
      arm();
      await next(() => messages.some((m) => m.type === HT.helloVerifyRequest));
      const cookie = messages.find((m) => m.type === HT.helloVerifyRequest)!.body;
      messages.length = 0;
      this.nextRecv = 1;
      const ch2 = this.clientHello(random, cookie);
      const seqCh2 = this.msgSeq++;
      const transcript: Hash = createHash('sha256').update(handshakeMessage(HT.clientHello, seqCh2, ch2));
      flight = [{ type: CT.handshake, epoch: 0, body: ch2, msgType: HT.clientHello, msgSeq: seqCh2 }];
      this.sendFlight(flight);
      arm();
      await next(() => messages.some((m) => m.type === HT.serverHelloDone));
      let serverRandom: Buffer = Buffer.alloc(0);
      let serverPoint: Buffer | undefined;
      let certKey: X509Certificate | undefined;
      for (const m of messages as Array<{ type: number; body: Buffer; seq: number }>) {
        transcript.update(handshakeMessage(m.type, m.seq, m.body));
        const r = new Reader(m.body);
        if (m.type === HT.serverHello) {
          r.u16();
          serverRandom = r.bytes(32);
          r.vec8();
          this.suite = r.u16();
          r.u8();
          if (r.left > 0) {
            const er = new Reader(r.vec16());
            while (er.left > 0) {
              const t = er.u16();
              const d = er.vec16();
              if (t === EXT.extendedMasterSecret) this.emsNegotiated = true;
              if (t === EXT.renegotiationInfo) this.secureRenegotiation = true;
              if (t === EXT.connectionId) this.serverCid = new Reader(d).vec8();
            }
          }
        } else if (m.type === HT.certificate) {
          const lr = new Reader(m.body);
          lr.bytes(3);
          const n = lr.bytes(3).readUIntBE(0, 3);
          certKey = new X509Certificate(lr.bytes(n));
          if (o.fingerprint !== undefined && spkiFingerprint(certKey.publicKey) !== o.fingerprint) throw new HandshakeError('certificate fingerprint mismatch');
        } else if (m.type === HT.serverKeyExchange && this.suite !== 0xc0a8 && this.suite !== 0x00a8) {
          // (A PSK ServerKeyExchange only carries an identity hint, which this client ignores.)
          const params = m.body.subarray(0, 4 + m.body[3]!);
          serverPoint = params.subarray(4);
          r.bytes(params.length);
          const alg = r.u16();
          const sig = r.vec16();
          if (!o.skipVerify && (alg !== SIG_ECDSA_SHA256 || !certKey || !verify('sha256', Buffer.concat([random, serverRandom, params]), certKey.publicKey, sig))) {
            throw new HandshakeError('bad ServerKeyExchange signature');
          }
        }
      }
      const psk = (this.suite === 0xc0a8 || this.suite === 0x00a8);
      const aead = this.suite === 0xc0a8 || this.suite === 0xc0ae ? 'ccm8' : 'gcm';
      let cke: Buffer;
      let pre: Buffer;
      if (psk) {
        cke = vec16(Buffer.from(o.psk!.identity, 'utf8'));
        pre = pskPreMaster(o.psk!.key);
      } else {
        const ecdh = createECDH('prime256v1');
        cke = vec8(ecdh.generateKeys());
        pre = ecdh.computeSecret(serverPoint!);
      }
      const ckeSeq = this.msgSeq++;
      transcript.update(handshakeMessage(HT.clientKeyExchange, ckeSeq, cke));
      const master = masterSecret(pre, random, serverRandom, this.emsNegotiated ? transcript.copy().digest() : undefined);
      const kb = keyBlock(master, random, serverRandom);
      this.wr = new RecordCipher(aead, kb.clientKey, kb.clientIv);
      this.rd = new RecordCipher(aead, kb.serverKey, kb.serverIv);
      const fin = finishedData(master, 'client finished', transcript.copy().digest());
      const finSeq = this.msgSeq++;
      transcript.update(handshakeMessage(HT.finished, finSeq, fin));
      flight = [
        { type: CT.handshake, epoch: 0, body: cke, msgType: HT.clientKeyExchange, msgSeq: ckeSeq },
        { type: CT.ccs, epoch: 0, body: Buffer.from([1]) },
        { type: CT.handshake, epoch: 1, body: fin, msgType: HT.finished, msgSeq: finSeq },
      ];
      if (o.beforeFlight5 !== undefined) {
        // A slow device: flight 4 is in, flight 5 leaves later (and nothing is resent meanwhile).
        if (timer) clearTimeout(timer);
        await o.beforeFlight5();
        if (failure) throw failure;
      }
      // Retransmissions of flight 5 must use fresh epoch-1 sequence numbers: rebuild on each send.
      this.sendFlight(flight);
      arm();
      await next(() => serverFinished !== undefined);
      if (!ccsSeen) throw new HandshakeError('Finished without ChangeCipherSpec');
      const expect = finishedData(master, 'server finished', transcript.digest());
      if (!safeEqual(expect, serverFinished!)) throw new HandshakeError('server Finished did not verify');
    } finally {
      if (timer) clearTimeout(timer);
      this.sock.off('message', onMessage);
    }
    this.sock.on('message', (d: Buffer) => this.onRecord(d));
  }

  private onRecord(data: Buffer): void {
    for (const r of parseRecords(data, this.opts.cid?.length ?? 0)) {
      if (r.epoch !== 1 || !this.rd || !this.win.check(r.seq)) continue;
      const p = this.rd.open(r.type, r.version, 1, r.seq, r.cid, r.fragment);
      if (!p) continue;
      this.win.update(r.seq);
      let type = r.type;
      let content = p;
      if (r.type === CT.tls12Cid) {
        const inner = splitInnerPlaintext(p);
        if (!inner) continue;
        type = inner.type;
        content = inner.content;
      }
      if (type === CT.appData) this.onAppData?.(content);
      else if (type === CT.alert) {
        if (content[1] === 0 || content[0] === 2) this.closedByPeer = true;
        this.onAlertCb?.(content[0]!, content[1]!);
      }
    }
  }

  /** Receive application data. */
  onData(cb: (d: Buffer) => void): void {
    this.onAppData = cb;
  }

  /** Observe alerts after the handshake. */
  onAlert(cb: (level: number, desc: number) => void): void {
    this.onAlertCb = cb;
  }

  /** Send application data. */
  send(data: Buffer): void {
    this.sendRaw(this.rec(CT.appData, 1, data));
  }

  /**
   * Send a CoAP CON request and wait for the response with the same token (retransmitted every
   * `retransmitMs` until `timeoutMs`). Returns the raw CoAP response.
   */
  request(msg: Buffer, opts: { retransmitMs?: number; timeoutMs?: number } = {}): Promise<Buffer> {
    const tkl = msg[0]! & 0x0f;
    const token = msg.subarray(4, 4 + tkl);
    return new Promise((resolve, reject) => {
      let t: NodeJS.Timeout;
      const deadline = setTimeout(() => {
        clearTimeout(t);
        this.onAppData = undefined;
        reject(new Error('no CoAP response'));
      }, opts.timeoutMs ?? 10_000);
      this.onAppData = (d) => {
        if (d.length < 4 + tkl || !d.subarray(4, 4 + tkl).equals(token) || d[1] === 0) return;
        clearTimeout(t);
        clearTimeout(deadline);
        this.onAppData = undefined;
        resolve(d);
      };
      const send = (): void => {
        this.send(msg);
        t = setTimeout(send, opts.retransmitMs ?? 1000);
      };
      send();
    });
  }

  /** Send close_notify and close the socket. */
  close(): void {
    const sock = this.sock;
    if (!this.wr) return void sock.close();
    const alert = this.rec(CT.alert, 1, Buffer.from([1, 0]));
    this.opts.tap?.(alert);
    sock.send(alert, this.opts.port, this.opts.host, () => sock.close());
  }

  /** Close the socket without close_notify. */
  abandon(): void {
    this.sock.close();
  }
}
