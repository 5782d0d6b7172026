import { CoapServer } from './engine.ts';
import { createMemoryPair } from './memory.ts';
import { silentLogger } from '../../log.ts';
import { generate } from 'coap-packet';
const [serverT] = createMemoryPair();
const server = new CoapServer({ log: silentLogger });
server.attach(serverT);
server.addResource({ path: '/hello', methods: { GET: () => ({ code: '2.05', contentFormat: 0, payload: Buffer.from('hello') }) } });
const req = generate({ code: 'GET', confirmable: true, messageId: 1, token: Buffer.from('abcd','hex'), options: [{ name: 'Uri-Path', value: Buffer.from('hello') }] });
const peer = { address: '127.0.0.1', port: 1, family: 'IPv4' as const };
const N = Number(process.argv[2] ?? 200000);
const distinct = process.argv[3] !== 'same';
let t = performance.now();
for (let i = 0; i < N; i++) {
  if (distinct) { peer.address = `127.${(i >> 16) & 255}.${(i >> 8) & 255}.1`; peer.port = 1 + (i & 0xffff); }
  req.writeUInt16BE(i & 0xffff, 2);
  serverT.injectSync(req, peer);
  if (i % 50000 === 49999) { const n = performance.now(); console.log(i+1, ((n - t) * 1000 / 50000).toFixed(2), 'us/req'); t = n; }
}
