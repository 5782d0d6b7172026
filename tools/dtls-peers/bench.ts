/**
 * DTLS handshake benchmark (issue #4 "Numbers"): PSK and ECDHE-ECDSA handshakes per second against
 * idprov's DTLS server (in a child process, so client and server each get a core of this 2-core
 * machine) and, in the same run, against libcoap's `coap-server-openssl` with the same client and the
 * same key/certificate; then the heap before and after 30,000 spoofed ClientHellos.
 *
 *   npx tsx tools/dtls-peers/bench.ts [--seconds 5] [--concurrency 16]
 *
 * Each client loop does: full handshake (HelloVerifyRequest, flights 1–6), close_notify, repeat.
 * The client skips the ServerKeyExchange signature check (it still computes ECDH), so it is cheaper
 * than the server's side of the handshake.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { silentLogger } from '../../src/log.ts';
import { loadOrCreateCertificate } from '../../src/transport/dtls/cert.ts';
import { DtlsTransport } from '../../src/transport/dtls/server.ts';
import { RECORD_HEADER } from '../../src/transport/dtls/wire.ts';
import { DtlsClient, clientHelloDatagram } from './client.ts';

const ID = 'bench-device';
const KEY = Buffer.from('bench-secret-0123456789');
const arg = (name: string, def: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};

if (process.argv[2] === 'serve') {
  // Child: the idprov DTLS server (the transport with the CoAP engine attached, as in src/server.ts).
  const { CoapServer } = await import('../../src/transport/coap/engine.ts');
  const dir = process.argv[3]!;
  const cert = loadOrCreateCertificate({ certPath: join(dir, 'cert.pem'), keyPath: join(dir, 'key.pem'), create: true, nowMs: Date.now() });
  const t = await DtlsTransport.bind({ address: '127.0.0.1', port: 0, certificate: cert, pskLookup: async (id) => (id === ID ? KEY : undefined), log: silentLogger, maxHandshakes: 10_000 });
  const coap = new CoapServer({ log: silentLogger });
  coap.attach(t);
  process.stdout.write(`${JSON.stringify({ port: t.address().port })}\n`);
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === 'stats') process.stdout.write(`${JSON.stringify({ cpu: process.cpuUsage(), stats: t.stats() })}\n`);
  }
  process.exit(0);
}

async function freePort(): Promise<number> {
  // A free UDP port pair is likely where a free TCP port is; libcoap binds port (CoAP) and port+1 (CoAPS).
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

async function load(port: number, suite: number, seconds: number, concurrency: number): Promise<{ rate: number; failures: number }> {
  const psk = suite === 0xc0a8 || suite === 0x00a8;
  let done = 0;
  let failures = 0;
  const end = Date.now() + seconds * 1000;
  const start = Date.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < end) {
        try {
          const c = await DtlsClient.connect({ host: '127.0.0.1', port, suites: [suite], skipVerify: true, timeoutMs: 5000, retransmitMs: 1000, ...(psk ? { psk: { identity: ID, key: KEY } } : {}) });
          done++;
          c.close();
        } catch {
          failures++;
        }
      }
    }),
  );
  return { rate: done / ((Date.now() - start) / 1000), failures };
}

const seconds = arg('seconds', 5);
const concurrency = arg('concurrency', 16);
const dir = mkdtempSync(join(tmpdir(), 'idprov-dtls-bench-'));
const children: ChildProcess[] = [];
try {
  const child = spawn(process.execPath, ['--import', 'tsx', new URL(import.meta.url).pathname, 'serve', dir], { stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(child);
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const { port } = JSON.parse((await lines.next()).value as string) as { port: number };
  const statsOf = async () => {
    child.stdin!.write('stats\n');
    return JSON.parse((await lines.next()).value as string) as { cpu: { user: number; system: number }; stats: { handshakesCompleted: number } };
  };

  const ossPort = await freePort();
  writeFileSync(join(dir, 'psk.txt'), KEY);
  const oss = spawn('coap-server-openssl', ['-A', '127.0.0.1', '-p', String(ossPort), '-k', KEY.toString('utf8'), '-c', join(dir, 'cert.pem'), '-j', join(dir, 'key.pem'), '-n', '-v', '0'], { stdio: 'ignore' });
  children.push(oss);
  await new Promise((r) => setTimeout(r, 500));

  console.log(`DTLS handshakes/s, ${concurrency} concurrent client loops, ${seconds} s each (client in this process, server in another)`);
  console.log('suite                                   idprov   server CPU/hs   coap-server-openssl');
  for (const [suite, name] of [
    [0xc0a8, 'TLS_PSK_WITH_AES_128_CCM_8'],
    [0x00a8, 'TLS_PSK_WITH_AES_128_GCM_SHA256'],
    [0xc0ae, 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8'],
    [0xc02b, 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256'],
  ] as const) {
    const before = await statsOf();
    const ours = await load(port, suite, seconds, concurrency);
    const after = await statsOf();
    const cpuUs = after.cpu.user + after.cpu.system - before.cpu.user - before.cpu.system;
    const n = after.stats.handshakesCompleted - before.stats.handshakesCompleted;
    const theirs = await load(ossPort + 1, suite, seconds, concurrency);
    console.log(
      `${name.padEnd(40)}${ours.rate.toFixed(0).padStart(6)}/s ${(cpuUs / Math.max(n, 1)).toFixed(0).padStart(8)} µs   ${theirs.rate.toFixed(0).padStart(8)}/s` +
        `${ours.failures + theirs.failures ? `  (failures: ours ${ours.failures}, libcoap ${theirs.failures})` : ''}`,
    );
  }

  // Spoofed ClientHello flood, in this process: heap after GC before and after.
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const cert = loadOrCreateCertificate({ certPath: join(dir, 'cert.pem'), keyPath: join(dir, 'key.pem'), create: false, nowMs: Date.now() });
  const t = await DtlsTransport.bind({ address: '127.0.0.1', port: 0, certificate: cert, pskLookup: async () => undefined, log: silentLogger });
  const hello = clientHelloDatagram({ random: randomBytes(32), suites: [0xc0a8, 0xc0ae] });
  const spoof = (i: number) => ({ address: `127.${(i >> 16) & 255}.${(i >> 8) & 255}.${(i & 255) | 1}`, port: 1024 + (i % 60000), family: 'IPv4' as const });
  for (let i = 0; i < 2000; i++) t.receive(hello, spoof(i));
  await new Promise((r) => setTimeout(r, 200));
  gc();
  gc();
  const h0 = process.memoryUsage().heapUsed;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < 30_000; i++) {
    hello.writeUInt32BE(i, RECORD_HEADER + 12 + 2 + 28);
    t.receive(hello, spoof(i));
  }
  const perHello = Number(process.hrtime.bigint() - t0) / 30_000 / 1000;
  await new Promise((r) => setTimeout(r, 500));
  gc();
  gc();
  const h1 = process.memoryUsage().heapUsed;
  const st = t.stats();
  console.log(
    `30,000 spoofed ClientHellos: heap ${(h0 / 1048576).toFixed(2)} → ${(h1 / 1048576).toFixed(2)} MiB (${((h1 - h0) / 1024).toFixed(0)} KiB), ` +
      `state: ${st.addresses} addresses, ${st.handshakes} handshakes, ${st.sessions} sessions; ${st.helloVerifyRequests} HelloVerifyRequests, ${perHello.toFixed(1)} µs each`,
  );
  await t.close();
} finally {
  for (const c of children) c.kill();
  rmSync(dir, { recursive: true, force: true });
}
