/**
 * Scenario 1's server: the bare CoAP engine (src/transport/coap/engine.ts) on a UdpTransport with one
 * trivial resource, GET `/`, answering exactly what libcoap's example server answers there (the
 * payload text and Max-Age are passed in, so both servers send responses of the same size).
 *
 *   BENCH_PORT=5683 BENCH_PAYLOAD_HEX=… BENCH_MAX_AGE=196607 npx tsx tools/bench/engine-server.ts
 *
 * Prints `ready <port>` on stdout once bound.
 */
import { CoapCode } from '../../src/protocol/coap-codes.ts';
import { silentLogger } from '../../src/log.ts';
import { CoapServer } from '../../src/transport/coap/engine.ts';
import { UdpTransport } from '../../src/transport/coap/udp.ts';

const port = Number(process.env.BENCH_PORT ?? 0);
const payload = Buffer.from(process.env.BENCH_PAYLOAD_HEX ?? Buffer.from('hello').toString('hex'), 'hex');
const maxAge = process.env.BENCH_MAX_AGE !== undefined && process.env.BENCH_MAX_AGE !== '' ? Number(process.env.BENCH_MAX_AGE) : undefined;

const coap = new CoapServer({ log: silentLogger });
coap.addResource({
  path: '/',
  methods: { GET: () => (maxAge === undefined ? { code: CoapCode.Content, payload } : { code: CoapCode.Content, payload, maxAge }) },
});
const udp = await UdpTransport.bind({ address: '127.0.0.1', port });
coap.attach(udp);
process.stdout.write(`ready ${udp.address().port}\n`);
const stop = (): void => {
  void Promise.resolve(coap.close())
    .then(() => udp.close())
    .then(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
