/**
 * A DTLS 1.2 server as a {@link DatagramTransport} (docs/architecture.md "transport/dtls", docs/spec/idprov-coap-v1.md §6): it
 * runs over an inner datagram transport (a UDP socket), terminates DTLS, and hands decrypted
 * application data to its receive callback with a {@link Peer} carrying the session's `sessionKey`
 * and, for PSK sessions, the authenticated `pskIdentity`. `CoapServer.attach()` serves CoAP over it.
 *
 * Denial-of-service posture (RFC 6347 §4.2.1, RFC 7925 §11):
 * - Nothing is allocated for a peer before it returns a valid cookie: a ClientHello without one is
 *   answered with a HelloVerifyRequest after one HMAC, statelessly; a spoofed flood costs one HMAC
 *   and one small datagram each, and no memory.
 * - Half-open handshakes are capped (`maxHandshakes`) with a fair share per source
 *   (handshake-slots.ts: once the table is half full, `maxHandshakesPerAddress` per address and four
 *   times that per IPv6 /64; at a full table the largest source — IPv4 address or IPv6 /48, then
 *   /56, /64, address — loses its oldest, and another source's only slot only once it is older
 *   than `handshakeFloorMs`) and time out (`handshakeTimeoutMs`). Each new handshake first asks `admitHandshake` (the
 *   composition root's per-address rate bucket), so one host cannot keep the server busy with
 *   ECDHE key generation and signatures. Established sessions are capped (`maxSessions`, least
 *   recently active evicted with close_notify) and expire when idle (`idleTimeoutMs`).
 * - A PSK handshake takes the same work for every identity, known or not (psk.ts).
 * - Everything a session holds is bounded: one reassembly budget per handshake, a short record queue
 *   while a PSK lookup runs, the last flight until the client's first application data.
 * - Records that fail authentication, replays and malformed datagrams are dropped silently.
 *
 * Not implemented (documented in docs/dtls.md): session resumption (session IDs and tickets are
 * ignored; every handshake is full), renegotiation (refused with no_renegotiation), client
 * certificates (never requested; ECDHE clients stay anonymous), fragmented ClientHellos (a
 * ClientHello must fit in one record), CID draft code points.
 */
import { randomBytes } from 'node:crypto';
import type { LRUCache } from 'lru-cache';
import { boundedLru } from '../../bounded-lru.ts';
import type { DatagramTransport, Peer } from '../datagram.ts';
import { peerKey } from '../datagram.ts';
import { UdpTransport } from '../coap/udp.ts';
import { silentLogger, type Logger } from '../../log.ts';
import type { ServerCertificate } from './cert.ts';
import { Connection, SUITES, type CloseReason, type ConnectionHost } from './connection.ts';
import { CookieJar } from './crypto.ts';
import { HandshakeSlots } from './handshake-slots.ts';
import { PskSelector, type PskLookup } from './psk.ts';
import { sourceOf, type Source } from '../source.ts';
import { CT, DTLS10, DTLS12, HT, RECORD_HEADER, parseClientHello, parseHandshakeFragments, parseRecords, vec8, u16, handshakeMessage, handshakeFragment, writeRecord } from './wire.ts';

/** Options of {@link DtlsTransport}. Durations in milliseconds. */
export interface DtlsOptions {
  /**
   * Resolve a PSK identity (the device ID) to its key (the device's out-of-band secret), at once or
   * as a promise. Undefined for an unknown identity; the handshake then fails exactly like a wrong
   * key. Omit to disable the PSK suites.
   */
  pskLookup?: PskLookup;
  /** Chooses each PSK handshake's key (default: a {@link PskSelector} keyed from `random`; tests spy on it). */
  pskSelector?: PskSelector;
  /** The P-256 certificate and key for the ECDHE_ECDSA suites; omit to disable them. */
  certificate?: ServerCertificate;
  /** Suite preference, first match wins (default: PSK-CCM_8, PSK-GCM, ECDHE-CCM_8, ECDHE-GCM). */
  suites?: number[];
  /** Established sessions kept at most (default 10,000; the least recently active is evicted). */
  maxSessions?: number;
  /** Half-open handshakes (after the cookie) at most (default 1,000; see handshake-slots.ts). */
  maxHandshakes?: number;
  /**
   * Half-open handshakes one source address may hold while the table is at least half full (default
   * 32; an IPv6 /64 four times as many); past it the address's own oldest handshake is dropped for
   * its new one. With room to spare there is no per-source cap (many devices behind one NAT).
   */
  maxHandshakesPerAddress?: number;
  /**
   * At a full table where every source (IPv4 address, IPv6 /48) holds one slot, the oldest
   * handshake is dropped for a newcomer only when older than this (default 5,000 ms); else the
   * newcomer is refused (handshake-slots.ts).
   */
  handshakeFloorMs?: number;
  /**
   * Asked once for every cookie-verified ClientHello that would start a new handshake (not for
   * retransmissions), with the client's {@link Source}: false drops the ClientHello without a
   * reply or any state, and the client retries on its retransmission timer. The composition root
   * puts a per-address token bucket here (the ECDHE flight costs a key generation and a signature).
   */
  admitHandshake?: (source: Source, nowMs: number) => boolean;
  /** A session without traffic for this long is closed (default 600,000 = 10 min). */
  idleTimeoutMs?: number;
  /** A handshake not finished in this long is dropped (default 60,000). */
  handshakeTimeoutMs?: number;
  /** Flight retransmission timer, initial and maximum (RFC 6347 §4.2.4.1; default 1,000 and 60,000). */
  retransmitInitialMs?: number;
  retransmitMaxMs?: number;
  /** Largest datagram this server sends during handshakes; longer messages are fragmented (default 1,200). */
  mtu?: number;
  /** Length of the Connection IDs handed out (RFC 9146); 0 disables CID (default 8). */
  cidLength?: number;
  /**
   * A session that a CID record moved to an address it has not proven sends there at most this many
   * times the bytes it received from there (default 3, QUIC's bound, RFC 9000 §8.1), and its requests
   * reach the CoAP engine with `peer.addressUnproven` (treated as unverified). The bound lasts until
   * the session returns to a proven address or the client makes a new handshake from there.
   */
  unprovenAmplificationFactor?: number;
  /** Refuse clients without the extended master secret extension (RFC 7627; default false). */
  requireExtendedMasterSecret?: boolean;
  /** Cookie secret rotation period (default 60,000; a cookie lives at most twice this). */
  cookieRotateMs?: number;
  /** Largest handshake message accepted (default 4,096 bytes). */
  maxHandshakeMessage?: number;
  log?: Logger;
  clock?: () => number;
  random?: (n: number) => Buffer;
}

/** Counters and sizes of the bounded state (for tests, metrics and the benchmark). */
export interface DtlsStats {
  sessions: number;
  handshakes: number;
  cids: number;
  addresses: number;
  helloVerifyRequests: number;
  handshakesStarted: number;
  handshakesCompleted: number;
  handshakesFailed: number;
  evicted: number;
  /** Cookie-verified ClientHellos dropped because `admitHandshake` said no. */
  rateLimited: number;
  /** Cookie-verified ClientHellos dropped: every source held one slot of a full table, none older than the floor. */
  refused: number;
  migrated: number;
  /** Datagrams not sent to a session's unproven address (over 3× what came from there). */
  unprovenDropped: number;
  dropped: number;
  /** Exceptions caught on the receive path (a bug if ever non-zero). */
  internalErrors: number;
}

/** The DTLS server transport. */
export class DtlsTransport implements DatagramTransport {
  private cb: ((data: Buffer, peer: Peer) => void) | undefined;
  private readonly byAddr = new Map<string, Connection>();
  private readonly byCid = new Map<string, Connection>();
  /**
   * Open sessions by `sessionKey`, an lru-cache in least-recently-active order: `get` on each
   * datagram received marks activity; `peek` (sending, lookups) does not. It never evicts by itself:
   * the least recently active session is closed with close_notify before a new one is added (so
   * the eviction is counted and the session told), and boundedLru's bound only backs that one.
   */
  private readonly sessions: LRUCache<string, Connection>;
  /** Half-open handshakes, with their sources' shares. */
  private readonly handshakes: HandshakeSlots<Connection>;
  private readonly admitHandshake: ((source: Source, nowMs: number) => boolean) | undefined;
  private readonly cookies: CookieJar;
  private readonly host: ConnectionHost;
  private readonly log: Logger;
  private readonly maxSessions: number;
  private readonly idleTimeoutMs: number;
  private readonly cidLength: number;
  private readonly clock: () => number;
  private readonly sweepTimer: NodeJS.Timeout;
  private next = 0;
  private closing: Promise<void> | undefined;
  private readonly counters = {
    helloVerifyRequests: 0,
    handshakesStarted: 0,
    handshakesCompleted: 0,
    handshakesFailed: 0,
    evicted: 0,
    rateLimited: 0,
    refused: 0,
    migrated: 0,
    unprovenDropped: 0,
    dropped: 0,
    internalErrors: 0,
  };

  constructor(
    private readonly inner: DatagramTransport,
    opts: DtlsOptions,
  ) {
    const random = opts.random ?? randomBytes;
    this.clock = opts.clock ?? Date.now;
    this.log = opts.log ?? silentLogger;
    this.maxSessions = opts.maxSessions ?? 10_000;
    // boundedLru keeps at least 1; a bound of 0 kept one session before (the eviction runs first) and still does.
    this.sessions = boundedLru<string, Connection>(this.maxSessions);
    const maxHandshakes = opts.maxHandshakes ?? 1_000;
    const perAddress = Math.min(opts.maxHandshakesPerAddress ?? 32, maxHandshakes);
    if (!(maxHandshakes >= 1 && perAddress >= 1)) throw new RangeError('maxHandshakes and maxHandshakesPerAddress must be at least 1');
    this.handshakes = new HandshakeSlots(maxHandshakes, perAddress, Math.min(4 * perAddress, maxHandshakes), { clock: this.clock, floorMs: opts.handshakeFloorMs ?? 5_000 });
    this.admitHandshake = opts.admitHandshake;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 600_000;
    this.cidLength = opts.cidLength ?? 8;
    if (!(this.cidLength >= 0 && this.cidLength <= 32)) throw new RangeError('cidLength must be 0..32');
    const suites = (opts.suites ?? [0xc0a8, 0x00a8, 0xc0ae, 0xc02b]).filter((s) => SUITES.has(s));
    if (suites.length === 0) throw new RangeError('no supported cipher suite configured');
    if (opts.pskLookup === undefined && opts.certificate === undefined) throw new RangeError('DTLS needs a pskLookup, a certificate, or both');
    this.cookies = new CookieJar(random, this.clock, opts.cookieRotateMs ?? 60_000);
    const psk = opts.pskSelector ?? new PskSelector(random);
    const self = this;
    this.host = {
      mtu: opts.mtu ?? 1200,
      maxHandshakeMessage: opts.maxHandshakeMessage ?? 4096,
      retransmitInitialMs: opts.retransmitInitialMs ?? 1000,
      retransmitMaxMs: opts.retransmitMaxMs ?? 60_000,
      handshakeTimeoutMs: opts.handshakeTimeoutMs ?? 60_000,
      cidLength: this.cidLength,
      requireExtendedMasterSecret: opts.requireExtendedMasterSecret === true,
      suites,
      certificate: opts.certificate,
      pskLookup: opts.pskLookup,
      selectPsk: (identity, key) => psk.select(identity, key),
      random,
      clock: this.clock,
      sendDatagram: (c, d) => self.inner.send(d, c.peer),
      deliver: (c, d) => self.onApplicationData(c, d),
      established: (c) => self.onEstablished(c),
      closed: (c, r) => self.onClosed(c, r),
      restart: (c, d, p) => self.cookieExchange(d, p, c),
      migrate: (c, p) => self.onMigrate(c, p),
      unprovenAmplificationFactor: opts.unprovenAmplificationFactor ?? 3,
      unprovenDropped: () => void self.counters.unprovenDropped++,
      debug: (o, m) => self.log.debug(o, m),
    };
    const sweepMs = Math.max(50, Math.min(5_000, Math.floor(this.idleTimeoutMs / 4)));
    this.sweepTimer = setInterval(() => this.closeIdleSessions(), sweepMs);
    this.sweepTimer.unref?.();
    inner.onMessage((data, peer) => this.receive(data, peer));
  }

  /** Bind a UDP socket and serve DTLS on it. */
  static async bind(opts: DtlsOptions & { address: string; port: number }): Promise<DtlsTransport & { address(): { address: string; port: number } }> {
    const udp = await UdpTransport.bind({ address: opts.address, port: opts.port, ...(opts.log ? { log: opts.log } : {}) });
    const t = new DtlsTransport(udp, opts) as DtlsTransport & { address(): { address: string; port: number } };
    t.address = () => udp.address();
    return t;
  }

  onMessage(cb: (data: Buffer, peer: Peer) => void): void {
    this.cb = cb;
  }

  /** Send application data to the session of `peer` (by `sessionKey`, else by address); dropped when none. */
  send(data: Buffer, peer: Peer): void {
    const c = (peer.sessionKey !== undefined ? this.sessions.peek(peer.sessionKey) : undefined) ?? this.byAddr.get(peerKey(peer));
    if (c === undefined || c.state !== 'open') return;
    try {
      c.sendApplicationData(data);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'dtls: send failed');
    }
  }

  /** Sizes of the bounded state and counters. */
  stats(): DtlsStats {
    return {
      sessions: this.sessions.size,
      handshakes: this.handshakes.size,
      cids: this.byCid.size,
      addresses: this.byAddr.size,
      ...this.counters,
    };
  }

  /** Send close_notify to every session, drop every handshake, and close the socket. */
  close(): Promise<void> {
    if (this.closing === undefined) {
      clearInterval(this.sweepTimer);
      for (const c of [...this.sessions.rvalues()]) c?.close('shutdown', true);
      for (const c of [...this.handshakes.values()]) c.close('shutdown', false);
      this.closing = this.inner.close();
    }
    return this.closing;
  }

  // ---------------------------------------------------------------------------------------------

  /** The receive path; exposed for tests that inject datagrams (spoofed sources). Never throws. */
  receive(data: Buffer, peer: Peer): void {
    if (this.closing !== undefined) return;
    try {
      this.routeDatagram(data, peer);
    } catch (err) {
      this.counters.internalErrors++;
      this.log.error({ err: (err as Error).message, peer: peerKey(peer) }, 'dtls: internal error on receive');
    }
  }

  /** To the association of the datagram's CID, else of its source address, else the cookie exchange. */
  private routeDatagram(data: Buffer, peer: Peer): void {
    if (data.length < RECORD_HEADER) {
      this.counters.dropped++;
      return;
    }
    // RFC 9146 §6: a tls12_cid record is routed by its CID, whatever its source address.
    if (data[0] === CT.tls12Cid && this.cidLength > 0 && data.length >= RECORD_HEADER + this.cidLength) {
      const c = this.byCid.get(data.toString('latin1', 11, 11 + this.cidLength));
      if (c !== undefined) {
        c.onDatagram(parseRecords(data, this.cidLength), data, peer, true);
        return;
      }
    }
    const c = this.byAddr.get(peerKey(peer));
    if (c !== undefined) {
      c.onDatagram(parseRecords(data, this.cidLength), data, peer, false);
      return;
    }
    this.cookieExchange(data, peer, undefined);
  }

  /**
   * The cookie exchange (RFC 6347 §4.2.1), before any per-peer state: the datagram must start with
   * an unfragmented epoch-0 ClientHello. Without a valid cookie → HelloVerifyRequest; with one → a
   * new half-open association (replacing `existing`, the association at that address, if any).
   */
  private cookieExchange(data: Buffer, peer: Peer, existing: Connection | undefined): void {
    if (data[0] !== CT.handshake || data.length < RECORD_HEADER + 12) return this.countDropped();
    const version = data.readUInt16BE(1);
    if ((version !== DTLS12 && version !== DTLS10) || data.readUInt16BE(3) !== 0) return this.countDropped();
    const recordSeq = data.readUIntBE(5, 6);
    const len = data.readUInt16BE(11);
    if (data.length < RECORD_HEADER + len) return this.countDropped();
    const frags = parseHandshakeFragments(data.subarray(RECORD_HEADER, RECORD_HEADER + len), this.host.maxHandshakeMessage);
    const f = frags?.[0];
    if (f === undefined || f.msgType !== HT.clientHello || f.fragOffset !== 0 || f.fragLength !== f.length) return this.countDropped();
    const ch = parseClientHello(f.body);
    if (ch === undefined) return this.countDropped();
    const verdict = this.cookies.check(ch.cookie, peer.address, peer.port, ch.cookieInput);
    if (verdict !== true) {
      // HelloVerifyRequest: server_version DTLS 1.0 (RFC 6347 §4.2.1), record sequence number
      // copied from the ClientHello, message_seq too (so the ServerHello follows on).
      this.counters.helloVerifyRequests++;
      const body = Buffer.concat([u16(DTLS10), vec8(verdict)]);
      const hvr = writeRecord(CT.handshake, DTLS12, 0, recordSeq, handshakeFragment(HT.helloVerifyRequest, f.msgSeq, body, 0, body.length));
      this.inner.send(hvr, peer);
      return;
    }
    if (existing !== undefined && existing.state === 'handshake' && existing.isForClientHello(ch.random)) return existing.resendLastFlight();
    // From here on a new handshake: the cookie proved the address, so it is counted per source.
    const source = sourceOf(peer.address);
    if (this.admitHandshake !== undefined && !this.admitHandshake(source, this.clock())) {
      this.counters.rateLimited++;
      return;
    }
    // RFC 6347 §4.2.8: a new handshake from the address of an association; the client has proven
    // reachability with the cookie, so the old association goes.
    if (existing !== undefined) existing.close('replaced', false);
    const room = this.handshakes.admit(source);
    if (room.refuse) {
      this.counters.refused++;
      return;
    }
    if (room.evict !== undefined) {
      this.counters.evicted++;
      room.evict.close('evicted', false);
    }
    const key = peerKey(peer);
    const conn = new Connection(this.host, { address: peer.address, port: peer.port, family: peer.family, sessionKey: `dtls${(this.next++).toString(36)}` }, key);
    this.byAddr.set(key, conn);
    this.handshakes.add(conn, source);
    this.counters.handshakesStarted++;
    if (!conn.startHandshake(ch, handshakeMessage(HT.clientHello, f.msgSeq, f.body), f.msgSeq, recordSeq)) return;
    if (conn.cidIn !== undefined) this.byCid.set(conn.cidIn.toString('latin1'), conn);
    // Anything after the ClientHello in the same datagram belongs to the new association.
    const rest = parseRecords(data, this.cidLength).slice(1);
    if (rest.length) conn.onDatagram(rest, data, peer, false);
  }

  private countDropped(): void {
    this.counters.dropped++;
  }

  /** Decrypted application data of an open session: it was active now; hand the data on. */
  private onApplicationData(c: Connection, data: Buffer): void {
    this.sessions.get(c.peer.sessionKey!); // most recently active
    const cb = this.cb;
    if (cb === undefined) return;
    try {
      cb(data, c.peer);
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'dtls: receive callback threw');
    }
  }

  private onEstablished(c: Connection): void {
    this.handshakes.delete(c);
    this.counters.handshakesCompleted++;
    if (this.sessions.size >= this.maxSessions) {
      const lru = this.leastRecentlyActive();
      if (lru !== undefined) {
        this.counters.evicted++;
        lru.close('evicted', true);
      }
    }
    this.sessions.set(c.peer.sessionKey!, c);
    this.log.debug({ peer: c.addrKey, suite: c.suite?.name, psk: c.peer.pskIdentity !== undefined, cid: c.cidIn !== undefined }, 'dtls: session established');
  }

  private onClosed(c: Connection, reason: CloseReason): void {
    if (reason === 'handshake_failed' || reason === 'handshake_timeout') this.counters.handshakesFailed++;
    this.handshakes.delete(c);
    this.sessions.delete(c.peer.sessionKey!);
    if (this.byAddr.get(c.addrKey) === c) this.byAddr.delete(c.addrKey);
    if (c.cidIn !== undefined) {
      const k = c.cidIn.toString('latin1');
      if (this.byCid.get(k) === c) this.byCid.delete(k);
    }
    this.log.debug({ peer: c.addrKey, reason }, 'dtls: association closed');
  }

  private onMigrate(c: Connection, to: Peer): void {
    const key = peerKey(to);
    const other = this.byAddr.get(key);
    if (other !== undefined && other !== c) other.close('replaced', false);
    if (this.byAddr.get(c.addrKey) === c) this.byAddr.delete(c.addrKey);
    c.peer.address = to.address;
    c.peer.port = to.port;
    c.peer.family = to.family;
    c.addrKey = key;
    this.byAddr.set(key, c);
    c.movedTo(key);
    this.counters.migrated++;
    this.log.debug({ peer: key, proven: !c.addressUnproven }, 'dtls: session moved to a new address (CID)');
  }

  private leastRecentlyActive(): Connection | undefined {
    return this.sessions.rvalues().next().value ?? undefined;
  }

  /** Close the sessions idle for `idleTimeoutMs`, least recently active first. */
  private closeIdleSessions(): void {
    const now = this.clock();
    for (let c = this.leastRecentlyActive(); c !== undefined; c = this.leastRecentlyActive()) {
      if (now - c.lastActive < this.idleTimeoutMs) break;
      c.close('idle', true);
      this.sessions.delete(c.peer.sessionKey!); // closed already removed it; never loop on one that stayed
    }
  }
}
