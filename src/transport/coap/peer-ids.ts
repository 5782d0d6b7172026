/**
 * The keys of an endpoint's peers in the engine's tables (deduplication, block cache, separate
 * responses), kept once per address and port instead of built per datagram.
 *
 * A key built per datagram is a new string each time (`tag` + `addr:port`), which every table
 * lookup must then flatten, hash and compare character by character with the stored key. The kept
 * key is one string per peer whose hash is computed once, and a lookup with it compares by
 * identity; finding it costs a lookup by the address string (short and flat, as the socket
 * delivers it) and one by the port number.
 *
 * Bounded: at {@link MAX_PEER_IDS} peers the table is forgotten and refilled, so a flood from
 * forged addresses costs one key per datagram, as before, and no more memory.
 */
import { peerKey, type Peer } from '../datagram.ts';

/** Peers an endpoint keeps keys for before it starts over. */
export const MAX_PEER_IDS = 4096;

export class PeerIds {
  private readonly v4 = new Map<string, Map<number, string>>();
  private readonly v6 = new Map<string, Map<number, string>>();
  private count = 0;

  /** @param tag the endpoint's tag, which starts every key (two transports never share a key). */
  constructor(readonly tag: string) {}

  /** Number of keys kept (never more than {@link MAX_PEER_IDS}). */
  get size(): number {
    return this.count;
  }

  /** The peer's key: its session when it has one, else its address. */
  of(peer: Peer): string {
    if (peer.sessionKey !== undefined) return this.tag + '~' + peer.sessionKey;
    const byAddress = peer.family === 'IPv6' ? this.v6 : this.v4;
    let byPort = byAddress.get(peer.address);
    if (byPort !== undefined) {
      const id = byPort.get(peer.port);
      if (id !== undefined) return id;
    }
    const id = this.tag + peerKey(peer);
    if (this.count >= MAX_PEER_IDS) {
      this.v4.clear();
      this.v6.clear();
      this.count = 0;
      byPort = undefined;
    }
    if (byPort === undefined) {
      byPort = new Map();
      byAddress.set(peer.address, byPort);
    }
    byPort.set(peer.port, id);
    this.count++;
    return id;
  }
}
