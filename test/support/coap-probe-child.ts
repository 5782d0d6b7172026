/**
 * Run by netns.test.ts in the client namespace: CoAP multicast discovery against the server, without
 * any timing. argv: group (224.0.0.187 or ff02::fd%iface), the server's unicast address, and the
 * local interface (IPv4 address, or interface name for IPv6).
 *
 * Sends to the group, in order: a query that matches nothing (token 0xA1), then `rt=idprov*` (token
 * 0xB2), and waits for the answer to 0xB2; then a CoAP ping (Empty CON) to the server's unicast
 * address and waits for its RST. The server handles datagrams from one socket in order, and its
 * unicast socket handles the ping only after any copy of the group requests, so once the RST is in,
 * every answer the server was going to send to the group requests has arrived. Prints one JSON line.
 */
import dgram from 'node:dgram';
import { generate, parse } from 'coap-packet';

const [group, unicast, iface] = process.argv.slice(2) as [string, string, string];
const v6 = group.includes(':');
const sock = dgram.createSocket(v6 ? 'udp6' : 'udp4');
await new Promise<void>((r) => sock.bind(0, v6 ? '::' : '0.0.0.0', () => r()));
sock.setMulticastInterface(v6 ? `::%${iface}` : iface);
const inbox: { token: string; code: string; type: string; from: string; payload: string; mid: number }[] = [];
const waiters: (() => void)[] = [];
sock.on('message', (d, rinfo) => {
  const p = parse(d);
  inbox.push({ token: p.token.toString('hex'), code: p.code, type: p.reset ? 'RST' : p.ack ? 'ACK' : p.confirmable ? 'CON' : 'NON', from: `${rinfo.address}:${rinfo.port}`, payload: p.payload.toString(), mid: p.messageId });
  waiters.splice(0).forEach((f) => f());
});
const until = async (pred: () => boolean) => {
  while (!pred()) await new Promise<void>((r) => waiters.push(r));
};
const wellKnown = (q: string) => [
  { name: 'Uri-Path' as const, value: Buffer.from('.well-known') },
  { name: 'Uri-Path' as const, value: Buffer.from('core') },
  { name: 'Uri-Query' as const, value: Buffer.from(q) },
];
let mid = 0x4000 + Math.floor(Math.random() * 0x1000);
const send = (host: string, packet: Parameters<typeof generate>[0]) => {
  const m = mid++;
  sock.send(generate({ messageId: m, ...packet }), 5683, host);
  return m;
};
send(group, { code: 'GET', confirmable: false, token: Buffer.from([0xa1]), options: wellKnown('rt=nothing-here') });
send(group, { code: 'GET', confirmable: false, token: Buffer.from([0xb2]), options: wellKnown('rt=idprov*') });
await until(() => inbox.some((m) => m.token === 'b2'));
const ping = send(unicast, { code: '0.00', confirmable: true });
await until(() => inbox.some((m) => m.type === 'RST' && m.mid === ping));
console.log(JSON.stringify({ inbox }));
sock.close();
