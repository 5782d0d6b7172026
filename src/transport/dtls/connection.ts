// Over 500 lines, kept whole: one association's handshake state machine, whose steps share its fields (the record layer, the parsers and the suites are already their own files).
/**
 * One DTLS 1.2 association on the server side: the state machine that runs the server handshake for
 * the PSK and ECDHE_ECDSA AEAD suites (RFC 6347 §4.2, RFC 5246 §7.4, RFC 4279, RFC 8422, RFC 7627,
 * RFC 5746, RFC 9146) over its record layer (`record-layer.ts`), then carries application data.
 * Created only after a ClientHello with a valid cookie; everything it holds is bounded (reassembly
 * per message and in total, `reassembly.ts`; records queued while a PSK lookup runs).
 *
 * Flights (RFC 6347 §4.2.4): the server sends flight 4 (ServerHello, [Certificate,
 * ServerKeyExchange], ServerHelloDone) with a retransmission timer (initial 1 s, doubling, capped),
 * and flight 6 (ChangeCipherSpec, Finished) without one: it is resent when the client's flight 5
 * shows up again, until the first application data proves the client has it.
 *
 * The negotiation, flight contents and key schedule are in `handshake.ts`; the suites in `suites.ts`.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Peer } from '../datagram.ts';
import type { CloseReason, ConnectionHost } from './connection-host.ts';
import { pskPreMaster } from './crypto.ts';
import { addToFlight, certificateList, clientFinished, deriveKeys, negotiate, newHandshake, serverHello, serverKeyExchange, type Handshake } from './handshake.ts';
import { FRAGMENT_KEPT, FRAGMENT_OF_OLD_MESSAGE } from './reassembly.ts';
import { RECORD_FORGED, RECORD_OPENED, RecordReader, RecordWriter, type FlightMsg } from './record-layer.ts';
import type { DtlsSuite } from './suites.ts';
import { ALERT, CT, HT, RECORD_HEADER, handshakeMessage, parseAlert, parseClientKeyExchange, parseHandshakeFragments, type ClientHello, type RecordView } from './wire.ts';

export { SUITES, type DtlsSuite } from './suites.ts';
export type { CloseReason, ConnectionHost } from './connection-host.ts';

const MAX_QUEUE = 32;
const MAX_SEQ = 2 ** 48 - 1;
const NO_DATAGRAM = Buffer.alloc(0);

/** A server-side DTLS association (half-open until its handshake completes). */
export class Connection {
  state: 'handshake' | 'open' | 'closed' = 'handshake';
  lastActive: number;
  /** Our CID (records to us carry it), when negotiated. */
  cidIn: Buffer | undefined;
  suite: DtlsSuite | undefined;
  private hs: Handshake | undefined;
  private readonly writer = new RecordWriter();
  private readonly reader = new RecordReader();
  /** Flight 6, kept to answer a retransmitted flight 5 until the client sends application data. */
  private lastFlight: FlightMsg[] | undefined;
  private clientFinishedSeq = -1;
  /** A PSK lookup runs: records wait in `queue`. */
  private busy = false;
  private queue: RecordView[] = [];
  private clientRandom: Buffer = Buffer.alloc(0);
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
    /** The association's key in the transport's address table (`peerKey` of `peer`). */
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
  movedTo(addrKey: string): void {
    if (this.proven.has(addrKey)) {
      delete this.peer.addressUnproven;
      return;
    }
    this.peer.addressUnproven = true;
    this.unprovenRx = 0;
    this.unprovenTx = 0;
  }

  /** True when this handshake is for the ClientHello with this random (a retransmission). */
  isForClientHello(random: Buffer): boolean {
    return this.clientRandom.equals(random);
  }

  // -------------------------------------------------------------------------------------------
  // Handshake start (flight 3 → flight 4)

  /**
   * Start the handshake from a cookie-verified ClientHello (RFC 6347 §4.2.1). `raw` is the full
   * message as hashed into the transcript. Returns false (after a fatal alert) when no suite fits.
   */
  startHandshake(ch: ClientHello, raw: Buffer, msgSeq: number, recordSeq: number): boolean {
    this.writer.seq0 = recordSeq;
    this.clientRandom = ch.random;
    this.reader.plainWindow.update(recordSeq);
    const n = negotiate(ch, this.host);
    if (!('suite' in n)) return this.abortHandshake(n.alert, n.why);
    if (n.cidOut !== undefined) {
      this.writer.cidOut = n.cidOut;
      this.cidIn = this.host.random(this.host.cidLength);
    }
    const hs = newHandshake(n, ch, raw, msgSeq, this.host.random(32), {
      timeoutMs: this.host.retransmitInitialMs,
      now: this.host.clock(),
      maxHandshakeMessage: this.host.maxHandshakeMessage,
    });
    this.hs = hs;
    this.suite = n.suite;
    addToFlight(hs, HT.serverHello, serverHello(n, ch, hs.serverRandom, this.cidIn));
    if (n.suite.kx === 'ecdhe') {
      const cert = this.host.certificate!;
      addToFlight(hs, HT.certificate, certificateList(cert.der));
      const ske = serverKeyExchange(cert, hs.clientRandom, hs.serverRandom);
      hs.ecdh = ske.ecdh;
      addToFlight(hs, HT.serverKeyExchange, ske.body);
    }
    addToFlight(hs, HT.serverHelloDone, Buffer.alloc(0));
    this.sendFlight(hs.flight);
    this.armRetransmitTimer();
    return true;
  }

  // -------------------------------------------------------------------------------------------
  // Flight 4 retransmission (RFC 6347 §4.2.4.1)

  private armRetransmitTimer(): void {
    const hs = this.hs;
    if (hs === undefined) return;
    if (hs.timer !== undefined) clearTimeout(hs.timer);
    hs.timer = setTimeout(() => {
      try {
        this.onRetransmitTimer();
      } catch (err) {
        this.host.debug({ err: (err as Error).message }, 'dtls: internal error in retransmission timer');
      }
    }, hs.timeoutMs);
    hs.timer.unref?.();
  }

  private onRetransmitTimer(): void {
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
    this.armRetransmitTimer();
  }

  /** Resend our last flight (the client retransmitted its previous one). */
  resendLastFlight(): void {
    if (this.state === 'handshake' && this.hs !== undefined && this.hs.phase === 'wait_cke' && !this.busy) this.sendFlight(this.hs.flight);
    else if (this.state === 'open' && this.lastFlight !== undefined) this.sendFlight(this.lastFlight);
  }

  // -------------------------------------------------------------------------------------------
  // Output

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

  private sendFlight(msgs: FlightMsg[]): void {
    for (const d of this.writer.packFlight(msgs, this.host.mtu)) this.emit(d);
  }

  /** Send an alert at the current write epoch. */
  private sendAlert(level: number, description: number): void {
    const epoch = this.writer.cipher !== undefined && this.state === 'open' ? 1 : 0;
    this.emit(this.writer.encode(CT.alert, epoch, Buffer.from([level, description])));
  }

  /** Protect and send application data (CoAP) over an open association. */
  sendApplicationData(data: Buffer): void {
    if (this.state !== 'open') return;
    if (this.writer.seq1 >= MAX_SEQ) {
      this.close('seq_exhausted', true);
      return;
    }
    this.emit(this.writer.encode(CT.appData, 1, data));
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

  /** Fail the handshake with a fatal alert. */
  private abortHandshake(alert: number, why: string): false {
    this.host.debug({ peer: this.addrKey, alert, why }, 'dtls: handshake failed');
    try {
      this.sendAlert(ALERT.fatal, alert);
    } catch {
      /* best effort */
    }
    this.close('handshake_failed', false);
    return false;
  }

  // -------------------------------------------------------------------------------------------
  // Input: records

  /**
   * Process one datagram for this association. `viaCid`: it was routed here by its CID (so only
   * tls12_cid records are considered, and an authenticated newer one may move the peer address).
   */
  onDatagram(records: RecordView[], datagram: Buffer, from: Peer, viaCid: boolean): void {
    if (this.state === 'closed') return;
    for (const r of records) {
      if (viaCid && r.type !== CT.tls12Cid) continue;
      if (this.busy) {
        if (this.queue.length < MAX_QUEUE) this.queue.push(r);
        continue;
      }
      this.onRecord(r, datagram, from);
      if (this.isClosed()) return;
    }
  }

  private isClosed(): boolean {
    return this.state === 'closed';
  }

  private onRecord(r: RecordView, datagram: Buffer, from: Peer): void {
    if (r.epoch === 0) this.onPlaintextRecord(r, datagram, from);
    else this.onEncryptedRecord(r, from);
  }

  /** The records that waited while the PSK lookup ran, in order. */
  private replayQueuedRecords(): void {
    const q = this.queue;
    this.queue = [];
    for (const r of q) {
      if (this.state === 'closed' || this.busy) {
        if (this.busy && this.queue.length < MAX_QUEUE) this.queue.push(r);
        continue;
      }
      this.onRecord(r, NO_DATAGRAM, this.peer);
    }
  }

  /** An epoch-1 record: authenticate it, note where it came from, and act on its content. */
  private onEncryptedRecord(r: RecordView, from: Peer): void {
    const rd = this.reader;
    const opened = rd.openEncrypted(r, this.cidIn);
    if (opened === RECORD_FORGED) {
      // RFC 6347 §4.1.2.7: invalid records are dropped silently. During the handshake the only
      // epoch-1 record is the client's Finished; one that does not authenticate means a wrong PSK
      // (or a forgery), and the handshake is aborted so the client learns it at once.
      if (this.state === 'handshake') this.abortHandshake(ALERT.badRecordMac, 'Finished record did not authenticate');
      return;
    }
    if (opened !== RECORD_OPENED) return;
    const content = rd.content;
    this.lastActive = this.host.clock();
    const sameAddress = from.address === this.peer.address && from.port === this.peer.port;
    if (r.type === CT.tls12Cid && rd.newer && this.state === 'open' && !sameAddress) this.host.migrate(this, from);
    // What came from an unproven address buys the answers sent there (3×, like QUIC, RFC 9000 §8).
    if (this.peer.addressUnproven === true && from.address === this.peer.address && from.port === this.peer.port) {
      this.unprovenRx += RECORD_HEADER + (r.cid?.length ?? 0) + r.fragment.length;
    }
    switch (rd.type) {
      case CT.appData:
        if (this.state !== 'open') return;
        this.lastFlight = undefined;
        this.host.deliver(this, content);
        return;
      case CT.alert:
        return this.onEncryptedAlert(content);
      case CT.handshake:
        return this.state === 'handshake' ? this.onEncryptedHandshake(content) : this.onHandshakeAfterOpen(content);
      default:
        return;
    }
  }

  /** An epoch-0 record: the client's plaintext flights (ClientHello, flight 5 before its CCS), CCS, alerts. */
  private onPlaintextRecord(r: RecordView, datagram: Buffer, from: Peer): void {
    if (r.type === CT.tls12Cid) return;
    if (r.type === CT.handshake) return this.onPlaintextHandshake(r, datagram, from);
    const window = this.reader.plainWindow;
    if (!window.check(r.seq)) return;
    if (r.type === CT.ccs) {
      if (r.fragment.length !== 1 || r.fragment[0] !== 1) return;
      window.update(r.seq);
      return; // Keys switch when the Finished arrives at epoch 1; CCS itself carries nothing.
    }
    if (r.type === CT.alert && this.state === 'handshake') {
      // Unauthenticated alerts only matter during the handshake (an open session ignores them).
      const a = parseAlert(r.fragment);
      if (a === undefined) return;
      window.update(r.seq);
      if (a.level === ALERT.fatal || a.description === ALERT.closeNotify) this.close('peer_alert', false);
    }
  }

  private onPlaintextHandshake(r: RecordView, datagram: Buffer, from: Peer): void {
    const frags = parseHandshakeFragments(r.fragment, this.host.maxHandshakeMessage);
    if (frags === undefined || frags.length === 0) return;
    const window = this.reader.plainWindow;
    const first = frags[0]!;
    if (first.msgType === HT.clientHello) {
      // RFC 6347 §4.2.8: a ClientHello with another random is a new connection (a rebooted client
      // on the same port); its record sequence number restarts, so it is checked against the
      // cookie, not this association's replay window. The same random is a retransmission.
      const random = first.fragOffset === 0 && first.body.length >= 34 ? first.body.subarray(2, 34) : undefined;
      if (random !== undefined && random.equals(this.clientRandom)) {
        if (this.state === 'handshake' && window.check(r.seq)) {
          window.update(r.seq);
          this.resendLastFlight();
        }
        return;
      }
      if (datagram.length > 0 && r.fragment.byteOffset === datagram.byteOffset + RECORD_HEADER) this.host.restart(this, datagram, from);
      return;
    }
    if (!window.check(r.seq)) return;
    window.update(r.seq);
    if (this.state === 'open') {
      // The client resent flight 5: our flight 6 was lost.
      if (frags.some((f) => f.msgSeq < this.clientFinishedSeq)) this.resendLastFlight();
      return;
    }
    for (const f of frags) {
      this.onHandshakeFragment(0, f.msgType, f.length, f.msgSeq, f.fragOffset, f.body);
      if (this.state !== 'handshake' || this.busy) return;
    }
  }

  private onEncryptedAlert(content: Buffer): void {
    const a = parseAlert(content);
    if (a === undefined) return;
    if (a.description === ALERT.closeNotify) {
      this.close('close_notify', this.state === 'open');
      return;
    }
    if (a.level === ALERT.fatal) this.close('peer_alert', false);
  }

  /** An epoch-1 handshake record while the handshake runs: (fragments of) the client's Finished. */
  private onEncryptedHandshake(content: Buffer): void {
    if (this.hs === undefined || this.hs.phase !== 'wait_finished') return;
    const frags = parseHandshakeFragments(content, this.host.maxHandshakeMessage);
    if (frags === undefined) return;
    for (const f of frags) {
      this.onHandshakeFragment(1, f.msgType, f.length, f.msgSeq, f.fragOffset, f.body);
      if (this.state !== 'handshake' || this.busy) return;
    }
  }

  /** An epoch-1 handshake record on an open association: a resent Finished, or renegotiation. */
  private onHandshakeAfterOpen(content: Buffer): void {
    const frags = parseHandshakeFragments(content, this.host.maxHandshakeMessage);
    if (frags === undefined) return;
    for (const f of frags) {
      if (f.msgType === HT.finished && f.msgSeq === this.clientFinishedSeq) {
        this.resendLastFlight();
        return;
      }
      if (f.msgType === HT.clientHello) {
        // RFC 5746 §4.4 / RFC 7925 §17: renegotiation is refused with a warning.
        this.sendAlert(ALERT.warning, ALERT.noRenegotiation);
        return;
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Input: handshake messages

  /** Add a handshake fragment (RFC 6347 §4.2.3) and process every message now complete, in order. */
  private onHandshakeFragment(epoch: number, type: number, length: number, seq: number, off: number, body: Buffer): void {
    const hs = this.hs;
    if (hs === undefined) return;
    const added = hs.incoming.add(epoch, type, length, seq, off, body);
    if (added === FRAGMENT_OF_OLD_MESSAGE) return this.resendLastFlight();
    if (added !== FRAGMENT_KEPT) return;
    for (let m = hs.incoming.takeNextComplete(); m !== undefined; m = hs.incoming.takeNextComplete()) {
      this.onHandshakeMessage(m.epoch, m.type, m.seq, m.buf);
      if (this.state !== 'handshake' || this.busy || this.hs === undefined) return;
    }
  }

  /** One complete handshake message from the client. */
  private onHandshakeMessage(epoch: number, type: number, seq: number, body: Buffer): void {
    const hs = this.hs!;
    if (hs.phase === 'wait_finished' && epoch === 1 && type === HT.finished) return this.onClientFinished(seq, body);
    if (epoch !== 0) {
      this.abortHandshake(ALERT.unexpectedMessage, `unexpected protected handshake message ${type}`);
      return;
    }
    if (hs.phase === 'wait_cke' && type === HT.clientKeyExchange) return this.onClientKeyExchange(hs, seq, body);
    if (hs.phase === 'wait_cke') this.abortHandshake(ALERT.unexpectedMessage, `unexpected handshake message ${type}`);
    // wait_finished: only Finished may come, and only at epoch 1 (handled above).
    else this.abortHandshake(ALERT.unexpectedMessage, `unexpected handshake message ${type} before Finished`);
  }

  /** The ClientKeyExchange: an ECDH share (keys at once) or a PSK identity (keys after the lookup). */
  private onClientKeyExchange(hs: Handshake, seq: number, body: Buffer): void {
    const v = parseClientKeyExchange(body, hs.suite.kx);
    if (v === undefined) {
      this.abortHandshake(ALERT.decodeError, 'bad ClientKeyExchange');
      return;
    }
    hs.transcript.update(handshakeMessage(HT.clientKeyExchange, seq, body));
    if (hs.suite.kx === 'ecdhe') {
      let z: Buffer;
      try {
        z = hs.ecdh!.computeSecret(v);
      } catch {
        this.abortHandshake(ALERT.illegalParameter, 'bad ECDH point');
        return;
      }
      hs.ecdh = undefined;
      this.reader.cipher = deriveKeys(hs, z);
      return;
    }
    this.lookUpPsk(hs, v);
  }

  /**
   * Look the PSK identity up (records wait meanwhile), then derive the keys. RFC 4279 §2 / RFC 7925
   * §4.2: an unknown identity fails like a wrong key (bad_record_mac at Finished), so that identities
   * cannot be enumerated; and it takes the same work to get there (psk.ts): a known identity's key or
   * a dummy key derived from the identity.
   */
  private lookUpPsk(hs: Handshake, identityBytes: Buffer): void {
    const identity = identityBytes.toString('utf8');
    const valid = identity.length > 0 && Buffer.from(identity, 'utf8').equals(identityBytes);
    let found: Buffer | undefined | Promise<Buffer | undefined>;
    try {
      found = valid ? this.host.pskLookup!(identity) : undefined;
    } catch {
      found = undefined;
    }
    // An in-memory lookup answers at once: no wait, no queue. A store lookup holds the records meanwhile.
    if (!(found instanceof Promise)) {
      this.usePsk(hs, identityBytes, identity, found, false);
      return;
    }
    this.busy = true;
    void found.catch(() => undefined).then((psk) => {
      this.busy = false;
      if (this.state !== 'handshake' || this.hs !== hs) return;
      this.usePsk(hs, identityBytes, identity, psk, true);
    });
  }

  /** Derive the keys from the looked-up PSK (or the identity's dummy key: psk.ts). */
  private usePsk(hs: Handshake, identityBytes: Buffer, identity: string, psk: Buffer | undefined, queued: boolean): void {
    try {
      const choice = this.host.selectPsk(identityBytes, psk);
      if (choice.known) {
        hs.pskIdentity = identity;
        hs.pskDigest = createHash('sha256').update(choice.key).digest();
      }
      const pre = pskPreMaster(choice.key);
      choice.key.fill(0);
      this.reader.cipher = deriveKeys(hs, pre);
      if (queued) this.replayQueuedRecords();
    } catch (err) {
      this.host.debug({ err: (err as Error).message }, 'dtls: internal error after PSK lookup');
      if (!this.isClosed()) this.abortHandshake(ALERT.internalError, 'internal error');
    }
  }

  /** The client's Finished (RFC 5246 §7.4.9): verify it, answer with flight 6, and open the session. */
  private onClientFinished(msgSeq: number, body: Buffer): void {
    const hs = this.hs!;
    const flight = clientFinished(hs, msgSeq, body);
    if (!Array.isArray(flight)) {
      this.abortHandshake(flight.alert, flight.why);
      return;
    }
    this.clientFinishedSeq = msgSeq;
    this.writer.cipher = hs.pendingWrite;
    if (hs.timer !== undefined) clearTimeout(hs.timer);
    const identity = hs.pskIdentity;
    const digest = hs.pskDigest;
    this.hs = undefined;
    this.state = 'open';
    if (identity !== undefined && digest !== undefined) {
      this.peer.pskIdentity = identity;
      this.peer.pskMatches = (key) => timingSafeEqual(digest, createHash('sha256').update(key).digest());
    }
    this.lastFlight = flight;
    this.sendFlight(flight);
    this.host.established(this);
  }
}
