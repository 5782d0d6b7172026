/**
 * Size: over 700 lines because the record layer and the handshake state machine share one class;
 * issue #15 separates them (and renames the methods for what they do).
 *
 * One DTLS 1.2 association on the server side: the record layer (epochs, sequence numbers, replay
 * window, AEAD protection, RFC 9146 CID records) and the server handshake state machine for the
 * PSK and ECDHE_ECDSA AEAD suites (RFC 6347 §4.2, RFC 5246 §7.4, RFC 4279, RFC 8422, RFC 7627,
 * RFC 5746, RFC 9146). Created only after a ClientHello with a valid cookie; everything it holds is
 * bounded (reassembly per message and in total, records queued while a PSK lookup runs).
 *
 * Flights (RFC 6347 §4.2.4): the server sends flight 4 (ServerHello, [Certificate,
 * ServerKeyExchange], ServerHelloDone) with a retransmission timer (initial 1 s, doubling, capped),
 * and flight 6 (ChangeCipherSpec, Finished) without one: it is resent when the client's flight 5
 * shows up again, until the first application data proves the client has it.
 */
import { createECDH, createHash, sign, type ECDH, type Hash } from 'node:crypto';
import type { Peer } from '../datagram.ts';
import type { ServerCertificate } from './cert.ts';
import type { PskChoice } from './psk.ts';
import {
  RecordCipher,
  ReplayWindow,
  finishedData,
  innerPlaintext,
  keyBlock,
  masterSecret,
  pskPreMaster,
  safeEqual,
  splitInnerPlaintext,
  type AeadKind,
} from './crypto.ts';
import {
  ALERT,
  CT,
  DTLS12,
  EXT,
  GROUP_P256,
  HS_HEADER,
  HT,
  RECORD_HEADER,
  SCSV_RENEGOTIATION,
  SIG_ECDSA_SHA256,
  extension,
  handshakeFragment,
  handshakeMessage,
  parseAlert,
  parseClientKeyExchange,
  parseHandshakeFragments,
  parseU16List,
  parseVec8Exact,
  u16,
  vec16,
  vec8,
  writeCidRecord,
  writeRecord,
  type ClientHello,
  type RecordView,
} from './wire.ts';

/** A cipher suite this server implements. */
export interface DtlsSuite {
  id: number;
  name: string;
  kx: 'psk' | 'ecdhe';
  aead: AeadKind;
}

/** The four suites of docs/spec/idprov-coap-v1.md §6 (RFC 7925 §4.2, §4.4; RFC 6655; RFC 7251; RFC 5487; RFC 5289). */
export const SUITES: ReadonlyMap<number, DtlsSuite> = new Map([
  [0xc0a8, { id: 0xc0a8, name: 'TLS_PSK_WITH_AES_128_CCM_8', kx: 'psk', aead: 'ccm8' }],
  [0x00a8, { id: 0x00a8, name: 'TLS_PSK_WITH_AES_128_GCM_SHA256', kx: 'psk', aead: 'gcm' }],
  [0xc0ae, { id: 0xc0ae, name: 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8', kx: 'ecdhe', aead: 'ccm8' }],
  [0xc02b, { id: 0xc02b, name: 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256', kx: 'ecdhe', aead: 'gcm' }],
]);

/** Why an association ended (for stats and debug logs; never carries secrets). */
export type CloseReason =
  | 'close_notify'
  | 'peer_alert'
  | 'handshake_failed'
  | 'handshake_timeout'
  | 'idle'
  | 'evicted'
  | 'replaced'
  | 'shutdown'
  | 'seq_exhausted';

/** What a {@link Connection} needs from the transport that owns it. */
export interface ConnectionHost {
  readonly mtu: number;
  readonly maxHandshakeMessage: number;
  readonly retransmitInitialMs: number;
  readonly retransmitMaxMs: number;
  readonly handshakeTimeoutMs: number;
  readonly cidLength: number;
  readonly requireExtendedMasterSecret: boolean;
  readonly suites: readonly number[];
  readonly certificate: ServerCertificate | undefined;
  readonly pskLookup: ((identity: string) => Promise<Buffer | undefined>) | undefined;
  /** The key of a PSK handshake, by the same computation for known and unknown identities (psk.ts). */
  selectPsk(identity: Buffer, psk: Buffer | undefined): PskChoice;
  random(n: number): Buffer;
  clock(): number;
  sendDatagram(c: Connection, data: Buffer): void;
  deliver(c: Connection, data: Buffer): void;
  established(c: Connection): void;
  closed(c: Connection, reason: CloseReason): void;
  /** A ClientHello at epoch 0 that is not a retransmission: run it through the cookie exchange. */
  restart(c: Connection, datagram: Buffer, peer: Peer): void;
  /** An authenticated, newer CID record came from another address (RFC 9146 §6). */
  migrate(c: Connection, peer: Peer): void;
  /**
   * A session at an address it has not proven sends at most this many times the bytes of the
   * authenticated records received from there (issue 11 review finding 2; RFC 9146 §6).
   */
  readonly unprovenAmplificationFactor: number;
  /** A datagram to an unproven address was not sent: it would have exceeded the bound above. */
  unprovenDropped(c: Connection): void;
  debug(obj: object, msg: string): void;
}

type FlightMsg = { ccs: true } | { ccs: false; epoch: 0 | 1; type: number; seq: number; body: Buffer };

interface Reassembly {
  type: number;
  /** The epoch its fragments came in; all must agree (a Finished must come protected). */
  epoch: number;
  buf: Buffer;
  /** Merged received ranges [start, end), sorted. */
  ranges: number[];
}

interface Handshake {
  suite: DtlsSuite;
  clientRandom: Buffer;
  serverRandom: Buffer;
  ems: boolean;
  transcript: Hash;
  nextRecvSeq: number;
  nextSendSeq: number;
  phase: 'wait_cke' | 'wait_finished';
  flight: FlightMsg[];
  timer: NodeJS.Timeout | undefined;
  timeoutMs: number;
  startedAt: number;
  ecdh: ECDH | undefined;
  master: Buffer | undefined;
  pendingWrite: RecordCipher | undefined;
  reasm: Map<number, Reassembly>;
  reasmBytes: number;
  pskIdentity: string | undefined;
}

const MAX_QUEUE = 32;
const MAX_FUTURE_MESSAGES = 4;
const MAX_SEQ = 2 ** 48 - 1;
const CCS_BODY = Buffer.from([1]);

/**
 * The suite for a ClientHello: the first of the server's preference list that the client offers and
 * the server can do (a certificate for ECDHE, with P-256, uncompressed points and ecdsa_secp256r1_sha256
 * allowed by the client's extensions; a PSK lookup for PSK). Undefined when none fits.
 */
function chooseSuite(ch: ClientHello, host: Pick<ConnectionHost, 'certificate' | 'pskLookup' | 'suites'>): DtlsSuite | undefined {
  let ecdheOk = host.certificate !== undefined;
  if (ecdheOk) {
    // RFC 8422 §5.1: absent extensions mean "anything"; present ones must allow P-256/uncompressed.
    const groups = ch.extensions.get(EXT.supportedGroups);
    if (groups !== undefined && !(parseU16List(groups) ?? []).includes(GROUP_P256)) ecdheOk = false;
    const pf = ch.extensions.get(EXT.ecPointFormats);
    if (pf !== undefined && !(parseVec8Exact(pf) ?? Buffer.alloc(0)).includes(0)) ecdheOk = false;
    // RFC 5246 §7.4.1.4.1: with signature_algorithms, ours must be listed.
    const sa = ch.extensions.get(EXT.signatureAlgorithms);
    if (sa !== undefined && !(parseU16List(sa) ?? []).includes(SIG_ECDSA_SHA256)) ecdheOk = false;
  }
  const pskOk = host.pskLookup !== undefined;
  for (const id of host.suites) {
    const s = SUITES.get(id);
    if (s === undefined || !ch.suites.includes(id)) continue;
    if ((s.kx === 'psk' && pskOk) || (s.kx === 'ecdhe' && ecdheOk)) return s;
  }
  return undefined;
}

/** A server-side DTLS association (half-open until its handshake completes). */
export class Connection {
  state: 'handshake' | 'open' | 'closed' = 'handshake';
  lastActive: number;
  /** Our CID (records to us carry it), when negotiated. */
  cidIn: Buffer | undefined;
  /** The client's CID (records to it carry it); empty or undefined → plain records. */
  private cidOut: Buffer | undefined;
  private hs: Handshake | undefined;
  private readonly rd0 = new ReplayWindow();
  private readonly rd1 = new ReplayWindow();
  private rdCipher: RecordCipher | undefined;
  private wrCipher: RecordCipher | undefined;
  private wrSeq0 = 0;
  private wrSeq1 = 0;
  /** Flight 6, kept to answer a retransmitted flight 5 until the client sends application data. */
  private lastFlight: FlightMsg[] | undefined;
  private clientFinishedSeq = -1;
  private busy = false;
  private queue: RecordView[] = [];
  private clientRandom: Buffer = Buffer.alloc(0);
  /** Bytes this association holds for reassembly (for the transport's stats). */
  suite: DtlsSuite | undefined;
  /**
   * Address keys this session has proven it receives at: the handshake's (the cookie exchange proved
   * it). A CID record can move the session anywhere; only these are trusted without a bound.
   */
  private readonly proven = new Set<string>(); // one entry today; a return-routability check would add more
  /** At an unproven address: bytes of authenticated records received from it, and bytes sent to it. */
  private unprovenRx = 0;
  private unprovenTx = 0;

  constructor(
    private readonly host: ConnectionHost,
    /** The peer object delivered with every datagram (address updated on CID migration). */
    readonly peer: Peer,
    public addrKey: string,
  ) {
    this.lastActive = host.clock();
    this.proven.add(addrKey);
  }

  /**
   * True while the session sits at an address it has not proven (it moved there with a CID record,
   * which anyone who holds a session can send with any source address). Its datagrams are then
   * bounded (see {@link ConnectionHost.unprovenAmplificationFactor}) and `peer.addressUnproven` tells
   * the CoAP engine to treat its requests as from an unverified source.
   */
  get addressUnproven(): boolean {
    return this.peer.addressUnproven === true;
  }

  /** The session moved to `addrKey` (the transport updated `peer`): proven again, or bounded. */
  moved(addrKey: string): void {
    if (this.proven.has(addrKey)) {
      delete this.peer.addressUnproven;
      return;
    }
    this.peer.addressUnproven = true;
    this.unprovenRx = 0;
    this.unprovenTx = 0;
  }

  /** Send one datagram to the peer, within the bound of an unproven address. */
  private emit(d: Buffer): void {
    if (this.peer.addressUnproven === true) {
      if (this.unprovenTx + d.length > this.host.unprovenAmplificationFactor * this.unprovenRx) {
        this.host.unprovenDropped(this);
        return;
      }
      this.unprovenTx += d.length;
    }
    this.host.sendDatagram(this, d);
  }

  /** True when this handshake is for the ClientHello with this random (a retransmission). */
  sameHello(random: Buffer): boolean {
    return this.clientRandom.equals(random);
  }

  // -------------------------------------------------------------------------------------------
  // Handshake start (flight 3 → flight 4)

  /**
   * Start the handshake from a cookie-verified ClientHello (RFC 6347 §4.2.1). `raw` is the full
   * message as hashed into the transcript. Returns false (after a fatal alert) when no suite fits.
   */
  start(ch: ClientHello, raw: Buffer, msgSeq: number, recordSeq: number): boolean {
    this.wrSeq0 = recordSeq;
    this.clientRandom = ch.random;
    this.rd0.update(recordSeq);
    // RFC 6347 §4.1: client_version is the highest it supports; 0xfefd (1.2) or newer (lower).
    if (ch.version > DTLS12) return this.fail(ALERT.protocolVersion, 'client offers no DTLS 1.2');
    if (!ch.compressions.includes(0)) return this.fail(ALERT.illegalParameter, 'no null compression');
    // RFC 5746 §3.6: an initial ClientHello's renegotiation_info must be empty.
    const reneg = ch.extensions.get(EXT.renegotiationInfo);
    if (reneg !== undefined) {
      const v = parseVec8Exact(reneg);
      if (v === undefined || v.length !== 0) return this.fail(ALERT.handshakeFailure, 'non-empty renegotiation_info');
    }
    const secureReneg = reneg !== undefined || ch.suites.includes(SCSV_RENEGOTIATION);
    const emsExt = ch.extensions.get(EXT.extendedMasterSecret);
    if (emsExt !== undefined && emsExt.length !== 0) return this.fail(ALERT.decodeError, 'bad extended_master_secret');
    const ems = emsExt !== undefined;
    if (!ems && this.host.requireExtendedMasterSecret) return this.fail(ALERT.handshakeFailure, 'extended master secret required');
    const suite = chooseSuite(ch, this.host);
    if (suite === undefined) return this.fail(ALERT.handshakeFailure, 'no shared cipher suite');
    let cidExt: Buffer | undefined;
    const cidRaw = ch.extensions.get(EXT.connectionId);
    if (cidRaw !== undefined && this.host.cidLength > 0) {
      const v = parseVec8Exact(cidRaw);
      if (v === undefined) return this.fail(ALERT.decodeError, 'bad connection_id');
      this.cidOut = v;
      this.cidIn = this.host.random(this.host.cidLength);
      cidExt = this.cidIn;
    }
    const hs: Handshake = {
      suite,
      clientRandom: ch.random,
      serverRandom: this.host.random(32),
      ems,
      transcript: createHash('sha256').update(raw),
      nextRecvSeq: msgSeq + 1,
      nextSendSeq: msgSeq,
      phase: 'wait_cke',
      flight: [],
      timer: undefined,
      timeoutMs: this.host.retransmitInitialMs,
      startedAt: this.host.clock(),
      ecdh: undefined,
      master: undefined,
      pendingWrite: undefined,
      reasm: new Map(),
      reasmBytes: 0,
      pskIdentity: undefined,
    };
    this.hs = hs;
    this.suite = suite;
    const exts: Buffer[] = [];
    if (secureReneg) exts.push(extension(EXT.renegotiationInfo, vec8(Buffer.alloc(0))));
    if (ems) exts.push(extension(EXT.extendedMasterSecret, Buffer.alloc(0)));
    if (suite.kx === 'ecdhe' && ch.extensions.has(EXT.ecPointFormats)) exts.push(extension(EXT.ecPointFormats, vec8(Buffer.from([0]))));
    if (cidExt !== undefined) exts.push(extension(EXT.connectionId, vec8(cidExt)));
    const sh = Buffer.concat([u16(DTLS12), hs.serverRandom, vec8(Buffer.alloc(0)), u16(suite.id), Buffer.from([0]), ...(exts.length ? [vec16(Buffer.concat(exts))] : [])]);
    this.queueMessage(HT.serverHello, sh);
    if (suite.kx === 'ecdhe') {
      const cert = this.host.certificate!;
      const der = cert.der;
      const list = Buffer.alloc(6 + der.length);
      list.writeUIntBE(der.length + 3, 0, 3);
      list.writeUIntBE(der.length, 3, 3);
      der.copy(list, 6);
      this.queueMessage(HT.certificate, list);
      const ecdh = createECDH('prime256v1');
      const point = ecdh.generateKeys();
      hs.ecdh = ecdh;
      const params = Buffer.concat([Buffer.from([3]), u16(GROUP_P256), vec8(point)]);
      const sig = sign('sha256', Buffer.concat([hs.clientRandom, hs.serverRandom, params]), cert.privateKey);
      this.queueMessage(HT.serverKeyExchange, Buffer.concat([params, u16(SIG_ECDSA_SHA256), vec16(sig)]));
    }
    this.queueMessage(HT.serverHelloDone, Buffer.alloc(0));
    this.sendFlight(hs.flight);
    this.armTimer();
    return true;
  }

  private queueMessage(type: number, body: Buffer, epoch: 0 | 1 = 0): void {
    const hs = this.hs!;
    const seq = hs.nextSendSeq++;
    hs.transcript.update(handshakeMessage(type, seq, body));
    hs.flight.push({ ccs: false, epoch, type, seq, body });
  }

  // -------------------------------------------------------------------------------------------
  // Timers

  private armTimer(): void {
    const hs = this.hs;
    if (hs === undefined) return;
    if (hs.timer !== undefined) clearTimeout(hs.timer);
    hs.timer = setTimeout(() => {
      try {
        this.onTimer();
      } catch (err) {
        this.host.debug({ err: (err as Error).message }, 'dtls: internal error in retransmission timer');
      }
    }, hs.timeoutMs);
    hs.timer.unref?.();
  }

  private onTimer(): void {
    const hs = this.hs;
    if (hs === undefined || this.state !== 'handshake') return;
    hs.timer = undefined;
    if (this.host.clock() - hs.startedAt >= this.host.handshakeTimeoutMs) {
      this.close('handshake_timeout', false);
      return;
    }
    // RFC 6347 §4.2.4.1: double the timer up to the maximum, and retransmit the flight.
    hs.timeoutMs = Math.min(hs.timeoutMs * 2, this.host.retransmitMaxMs);
    if (!this.busy && hs.phase === 'wait_cke') this.sendFlight(hs.flight);
    this.armTimer();
  }

  /** Resend the last flight (the client retransmitted its previous one). */
  retransmit(): void {
    if (this.state === 'handshake' && this.hs !== undefined && this.hs.phase === 'wait_cke' && !this.busy) this.sendFlight(this.hs.flight);
    else if (this.state === 'open' && this.lastFlight !== undefined) this.sendFlight(this.lastFlight);
  }

  // -------------------------------------------------------------------------------------------
  // Record output

  private recordOverhead(epoch: number): number {
    if (epoch === 0 || this.wrCipher === undefined) return RECORD_HEADER;
    const cid = this.cidOut !== undefined && this.cidOut.length > 0 ? this.cidOut.length + 1 : 0;
    return RECORD_HEADER + cid + this.wrCipher.overhead;
  }

  /** One record at the given write epoch (epoch 1 needs the write cipher). */
  private record(type: number, epoch: number, payload: Buffer): Buffer {
    if (epoch === 0) return writeRecord(type, DTLS12, 0, this.wrSeq0++, payload);
    const c = this.wrCipher!;
    const seq = this.wrSeq1++;
    if (this.cidOut !== undefined && this.cidOut.length > 0) {
      const cid = this.cidOut;
      return writeCidRecord(DTLS12, 1, seq, cid, c.seal(CT.tls12Cid, DTLS12, 1, seq, cid, innerPlaintext(type, payload)));
    }
    return writeRecord(type, DTLS12, 1, seq, c.seal(type, DTLS12, 1, seq, undefined, payload));
  }

  private sendFlight(msgs: FlightMsg[]): void {
    const mtu = this.host.mtu;
    const out: Buffer[] = [];
    let cur: Buffer[] = [];
    let curLen = 0;
    const flush = (): void => {
      if (cur.length) out.push(cur.length === 1 ? cur[0]! : Buffer.concat(cur));
      cur = [];
      curLen = 0;
    };
    const push = (rec: Buffer): void => {
      if (curLen + rec.length > mtu && cur.length) flush();
      cur.push(rec);
      curLen += rec.length;
    };
    for (const m of msgs) {
      if (m.ccs) {
        push(this.record(CT.ccs, 0, CCS_BODY));
        continue;
      }
      // RFC 6347 §4.2.3: fragment handshake messages to fit the PMTU.
      const overhead = this.recordOverhead(m.epoch) + HS_HEADER;
      let off = 0;
      do {
        let room = mtu - curLen - overhead;
        if (room < 64 && cur.length) {
          flush();
          room = mtu - overhead;
        }
        const n = Math.min(m.body.length - off, Math.max(room, 16));
        push(this.record(CT.handshake, m.epoch, handshakeFragment(m.type, m.seq, m.body, off, n)));
        off += n;
      } while (off < m.body.length);
    }
    flush();
    for (const d of out) this.emit(d);
  }

  /** Send an alert at the current write epoch. */
  private sendAlert(level: number, description: number): void {
    const epoch = this.wrCipher !== undefined && this.state === 'open' ? 1 : 0;
    this.emit(this.record(CT.alert, epoch, Buffer.from([level, description])));
  }

  /** Protect and send application data (CoAP) over an open association. */
  sendApp(data: Buffer): void {
    if (this.state !== 'open') return;
    if (this.wrSeq1 >= MAX_SEQ) {
      this.close('seq_exhausted', true);
      return;
    }
    this.emit(this.record(CT.appData, 1, data));
  }

  /** End the association; with `notify`, send close_notify first (RFC 5246 §7.2.1). */
  close(reason: CloseReason, notify: boolean): void {
    if (this.state === 'closed') return;
    if (notify) {
      try {
        this.sendAlert(ALERT.warning, ALERT.closeNotify);
      } catch {
        /* best effort */
      }
    }
    if (this.hs?.timer !== undefined) clearTimeout(this.hs.timer);
    this.hs = undefined;
    this.lastFlight = undefined;
    this.queue = [];
    this.state = 'closed';
    this.host.closed(this, reason);
  }

  private fail(description: number, why: string): false {
    this.host.debug({ peer: this.addrKey, alert: description, why }, 'dtls: handshake failed');
    try {
      this.sendAlert(ALERT.fatal, description);
    } catch {
      /* best effort */
    }
    this.close('handshake_failed', false);
    return false;
  }

  // -------------------------------------------------------------------------------------------
  // Record input

  /**
   * Process one datagram for this association. `viaCid`: it was routed here by its CID (so only
   * tls12_cid records are considered, and an authenticated newer one may move the peer address).
   */
  receive(records: RecordView[], datagram: Buffer, from: Peer, viaCid: boolean): void {
    if (this.state === 'closed') return;
    for (const r of records) {
      if (viaCid && r.type !== CT.tls12Cid) continue;
      if (this.busy) {
        if (this.queue.length < MAX_QUEUE) this.queue.push(r);
        continue;
      }
      this.record1(r, datagram, from);
      if (this.isClosed()) return;
    }
  }

  private isClosed(): boolean {
    return this.state === 'closed';
  }

  private record1(r: RecordView, datagram: Buffer, from: Peer): void {
    if (r.epoch === 0) return this.epoch0(r, datagram, from);
    if (r.epoch !== 1 || this.rdCipher === undefined) return;
    if (r.type === CT.tls12Cid) {
      if (this.cidIn === undefined || r.cid === undefined || !r.cid.equals(this.cidIn)) return;
    } else if (r.type !== CT.handshake && r.type !== CT.appData && r.type !== CT.alert && r.type !== CT.ccs) return;
    if (!this.rd1.check(r.seq)) return;
    const plain = this.rdCipher.open(r.type, r.version, r.epoch, r.seq, r.cid, r.fragment);
    if (plain === undefined) {
      // RFC 6347 §4.1.2.7: invalid records are dropped silently. During the handshake the only
      // epoch-1 record is the client's Finished; one that does not authenticate means a wrong PSK
      // (or a forgery), and the handshake is aborted so the client learns it at once.
      if (this.state === 'handshake') this.fail(ALERT.badRecordMac, 'Finished record did not authenticate');
      return;
    }
    let type: number = r.type;
    let content = plain;
    if (r.type === CT.tls12Cid) {
      const inner = splitInnerPlaintext(plain);
      if (inner === undefined) return;
      type = inner.type;
      content = inner.content;
    }
    const newer = this.rd1.update(r.seq);
    this.lastActive = this.host.clock();
    if (r.type === CT.tls12Cid && newer && this.state === 'open' && (from.address !== this.peer.address || from.port !== this.peer.port)) {
      this.host.migrate(this, from);
    }
    // What came from an unproven address buys the answers sent there (3×, like QUIC, RFC 9000 §8).
    if (this.peer.addressUnproven === true && from.address === this.peer.address && from.port === this.peer.port) {
      this.unprovenRx += RECORD_HEADER + (r.cid?.length ?? 0) + r.fragment.length;
    }
    switch (type) {
      case CT.appData:
        if (this.state !== 'open') return;
        this.lastFlight = undefined;
        this.host.deliver(this, content);
        return;
      case CT.alert:
        return this.onAlert(content);
      case CT.handshake:
        return this.state === 'handshake' ? this.handshakeEpoch1(content) : this.handshake1(content);
      default:
        return;
    }
  }

  private epoch0(r: RecordView, datagram: Buffer, from: Peer): void {
    if (r.type === CT.tls12Cid) return;
    if (r.type === CT.handshake) {
      const frags = parseHandshakeFragments(r.fragment, this.host.maxHandshakeMessage);
      if (frags === undefined || frags.length === 0) return;
      if (frags[0]!.msgType === HT.clientHello) {
        // RFC 6347 §4.2.8: a ClientHello with another random is a new connection (a rebooted
        // client on the same port); its record sequence number restarts, so it is checked against
        // the cookie, not this association's replay window. The same random is a retransmission.
        const f = frags[0]!;
        const random = f.fragOffset === 0 && f.body.length >= 34 ? f.body.subarray(2, 34) : undefined;
        if (random !== undefined && random.equals(this.clientRandom)) {
          if (this.state === 'handshake' && this.rd0.check(r.seq)) {
            this.rd0.update(r.seq);
            this.retransmit();
          }
          return;
        }
        if (datagram.length > 0 && r.fragment.byteOffset === datagram.byteOffset + RECORD_HEADER) this.host.restart(this, datagram, from);
        return;
      }
      if (!this.rd0.check(r.seq)) return;
      this.rd0.update(r.seq);
      if (this.state === 'open') {
        // The client resent flight 5: our flight 6 was lost.
        if (frags.some((f) => f.msgSeq < this.clientFinishedSeq)) this.retransmit();
        return;
      }
      for (const f of frags) {
        this.fragment(0, f.msgType, f.length, f.msgSeq, f.fragOffset, f.body);
        if (this.state !== 'handshake' || this.busy) return;
      }
      return;
    }
    if (!this.rd0.check(r.seq)) return;
    if (r.type === CT.ccs) {
      if (r.fragment.length !== 1 || r.fragment[0] !== 1) return;
      this.rd0.update(r.seq);
      return; // Keys switch when the Finished arrives at epoch 1; CCS itself carries nothing.
    }
    if (r.type === CT.alert && this.state === 'handshake') {
      // Unauthenticated alerts only matter during the handshake (an open session ignores them).
      const a = parseAlert(r.fragment);
      if (a === undefined) return;
      this.rd0.update(r.seq);
      if (a.level === ALERT.fatal || a.description === ALERT.closeNotify) this.close('peer_alert', false);
    }
  }

  private onAlert(content: Buffer): void {
    const a = parseAlert(content);
    if (a === undefined) return;
    if (a.description === ALERT.closeNotify) {
      this.close('close_notify', this.state === 'open');
      return;
    }
    if (a.level === ALERT.fatal) this.close('peer_alert', false);
  }

  /** An epoch-1 handshake record on an open association: a resent Finished, or renegotiation. */
  private handshake1(content: Buffer): void {
    const frags = parseHandshakeFragments(content, this.host.maxHandshakeMessage);
    if (frags === undefined) return;
    for (const f of frags) {
      if (f.msgType === HT.finished && f.msgSeq === this.clientFinishedSeq) {
        this.retransmit();
        return;
      }
      if (f.msgType === HT.clientHello) {
        // RFC 5746 §4.4 / RFC 7925 §17: renegotiation is refused with a warning.
        this.sendAlert(ALERT.warning, ALERT.noRenegotiation);
        return;
      }
    }
  }

  /** Add a handshake fragment (RFC 6347 §4.2.3) and process every message now complete, in order. */
  private fragment(epoch: number, type: number, length: number, seq: number, off: number, body: Buffer): void {
    const hs = this.hs;
    if (hs === undefined) return;
    if (seq < hs.nextRecvSeq) {
      this.retransmit();
      return;
    }
    if (seq >= hs.nextRecvSeq + MAX_FUTURE_MESSAGES) return;
    let m = hs.reasm.get(seq);
    if (m === undefined) {
      if (hs.reasmBytes + length > 4 * this.host.maxHandshakeMessage) return;
      m = { type, epoch, buf: Buffer.alloc(length), ranges: [] };
      hs.reasm.set(seq, m);
      hs.reasmBytes += length;
    } else if (m.type !== type || m.buf.length !== length || m.epoch !== epoch) {
      return; // inconsistent fragments of one message: ignore this one
    }
    if (body.length > 0) {
      body.copy(m.buf, off);
      addRange(m.ranges, off, off + body.length);
      if (m.ranges.length > 128) {
        hs.reasm.delete(seq);
        hs.reasmBytes -= length;
        return;
      }
    }
    for (;;) {
      const next = hs.reasm.get(hs.nextRecvSeq);
      if (next === undefined || !(next.buf.length === 0 || (next.ranges.length === 2 && next.ranges[0] === 0 && next.ranges[1] === next.buf.length))) return;
      hs.reasm.delete(hs.nextRecvSeq);
      hs.reasmBytes -= next.buf.length;
      const s = hs.nextRecvSeq++;
      this.message(next.epoch, next.type, s, next.buf);
      if (this.state !== 'handshake' || this.busy || this.hs === undefined) return;
    }
  }

  /** One complete handshake message from the client. */
  private message(epoch: number, type: number, seq: number, body: Buffer): void {
    const hs = this.hs!;
    if (hs.phase === 'wait_finished' && epoch === 1 && type === HT.finished) return this.finished(seq, body);
    if (epoch !== 0) {
      this.fail(ALERT.unexpectedMessage, `unexpected protected handshake message ${type}`);
      return;
    }
    if (hs.phase === 'wait_cke') {
      if (type !== HT.clientKeyExchange) {
        this.fail(ALERT.unexpectedMessage, `unexpected handshake message ${type}`);
        return;
      }
      const v = parseClientKeyExchange(body, hs.suite.kx);
      if (v === undefined) {
        this.fail(ALERT.decodeError, 'bad ClientKeyExchange');
        return;
      }
      hs.transcript.update(handshakeMessage(type, seq, body));
      if (hs.suite.kx === 'ecdhe') {
        let z: Buffer;
        try {
          z = hs.ecdh!.computeSecret(v);
        } catch {
          this.fail(ALERT.illegalParameter, 'bad ECDH point');
          return;
        }
        hs.ecdh = undefined;
        this.keys(z);
        return;
      }
      const identity = v.toString('utf8');
      const valid = identity.length > 0 && Buffer.from(identity, 'utf8').equals(v);
      this.busy = true;
      const lookup = valid ? this.host.pskLookup!(identity).catch(() => undefined) : Promise.resolve(undefined);
      void lookup.then((psk) => {
        this.busy = false;
        if (this.state !== 'handshake' || this.hs !== hs) return;
        try {
          // RFC 4279 §2 / RFC 7925 §4.2: an unknown identity fails like a wrong key (bad_record_mac
          // at Finished), so that identities cannot be enumerated; and it takes the same work to get
          // there (psk.ts): a known identity's key or a dummy key derived from the identity.
          const choice = this.host.selectPsk(v, psk);
          if (choice.known) hs.pskIdentity = identity;
          const pre = pskPreMaster(choice.key);
          choice.key.fill(0);
          this.keys(pre);
          this.drain();
        } catch (err) {
          this.host.debug({ err: (err as Error).message }, 'dtls: internal error after PSK lookup');
          if (!this.isClosed()) this.fail(ALERT.internalError, 'internal error');
        }
      });
      return;
    }
    // wait_finished: only Finished may come, and only at epoch 1 (handled by the caller).
    this.fail(ALERT.unexpectedMessage, `unexpected handshake message ${type} before Finished`);
  }

  private keys(preMaster: Buffer): void {
    const hs = this.hs!;
    const sessionHash = hs.ems ? hs.transcript.copy().digest() : undefined;
    hs.master = masterSecret(preMaster, hs.clientRandom, hs.serverRandom, sessionHash);
    preMaster.fill(0);
    const kb = keyBlock(hs.master, hs.clientRandom, hs.serverRandom);
    this.rdCipher = new RecordCipher(hs.suite.aead, kb.clientKey, kb.clientIv);
    hs.pendingWrite = new RecordCipher(hs.suite.aead, kb.serverKey, kb.serverIv);
    hs.phase = 'wait_finished';
  }

  private drain(): void {
    const q = this.queue;
    this.queue = [];
    for (const r of q) {
      if (this.state === 'closed' || this.busy) {
        if (this.busy && this.queue.length < MAX_QUEUE) this.queue.push(r);
        continue;
      }
      this.record1(r, Buffer.alloc(0), this.peer);
    }
  }

  /** A handshake record at epoch 1 during the handshake: the client's Finished (RFC 5246 §7.4.9). */
  private finished(msgSeq: number, body: Buffer): void {
    const hs = this.hs!;
    if (body.length !== 12) {
      this.fail(ALERT.decodeError, 'bad Finished length');
      return;
    }
    const expected = finishedData(hs.master!, 'client finished', hs.transcript.copy().digest());
    if (!safeEqual(expected, body)) {
      this.fail(ALERT.decryptError, 'client Finished did not verify');
      return;
    }
    hs.transcript.update(handshakeMessage(HT.finished, msgSeq, body));
    this.clientFinishedSeq = msgSeq;
    const verify = finishedData(hs.master!, 'server finished', hs.transcript.digest());
    hs.master!.fill(0);
    this.wrCipher = hs.pendingWrite;
    const seq = hs.nextSendSeq++;
    const flight: FlightMsg[] = [{ ccs: true }, { ccs: false, epoch: 1, type: HT.finished, seq, body: verify }];
    if (hs.timer !== undefined) clearTimeout(hs.timer);
    const identity = hs.pskIdentity;
    this.hs = undefined;
    this.state = 'open';
    if (identity !== undefined) this.peer.pskIdentity = identity;
    this.lastFlight = flight;
    this.sendFlight(flight);
    this.host.established(this);
  }

  /** An epoch-1 handshake record while the handshake runs: (fragments of) the client's Finished. */
  private handshakeEpoch1(content: Buffer): void {
    if (this.hs === undefined || this.hs.phase !== 'wait_finished') return;
    const frags = parseHandshakeFragments(content, this.host.maxHandshakeMessage);
    if (frags === undefined) return;
    for (const f of frags) {
      this.fragment(1, f.msgType, f.length, f.msgSeq, f.fragOffset, f.body);
      if (this.state !== 'handshake' || this.busy) return;
    }
  }
}

/** Insert [s, e) into a sorted list of disjoint ranges, merging neighbours. */
function addRange(r: number[], s: number, e: number): void {
  const out: number[] = [];
  let i = 0;
  while (i < r.length && r[i + 1]! < s) out.push(r[i++]!, r[i++]!);
  while (i < r.length && r[i]! <= e) {
    s = Math.min(s, r[i]!);
    e = Math.max(e, r[i + 1]!);
    i += 2;
  }
  out.push(s, e);
  while (i < r.length) out.push(r[i++]!);
  r.length = 0;
  r.push(...out);
}
