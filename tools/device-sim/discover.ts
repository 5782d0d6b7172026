/**
 * `device-sim discover`: find the provisioning server with no configuration (docs/spec/idprov-coap-v1.md §7), as a
 * device would at first boot:
 *
 * 1. mDNS/DNS-SD: query `_idprov._udp.local` PTR on 224.0.0.251:5353 (RFC 6763 §4), collect the
 *    instance's SRV (host, CoAP port), TXT (`v`, `path`, `coaps`, `kid`, `fp`) and A/AAAA records,
 *    asking for the SRV/TXT/A that did not come as additional records (§12).
 * 2. Fallback, when mDNS finds nothing: CoAP multicast discovery, a NON
 *    `GET /.well-known/core?rt=idprov*` to 224.0.0.187:5683 (RFC 7252 §8, RFC 6690 §4); the server
 *    answers from its unicast address. No TXT this way, so no `kid`/`fp`.
 * 3. Compare `kid`/`fp` with the state file (discover-state.ts) and warn when they changed.
 *
 * On an ESP32 the same steps are `mdns_query_ptr("_idprov", "_udp", …)` (ESP-IDF mdns component) and a
 * libcoap multicast GET.
 */
import dgram from 'node:dgram';
import { generate, parse } from 'coap-packet';
import type { Command } from 'commander';
import makeMdns from 'multicast-dns';
import type mdns from 'multicast-dns';
import { DeviceSimError } from './errors.ts';
import { compareWithState, readState, writeState, type DiscoveredServer } from './discover-state.ts';

const SERVICE = '_idprov._udp.local';
const COAP_GROUP_V4 = '224.0.0.187';

/** Options of the discovery functions. */
export interface DiscoverOptions {
  /** How long to listen (ms). Without `all`, the first complete answer ends the search early. */
  timeoutMs: number;
  /** Collect every server until the timeout instead of stopping at the first. */
  all?: boolean;
  /** IPv4 address of the interface to use (IP_MULTICAST_IF); the kernel's choice when omitted. */
  iface?: string;
  /** Trace on stderr. */
  log?: (line: string) => void;
}

const lc = (s: string) => s.replace(/\.$/, '').toLowerCase();

function txtOf(data: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of Array.isArray(data) ? data : [data]) {
    const s = Buffer.isBuffer(item) ? item.toString('utf8') : typeof item === 'string' ? item : '';
    const eq = s.indexOf('=');
    if (s === '' || eq === 0) continue;
    const k = (eq < 0 ? s : s.slice(0, eq)).toLowerCase();
    if (!(k in out)) out[k] = eq < 0 ? '' : s.slice(eq + 1);
  }
  return out;
}

function uriOf(address: string, port: number): string {
  return `coap://${address.includes(':') ? `[${address}]` : address}:${port}`;
}

/** Find servers by mDNS/DNS-SD. */
export async function discoverMdns(o: DiscoverOptions): Promise<DiscoveredServer[]> {
  const socket = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  const m = makeMdns({ socket, bind: '0.0.0.0', ...(o.iface ? { interface: o.iface } : {}) });
  m.on('warning', (e) => o.log?.(`mdns warning: ${e.message}`));
  await new Promise<void>((resolve, reject) => {
    m.once('ready', resolve);
    m.once('error', (e) => reject(new DeviceSimError('transport', `mDNS: ${e.message}`)));
  });
  const instances = new Set<string>();
  const srv = new Map<string, mdns.SrvData>();
  const txt = new Map<string, Record<string, string>>();
  const addrs = new Map<string, string[]>();
  const sourceOf = new Map<string, string>();
  const asked = new Set<string>();
  const found = new Map<string, DiscoveredServer>();
  let finish: () => void = () => undefined;
  const done = new Promise<void>((r) => (finish = r));

  const ask = (name: string, type: string) => {
    const k = `${type} ${lc(name)}`;
    if (asked.has(k)) return;
    asked.add(k);
    o.log?.(`→ mDNS query ${type} ${name}`);
    m.query([{ name, type }]);
  };

  m.on('response', (p, rinfo) => {
    const records = [...p.answers, ...p.additionals];
    for (const r of records) {
      if ((r.ttl ?? 0) === 0) continue;
      if (r.type === 'PTR' && lc(r.name) === SERVICE) instances.add(String(r.data));
      else if (r.type === 'SRV' && lc(r.name).endsWith(`.${SERVICE}`)) {
        srv.set(lc(r.name), r.data as mdns.SrvData);
        sourceOf.set(lc(r.name), rinfo.address);
        instances.add(r.name);
      } else if (r.type === 'TXT' && lc(r.name).endsWith(`.${SERVICE}`)) txt.set(lc(r.name), txtOf(r.data));
      else if (r.type === 'A' || r.type === 'AAAA') {
        const list = addrs.get(lc(r.name)) ?? [];
        const a = String(r.data);
        if (!list.includes(a)) (r.type === 'A' ? list.unshift(a) : list.push(a));
        addrs.set(lc(r.name), list);
      }
    }
    o.log?.(`← mDNS response from ${rinfo.address} (${records.length} records)`);
    for (const fqdn of instances) {
      const key = lc(fqdn);
      const s = srv.get(key);
      const t = txt.get(key);
      if (!s) ask(fqdn, 'SRV');
      if (!t) ask(fqdn, 'TXT');
      if (!s || !t) continue;
      const hostAddrs = addrs.get(lc(s.target)) ?? [];
      if (hostAddrs.length === 0) ask(s.target, 'A');
      // The A record usually comes along; the SRV's packet source is the fallback.
      const address = hostAddrs.find((a) => !a.includes(':')) ?? hostAddrs[0] ?? sourceOf.get(key)!;
      const instance = fqdn.replace(/\.$/, '').slice(0, -(SERVICE.length + 1));
      const d: DiscoveredServer = { via: 'mdns', instance, host: s.target, address, port: s.port, uri: uriOf(address, s.port), txt: t };
      if (t['kid'] !== undefined) d.kid = t['kid'];
      if (t['fp'] !== undefined) d.fp = t['fp'];
      if (t['coaps'] !== undefined && /^\d+$/.test(t['coaps'])) d.coaps = Number(t['coaps']);
      found.set(key, d);
      if (!o.all) finish();
    }
  });

  o.log?.(`→ mDNS query PTR ${SERVICE}${o.iface ? ` on ${o.iface}` : ''}`);
  m.query([{ name: SERVICE, type: 'PTR' }]);
  // RFC 6762 §5.2: repeat the question after 1 s and 2 s (then wait for the timeout).
  const retries = [1000, 3000].map((ms) => setTimeout(() => found.size === 0 && m.query([{ name: SERVICE, type: 'PTR' }]), ms));
  const timer = setTimeout(finish, o.timeoutMs);
  await done;
  clearTimeout(timer);
  retries.forEach(clearTimeout);
  await new Promise<void>((r) => m.destroy(() => r()));
  return [...found.values()];
}

/** Find servers by CoAP multicast discovery (`rt=idprov*` on 224.0.0.187). */
export async function discoverCoap(o: DiscoverOptions & { port?: number }): Promise<DiscoveredServer[]> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    sock.once('error', (e) => reject(new DeviceSimError('transport', `CoAP multicast: ${e.message}`)));
    sock.bind(0, () => resolve());
  });
  if (o.iface) sock.setMulticastInterface(o.iface);
  const port = o.port ?? 5683;
  const token = Buffer.from([0x1d, 0x5c, Math.floor(Math.random() * 256), Math.floor(Math.random() * 256)]);
  const found = new Map<string, DiscoveredServer>();
  let finish: () => void = () => undefined;
  const done = new Promise<void>((r) => (finish = r));
  sock.on('message', (msg, rinfo) => {
    let p;
    try {
      p = parse(msg);
    } catch {
      return;
    }
    if (!p.token.equals(token) || p.code !== '2.05') return;
    const links = p.payload.toString('utf8');
    o.log?.(`← CoAP ${p.code} from ${rinfo.address}:${rinfo.port}: ${links}`);
    if (!links.includes('idprov.request')) return;
    found.set(`${rinfo.address}:${rinfo.port}`, { via: 'coap', address: rinfo.address, port: rinfo.port, uri: uriOf(rinfo.address, rinfo.port) });
    if (!o.all) finish();
  });
  const packet = generate({
    messageId: Math.floor(Math.random() * 0x10000),
    token,
    code: 'GET',
    confirmable: false,
    options: [
      { name: 'Uri-Path', value: Buffer.from('.well-known') },
      { name: 'Uri-Path', value: Buffer.from('core') },
      { name: 'Uri-Query', value: Buffer.from('rt=idprov*') },
    ],
  });
  o.log?.(`→ CoAP NON GET ${COAP_GROUP_V4}:${port}/.well-known/core?rt=idprov*`);
  sock.send(packet, port, COAP_GROUP_V4, (err) => {
    if (err) o.log?.(`CoAP multicast send failed: ${err.message}`);
  });
  const timer = setTimeout(finish, o.timeoutMs);
  await done;
  clearTimeout(timer);
  sock.close();
  return [...found.values()];
}

interface DiscoverFlags {
  timeout: number;
  all?: boolean;
  iface?: string;
  mdns: boolean;
  coap: boolean;
  coapPort: number;
  state: string;
  json?: boolean;
  verbose?: boolean;
}

/** Register `discover` on the device-sim program. */
export function registerDiscover(program: Command, h: { out: (l: string) => void; err: (l: string) => void; fail: (e: unknown, f: { json?: boolean }) => void; positiveInt: (v: string) => number }): void {
  program
    .command('discover')
    .description('find the server by mDNS (_idprov._udp), else by CoAP multicast; remember kid/fp and warn when they change')
    .option('--timeout <ms>', 'how long to listen', h.positiveInt, 3000)
    .option('--all', 'list every server found within the timeout (default: stop at the first)')
    .option('--interface <ipv4>', 'IPv4 address of the interface to discover on')
    .option('--no-mdns', 'skip mDNS (CoAP multicast only)')
    .option('--no-coap', 'skip the CoAP multicast fallback')
    .option('--coap-port <n>', 'port for CoAP multicast discovery', h.positiveInt, 5683)
    .option('--state <file>', 'where kid/fp are remembered', 'device-sim-discovery.json')
    .option('--json', 'one JSON object per server')
    .option('-v, --verbose', 'trace the queries on stderr')
    .action(async (f: DiscoverFlags & { interface?: string }) => {
      try {
        const opts: DiscoverOptions = { timeoutMs: f.timeout, all: f.all ?? false, ...(f.interface ? { iface: f.interface } : {}), ...(f.verbose ? { log: h.err } : {}) };
        let servers: DiscoveredServer[] = [];
        if (f.mdns) servers = await discoverMdns(opts);
        if (servers.length === 0 && f.coap) servers = await discoverCoap({ ...opts, port: f.coapPort });
        if (servers.length === 0) {
          throw new DeviceSimError('timeout', `no idprov server found${f.mdns ? ' by mDNS' : ''}${f.mdns && f.coap ? ' or' : ''}${f.coap ? ' by CoAP multicast' : ''} within ${f.timeout} ms`);
        }
        let state = readState(f.state);
        for (const s of servers) {
          const { warnings, next } = compareWithState(state, s, new Date().toISOString());
          state = next;
          for (const w of warnings) h.err(`warning: ${w}`);
          if (f.json) h.out(JSON.stringify({ ...s, warnings }));
          else {
            const name = s.instance !== undefined ? `"${s.instance}" (${s.host})` : 'CoAP multicast';
            h.out(`server  ${s.uri}  via ${s.via}: ${name}`);
            if (s.txt) h.out(`txt     ${Object.entries(s.txt).map(([k, v]) => `${k}=${v}`).join(' ')}`);
          }
        }
        writeState(f.state, state);
        process.exitCode = 0;
      } catch (e) {
        h.fail(e, f);
      }
    });
}
