/**
 * What a DTLS association (`connection.ts`) needs from the transport that owns it, and why one ends.
 */
import type { Peer } from '../datagram.ts';
import type { ServerCertificate } from './cert.ts';
import type { Connection } from './connection.ts';
import type { PskChoice, PskLookup } from './psk.ts';

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
  readonly pskLookup: PskLookup | undefined;
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
