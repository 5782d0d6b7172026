/**
 * One host flooding the real server (src/server.ts, in a child process) with cookie-valid ECDHE
 * ClientHellos from many source ports (issue 11 F6): each port does the cookie exchange, sends the
 * ClientHello with the cookie, and at once starts over with a new random, never sending flight 5.
 * Prints the server's CPU use over the run and its DTLS counters (started = ECDHE flights 4 made,
 * rateLimited = hellos dropped by the per-address handshake bucket).
 *
 *   npx tsx tools/dtls-peers/handshake-flood.ts [--seconds 5] [--ports 64] [--rate 20 --burst 40]
 * (--rate 0 turns the per-address limit off, as before the fix)
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { createInterface } from 'node:readline';
import { HT, Reader, parseHandshakeFragments, parseRecords } from '../../src/transport/dtls/wire.ts';
import { clientHelloDatagram } from './client.ts';

const arg = (name: string, def: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};

if (process.argv[2] === 'serve') {
  const { mkdtempSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { loadConfig } = await import('../../src/config.ts');
  const { silentLogger } = await import('../../src/log.ts');
  const { startServer } = await import('../../src/server.ts');
  const flags: Record<string, unknown> = {
    dataDir: mkdtempSync(join(tmpdir(), 'idprov-hs-flood-')),
    bind: '127.0.0.1',
    coapPort: 0,
    coapsPort: 0,
    adminPort: 0,
    mdns: false,
    coapMulticast: false,
    logLevel: 'silent',
    dtlsHandshakeRate: Number(process.argv[3]),
    dtlsHandshakeBurst: Number(process.argv[4]),
  };
  const s = await startServer(loadConfig({ env: {}, flags }), silentLogger);
  process.stdout.write(`${JSON.stringify({ port: s.coapsPort })}\n`);
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === 'cpu') process.stdout.write(`${JSON.stringify({ cpu: process.cpuUsage(), stats: s.dtls.stats() })}\n`);
    if (line === 'quit') break;
  }
  await s.close();
  process.exit(0);
}

const seconds = arg('seconds', 5);
const ports = arg('ports', 64);
const child = spawn(process.execPath, ['--import', 'tsx', new URL(import.meta.url).pathname, 'serve', String(arg('rate', 20)), String(arg('burst', 40))], { stdio: ['pipe', 'pipe', 'inherit'] });
const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
const next = async <T>(): Promise<T> => JSON.parse((await lines.next()).value as string) as T;
const { port } = await next<{ port: number }>();
type Snap = { cpu: { user: number; system: number }; stats: Record<string, number> };
const snap = async (): Promise<Snap> => {
  child.stdin!.write('cpu\n');
  return next<Snap>();
};

let running = true;
let hellos = 0;
const socks = await Promise.all(
  Array.from({ length: ports }, async () => {
    const sock = createSocket('udp4');
    sock.on('error', () => undefined);
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    let random = randomBytes(32);
    let seq = 0;
    let progress = 0;
    /** Record sequence number of the ClientHello whose HelloVerifyRequest we wait for (the server copies it). */
    let waitingFor = -1;
    const send = (): void => {
      waitingFor = seq;
      sock.send(clientHelloDatagram({ random, suites: [0xc0ae], recordSeq: seq++ }), port, '127.0.0.1');
    };
    const hello = (): void => {
      if (!running) return;
      random = randomBytes(32);
      send();
    };
    sock.on('message', (m: Buffer) => {
      const rec = parseRecords(m, 0)[0];
      const f = rec === undefined ? undefined : parseHandshakeFragments(rec.fragment, 65536)?.[0];
      if (f?.msgType !== HT.helloVerifyRequest || !running || rec!.seq !== waitingFor) return;
      waitingFor = -1;
      const r = new Reader(f.body);
      r.u16();
      sock.send(clientHelloDatagram({ random, cookie: r.vec8(), suites: [0xc0ae], recordSeq: seq++, msgSeq: 1 }), port, '127.0.0.1');
      hellos++;
      progress++;
      hello(); // start over at once: a new random from the same port replaces the half-open handshake
    });
    // One exchange in flight per port; resend the same ClientHello if a datagram was lost.
    let seen = 0;
    const t = setInterval(() => {
      if (running && progress === seen) send();
      seen = progress;
    }, 200);
    t.unref();
    return { sock, hello, t };
  }),
);
const before = await snap();
const t0 = process.hrtime.bigint();
for (const s of socks) s.hello();
await new Promise((r) => setTimeout(r, seconds * 1000));
const after = await snap();
const wallUs = Number(process.hrtime.bigint() - t0) / 1000;
running = false;
for (const s of socks) {
  clearInterval(s.t);
  s.sock.close();
}
child.stdin!.end('quit\n');
const cpuUs = after.cpu.user + after.cpu.system - before.cpu.user - before.cpu.system;
const d = (k: string): number => after.stats[k]! - before.stats[k]!;
console.log(
  `${seconds} s, ${ports} ports on one address: ${hellos} cookie-valid hellos sent; server CPU ${((100 * cpuUs) / wallUs).toFixed(1)} % of a core; ` +
    `ECDHE flights 4 ${d("handshakesStarted")}, dropped by the handshake bucket ${d("rateLimited")}, evicted ${d("evicted")}`,
  JSON.stringify(Object.fromEntries(Object.keys(after.stats).map((k) => [k, d(k)]))),
);
