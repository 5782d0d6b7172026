/**
 * The narrow transport seam: the CoAP engine talks to this, and UDP sockets, DTLS
 * sessions and in-memory test pairs all implement it.
 */

import type { PeerAddress } from '../net/address.ts';

/**
 * Where a datagram came from / goes to: handlers get this structured value (`CoapRequest.peer`),
 * never a string to parse.
 */
export interface Peer extends PeerAddress {
  family: 'IPv4' | 'IPv6';
  /** Set by the DTLS transport: the authenticated PSK identity of the session, if any. */
  pskIdentity?: string;
  /**
   * Set by the DTLS transport with `pskIdentity`: whether `key` is the PSK the session was made with
   * (constant-time; the session keeps only the key's SHA-256).
   */
  pskMatches?: (key: Uint8Array) => boolean;
  /** Set by the DTLS transport: a stable key for the session (survives address changes with CID). */
  sessionKey?: string;
  /**
   * Set by the DTLS transport while a session sits at an address it has not proven (it moved there
   * with a Connection ID record, RFC 9146 §6): its source may be forged like a plain UDP one's, so
   * the CoAP engine treats its requests as from an unverified address (RFC 7252 §11.3).
   */
  addressUnproven?: boolean;
  /** True when the datagram was received on a multicast group address. */
  multicast?: boolean;
}

/** A bidirectional datagram endpoint. */
export interface DatagramTransport {
  /** Register the receive callback (exactly one). */
  onMessage(cb: (data: Buffer, peer: Peer) => void): void;
  /** Send one datagram; errors are logged by the transport, never thrown to the caller. */
  send(data: Buffer, peer: Peer): void;
  /** Stop receiving and release the socket(s). */
  close(): Promise<void>;
}

/**
 * `addr:port` (IPv6 in brackets): the text of a peer for log lines and for the transports' own map
 * keys (the CoAP engine's exchange tables, the DTLS address table). Consumers get the structured
 * {@link Peer} and never parse this back. An IPv4 peer seen through a dual-stack socket
 * (`::ffff:192.0.2.7`) is written as plain IPv4, so one device has one key whichever socket it reached.
 */
export function peerKey(p: Pick<Peer, 'address' | 'port' | 'family'>): string {
  if (p.family === 'IPv6') {
    const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(p.address);
    return m ? `${m[1]}:${p.port}` : `[${p.address}]:${p.port}`;
  }
  return `${p.address}:${p.port}`;
}
