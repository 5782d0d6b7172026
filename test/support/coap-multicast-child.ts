/**
 * Run by udp.test.ts inside a private network namespace (`unshare -n`) whose `lo` has MULTICAST on
 * and a route for 224.0.0.0/4: serves CoAP on 127.0.0.1 plus the All-CoAP-Nodes group 224.0.1.187
 * and sends group requests to itself. Prints one JSON line of observations.
 */
import { CoapCode } from '../../src/protocol/coap-codes.ts';
import dgram from 'node:dgram';
import { generate, parse } from 'coap-packet';
import { CoapServer } from '../../src/transport/coap/engine.ts';
import { UdpTransport } from '../../src/transport/coap/udp.ts';
import { silentLogger } from '../../src/log.ts';

const GROUP = '224.0.1.187';
const server = new CoapServer({ log: silentLogger });
const seenMulticast: boolean[] = [];
server.addResource({ path: '/hello', rt: 'demo', ct: 0, methods: { GET: (req) => (seenMulticast.push(req.peer.multicast === true), { code: CoapCode.Content, payload: Buffer.from('hi') }) } });
const udp = await UdpTransport.bind({ address: '127.0.0.1', port: 0, reuseAddr: true });
await udp.joinMulticast(GROUP, '127.0.0.1');
server.attach(udp);
const port = udp.address().port;

const client = dgram.createSocket('udp4');
await new Promise<void>((r) => client.bind(0, '127.0.0.1', () => r()));
client.setMulticastInterface('127.0.0.1');
const inbox: { code: string; type: string; from: string; payload: string; mid: number }[] = [];
const waiters: (() => void)[] = [];
client.on('message', (d, rinfo) => {
  const p = parse(d);
  inbox.push({
    code: p.code,
    type: p.reset ? 'RST' : p.ack ? 'ACK' : p.confirmable ? 'CON' : 'NON',
    from: `${rinfo.address}:${rinfo.port}`,
    payload: p.payload.toString(),
    mid: p.messageId,
  });
  waiters.splice(0).forEach((f) => f());
});
async function until(pred: () => boolean): Promise<void> {
  while (!pred()) await new Promise<void>((r) => waiters.push(r));
}
let mid = 100;
function send(host: string, packet: Parameters<typeof generate>[0]): number {
  const m = mid++;
  client.send(generate({ messageId: m, ...packet }), port, host);
  return m;
}
const path = (...segs: string[]) => segs.map((s) => ({ name: 'Uri-Path' as const, value: Buffer.from(s) }));

// 1. A matching discovery query to the group is answered, NON, from the unicast address.
const m1 = send(GROUP, { code: 'GET', token: Buffer.from([1]), options: [...path('.well-known', 'core'), { name: 'Uri-Query', value: Buffer.from('rt=demo') }] });
await until(() => inbox.some((m) => m.mid !== m1 && m.payload.includes('hello')));
// 2. A non-matching query, an unknown path and a ping to the group get nothing; a unicast ping is
//    the barrier (handled after them, in order).
send(GROUP, { code: 'GET', token: Buffer.from([2]), options: [...path('.well-known', 'core'), { name: 'Uri-Query', value: Buffer.from('rt=none') }] });
send(GROUP, { code: 'GET', token: Buffer.from([3]), options: path('nope') });
send(GROUP, { code: '0.00', confirmable: true });
send(GROUP, { code: 'GET', token: Buffer.from([4]), options: path('hello') });
await until(() => inbox.some((m) => m.payload === 'hi'));
const barrier = send('127.0.0.1', { code: '0.00', confirmable: true });
await until(() => inbox.some((m) => m.type === 'RST' && m.mid === barrier));

console.log(JSON.stringify({ port, inbox, seenMulticast, stats: server.stats }));
server.close();
client.close();
await udp.close();
