/**
 * CoAP multicast discovery (docs/spec/idprov-coap-v1.md §7, RFC 7252 §8, RFC 6690 §4): the server listens on the
 * All-CoAP-Nodes groups 224.0.0.187 and ff02::fd at its CoAP port, so that
 * `GET /.well-known/core?rt=idprov*` sent to a group is answered with its links — and, because the
 * engine marks these requests `multicast`, a query that matches nothing gets no answer at all.
 *
 * Each group socket is a {@link DatagramTransport} of its own, attached to the same CoAP engine, and
 * replies from itself: a socket bound to a multicast address sends with a unicast source address
 * chosen by the kernel, and the CoAP port as source port (RFC 7252 §8.1).
 *
 * Linux delivers a group datagram also to every socket bound to the wildcard address on that port
 * (IP_MULTICAST_ALL, which Node cannot clear; see udp.ts). The engine would then see the request a
 * second time, unmarked, and answer it as unicast — a non-matching query would get an empty 2.05.
 * When the CoAP socket is bound to a wildcard, {@link shieldUnicastSocket} therefore gives it a
 * source-specific membership of each group with a source that never sends (0.0.0.0, 100::1): a
 * socket with its own membership is filtered by that membership's source list (INCLUDE one source),
 * so the kernel stops handing it the group's traffic on those interfaces. This needs the CoAP socket
 * bound with SO_REUSEADDR (the group sockets share its port).
 */
import dgram from 'node:dgram';
import { networkInterfaces } from 'node:os';
import type { Logger } from '../log.ts';
import type { DatagramTransport, Peer } from '../transport/datagram.ts';
import type { CoapServer } from '../transport/coap/engine.ts';
import type { UdpTransport } from '../transport/coap/udp.ts';
import { interfaceOf, isWildcard, selectInterfaces, type IfaceAddress, type SelectedInterface } from './interfaces.ts';

/** RFC 7252 §12.8: All CoAP Nodes. */
export const COAP_GROUP_V4 = '224.0.0.187';
export const COAP_GROUP_V6 = 'ff02::fd';
/** Sources that never send: a source-specific membership with one of them filters the group out. */
const NEVER_V4 = '0.0.0.0';
const NEVER_V6 = '100::1';

/** A socket bound to a CoAP group address, delivering datagrams marked `multicast`. */
class GroupTransport implements DatagramTransport {
  private cb: ((data: Buffer, peer: Peer) => void) | undefined;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly sock: dgram.Socket,
    readonly label: string,
    private readonly log: Logger,
  ) {
    sock.on('message', (msg, rinfo) => {
      const peer = { address: rinfo.address, port: rinfo.port, family: rinfo.family, multicast: true } as Peer;
      try {
        this.cb?.(msg, peer);
      } catch (err) {
        log.error({ err }, 'coap multicast: receive callback threw');
      }
    });
    sock.on('error', (err) => log.warn({ err: err.message, group: label }, 'coap multicast: socket error'));
  }

  onMessage(cb: (data: Buffer, peer: Peer) => void): void {
    this.cb = cb;
  }

  send(data: Buffer, peer: Peer): void {
    if (this.closing) return;
    this.sock.send(data, peer.port, peer.address, (err) => {
      if (err) this.log.debug({ err: err.message, group: this.label }, 'coap multicast: send failed');
    });
  }

  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      try {
        this.sock.close(() => resolve());
      } catch {
        resolve();
      }
    });
    return this.closing;
  }
}

async function bindGroup(type: 'udp4' | 'udp6', address: string, port: number): Promise<dgram.Socket> {
  const sock = dgram.createSocket({ type, reuseAddr: true });
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind({ port, address }, () => {
      sock.off('error', reject);
      resolve();
    });
  });
  return sock;
}

/** The plan: which groups on which interfaces, and whether the unicast socket needs the shield. */
export interface GroupPlan {
  v4: { iface: string; address: string }[];
  v6: { iface: string }[];
  shield: boolean;
}

/**
 * Which groups to join for a CoAP socket bound to `bind` (family `family`): a specific address →
 * that address's interface only, its family only; `0.0.0.0` → 224.0.0.187 on every selected
 * interface; `::` (dual-stack) → both groups on every selected interface.
 */
export function planGroups(bind: string, family: 'IPv4' | 'IPv6', selected: readonly SelectedInterface[], table: Readonly<Record<string, readonly IfaceAddress[] | undefined>>): GroupPlan {
  if (!isWildcard(bind)) {
    const own = interfaceOf(table, bind);
    if (!own) return { v4: [], v6: [], shield: false };
    return family === 'IPv4' ? { v4: [{ iface: own.name, address: bind }], v6: [], shield: false } : { v4: [], v6: [{ iface: own.name }], shield: false };
  }
  const v4 = selected.filter((i) => i.ipv4.length > 0).map((i) => ({ iface: i.name, address: i.ipv4[0]! }));
  const v6 = family === 'IPv6' ? selected.filter((i) => i.ipv6.length > 0).map((i) => ({ iface: i.name })) : [];
  return { v4, v6, shield: true };
}

/**
 * Keep group datagrams away from a wildcard-bound CoAP socket (see the file comment). Reaches into the
 * transport for its socket; returns false (and the caller warns) when that is not possible.
 */
export function shieldUnicastSocket(unicast: UdpTransport, plan: GroupPlan, log: Logger): boolean {
  const sock = (unicast as unknown as { sock?: unknown }).sock;
  if (!(sock instanceof dgram.Socket)) return false;
  let ok = true;
  for (const g of plan.v4) {
    try {
      sock.addSourceSpecificMembership(NEVER_V4, COAP_GROUP_V4, g.address);
    } catch (err) {
      ok = false;
      log.debug({ err: (err as Error).message, iface: g.iface }, 'coap multicast: cannot shield the unicast socket (IPv4)');
    }
  }
  for (const g of plan.v6) {
    try {
      sock.addSourceSpecificMembership(NEVER_V6, COAP_GROUP_V6, `::%${g.iface}`);
    } catch (err) {
      ok = false;
      log.debug({ err: (err as Error).message, iface: g.iface }, 'coap multicast: cannot shield the unicast socket (IPv6)');
    }
  }
  return ok;
}

/** Options of {@link startCoapMulticast}. */
export interface CoapMulticastOptions {
  coap: CoapServer;
  /** The server's CoAP socket (bound with `reuseAddr: true`). */
  unicast: UdpTransport;
  /** The configured bind address. */
  bind: string;
  /** Interface names/addresses (setting `discoveryInterfaces`); empty = all but loopback. */
  interfaces: readonly string[];
  log: Logger;
  /** Injectable for tests; `os.networkInterfaces` by default. */
  networkInterfaces?: () => Readonly<Record<string, readonly IfaceAddress[] | undefined>>;
}

/** Join the CoAP groups and attach them to the engine. Failures are logged; never throws. */
export async function startCoapMulticast(o: CoapMulticastOptions): Promise<{ groups: string[]; close(): Promise<void> }> {
  const table = (o.networkInterfaces ?? networkInterfaces)();
  const { selected, unknown } = selectInterfaces(table, o.interfaces);
  for (const u of unknown) o.log.warn({ iface: u }, 'coap multicast: no such interface');
  const addr = o.unicast.address();
  const family = addr.family === 'IPv6' ? 'IPv6' : 'IPv4';
  const plan = planGroups(isWildcard(o.bind) ? (family === 'IPv6' ? '::' : '0.0.0.0') : addr.address, family, selected, table);
  const transports: GroupTransport[] = [];
  const port = addr.port;
  if (plan.v4.length) {
    try {
      const sock = await bindGroup('udp4', COAP_GROUP_V4, port);
      const joined: string[] = [];
      for (const g of plan.v4) {
        try {
          sock.addMembership(COAP_GROUP_V4, g.address);
          joined.push(g.iface);
        } catch (err) {
          o.log.warn({ iface: g.iface, err: (err as Error).message }, `coap multicast: cannot join ${COAP_GROUP_V4}`);
        }
      }
      if (joined.length) transports.push(new GroupTransport(sock, `${COAP_GROUP_V4}:${port} (${joined.join(', ')})`, o.log));
      else sock.close();
    } catch (err) {
      o.log.warn({ err: (err as Error).message }, `coap multicast: cannot listen on ${COAP_GROUP_V4}:${port}`);
    }
  }
  for (const g of plan.v6) {
    try {
      const sock = await bindGroup('udp6', `${COAP_GROUP_V6}%${g.iface}`, port);
      try {
        sock.addMembership(COAP_GROUP_V6, `::%${g.iface}`);
        transports.push(new GroupTransport(sock, `[${COAP_GROUP_V6}%${g.iface}]:${port}`, o.log));
      } catch (err) {
        sock.close();
        throw err;
      }
    } catch (err) {
      o.log.warn({ iface: g.iface, err: (err as Error).message }, `coap multicast: cannot listen on ${COAP_GROUP_V6}`);
    }
  }
  if (plan.shield && transports.length && !shieldUnicastSocket(o.unicast, plan, o.log)) {
    o.log.warn('coap multicast: the CoAP socket is bound to a wildcard and could not be shielded from group traffic; a group query that matches nothing may get an empty answer (bind to a specific address to avoid this)');
  }
  for (const t of transports) o.coap.attach(t);
  const groups = transports.map((t) => t.label);
  if (groups.length) o.log.info({ evt: 'coap-multicast', groups }, 'coap: answering multicast discovery');
  return {
    groups,
    close: () => Promise.all(transports.map((t) => t.close())).then(() => undefined),
  };
}
