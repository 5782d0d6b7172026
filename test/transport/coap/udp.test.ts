import { CoapCode } from '../../../src/protocol/coap-codes.ts';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
// Namespace import: the package is CommonJS with `__esModule` set, so under tsx its default import
// is undefined; the named exports are what `import coap from 'coap'` would mean in plain Node.
import * as coap from 'coap';
import { CoapServer } from '../../../src/transport/coap/engine.ts';
import { UdpTransport } from '../../../src/transport/coap/udp.ts';
import { silentLogger, type Logger } from '../../../src/log.ts';

const big = Buffer.from(Array.from({ length: 5000 }, (_, i) => 0x41 + (i % 26)));

/** A server on loopback IPv4 and IPv6, random ports. */
async function start(): Promise<{ server: CoapServer; v4: UdpTransport; v6: UdpTransport; stop: () => Promise<void> }> {
  const server = new CoapServer({ log: silentLogger, separateResponseAfterMs: 50 });
  server.addResource({ path: '/hello', rt: 'demo.hello', ct: 0, methods: { GET: () => ({ code: CoapCode.Content, contentFormat: 0, payload: Buffer.from('hello') }) } });
  server.addResource({ path: '/big', rt: 'demo.big', methods: { GET: () => ({ code: CoapCode.Content, contentFormat: 0, payload: big }) } });
  server.addResource({
    path: '/echo',
    rt: 'idprov.echo',
    ct: 60,
    accepts: [60],
    methods: { POST: async (req) => ({ code: CoapCode.Changed, contentFormat: 60, payload: req.payload }) },
  });
  // The slow handler answers only once its own empty ACK has gone out, whatever the timing.
  const waiting: { after: number; answer: () => void }[] = [];
  server.addResource({
    path: '/slow',
    methods: {
      GET: () =>
        new Promise((resolve) => {
          waiting.push({ after: server.stats.separate, answer: () => resolve({ code: CoapCode.Content, payload: Buffer.from('late') }) });
        }),
    },
  });
  const sweepCheck = setInterval(() => {
    for (let i = waiting.length - 1; i >= 0; i--) {
      if (server.stats.separate > waiting[i]!.after) waiting.splice(i, 1)[0]!.answer();
    }
  }, 5);
  const v4 = await UdpTransport.bind({ address: '127.0.0.1', port: 0 });
  const v6 = await UdpTransport.bind({ address: '::1', port: 0 });
  server.attach(v4);
  server.attach(v6);
  return {
    server,
    v4,
    v6,
    stop: async () => {
      clearInterval(sweepCheck);
      server.close();
      await Promise.all([v4.close(), v6.close()]);
    },
  };
}

interface NodeCoapResult {
  code: string;
  payload: Buffer;
  headers: Record<string, unknown>;
}

/** One request with node-coap's client (its own agent, so its socket family matches). */
function nodeCoap(
  host: string,
  port: number,
  pathname: string,
  extra: { method?: 'GET' | 'POST'; query?: string; payload?: Buffer; contentFormat?: number; confirmable?: boolean } = {},
): Promise<NodeCoapResult> {
  const agent = new coap.Agent({ type: host.includes(':') ? 'udp6' : 'udp4' });
  return new Promise((resolve, reject) => {
    const { payload, ...params } = extra;
    const req = coap.request({ hostname: host, port, pathname, agent, ...params });
    req.on('response', (res: { code: string; payload: Buffer; headers: Record<string, unknown>; on: (e: string, f: () => void) => void; resume: () => void }) => {
      res.on('end', () => resolve({ code: res.code, payload: res.payload, headers: res.headers }));
      res.resume();
    });
    req.on('error', reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

/** libcoap's client. It exits 0 even on failure, so callers check what it printed. */
function libcoap(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('coap-client-notls', ['-B', '10', ...args], { timeout: 30_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') reject(err);
      else resolve(stdout + stderr);
    });
  });
}

describe('CoAP over real UDP on loopback', () => {
  let s: Awaited<ReturnType<typeof start>>;
  before(async () => {
    s = await start();
  });
  after(async () => {
    await s.stop();
  });

  describe('UdpTransport', () => {
    it('binds a random port on IPv4 and IPv6 loopback', () => {
      assert.ok(s.v4.address().port > 0);
      assert.equal(s.v4.address().family, 'IPv4');
      assert.ok(s.v6.address().port > 0);
      assert.equal(s.v6.address().family, 'IPv6');
    });

    it('logs a failed send instead of throwing, and ignores sends after close', async () => {
      const warnings: unknown[] = [];
      const log = silentLogger.child({});
      log.warn = ((o: unknown) => void warnings.push(o)) as Logger['warn'];
      const t = await UdpTransport.bind({ address: '127.0.0.1', port: 0, log });
      assert.doesNotThrow(() => t.send(Buffer.from([0x40, 0, 0, 1]), { address: '127.0.0.1', port: 0, family: 'IPv4' }));
      assert.equal(warnings.length, 1);
      await t.close();
      await t.close();
      assert.doesNotThrow(() => t.send(Buffer.from([0x40, 0, 0, 1]), { address: '127.0.0.1', port: 9, family: 'IPv4' }));
    });

    it('rejects binding a port that is taken', async () => {
      await assert.rejects(UdpTransport.bind({ address: '127.0.0.1', port: s.v4.address().port }));
    });
  });

  describe('with node-coap’s client (coap 1.5.0)', () => {
    for (const host of ['127.0.0.1', '::1']) {
      const port = () => (host === '::1' ? s.v6 : s.v4).address().port;

      it(`gets a resource over ${host}`, async () => {
        const res = await nodeCoap(host, port(), '/hello');
        assert.equal(res.code, '2.05');
        assert.equal(res.payload.toString(), 'hello');
        assert.equal(res.headers['Content-Format'], 'text/plain');
      });

      it(`reassembles a 5000-byte Block2 response over ${host}`, async () => {
        const res = await nodeCoap(host, port(), '/big');
        assert.equal(res.code, '2.05');
        assert.deepEqual(res.payload, big);
      });

      it(`posts CBOR and gets it echoed over ${host}`, async () => {
        const res = await nodeCoap(host, port(), '/echo', { method: 'POST', payload: Buffer.from([0xa1, 1, 2]), contentFormat: 60 });
        assert.equal(res.code, '2.04');
        assert.deepEqual(res.payload, Buffer.from([0xa1, 1, 2]));
      });

      it(`filters /.well-known/core by an rt prefix over ${host}`, async () => {
        const res = await nodeCoap(host, port(), '/.well-known/core', { query: 'rt=demo*' });
        assert.equal(res.code, '2.05');
        assert.equal(res.payload.toString(), '</hello>;rt="demo.hello";ct=0,</big>;rt="demo.big"');
      });

      it(`answers an unknown path with 4.04 over ${host}`, async () => {
        const res = await nodeCoap(host, port(), '/nope');
        assert.equal(res.code, '4.04');
      });

      it(`answers a NON request with NON over ${host}`, async () => {
        const res = await nodeCoap(host, port(), '/hello', { confirmable: false });
        assert.equal(res.code, '2.05');
      });
    }

    it('delivers a separate response after an empty ACK', async () => {
      const res = await nodeCoap('127.0.0.1', s.v4.address().port, '/slow');
      assert.equal(res.code, '2.05');
      assert.equal(res.payload.toString(), 'late');
      assert.ok(s.server.stats.separate >= 1);
    });
  });

  describe('with libcoap’s coap-client-notls', () => {
    for (const host of ['127.0.0.1', '[::1]']) {
      const base = () => `coap://${host}:${(host === '[::1]' ? s.v6 : s.v4).address().port}`;

      it(`gets a resource over ${host}, acknowledged with a piggybacked 2.05`, async () => {
        const out = await libcoap(['-v', '6', '-m', 'get', `${base()}/hello`]);
        assert.match(out, /t:ACK c:2\.05 .*'hello'/);
      });

      it(`reassembles a 5000-byte Block2 response over ${host}`, async () => {
        const out = await libcoap(['-m', 'get', `${base()}/big`]);
        assert.ok(out.includes(big.toString()), out.slice(0, 200));
      });

      it(`reassembles a Block2 response in 64-byte blocks it asked for over ${host}`, async () => {
        const out = await libcoap(['-b', '64', '-m', 'get', `${base()}/big`]);
        assert.ok(out.includes(big.toString()), out.slice(0, 200));
        const verbose = await libcoap(['-v', '6', '-b', '64', '-m', 'get', `${base()}/big`]);
        assert.equal((verbose.match(/t:ACK c:2\.05 .*Block2:\d+\/[M_]\/64/g) ?? []).length, Math.ceil(5000 / 64));
      });

      it(`discovers resources by rt prefix over ${host}`, async () => {
        const out = await libcoap(['-m', 'get', `${base()}/.well-known/core?rt=idprov*`]);
        assert.match(out, /<\/echo>;rt="idprov\.echo";ct=60/);
        assert.doesNotMatch(out, /hello/);
      });

      it(`gets 4.04, 4.05 and 4.15 over ${host}`, async () => {
        assert.match(await libcoap(['-v', '6', '-m', 'get', `${base()}/nope`]), /c:4\.04/);
        assert.match(await libcoap(['-v', '6', '-m', 'delete', `${base()}/hello`]), /c:4\.05/);
        assert.match(await libcoap(['-v', '6', '-m', 'post', '-t', '50', '-e', '{}', `${base()}/echo`]), /c:4\.15/);
      });

      it(`posts with Content-Format 60 over ${host}`, async () => {
        const out = await libcoap(['-v', '6', '-m', 'post', '-t', '60', '-e', 'abc', `${base()}/echo`]);
        assert.match(out, /t:ACK c:2\.04 .*Content-Format:application\/cbor/);
        assert.match(out, /<<616263>>/);
      });
    }

    it('receives a separate CON response after an empty ACK', async () => {
      const out = await libcoap(['-v', '6', '-m', 'get', `coap://127.0.0.1:${s.v4.address().port}/slow`]);
      assert.match(out, /t:CON c:2\.05 .*'late'/);
    });
  });

  describe('multicast (RFC 7252 §8) in a private network namespace', () => {
    it('marks group requests, answers them NON from the unicast address, and suppresses errors and empty matches', async function () {
      if (process.getuid?.() !== 0) this.skip();
      const child = fileURLToPath(new URL('../../support/coap-multicast-child.ts', import.meta.url));
      const script =
        'ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo && ' +
        `exec "${process.execPath}" --import tsx "${child}"`;
      const out = await new Promise<string>((resolve, reject) =>
        execFile('unshare', ['-n', 'sh', '-c', script], { timeout: 60_000, encoding: 'utf8' }, (err, stdout, stderr) =>
          err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
        ),
      ).catch((e: Error) => {
        if (/unshare failed|Operation not permitted/.test(e.message)) this.skip();
        throw e;
      });
      const r = JSON.parse(out.trim().split('\n').pop()!) as {
        port: number;
        inbox: { code: string; type: string; from: string; payload: string }[];
        seenMulticast: boolean[];
        stats: { suppressed: number };
      };
      const answers = r.inbox.filter((m) => m.type !== 'RST');
      assert.equal(answers.length, 2, JSON.stringify(r.inbox));
      for (const a of answers) {
        assert.equal(a.type, 'NON');
        assert.equal(a.code, '2.05');
        assert.equal(a.from, `127.0.0.1:${r.port}`);
      }
      assert.match(answers[0]!.payload, /<\/hello>;rt="demo"/);
      assert.deepEqual(r.seenMulticast, [true]);
      assert.equal(r.stats.suppressed, 2);
      assert.equal(r.inbox.filter((m) => m.type === 'RST').length, 1, 'only the unicast ping is reset');
    });
  });
});
