/**
 * The mDNS socket (multicast-dns on UDP 5353) behind a narrow seam, {@link MdnsEndpoint}, that the
 * advertiser and the rogue monitor share; tests use an in-memory endpoint instead.
 *
 * One IPv4 socket bound to `0.0.0.0:5353` (docs/architecture.md "Multicast": multicast-dns must be given `bind: '0.0.0.0'`)
 * joins 224.0.0.251 on every selected interface. Multicast packets are sent once per interface
 * (IP_MULTICAST_IF set before each, sends serialised so that the setting cannot race), TTL 255
 * (RFC 6762 §11), with loopback on so that other mDNS stacks on the same host see them. AAAA records
 * are published over this IPv4 transport; mDNS over IPv6 (ff02::fb) is not used.
 */
import dgram from 'node:dgram';
import makeMdns from 'multicast-dns';
import type mdns from 'multicast-dns';
import type { Logger } from '../log.ts';
import { MDNS_GROUP_V4, MDNS_PORT } from './records.ts';

/** Where a packet came from. */
export interface Source {
  address: string;
  port: number;
}

export type PacketListener = (packet: mdns.DecodedPacket, from: Source) => void;

/** What the advertiser and the monitor need from an mDNS socket. */
export interface MdnsEndpoint {
  /** Send to 224.0.0.251:5353 on every interface; resolves when sent. */
  multicast(packet: mdns.Packet): Promise<void>;
  /** Send to one address (QU and legacy unicast replies). */
  unicast(packet: mdns.Packet, to: Source): Promise<void>;
  /** Listen to queries; returns a function that stops listening. */
  onQuery(l: PacketListener): () => void;
  /** Listen to responses; returns a function that stops listening. */
  onResponse(l: PacketListener): () => void;
  close(): Promise<void>;
}

/** Options of {@link openMdnsEndpoint}. */
export interface MdnsEndpointOptions {
  /** IPv4 addresses of the interfaces to use; empty: the kernel's default interface. */
  interfaceAddresses: readonly string[];
  log: Logger;
  /** UDP port (5353; tests in a namespace may use it as is). */
  port?: number;
}

/** Open the mDNS socket and join the group on each interface. Rejects when 5353 cannot be bound. */
export async function openMdnsEndpoint(o: MdnsEndpointOptions): Promise<MdnsEndpoint> {
  const log = o.log;
  const port = o.port ?? MDNS_PORT;
  const socket = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  const m = makeMdns({ socket, bind: '0.0.0.0', port, multicast: false });
  await new Promise<void>((resolve, reject) => {
    m.once('ready', resolve);
    m.once('error', reject);
  });
  m.on('error', (err) => log.warn({ err: err.message }, 'mdns: socket error'));
  m.on('warning', (err) => log.debug({ err: err.message }, 'mdns: undecodable packet or socket warning'));
  socket.setMulticastTTL(255);
  socket.setMulticastLoopback(true);
  const ifaces = [...o.interfaceAddresses];
  const joined: string[] = [];
  for (const addr of ifaces) {
    try {
      socket.addMembership(MDNS_GROUP_V4, addr);
      joined.push(addr);
    } catch (err) {
      log.warn({ iface: addr, err: (err as Error).message }, 'mdns: cannot join 224.0.0.251 on this interface');
    }
  }
  if (ifaces.length === 0) {
    try {
      socket.addMembership(MDNS_GROUP_V4);
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'mdns: cannot join 224.0.0.251');
    }
  }
  const queryListeners = new Set<PacketListener>();
  const responseListeners = new Set<PacketListener>();
  const deliver = (set: Set<PacketListener>, p: mdns.DecodedPacket, r: dgram.RemoteInfo) => {
    for (const l of set) {
      try {
        l(p, { address: r.address, port: r.port });
      } catch (err) {
        log.error({ err }, 'mdns: listener threw');
      }
    }
  };
  m.on('query', (p, r) => deliver(queryListeners, p, r));
  m.on('response', (p, r) => deliver(responseListeners, p, r));

  let closed = false;
  let queue: Promise<void> = Promise.resolve();
  const sendTo = (packet: mdns.Packet, to: Source) =>
    new Promise<void>((resolve) => {
      if (closed) return resolve();
      m.send(packet, { address: to.address, port: to.port }, (err) => {
        if (err) log.debug({ err: err.message, to: `${to.address}:${to.port}` }, 'mdns: send failed');
        resolve();
      });
    });
  const serial = (job: () => Promise<void>): Promise<void> => {
    const run = queue.then(job, job);
    queue = run.catch(() => undefined);
    return run;
  };
  return {
    multicast(packet) {
      return serial(async () => {
        const group = { address: MDNS_GROUP_V4, port };
        if (joined.length === 0) return sendTo(packet, group);
        for (const addr of joined) {
          if (closed) return;
          try {
            socket.setMulticastInterface(addr);
          } catch (err) {
            log.debug({ iface: addr, err: (err as Error).message }, 'mdns: cannot select interface');
            continue;
          }
          await sendTo(packet, group);
        }
      });
    },
    unicast(packet, to) {
      return serial(() => sendTo(packet, to));
    },
    onQuery(l) {
      queryListeners.add(l);
      return () => queryListeners.delete(l);
    },
    onResponse(l) {
      responseListeners.add(l);
      return () => responseListeners.delete(l);
    },
    async close() {
      await queue;
      closed = true;
      queryListeners.clear();
      responseListeners.clear();
      await new Promise<void>((resolve) => m.destroy(() => resolve()));
    },
  };
}
