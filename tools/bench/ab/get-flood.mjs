/**
 * A closed-loop CoAP GET flood for the A/B scripts here: N sockets (one source port each), each with
 * one CON GET / in flight, the next sent on its answer (a lost one is resent after 1 s). Prints the
 * completed requests as JSON.   node tools/bench/ab/get-flood.mjs PORT [N=16] [MS=5000]
 */
import { createSocket } from 'node:dgram';
const [port, n, ms] = [Number(process.argv[2]), Number(process.argv[3] ?? 16), Number(process.argv[4] ?? 5000)];
let ops = 0, stop = false;
for (let i = 0; i < n; i++) {
  const s = createSocket('udp4'); let mid = i * 4000;
  const req = () => { mid = (mid + 1) & 0xffff; s.send(Buffer.from([0x41, 0x01, mid >> 8, mid & 255, i, 0xb0 | 0]).subarray(0, 5), port, '127.0.0.1'); };
  s.on('message', () => { ops++; if (!stop) req(); });
  s.bind(0, '127.0.0.1', req);
  setInterval(() => { if (!stop) req(); }, 1000).unref();
}
setTimeout(() => { stop = true; console.log(JSON.stringify({ ops, perSec: ops / (ms / 1000) })); process.exit(0); }, ms);
