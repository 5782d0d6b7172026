/**
 * A manual DTLS test server: GET /hello over coaps answers "hi <psk identity|anon>".
 *   PORT=5684 MTU=1200 LVL=debug npx tsx tools/dtls-peers/dev-server.ts
 * PSK identity `dev1`, key `secretsecret12`; the certificate is made in a temp dir and its fingerprint printed.
 * With PSK_PREFIX=p, every identity `p-<n>` (as `openssl-loadgen --psk p KEY --psk-identities K`
 * sends) also has key `secretsecret12`: a fleet of identities for profiling under load, e.g.
 *   PSK_PREFIX=dev LVL=warn node --cpu-prof --import tsx tools/dtls-peers/dev-server.ts
 */
import { CoapCode } from '../../src/protocol/coap-codes.ts';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { CoapServer } from '../../src/transport/coap/engine.ts';
import { loadOrCreateCertificate } from '../../src/transport/dtls/cert.ts';
import { DtlsTransport } from '../../src/transport/dtls/server.ts';

const prefix = process.env['PSK_PREFIX'];
const log = pino({ level: process.env['LVL'] ?? 'debug' });
const dir = mkdtempSync(join(tmpdir(), 'idprov-dtls-dev-'));
const cert = loadOrCreateCertificate({ certPath: join(dir, 'cert.pem'), keyPath: join(dir, 'key.pem'), create: true, nowMs: Date.now() });
const t = await DtlsTransport.bind({
  address: '127.0.0.1',
  port: Number(process.env['PORT'] ?? 5684),
  log,
  certificate: cert,
  pskLookup: async (id) => (id === 'dev1' || (prefix !== undefined && id.startsWith(`${prefix}-`)) ? Buffer.from('secretsecret12') : undefined),
  ...(process.env['MTU'] ? { mtu: Number(process.env['MTU']) } : {}),
});
const coap = new CoapServer({ log });
coap.addResource({ path: '/hello', methods: { GET: (req) => ({ code: CoapCode.Content, payload: Buffer.from(`hi ${req.peer.pskIdentity ?? 'anon'}`) }) } });
coap.attach(t);
console.log(JSON.stringify({ listening: t.address(), fp: cert.fingerprint, certDir: dir }));
// Exit cleanly on SIGTERM/SIGINT so that `node --cpu-prof` writes its profile.
for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => process.exit(0));
