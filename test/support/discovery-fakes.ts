/** In-memory stand-ins for the discovery tests: an mDNS endpoint that records what is sent. */
import type mdns from 'multicast-dns';
import type { Sleep } from '../../src/discovery/advertiser.ts';
import type { MdnsEndpoint, PacketListener, Source } from '../../src/discovery/mdns.ts';

/** A sent packet and where it went. */
export interface Sent {
  to: 'multicast' | Source;
  packet: mdns.Packet;
}

const decoded = (p: mdns.Packet): mdns.DecodedPacket => ({
  ...p,
  type: p.type ?? 'query',
  questions: p.questions ?? [],
  answers: p.answers ?? [],
  authorities: p.authorities ?? [],
  additionals: p.additionals ?? [],
});

/**
 * An {@link MdnsEndpoint} in memory. `network` (optional) plays the other hosts on the link: it is
 * called with every multicast packet and may answer through {@link inject}.
 */
export class FakeEndpoint implements MdnsEndpoint {
  readonly sent: Sent[] = [];
  network: ((p: mdns.Packet) => void) | undefined;
  private readonly queries = new Set<PacketListener>();
  private readonly responses = new Set<PacketListener>();
  closed = false;

  async multicast(packet: mdns.Packet): Promise<void> {
    this.sent.push({ to: 'multicast', packet });
    this.network?.(packet);
  }
  async unicast(packet: mdns.Packet, to: Source): Promise<void> {
    this.sent.push({ to, packet });
  }
  onQuery(l: PacketListener): () => void {
    this.queries.add(l);
    return () => this.queries.delete(l);
  }
  onResponse(l: PacketListener): () => void {
    this.responses.add(l);
    return () => this.responses.delete(l);
  }
  async close(): Promise<void> {
    this.closed = true;
  }
  /** Deliver a packet as if received from `from`. */
  inject(packet: mdns.Packet, from: Source = { address: '10.213.7.9', port: 5353 }): void {
    const d = decoded(packet);
    for (const l of d.type === 'response' ? this.responses : this.queries) l(d, from);
  }
  /** Multicast responses sent so far. */
  responsesSent(): mdns.Packet[] {
    return this.sent.filter((s) => s.to === 'multicast' && s.packet.type === 'response').map((s) => s.packet);
  }
  probesSent(): mdns.Packet[] {
    return this.sent.filter((s) => s.packet.type === 'query' && (s.packet.authorities ?? []).length > 0).map((s) => s.packet);
  }
}

/** A {@link Sleep} that does not wait: it yields one macrotask turn, or ends at once when aborted. */
export const noWait: Sleep = (_ms, signal) => new Promise<void>((r) => (signal.aborted ? r() : setImmediate(r)));

/** A manual clock (ms). */
export function manualClock(start = 1_800_000_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}
