/**
 * {@link DatagramTransport} over `node:dgram` (CoAP over UDP, RFC 7252 §3).
 *
 * One unicast socket per transport; {@link UdpTransport.joinMulticast} adds a socket bound to a group
 * address whose datagrams are delivered with `peer.multicast = true`. Every reply, including replies
 * to group requests, leaves from the unicast socket, so it carries a unicast source address
 * (RFC 7252 §8.1).
 *
 * Linux caveat for multicast: a socket bound to a wildcard address (`0.0.0.0`, `::`) also receives
 * datagrams sent to groups that another socket on the host joined (IP_MULTICAST_ALL, which Node
 * cannot clear). When serving multicast on the unicast port, bind the unicast socket to a specific
 * address; otherwise a group request may also arrive on the unicast socket unmarked, and the engine's
 * deduplication (same peer and Message ID) keeps only the first copy.
 */
import dgram from 'node:dgram';
import dns from 'node:dns';
import { isIP, isIPv6 } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { DatagramTransport, Peer } from '../datagram.ts';
import { silentLogger, type Logger } from '../../log.ts';

/** Options of {@link UdpTransport.bind}. */
export interface UdpBindOptions {
  /** Local address, e.g. `0.0.0.0`, `::` (dual-stack), `127.0.0.1`, `::1`. */
  address: string;
  /** Local port; 0 picks a free one (see {@link UdpTransport.address}). */
  port: number;
  /** Socket family; inferred from `address` when omitted. */
  family?: 'IPv4' | 'IPv6';
  /** For `::`: refuse IPv4-mapped traffic (default false, i.e. dual-stack). */
  ipv6Only?: boolean;
  /** Allow other sockets to bind the same port (needed with {@link UdpTransport.joinMulticast}). */
  reuseAddr?: boolean;
  /** Kernel receive/send buffer sizes in bytes (best effort; default 4 MiB / 1 MiB). */
  recvBufferSize?: number;
  sendBufferSize?: number;
  log?: Logger;
}

type MessageCallback = (data: Buffer, peer: Peer) => void;

/**
 * Resolve IP literals synchronously. `dgram` resolves every destination through `dns.lookup`, which
 * defers even an IP literal by a tick; peers are always literals (they come from `rinfo`), and
 * skipping that round trip cut the CPU cost of a send by about a quarter on this machine.
 */
function literalLookup(
  address: string,
  family: unknown,
  cb: (err: NodeJS.ErrnoException | null, address: string, family: number) => void,
): void {
  const v = isIP(address);
  if (v !== 0) cb(null, address, v);
  else dns.lookup(address, family as number, cb);
}

function bindSocket(sock: dgram.Socket, port: number, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    sock.once('error', onError);
    sock.bind({ port, address, exclusive: true }, () => {
      sock.off('error', onError);
      resolve();
    });
  });
}

/** A UDP socket (plus optional multicast group sockets) as a {@link DatagramTransport}. */
export class UdpTransport implements DatagramTransport {
  private cb: MessageCallback | undefined;
  private readonly groups: dgram.Socket[] = [];
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly sock: dgram.Socket,
    private readonly type: 'udp4' | 'udp6',
    private readonly reuseAddr: boolean,
    private readonly log: Logger,
  ) {
    sock.on('message', (msg: Buffer, rinfo: dgram.RemoteInfo) => this.deliver(msg, rinfo as Peer));
    sock.on('error', (err) => this.log.warn({ err: err.message }, 'udp: socket error'));
  }

  /** Bind a socket. Rejects when the address/port cannot be bound. */
  static async bind(opts: UdpBindOptions): Promise<UdpTransport> {
    const family = opts.family ?? (isIPv6(opts.address) ? 'IPv6' : 'IPv4');
    const type = family === 'IPv6' ? 'udp6' : 'udp4';
    const sock = dgram.createSocket({
      type,
      reuseAddr: opts.reuseAddr === true,
      ipv6Only: opts.ipv6Only === true,
      lookup: literalLookup as unknown as dgram.SocketOptions['lookup'],
    });
    await bindSocket(sock, opts.port, opts.address);
    const log = opts.log ?? silentLogger;
    try {
      sock.setRecvBufferSize(opts.recvBufferSize ?? 4 << 20);
      sock.setSendBufferSize(opts.sendBufferSize ?? 1 << 20);
    } catch (err) {
      log.debug({ err: (err as Error).message }, 'udp: could not size socket buffers');
    }
    return new UdpTransport(sock, type, opts.reuseAddr === true, log);
  }

  /** The bound address and port. */
  address(): AddressInfo {
    return this.sock.address();
  }

  /**
   * Receive datagrams sent to `group` on this transport's port, marked `peer.multicast = true`.
   * Binds a second socket to the group address (so needs `reuseAddr: true` on {@link bind}) and joins
   * the group on `iface` (a local interface address; the kernel's choice when omitted).
   */
  async joinMulticast(group: string, iface?: string): Promise<void> {
    const sock = dgram.createSocket({ type: this.type, reuseAddr: true });
    try {
      await new Promise<void>((resolve, reject) => {
        const onError = (err: Error): void => reject(err);
        sock.once('error', onError);
        sock.bind({ port: this.address().port, address: group }, () => {
          sock.off('error', onError);
          resolve();
        });
      });
      sock.addMembership(group, iface);
    } catch (err) {
      sock.close();
      const hint = this.reuseAddr ? '' : ' (bind the transport with reuseAddr: true)';
      throw new Error(`cannot join ${group}: ${(err as Error).message}${hint}`, { cause: err });
    }
    sock.on('message', (msg: Buffer, rinfo: dgram.RemoteInfo) => {
      const peer = rinfo as Peer;
      peer.multicast = true;
      this.deliver(msg, peer);
    });
    sock.on('error', (err) => this.log.warn({ err: err.message, group }, 'udp: multicast socket error'));
    this.groups.push(sock);
  }

  onMessage(cb: MessageCallback): void {
    this.cb = cb;
  }

  private deliver(msg: Buffer, peer: Peer): void {
    const cb = this.cb;
    if (cb === undefined) return;
    try {
      cb(msg, peer);
    } catch (err) {
      this.log.error({ err }, 'udp: receive callback threw');
    }
  }

  private readonly onSent = (err: Error | null): void => {
    if (err) this.log.warn({ err: err.message }, 'udp: send failed');
  };
  private sends = 0;

  /**
   * Send one datagram; errors are logged, never thrown. Only every 64th send asks for completion:
   * with a callback `dgram` keeps a send request and schedules the callback on the next tick for
   * every datagram: the bare engine spent 8% less CPU per request without it (issue 17,
   * tools/bench/ab/ab-engine.sh, median of 11 interleaved rounds); without one, `dgram` drops a
   * failed send silently. A persistent failure (no route, a datagram over
   * the path's limit) still reaches the log; a one-off one mostly does not, as with any lost datagram.
   */
  send(data: Buffer, peer: Peer): void {
    if (this.closing !== undefined) return;
    try {
      this.sock.send(data, peer.port, peer.address, (this.sends = (this.sends + 1) & 63) === 0 ? this.onSent : undefined);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'udp: send failed');
    }
  }

  /** Close the unicast and group sockets. */
  close(): Promise<void> {
    this.closing ??= Promise.all(
      [this.sock, ...this.groups].map(
        (s) =>
          new Promise<void>((resolve) => {
            try {
              s.close(() => resolve());
            } catch {
              resolve();
            }
          }),
      ),
    ).then(() => undefined);
    return this.closing;
  }
}
