/**
 * Discovery (docs/architecture.md "discovery", docs/spec/idprov-coap-v1.md §7): the mDNS/DNS-SD advertiser, the rogue-server
 * monitor and CoAP multicast discovery, started together by the composition root with
 * {@link startDiscovery}. See docs/discovery.md.
 */
import { hostname as osHostname, networkInterfaces } from 'node:os';
import type { Logger } from '../log.ts';
import type { CoapServer } from '../transport/coap/engine.ts';
import type { UdpTransport } from '../transport/coap/udp.ts';
import { MdnsAdvertiser } from './advertiser.ts';
import { raiseRogueAlert, type AlertTarget } from './alert.ts';
import { startCoapMulticast } from './coap-multicast.ts';
import { selectInterfaces, type IfaceAddress } from './interfaces.ts';
import { openMdnsEndpoint, type MdnsEndpoint } from './mdns.ts';
import { RogueMonitor } from './rogue-monitor.ts';
import { isTrusted } from './rogue.ts';
import { defaultInstanceName, hostLabel, type TxtInput } from './records.ts';

/** Options of {@link startDiscovery}, from the configuration and the running server. */
export interface DiscoveryOptions {
  /** Setting `mdns`: advertise (and monitor) by mDNS at all. */
  mdns: boolean;
  /** Setting `rogueMonitor`: watch for other `_idprov._udp` servers (needs `mdns`). */
  rogueMonitor: boolean;
  /** Setting `coapMulticast`: answer CoAP multicast discovery. */
  coapMulticast: boolean;
  /** Setting `instanceName` ('' = `idprov-<hostname>`). */
  instanceName: string;
  /** Setting `discoveryInterfaces` (names or addresses; empty = all but loopback). */
  interfaces: readonly string[];
  /** Setting `trustedServers` (with a shared database: the live siblings too, updated in place). */
  trustedServers: readonly string[];
  /**
   * Re-reads who is trusted (the membership's heartbeat, with a shared database) before an alert is
   * raised: a sibling that started a moment ago may announce itself before this instance's next
   * heartbeat has seen it, and must not be taken for a rogue.
   */
  refreshTrusted?: () => Promise<boolean>;
  /** Setting `alertWebhook` ('' = none). */
  alertWebhook: string;
  coap: CoapServer;
  unicast: UdpTransport;
  /** Setting `bind`. */
  bind: string;
  /** The bound CoAP port (SRV). */
  coapPort: number;
  /** TXT `kid` (and `coaps`/`fp` once DTLS serves). */
  txt: TxtInput;
  /** The admin service (switch and event log). */
  admin: AlertTarget;
  log: Logger;
  /** Milliseconds since the epoch. */
  clock: () => number;
  /** Injectable for tests (`os.networkInterfaces`, `os.hostname`). */
  networkInterfaces?: () => Readonly<Record<string, readonly IfaceAddress[] | undefined>>;
  hostname?: string;
  /** Injectable for tests: an in-memory endpoint instead of UDP 5353. */
  endpoint?: MdnsEndpoint;
}

/** The running discovery components. */
export interface Discovery {
  /** The instance name in use (after any rename), when advertising. */
  readonly instanceName: string | undefined;
  readonly advertiser: MdnsAdvertiser | undefined;
  readonly monitor: RogueMonitor | undefined;
  /** Change TXT fields (the composition root calls this when the token key rotates). */
  setTxt(t: Partial<TxtInput>): void;
  /** Goodbyes, then close every socket. */
  close(): Promise<void>;
}

/**
 * Start discovery. The advertiser probes in the background (about a second) and logs
 * `mdns: announced` once its name is claimed; the monitor listens from the start. Failures to open
 * sockets are logged and leave the server running without that part.
 */
export async function startDiscovery(o: DiscoveryOptions): Promise<Discovery> {
  const log = o.log;
  const table = (o.networkInterfaces ?? networkInterfaces)();
  const closers: (() => Promise<void>)[] = [];
  let advertiser: MdnsAdvertiser | undefined;
  let monitor: RogueMonitor | undefined;

  if (o.coapMulticast) {
    const mc = await startCoapMulticast({ coap: o.coap, unicast: o.unicast, bind: o.bind, interfaces: o.interfaces, log: log.child({ c: 'coap-mc' }), networkInterfaces: () => table });
    closers.push(() => mc.close());
  }

  if (o.mdns) {
    const { selected, unknown } = selectInterfaces(table, o.interfaces);
    for (const u of unknown) log.warn({ iface: u }, 'mdns: no such interface');
    let endpoint = o.endpoint;
    if (!endpoint) {
      try {
        endpoint = await openMdnsEndpoint({ interfaceAddresses: selected.flatMap((i) => i.ipv4.slice(0, 1)), log: log.child({ c: 'mdns' }) });
      } catch (err) {
        log.error({ err: (err as Error).message }, 'mdns: cannot open UDP 5353; not advertising and not watching for rogue servers');
      }
    }
    if (endpoint) {
      const ep = endpoint;
      const host = o.hostname ?? osHostname();
      const adv = new MdnsAdvertiser({
        endpoint: ep,
        instance: o.instanceName || defaultInstanceName(host),
        host: `${hostLabel(host)}.local`,
        port: o.coapPort,
        txt: o.txt,
        ipv4: selected.flatMap((i) => i.ipv4),
        ipv6: selected.flatMap((i) => i.ipv6),
        log: log.child({ c: 'mdns' }),
        now: o.clock,
      });
      advertiser = adv;
      if (o.rogueMonitor) {
        const mon = new RogueMonitor({
          endpoint: ep,
          self: {
            get instance() {
              return adv.state === 'announced' ? adv.instanceName : undefined;
            },
            isOurs: (r) => adv.isOurs(r),
          },
          trusted: o.trustedServers,
          onRogue: async (r) => {
            if (o.refreshTrusted) {
              // The membership cannot be read (this instance is cut off from the database): it cannot
              // tell a sibling from a rogue, so it raises nothing now; the monitor sees the server again
              // at its next announcement. Meanwhile this instance answers 5.03, so a false alert (which
              // switches provisioning off for good) would cost more than a late one.
              if (!(await o.refreshTrusted())) {
                log.warn({ c: 'rogue', instance: r.instance }, 'mdns: another server, but the membership cannot be read now; not alerting yet');
                return;
              }
              if (isTrusted(r.instance, o.trustedServers)) {
                log.info({ c: 'rogue', instance: r.instance }, 'mdns: a new sibling instance, not a rogue');
                return;
              }
            }
            await raiseRogueAlert(r, { admin: o.admin, log: log.child({ c: 'rogue' }), webhook: o.alertWebhook, server: adv.instanceName, now: o.clock });
          },
          log: log.child({ c: 'rogue' }),
          now: o.clock,
        });
        monitor = mon;
        mon.start();
        closers.push(() => mon.close());
      }
      void adv.start().catch((err: unknown) => log.error({ err: (err as Error).message }, 'mdns: advertiser failed'));
      closers.unshift(() => adv.close());
      closers.push(() => ep.close());
    }
  }

  return {
    get instanceName() {
      return advertiser?.instanceName;
    },
    advertiser,
    monitor,
    setTxt(t) {
      void advertiser?.setTxt(t).catch((err: unknown) => log.warn({ err: (err as Error).message }, 'mdns: TXT update failed'));
    },
    async close() {
      for (const c of closers) await c().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'discovery: close failed'));
    },
  };
}
