/**
 * The narrow transport seam (STYLE.md §4): the CoAP engine talks to this, and UDP sockets, DTLS
 * sessions and in-memory test pairs all implement it.
 */

/** Where a datagram came from / goes to. */
export interface Peer {
  address: string;
  port: number;
  family: 'IPv4' | 'IPv6';
  /** Set by the DTLS transport: the authenticated PSK identity of the session, if any. */
  pskIdentity?: string;
  /** Set by the DTLS transport: a stable key for the session (survives address changes with CID). */
  sessionKey?: string;
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

/** `addr:port` (IPv6 in brackets), the textual form used in logs and records. */
export function peerKey(p: Pick<Peer, 'address' | 'port' | 'family'>): string {
  return p.family === 'IPv6' ? `[${p.address}]:${p.port}` : `${p.address}:${p.port}`;
}
