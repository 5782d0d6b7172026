/**
 * A manual DTLS test server: GET /hello over coaps answers "hi <psk identity|anon>".
 *   PORT=5684 MTU=1200 LVL=debug npx tsx tools/dtls-peers/dev-server.ts
 * PSK identity `dev1`, key `secretsecret12`; the certificate is made in a temp dir and its fingerprint printed.
 */
import { CoapCode } from '../../src/protocol/coap-codes.ts';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { CoapServer } from '../../src/transport/coap/engine.ts';
import { loadOrCreateCertificate } from '../../src/transport/dtls/cert.ts';
import { DtlsTransport } from '../../src/transport/dtls/server.ts';

const log = pino({ level: process.env['LVL'] ?? 'debug' });
const dir = mkdtempSync(join(tmpdir(), 'idprov-dtls-dev-'));
const cert = loadOrCreateCertificate({ certPath: join(dir, 'cert.pem'), keyPath: join(dir, 'key.pem'), create: true, nowMs: Date.now() });
const t = await DtlsTransport.bind({
  address: '127.0.0.1',
  port: Number(process.env['PORT'] ?? 5684),
  log,
  certificate: cert,
  pskLookup: async (id) => (id === 'dev1' ? Buffer.from('secretsecret12') : undefined),
  ...(process.env['MTU'] ? { mtu: Number(process.env['MTU']) } : {}),
});
const coap = new CoapServer({ log });
coap.addResource({ path: '/hello', methods: { GET: (req) => ({ code: CoapCode.Content, payload: Buffer.from(`hi ${req.peer.pskIdentity ?? 'anon'}`) }) } });
coap.attach(t);
console.log(JSON.stringify({ listening: t.address(), fp: cert.fingerprint, certDir: dir }));
