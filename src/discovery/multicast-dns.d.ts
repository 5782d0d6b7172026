/**
 * Local type declarations for multicast-dns 7.2.5 (no `@types/multicast-dns` is installed), covering
 * only what src/discovery and the device simulator use. Record shapes are dns-packet 5.x's.
 */
declare module 'multicast-dns' {
  import type { Socket, RemoteInfo } from 'node:dgram';
  import type { EventEmitter } from 'node:events';

  namespace mdns {
    /** dns-packet record types used here (others decode as their own strings). */
    type RecordType = 'A' | 'AAAA' | 'PTR' | 'SRV' | 'TXT' | 'ANY' | 'NSEC' | (string & {});

    interface SrvData {
      priority?: number;
      weight?: number;
      port: number;
      target: string;
    }

    /** A resource record as dns-packet encodes/decodes it. */
    interface Answer {
      name: string;
      type: RecordType;
      /** Defaults to 'IN'. Decoded records carry the class without the cache-flush bit. */
      class?: string;
      ttl?: number;
      /** The cache-flush bit (RFC 6762 §10.2). */
      flush?: boolean;
      /** A/AAAA: address string; PTR: name; SRV: {@link SrvData}; TXT: strings or Buffers. */
      data: unknown;
    }

    /**
     * A question. dns-packet 5.6 decodes the class to a string before looking for the QU bit, so a
     * question with the unicast-response bit decodes with class `UNKNOWN_32769` (see records.ts).
     */
    interface Question {
      name: string;
      type: RecordType;
      class?: string;
    }

    interface Packet {
      id?: number;
      type?: 'query' | 'response';
      flags?: number;
      questions?: Question[];
      answers?: Answer[];
      authorities?: Answer[];
      additionals?: Answer[];
    }

    /** A decoded packet always has the four sections. */
    interface DecodedPacket extends Packet {
      type: 'query' | 'response';
      questions: Question[];
      answers: Answer[];
      authorities: Answer[];
      additionals: Answer[];
    }

    interface Options {
      port?: number;
      type?: 'udp4' | 'udp6';
      ip?: string;
      host?: string;
      /** Interface address(es) for memberships and IP_MULTICAST_IF. */
      interface?: string | string[];
      /** Address to bind; docs/architecture.md "Multicast": pass '0.0.0.0'. */
      bind?: string | false;
      /** false: no memberships, TTL or loopback settings (the caller manages them). */
      multicast?: boolean;
      reuseAddr?: boolean;
      ttl?: number;
      loopback?: boolean;
      socket?: Socket;
    }

    interface Destination {
      address?: string;
      host?: string;
      port: number;
    }

    interface MulticastDns extends EventEmitter {
      send(packet: Packet, rinfo: Destination | null, cb?: (err?: Error | null) => void): void;
      respond(res: Packet | Answer[], rinfo?: Destination | null, cb?: (err?: Error | null) => void): void;
      query(q: Packet | Question[] | string, type?: string, rinfo?: Destination, cb?: (err?: Error | null) => void): void;
      destroy(cb?: () => void): void;
      update(): void;
      on(event: 'query' | 'response' | 'packet', listener: (packet: DecodedPacket, rinfo: RemoteInfo) => void): this;
      on(event: 'ready' | 'networkInterface', listener: () => void): this;
      on(event: 'error' | 'warning', listener: (err: Error) => void): this;
      once(event: 'ready', listener: () => void): this;
      once(event: 'error', listener: (err: Error) => void): this;
    }
  }

  function mdns(opts?: mdns.Options): mdns.MulticastDns;
  export = mdns;
}
