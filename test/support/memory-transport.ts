/**
 * In-memory {@link DatagramTransport}s for tests: a connected pair whose datagrams are delivered
 * asynchronously (one macrotask later, like a network), with hooks to lose or duplicate datagrams
 * and to inject datagrams from arbitrary peers.
 */
import type { DatagramTransport, Peer } from '../../src/transport/datagram.ts';

/** Decides the fate of one datagram travelling `from` → `to`. */
export type LinkHook = (data: Buffer, from: Peer, to: Peer) => boolean;

/** Per-direction fault injection. */
export interface LinkFaults {
  /** Return true to lose the datagram. */
  drop?: LinkHook;
  /** Return true to deliver the datagram twice. */
  duplicate?: LinkHook;
}

/** Options of {@link createMemoryPair}. */
export interface MemoryPairOptions {
  /** Address of the first transport (default 127.0.0.1:40001). */
  a?: Peer;
  /** Address of the second transport (default 127.0.0.1:40002). */
  b?: Peer;
  /** Faults applied in both directions (each transport's {@link MemoryTransport.faults} can differ). */
  faults?: LinkFaults;
}

/** One end of an in-memory link. */
export class MemoryTransport implements DatagramTransport {
  /** Faults applied to datagrams this end sends. Mutable at any time. */
  faults: LinkFaults;
  /** Called with every datagram this end sends (after faults), including unroutable ones. */
  onSend: ((data: Buffer, to: Peer) => void) | undefined;
  /** Datagrams sent to peers other than the other end (they go nowhere). */
  unroutable = 0;
  /** Datagrams sent by this end (before faults). */
  sent = 0;
  private cb: ((data: Buffer, peer: Peer) => void) | undefined;
  private other: MemoryTransport | undefined;
  private closed = false;

  constructor(
    /** This end's address, as the other end sees it. */
    readonly peer: Peer,
    faults: LinkFaults = {},
  ) {
    this.faults = { ...faults };
  }

  /** @internal */
  connect(other: MemoryTransport): void {
    this.other = other;
  }

  onMessage(cb: (data: Buffer, peer: Peer) => void): void {
    this.cb = cb;
  }

  /** Deliver `data` to this end's receiver as if it came from `from` (asynchronously). */
  inject(data: Buffer, from: Peer): void {
    setImmediate(() => this.receive(data, { ...from }));
  }

  /** Deliver `data` to this end's receiver as if it came from `from`, now (synchronously). */
  injectSync(data: Buffer, from: Peer): void {
    this.receive(data, from);
  }

  private receive(data: Buffer, from: Peer): void {
    if (!this.closed && this.cb !== undefined) this.cb(data, from);
  }

  send(data: Buffer, to: Peer): void {
    if (this.closed) return;
    this.sent++;
    const other = this.other;
    if (other === undefined || to.address !== other.peer.address || to.port !== other.peer.port) {
      this.unroutable++;
      this.onSend?.(data, to);
      return;
    }
    const { drop, duplicate } = this.faults;
    if (drop?.(data, this.peer, to) === true) return;
    this.onSend?.(data, to);
    const copies = duplicate?.(data, this.peer, to) === true ? 2 : 1;
    // Copy: the sender may reuse its buffer, and the receiver must not see later changes.
    const bytes = Buffer.from(data);
    for (let i = 0; i < copies; i++) other.inject(bytes, this.peer);
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}

/** Two connected in-memory transports. */
export function createMemoryPair(opts: MemoryPairOptions = {}): [MemoryTransport, MemoryTransport] {
  const a = new MemoryTransport(opts.a ?? { address: '127.0.0.1', port: 40001, family: 'IPv4' }, opts.faults);
  const b = new MemoryTransport(opts.b ?? { address: '127.0.0.1', port: 40002, family: 'IPv4' }, opts.faults);
  a.connect(b);
  b.connect(a);
  return [a, b];
}
