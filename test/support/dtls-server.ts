/** Helpers for the DTLS tests: a DTLS+CoAP server on loopback, CoAP messages, a lossy UDP proxy. */
import { CoapCode } from '../../src/protocol/coap-codes.ts';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { join } from 'node:path';
import { generate, parse } from 'coap-packet';
import { silentLogger } from '../../src/log.ts';
import { CoapServer } from '../../src/transport/coap/engine.ts';
import { loadOrCreateCertificate, type ServerCertificate } from '../../src/transport/dtls/cert.ts';
import { DtlsTransport, type DtlsOptions } from '../../src/transport/dtls/server.ts';
import { HT, Reader, parseHandshakeFragments, parseRecords } from '../../src/transport/dtls/wire.ts';
import { clientHelloDatagram } from '../../tools/dtls-peers/client.ts';
import { tempDir } from './temp-dir.ts';

export const PSK_ID = 'lab-sensor-01';
export const PSK = Buffer.from('correct horse battery', 'utf8');

let certCache: ServerCertificate | undefined;
/** One P-256 certificate for the whole test run (made in a temp dir, like the server's first start). */
export function testCertificate(): ServerCertificate {
  if (certCache === undefined) {
    const t = tempDir('idprov-dtls-cert-');
    certCache = loadOrCreateCertificate({ certPath: join(t.dir, 'c.pem'), keyPath: join(t.dir, 'k.pem'), create: true, nowMs: Date.now() });
    t.cleanup();
  }
  return certCache;
}

export interface TestServer {
  t: DtlsTransport;
  port: number;
  coap: CoapServer;
  close(): Promise<void>;
}

/** A DTLS server on 127.0.0.1 (random port) serving GET /hello → "hi <pskIdentity|anon>". */
export async function startDtls(opts: Partial<DtlsOptions> = {}): Promise<TestServer> {
  const t = await DtlsTransport.bind({
    address: '127.0.0.1',
    port: 0,
    certificate: testCertificate(),
    pskLookup: async (id) => (id === PSK_ID ? PSK : undefined),
    log: silentLogger,
    ...opts,
  });
  const coap = new CoapServer({ log: silentLogger });
  coap.addResource({ path: '/hello', methods: { GET: (req) => ({ code: CoapCode.Content, payload: Buffer.from(`hi ${req.peer.pskIdentity ?? 'anon'}`) }) } });
  coap.attach(t);
  return {
    t,
    port: t.address().port,
    coap,
    async close() {
      coap.close();
      await t.close();
    },
  };
}

let mid = 1;
/** A CoAP CON GET. */
export function coapGet(path: string): Buffer {
  mid = (mid + 1) & 0xffff;
  return generate({
    code: 'GET',
    confirmable: true,
    messageId: mid,
    token: Buffer.from([mid >> 8, mid & 0xff, 7]),
    options: path.split('/').filter(Boolean).map((s) => ({ name: 'Uri-Path', value: Buffer.from(s) })),
  } as never);
}

/** A CoAP CON POST with Content-Format 18. */
export function coapPost(path: string, payload: Buffer): Buffer {
  mid = (mid + 1) & 0xffff;
  return generate({
    code: 'POST',
    confirmable: true,
    messageId: mid,
    token: Buffer.from([mid >> 8, mid & 0xff, 9]),
    options: [...path.split('/').filter(Boolean).map((s) => ({ name: 'Uri-Path', value: Buffer.from(s) })), { name: 'Content-Format', value: Buffer.from([18]) }],
    payload,
  } as never);
}

/** Code ("2.05") and payload of a CoAP response. */
export function coapReply(b: Buffer): { code: string; payload: Buffer } {
  const p = parse(b);
  return { code: p.code, payload: p.payload };
}

/** Run a command; never rejects (real peers' exit codes are read by the tests). */
export function run(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 20_000);
    p.on('error', (e) => {
      clearTimeout(timer);
      resolve({ code: -1, out: out + String(e) });
    });
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
    if (opts.input !== undefined) p.stdin.end(opts.input);
  });
}

/** True when `cmd` can be run. */
export function have(cmd: string): Promise<boolean> {
  return new Promise((resolve) => execFile('sh', ['-c', `command -v ${cmd}`], (err) => resolve(err === null)));
}

/**
 * A UDP proxy on 127.0.0.1 between one client and `target` that drops every `n`th datagram in each
 * direction (counted separately), so handshakes must survive by retransmission.
 */
export class LossyProxy {
  private readonly front: Socket = createSocket('udp4');
  private back: Socket | undefined;
  private client: RemoteInfo | undefined;
  private up = 0;
  private down = 0;
  dropped = 0;

  private constructor(private readonly target: number) {}

  static async start(target: number, n: number): Promise<LossyProxy & { port: number }> {
    const p = new LossyProxy(target);
    await new Promise<void>((r) => p.front.bind(0, '127.0.0.1', () => r()));
    const back = createSocket('udp4');
    await new Promise<void>((r) => back.bind(0, '127.0.0.1', () => r()));
    p.back = back;
    p.front.on('message', (m, rinfo) => {
      p.client = rinfo;
      if (++p.up % n === 0) return void p.dropped++;
      back.send(m, p.target, '127.0.0.1');
    });
    back.on('message', (m) => {
      if (p.client === undefined) return;
      if (++p.down % n === 0) return void p.dropped++;
      p.front.send(m, p.client.port, p.client.address);
    });
    return Object.assign(p, { port: p.front.address().port });
  }

  close(): void {
    this.front.close();
    this.back?.close();
  }
}

/** Poll `pred` until true (the tests never assert on elapsed time). */
export async function until(pred: () => boolean, what: string, limitMs = 20_000): Promise<void> {
  const end = Date.now() + limitMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * A client that does the cookie exchange from a fresh UDP port and stops after the ClientHello with
 * the cookie (a half-open handshake). `flight4` resolves at the server's ServerHello; it never
 * resolves when the server drops the ClientHello. Close `sock` when done.
 */
export async function halfOpenHandshake(port: number, o: { localAddress?: string; suites?: number[] } = {}): Promise<{ sock: Socket; flight4: Promise<void> }> {
  const sock = createSocket('udp4');
  sock.on('error', () => undefined);
  await new Promise<void>((r) => sock.bind(0, o.localAddress ?? '127.0.0.1', () => r()));
  const random = randomBytes(32);
  const suites = o.suites ?? [0xc0a8];
  let gotFlight4: () => void = () => undefined;
  const flight4 = new Promise<void>((r) => (gotFlight4 = r));
  const cookie = await new Promise<Buffer>((resolve) => {
    sock.on('message', (m: Buffer) => {
      const rec = parseRecords(m, 0)[0];
      const f = rec === undefined ? undefined : parseHandshakeFragments(rec.fragment, 65536)?.[0];
      if (f?.msgType === HT.helloVerifyRequest) {
        const r = new Reader(f.body);
        r.u16();
        resolve(r.vec8());
      } else if (f?.msgType === HT.serverHello) gotFlight4();
    });
    sock.send(clientHelloDatagram({ random, suites }), port, '127.0.0.1');
  });
  sock.send(clientHelloDatagram({ random, cookie, suites, recordSeq: 1, msgSeq: 1 }), port, '127.0.0.1');
  return { sock, flight4 };
}
