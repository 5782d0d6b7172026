import { CoapCode } from '../../../src/protocol/coap-codes.ts';
import assert from 'node:assert/strict';
import { generate, parse } from 'coap-packet';
import { CoapServer, type CoapServerOptions } from '../../../src/transport/coap/engine.ts';
import { createMemoryPair, type MemoryTransport } from '../../support/memory-transport.ts';
import { DECODE_FORMAT_ERROR, DECODE_IGNORE, DecodedMessage, decodeMessage } from '../../../src/transport/coap/codec.ts';
import { silentLogger, type Logger } from '../../../src/log.ts';
import type { Peer } from '../../../src/transport/datagram.ts';
import { encodeRequest, prng, uintBuf } from '../../support/coap-engine.ts';

/** A logger that records error lines; an "internal error" means the receive path threw. */
function recordingLogger(): { log: Logger; internal: unknown[] } {
  const internal: unknown[] = [];
  const log = silentLogger.child({});
  log.error = ((obj: unknown, msg?: string) => {
    if (typeof msg === 'string' && msg.includes('internal error')) internal.push(obj);
  }) as Logger['error'];
  return { log, internal };
}

/** A server with a few resources, a transport to inject into, and a record of what it sends. */
function target(opts: Partial<CoapServerOptions> = {}) {
  const { log, internal } = recordingLogger();
  const [serverT, clientT] = createMemoryPair();
  const server = new CoapServer({ log, ...opts });
  server.attach(serverT);
  server.addResource({ path: '/hello', rt: 'demo', ct: 0, methods: { GET: () => ({ code: CoapCode.Content, contentFormat: 0, payload: Buffer.from('hello') }) } });
  server.addResource({
    path: '/idprov/request',
    rt: 'idprov.request',
    ct: 60,
    accepts: [18],
    methods: { POST: async (req) => ({ code: CoapCode.Content, contentFormat: 60, payload: req.payload.subarray(0, 16) }) },
  });
  server.addResource({ path: '/big', methods: { GET: () => ({ code: CoapCode.Content, payload: Buffer.alloc(3000, 1) }) } });
  const sent: Buffer[] = [];
  serverT.onSend = (d) => sent.push(d);
  return { server, serverT, clientT, sent, internal };
}

/** Every datagram the server sends must itself be well-formed CoAP. */
function assertWellFormed(sent: Buffer[]): void {
  const m = new DecodedMessage();
  for (const d of sent) {
    const r = decodeMessage(d, m);
    assert.ok(r !== DECODE_IGNORE && r !== DECODE_FORMAT_ERROR, `server sent a malformed datagram ${d.toString('hex')}`);
    assert.doesNotThrow(() => parse(d));
  }
}

function samples(): Buffer[] {
  return [
    encodeRequest({ uri: '/hello', messageId: 1, token: Buffer.from('0102030405060708', 'hex') }),
    encodeRequest({ uri: '/.well-known/core?rt=idprov*', type: 'NON', messageId: 2 }),
    encodeRequest({
      method: 'POST',
      uri: '/idprov/request',
      messageId: 3,
      options: [
        { name: 'Content-Format', value: uintBuf(18) },
        { name: 'Accept', value: uintBuf(60) },
      ],
      payload: Buffer.from('d28443a10127a0582ba3', 'hex'),
    }),
    encodeRequest({ uri: '/big', messageId: 4, options: [{ name: 'Block2', value: uintBuf(1 * 16 + 5) }, { name: 'Size2', value: Buffer.alloc(0) }] }),
    generate({ code: '0.00', confirmable: true, messageId: 5 }),
    encodeRequest({ uri: '/hello', messageId: 6, options: [{ name: '2049', value: Buffer.from('x'.repeat(300)) }] }),
  ];
}

async function stillServes(server: CoapServer, serverT: MemoryTransport, clientT: MemoryTransport): Promise<void> {
  const got: Buffer[] = [];
  serverT.onSend = (d) => got.push(d);
  serverT.injectSync(encodeRequest({ uri: '/hello', messageId: 65_000, token: Buffer.from('ffee', 'hex') }), { ...clientT.peer, port: 9 });
  assert.equal(got.length, 1);
  const res = parse(got[0]!);
  assert.equal(res.code, '2.05');
  assert.equal(res.payload.toString(), 'hello');
  void server;
}

describe('CoAP engine under hostile input', () => {
  it('handles every prefix of valid request datagrams without throwing, and still answers afterwards', async () => {
    const { server, serverT, clientT, sent, internal } = target();
    let port = 1;
    for (const s of samples()) {
      for (let n = 0; n <= s.length; n++) {
        serverT.injectSync(s.subarray(0, n), { ...clientT.peer, port: port++ });
      }
    }
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(internal, []);
    assertWellFormed(sent);
    await stillServes(server, serverT, clientT);
    server.close();
  });

  it('survives 20 000 seeded random byte mutations of valid datagrams, and still answers afterwards', async () => {
    const { server, serverT, clientT, sent, internal } = target({ separateResponseAfterMs: 0 });
    const rnd = prng(0xc0a9);
    const base = samples();
    for (let i = 0; i < 20_000; i++) {
      const d = Buffer.from(base[i % base.length]!);
      const flips = 1 + Math.floor(rnd() * 4);
      for (let k = 0; k < flips; k++) {
        const at = Math.floor(rnd() * d.length);
        if (rnd() < 0.5) d[at] = Math.floor(rnd() * 256);
        else d[at]! ^= 1 << Math.floor(rnd() * 8);
      }
      let out = d;
      const r = rnd();
      if (r < 0.1) out = d.subarray(0, Math.floor(rnd() * d.length));
      else if (r < 0.2) out = Buffer.concat([d, Buffer.from([Math.floor(rnd() * 256), Math.floor(rnd() * 256)])]);
      serverT.injectSync(out, { ...clientT.peer, port: 1 + (i % 5000) });
    }
    // Let async handlers finish.
    for (let k = 0; k < 3; k++) await new Promise((r) => setImmediate(r));
    assert.deepEqual(internal, []);
    assertWellFormed(sent);
    assert.ok(server.stats.received >= 20_000);
    await stillServes(server, serverT, clientT);
    server.close();
  });

  it('survives 20 000 seeded random datagrams of random length', async () => {
    const { server, serverT, clientT, sent, internal } = target();
    const rnd = prng(42);
    for (let i = 0; i < 20_000; i++) {
      const d = Buffer.alloc(Math.floor(rnd() * 64));
      for (let k = 0; k < d.length; k++) d[k] = Math.floor(rnd() * 256);
      // Bias towards version 1 so that the decoder gets past the header.
      if (d.length > 0 && rnd() < 0.8) d[0] = (d[0]! & 0x3f) | 0x40;
      serverT.injectSync(d, { ...clientT.peer, port: 1 + (i % 5000) });
    }
    for (let k = 0; k < 3; k++) await new Promise((r) => setImmediate(r));
    assert.deepEqual(internal, []);
    assertWellFormed(sent);
    await stillServes(server, serverT, clientT);
    server.close();
  });

  describe('bounded memory', () => {
    const FLOOD = Number(process.env.COAP_FLOOD ?? 250_000);

    it(`keeps the dedup cache within its total cap under a flood from ${FLOOD} distinct source addresses and ports`, () => {
      const { server, serverT } = target();
      serverT.onSend = undefined;
      const req = encodeRequest({ uri: '/hello', messageId: 1 });
      const peer: Peer = { address: '127.0.0.1', port: 1, family: 'IPv4' };
      let maxEntries = 0;
      for (let i = 0; i < FLOOD; i++) {
        peer.address = `127.${(i >> 16) & 255}.${(i >> 8) & 255}.1`;
        peer.port = 1 + (i & 0xffff);
        req.writeUInt16BE(i & 0xffff, 2);
        serverT.injectSync(req, peer);
        if ((i & 1023) === 0 || i === FLOOD - 1) {
          const m = server.memory();
          assert.ok(m.dedupEntries <= 20_000, `entries ${m.dedupEntries}`);
          assert.ok(m.dedupPeers <= m.dedupEntries);
          maxEntries = Math.max(maxEntries, m.dedupEntries);
        }
      }
      assert.equal(maxEntries, 20_000);
      assert.equal(server.stats.responses[2], FLOOD);
      server.close();
    });

    it('keeps at most perPeer exchanges for a single peer sending every Message ID', () => {
      const { server, serverT, clientT } = target();
      serverT.onSend = undefined;
      const req = encodeRequest({ uri: '/hello', messageId: 0 });
      for (let mid = 0; mid < 65_536; mid++) {
        req.writeUInt16BE(mid, 2);
        serverT.injectSync(req, clientT.peer);
        assert.ok(server.memory().dedupEntries <= 32);
      }
      assert.equal(server.memory().dedupPeers, 1);
      server.close();
    });

    it('respects small custom caps exactly, across peers and Message IDs', () => {
      const { server, serverT } = target({ dedup: { maxEntries: 100, perPeer: 3 } });
      serverT.onSend = undefined;
      const rnd = prng(99);
      const req = encodeRequest({ uri: '/hello', type: 'NON', messageId: 0 });
      for (let i = 0; i < 50_000; i++) {
        req.writeUInt16BE(Math.floor(rnd() * 65536), 2);
        serverT.injectSync(req, { address: '::1', port: 1 + Math.floor(rnd() * 200), family: 'IPv6' });
        const m = server.memory();
        assert.ok(m.dedupEntries <= 100);
      }
      server.close();
    });

    it('keeps handlers in flight within maxInFlight under a flood of slow requests', async () => {
      const [serverT] = createMemoryPair();
      const server = new CoapServer({ log: silentLogger, maxInFlight: 500, separateResponseAfterMs: 60_000 });
      server.attach(serverT);
      const pending: (() => void)[] = [];
      server.addResource({ path: '/slow', methods: { POST: () => new Promise((r) => pending.push(() => r({ code: CoapCode.Changed }))) } });
      const req = encodeRequest({ method: 'POST', uri: '/slow', messageId: 0 });
      for (let i = 0; i < 5000; i++) {
        req.writeUInt16BE(i, 2);
        serverT.injectSync(req, { address: '127.0.0.1', port: 1 + i, family: 'IPv4' });
        assert.ok(server.memory().inFlight <= 500);
      }
      assert.equal(pending.length, 500);
      assert.equal(server.stats.overloaded, 4500);
      for (const f of pending) f();
      await new Promise((r) => setImmediate(r));
      assert.equal(server.memory().inFlight, 0);
      server.close();
    });

    it('returns to an empty state once every exchange has expired', () => {
      let now = 0;
      const { server, serverT } = target({ now: () => now });
      serverT.onSend = undefined;
      const req = encodeRequest({ uri: '/hello', messageId: 0 });
      for (let i = 0; i < 10_000; i++) {
        req.writeUInt16BE(i, 2);
        serverT.injectSync(req, { address: '127.0.0.1', port: 1 + (i % 3000), family: 'IPv4' });
      }
      assert.ok(server.memory().dedupEntries > 0);
      now += 300_000;
      // Lazy expiry: each new exchange sweeps a few expired ones from the oldest end.
      for (let i = 0; i < 5000; i++) {
        req.writeUInt16BE(i, 2);
        serverT.injectSync(req, { address: '127.0.0.2', port: 1, family: 'IPv4' });
      }
      assert.ok(server.memory().dedupEntries <= 32, `entries ${server.memory().dedupEntries}`);
      server.close();
    });
  });
});
