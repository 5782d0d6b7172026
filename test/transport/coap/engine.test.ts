import { CoapCode } from '../../../src/protocol/coap-codes.ts';
import assert from 'node:assert/strict';
import { generate } from 'coap-packet';
import { CoapServer, coapTimings, type CoapRequest, type CoapResponse } from '../../../src/transport/coap/engine.ts';
import { createMemoryPair } from '../../support/memory-transport.ts';
import { silentLogger } from '../../../src/log.ts';
import { deferred, encodeRequest, fetchBlockwise, opt, setup, uint, uintBuf, TestClient } from '../../support/coap-engine.ts';

const hello = (): CoapResponse => ({ code: CoapCode.Content, contentFormat: 0, payload: Buffer.from('hello') });

describe('CoAP engine (RFC 7252) over an in-memory link', () => {
  describe('message layer', () => {
    it('answers a CON request with a piggybacked ACK carrying the same Message ID and token', async () => {
      const { server, client } = setup();
      server.addResource({ path: '/hello', methods: { GET: hello } });
      const token = Buffer.from('0102030405060708', 'hex');
      client.sendRaw(encodeRequest({ uri: '/hello', messageId: 4242, token }));
      const res = await client.waitFor(() => true);
      assert.equal(res.ack, true);
      assert.equal(res.messageId, 4242);
      assert.deepEqual(res.token, token);
      assert.equal(res.code, '2.05');
      assert.equal(uint(opt(res, 12)), 0);
      assert.equal(res.payload.toString(), 'hello');
      server.close();
    });

    it('answers a NON request with a NON response carrying the request token', async () => {
      const { server, client } = setup();
      server.addResource({ path: '/hello', methods: { GET: hello } });
      const res = await client.request({ uri: '/hello', type: 'NON' });
      assert.equal(res.confirmable, false);
      assert.equal(res.ack, false);
      assert.equal(res.reset, false);
      assert.equal(res.code, '2.05');
      server.close();
    });

    it('answers an empty CON (CoAP ping) with RST of the same Message ID', async () => {
      const { server, client } = setup();
      client.sendRaw(generate({ code: '0.00', confirmable: true, messageId: 77 }));
      const res = await client.waitFor(() => true);
      assert.equal(res.reset, true);
      assert.equal(res.messageId, 77);
      assert.equal(server.stats.pings, 1);
      server.close();
    });

    it('answers an async handler with a piggybacked ACK when it finishes before the separate-response delay', async () => {
      const { server, client } = setup();
      server.addResource({ path: '/a', methods: { POST: async (req) => ({ code: CoapCode.Changed, payload: req.payload }) } });
      const res = await client.request({ method: 'POST', uri: '/a', payload: Buffer.from('x') });
      assert.equal(res.ack, true);
      assert.equal(res.code, '2.04');
      assert.equal(res.payload.toString(), 'x');
      server.close();
    });

    it('hands the handler a typed request', async () => {
      const { server, client } = setup();
      let seen: CoapRequest | undefined;
      server.addResource({
        path: '/a/b',
        methods: {
          PUT: (req) => {
            seen = req;
            return { code: CoapCode.Changed };
          },
        },
      });
      const token = Buffer.from('cafe', 'hex');
      await client.request({
        method: 'PUT',
        uri: '/a/b?x=1&y',
        token,
        messageId: 99,
        payload: Buffer.from([1, 2, 3]),
        options: [
          { name: 'Content-Format', value: uintBuf(60) },
          { name: 'Accept', value: uintBuf(60) },
        ],
      });
      assert.ok(seen);
      assert.equal(seen.method, 'PUT');
      assert.equal(seen.path, '/a/b');
      assert.deepEqual(seen.query, ['x=1', 'y']);
      assert.equal(seen.contentFormat, 60);
      assert.equal(seen.accept, 60);
      assert.deepEqual(seen.payload, Buffer.from([1, 2, 3]));
      assert.equal(seen.confirmable, true);
      assert.deepEqual(seen.token, token);
      assert.equal(seen.messageId, 99);
      assert.equal(seen.peer.port, 40002);
      server.close();
    });

    it('maps an empty Uri-Path to the root resource and leaves absent options undefined', async () => {
      const { server, client } = setup();
      let seen: CoapRequest | undefined;
      server.addResource({ path: '/', methods: { GET: (req) => ((seen = req), hello()) } });
      const res = await client.request({ uri: '/' });
      assert.equal(res.code, '2.05');
      assert.equal(seen?.path, '/');
      assert.equal(seen?.contentFormat, undefined);
      assert.equal(seen?.accept, undefined);
      assert.equal(seen?.payload.length, 0);
      server.close();
    });

    it('writes Max-Age, extra options and the handler’s ETag in option order', async () => {
      const { server, client } = setup();
      server.addResource({
        path: '/x',
        methods: {
          POST: () => ({
            code: CoapCode.Created,
            contentFormat: 60,
            maxAge: 90,
            options: [
              { number: 8, value: Buffer.from('loc') },
              { number: 4, value: Buffer.from([9, 9]) },
              { number: 12, value: Buffer.from([1]) }, // engine-managed: dropped
            ],
          }),
        },
      });
      const res = await client.request({ method: 'POST', uri: '/x' });
      assert.equal(res.code, '2.01');
      assert.deepEqual(
        res.options.map((o) => o.name),
        ['ETag', 'Location-Path', 'Content-Format', 'Max-Age'],
      );
      assert.equal(uint(opt(res, 14)), 90);
      assert.equal(uint(opt(res, 12)), 60);
      server.close();
    });
  });

  describe('separate responses (RFC 7252 §5.2.2)', () => {
    it('sends an empty ACK for a slow handler, then the response as a separate CON that it retransmits until ACKed', async () => {
      const { server, client } = setup({ separateResponseAfterMs: 0, transmission: { ackTimeoutMs: 5 } });
      const gate = deferred<void>();
      let runs = 0;
      server.addResource({
        path: '/slow',
        methods: {
          GET: async () => {
            runs++;
            await gate.promise;
            return { code: CoapCode.Content, payload: Buffer.from('late') };
          },
        },
      });
      const token = Buffer.from('5101', 'hex');
      client.sendRaw(encodeRequest({ uri: '/slow', messageId: 500, token }));
      const ack = await client.waitFor(() => true);
      assert.equal(ack.ack, true);
      assert.equal(ack.code, '0.00');
      assert.equal(ack.messageId, 500);

      // The request is retransmitted: the empty ACK is repeated, the handler is not run again.
      client.sendRaw(encodeRequest({ uri: '/slow', messageId: 500, token }));
      const ack2 = await client.waitFor(() => true);
      assert.equal(ack2.ack, true);
      assert.equal(ack2.code, '0.00');

      gate.resolve();
      const first = await client.waitFor(() => true);
      assert.equal(first.confirmable, true);
      assert.equal(first.code, '2.05');
      assert.deepEqual(first.token, token);
      assert.equal(first.payload.toString(), 'late');
      // Not acknowledged: it comes again, same Message ID.
      const again = await client.waitFor(() => true);
      assert.equal(again.messageId, first.messageId);
      assert.equal(server.memory().pendingConfirmable, 1);
      client.sendRaw(generate({ code: '0.00', ack: true, messageId: first.messageId }));
      await client.barrier();
      assert.equal(server.memory().pendingConfirmable, 0);
      assert.equal(runs, 1);
      assert.equal(server.stats.separate, 1);
      // A retransmission of the request now gets the empty ACK again.
      client.sendRaw(encodeRequest({ uri: '/slow', messageId: 500, token }));
      const ack3 = await client.waitFor(() => true);
      assert.equal(ack3.code, '0.00');
      assert.equal(ack3.ack, true);
      assert.equal(runs, 1);
      server.close();
    });

    it('gives up on a separate response after MAX_RETRANSMIT retransmissions', async () => {
      const { server, client } = setup({ separateResponseAfterMs: 0, transmission: { ackTimeoutMs: 1, maxRetransmit: 3 } });
      server.addResource({ path: '/slow', methods: { GET: () => new Promise((r) => setTimeout(() => r(hello()), 5)) } });
      client.sendRaw(encodeRequest({ uri: '/slow', messageId: 1 }));
      await client.waitFor((m) => m.ack);
      const sends: number[] = [];
      for (let i = 0; i < 4; i++) sends.push((await client.waitFor((m) => m.confirmable)).messageId);
      assert.equal(new Set(sends).size, 1);
      while (server.stats.giveUps === 0) await new Promise((r) => setTimeout(r, 2));
      assert.equal(server.stats.retransmissions, 3);
      assert.equal(server.memory().pendingConfirmable, 0);
      const rest = await client.barrier();
      assert.equal(rest.filter((m) => m.confirmable).length, 0);
      server.close();
    });

    it('stops retransmitting a separate response when the client resets it', async () => {
      const { server, client } = setup({ separateResponseAfterMs: 0, transmission: { ackTimeoutMs: 5 } });
      const gate = deferred<void>();
      server.addResource({ path: '/slow', methods: { GET: async () => (await gate.promise, hello()) } });
      client.sendRaw(encodeRequest({ uri: '/slow', messageId: 2 }));
      await client.waitFor((m) => m.ack);
      gate.resolve();
      const sep = await client.waitFor((m) => m.confirmable);
      client.sendRaw(generate({ code: '0.00', reset: true, messageId: sep.messageId }));
      await client.barrier();
      assert.equal(server.memory().pendingConfirmable, 0);
      server.close();
    });

    it('cancels retransmission timers on close', async () => {
      const { server, client } = setup({ separateResponseAfterMs: 0, transmission: { ackTimeoutMs: 1000 } });
      const gate = deferred<void>();
      server.addResource({ path: '/slow', methods: { GET: async () => (await gate.promise, hello()) } });
      client.sendRaw(encodeRequest({ uri: '/slow', messageId: 3 }));
      await client.waitFor((m) => m.ack);
      gate.resolve();
      await client.waitFor((m) => m.confirmable);
      assert.equal(server.memory().pendingConfirmable, 1);
      server.close();
      assert.equal(server.memory().pendingConfirmable, 0);
    });

    it('sends the response of a slow NON request as NON without an empty ACK', async () => {
      const { server, client } = setup({ separateResponseAfterMs: 0 });
      const gate = deferred<void>();
      server.addResource({ path: '/slow', methods: { GET: async () => (await gate.promise, hello()) } });
      const p = client.request({ uri: '/slow', type: 'NON' });
      await client.barrier();
      gate.resolve();
      const res = await p;
      assert.equal(res.confirmable, false);
      assert.equal(res.ack, false);
      assert.equal(server.stats.separate, 0);
      server.close();
    });

    it('derives EXCHANGE_LIFETIME 247 s and NON_LIFETIME 145 s from the default transmission parameters', () => {
      const t = coapTimings();
      assert.equal(t.exchangeLifetimeMs, 247_000);
      assert.equal(t.nonLifetimeMs, 145_000);
      assert.equal(t.maxTransmitWaitMs, 93_000);
    });
  });

  describe('deduplication (RFC 7252 §4.5)', () => {
    it('answers a retransmitted CON from the cache without running the handler again', async () => {
      const { server, client } = setup();
      let runs = 0;
      server.addResource({ path: '/c', methods: { POST: () => ({ code: CoapCode.Changed, payload: Buffer.from(`run ${++runs}`) }) } });
      const req = encodeRequest({ method: 'POST', uri: '/c', messageId: 321 });
      client.sendRaw(req);
      const a = await client.waitFor(() => true);
      client.sendRaw(req);
      const b = await client.waitFor(() => true);
      assert.equal(runs, 1);
      assert.equal(a.payload.toString(), 'run 1');
      assert.deepEqual(b, a);
      assert.equal(server.stats.duplicates, 1);
      server.close();
    });

    it('ignores a duplicate that arrives while the handler is still running, and runs it once', async () => {
      const { server, client } = setup();
      const gate = deferred<void>();
      let runs = 0;
      server.addResource({ path: '/c', methods: { POST: async () => (runs++, await gate.promise, hello()) } });
      const req = encodeRequest({ method: 'POST', uri: '/c', messageId: 11 });
      client.sendRaw(req);
      client.sendRaw(req);
      client.sendRaw(req);
      const early = await client.barrier();
      assert.equal(early.length, 0);
      gate.resolve();
      const res = await client.waitFor(() => true);
      assert.equal(res.code, '2.05');
      assert.equal(runs, 1);
      assert.equal(server.stats.duplicates, 2);
      assert.deepEqual(await client.barrier(), []);
      server.close();
    });

    it('replays a cached NON response for a duplicated NON request', async () => {
      const { server, client } = setup();
      let runs = 0;
      server.addResource({ path: '/n', methods: { GET: () => (runs++, hello()) } });
      const req = encodeRequest({ uri: '/n', type: 'NON', messageId: 12 });
      client.sendRaw(req);
      client.sendRaw(req);
      const [a, b] = [await client.waitFor(() => true), await client.waitFor(() => true)];
      assert.deepEqual(a, b);
      assert.equal(runs, 1);
      server.close();
    });

    it('survives a lossy, duplicating link: each request runs its handler exactly once', async () => {
      const [serverT, clientT] = createMemoryPair();
      let n = 0;
      // Lose every third response (but never the RST that ends a barrier).
      serverT.faults.drop = (d) => ((d[0]! >> 4) & 3) !== 3 && n++ % 3 === 0;
      clientT.faults.duplicate = () => true; // every request arrives twice
      const server = new CoapServer({ log: silentLogger });
      server.attach(serverT);
      const client = new TestClient(clientT, serverT.peer);
      const runs = new Map<string, number>();
      server.addResource({
        path: '/r',
        methods: { POST: (req) => (runs.set(req.payload.toString(), (runs.get(req.payload.toString()) ?? 0) + 1), hello()) },
      });
      for (let i = 0; i < 30; i++) {
        const data = encodeRequest({ method: 'POST', uri: '/r', messageId: 2000 + i, payload: Buffer.from(String(i)) });
        // Retransmit until answered, like a client would after ACK_TIMEOUT.
        for (;;) {
          client.sendRaw(data);
          const got = await client.barrier();
          if (got.some((m) => m.messageId === 2000 + i)) break;
        }
      }
      assert.equal(runs.size, 30);
      for (const count of runs.values()) assert.equal(count, 1);
      server.close();
    });

    it('runs the handler again once EXCHANGE_LIFETIME has passed (lazy expiry on an injected clock)', async () => {
      let now = 1_000;
      const { server, client } = setup({ now: () => now });
      let runs = 0;
      server.addResource({ path: '/c', methods: { POST: () => (runs++, hello()) } });
      const req = encodeRequest({ method: 'POST', uri: '/c', messageId: 13 });
      client.sendRaw(req);
      await client.waitFor(() => true);
      now += 246_999;
      client.sendRaw(req);
      await client.waitFor(() => true);
      assert.equal(runs, 1);
      now += 2;
      client.sendRaw(req);
      await client.waitFor(() => true);
      assert.equal(runs, 2);
      server.close();
    });

    it('expires NON exchanges after NON_LIFETIME', async () => {
      let now = 0;
      const { server, client } = setup({ now: () => now });
      let runs = 0;
      server.addResource({ path: '/n', methods: { GET: () => (runs++, hello()) } });
      const req = encodeRequest({ uri: '/n', type: 'NON', messageId: 14 });
      client.sendRaw(req);
      await client.waitFor(() => true);
      now += 145_001;
      client.sendRaw(req);
      await client.waitFor(() => true);
      assert.equal(runs, 2);
      server.close();
    });

    it('keeps at most perPeer exchanges for one peer, evicting its oldest first', async () => {
      const { server, client } = setup({ dedup: { perPeer: 4 } });
      let runs = 0;
      server.addResource({ path: '/c', methods: { POST: () => (runs++, hello()) } });
      for (let mid = 1; mid <= 10; mid++) client.sendRaw(encodeRequest({ method: 'POST', uri: '/c', messageId: mid }));
      await client.barrier();
      assert.equal(server.memory().dedupEntries, 4);
      // Message IDs 7..10 are remembered, 1 is not.
      client.sendRaw(encodeRequest({ method: 'POST', uri: '/c', messageId: 10 }));
      client.sendRaw(encodeRequest({ method: 'POST', uri: '/c', messageId: 1 }));
      await client.barrier();
      assert.equal(runs, 11);
      server.close();
    });

    it('keeps the dedup state per transport, so one address on two transports never collides', async () => {
      const [s1, c1] = createMemoryPair();
      const [s2, c2] = createMemoryPair();
      const server = new CoapServer({ log: silentLogger });
      server.attach(s1);
      server.attach(s2);
      let runs = 0;
      server.addResource({ path: '/c', methods: { POST: () => (runs++, hello()) } });
      const a = new TestClient(c1, s1.peer);
      const b = new TestClient(c2, s2.peer);
      const req = encodeRequest({ method: 'POST', uri: '/c', messageId: 5 });
      a.sendRaw(req);
      b.sendRaw(req);
      await a.waitFor(() => true);
      await b.waitFor(() => true);
      assert.equal(runs, 2);
      server.close();
    });
  });

  describe('block-wise responses (RFC 7959)', () => {
    const big = Buffer.from(Array.from({ length: 5000 }, (_, i) => i % 251));

    it('reassembles a 5000-byte response from 1024-byte blocks with an ETag and Size2', async () => {
      const { server, client } = setup();
      let runs = 0;
      server.addResource({ path: '/big', methods: { GET: () => (runs++, { code: CoapCode.Content, contentFormat: 42, payload: big }) } });
      const { payload, blocks } = await fetchBlockwise(client, '/big');
      assert.deepEqual(payload, big);
      assert.equal(blocks.length, 5);
      assert.equal(uint(opt(blocks[0]!, 28)), 5000);
      const etags = new Set(blocks.map((b) => opt(b, 4)?.toString('hex')));
      assert.equal(etags.size, 1);
      assert.ok(!etags.has(undefined));
      assert.equal(runs, 1, 'later blocks come from the cache');
      for (const b of blocks) assert.ok(b.payload.length <= 1024);
      server.close();
    });

    it('honours a smaller block size requested by the client', async () => {
      const { server, client } = setup();
      server.addResource({ path: '/big', methods: { GET: () => ({ code: CoapCode.Content, payload: big }) } });
      const { payload, blocks } = await fetchBlockwise(client, '/big', 2);
      assert.deepEqual(payload, big);
      assert.equal(blocks.length, Math.ceil(5000 / 64));
      for (const b of blocks) assert.equal(uint(opt(b, 23))! & 7, 2);
      server.close();
    });

    it('serves later blocks by re-running a GET handler when the block cache is disabled', async () => {
      const { server, client } = setup({ blockCache: { maxEntries: 0 } });
      let runs = 0;
      server.addResource({ path: '/big', methods: { GET: () => (runs++, { code: CoapCode.Content, payload: big }) } });
      const { payload } = await fetchBlockwise(client, '/big');
      assert.deepEqual(payload, big);
      assert.equal(runs, 5);
      server.close();
    });

    it('renumbers blocks when the client asks for a larger block than the server uses', async () => {
      const { server, client } = setup({ blockSize: 256 });
      server.addResource({ path: '/big', methods: { GET: () => ({ code: CoapCode.Content, payload: big }) } });
      // Block 1 of size 1024 starts at byte 1024 = block 4 of size 256.
      const res = await client.request({ uri: '/big', options: [{ name: 'Block2', value: uintBuf(1 * 16 + 6) }] });
      const b2 = uint(opt(res, 23))!;
      assert.equal(b2 >> 4, 4);
      assert.equal(b2 & 7, 4);
      assert.deepEqual(res.payload, big.subarray(1024, 1280));
      server.close();
    });

    it('includes Size2 when the request asks for it, even for a single-block response', async () => {
      const { server, client } = setup();
      server.addResource({ path: '/hello', methods: { GET: hello } });
      const res = await client.request({ uri: '/hello', options: [{ name: 'Size2', value: Buffer.alloc(0) }] });
      assert.equal(uint(opt(res, 28)), 5);
      assert.equal(opt(res, 23), undefined);
      server.close();
    });

    it('answers a block number beyond the end with 4.00', async () => {
      const { server, client } = setup();
      server.addResource({ path: '/hello', methods: { GET: hello } });
      const res = await client.request({ uri: '/hello', options: [{ name: 'Block2', value: uintBuf(3 * 16 + 6) }] });
      assert.equal(res.code, '4.00');
      server.close();
    });

    it('answers SZX 7 in a request Block2 with 4.00', async () => {
      const { server, client } = setup();
      server.addResource({ path: '/hello', methods: { GET: hello } });
      const res = await client.request({ uri: '/hello', options: [{ name: 'Block2', value: uintBuf(7) }] });
      assert.equal(res.code, '4.00');
      server.close();
    });

    it('keeps the block cache within its byte budget', async () => {
      const { server, client } = setup({ blockCache: { maxBytes: 12_000 } });
      server.addResource({ path: '/big', methods: { GET: (req) => ({ code: CoapCode.Content, payload: Buffer.concat([big, Buffer.from(req.query.join())]) }) } });
      for (let i = 0; i < 10; i++) {
        await client.request({ uri: `/big?i=${i}` });
        assert.ok(server.memory().blockBytes <= 12_000);
      }
      assert.equal(server.memory().blockEntries, 2);
      server.close();
    });
  });

  describe('/.well-known/core (RFC 6690)', () => {
    function discovery() {
      const ctx = setup();
      const post = () => ({ code: CoapCode.Changed });
      ctx.server.addResource({ path: '/idprov/request', rt: 'idprov.request', ct: 60, accepts: [18], methods: { POST: post } });
      ctx.server.addResource({ path: '/idprov/refresh', rt: 'idprov.refresh', ct: 60, accepts: [18], methods: { POST: post } });
      ctx.server.addResource({ path: '/idprov/keys', rt: 'idprov.keys', ct: 102, title: 'Key "set"', methods: { GET: hello } });
      ctx.server.addResource({ path: '/internal', hidden: true, methods: { GET: hello } });
      return ctx;
    }

    it('lists every visible resource in link format with rt, ct and title', async () => {
      const { server, client } = discovery();
      const res = await client.request({ uri: '/.well-known/core' });
      assert.equal(res.code, '2.05');
      assert.equal(uint(opt(res, 12)), 40);
      assert.equal(
        res.payload.toString(),
        '</idprov/request>;rt="idprov.request";ct=60,</idprov/refresh>;rt="idprov.refresh";ct=60,' +
          '</idprov/keys>;rt="idprov.keys";ct=102;title="Key \\"set\\""',
      );
      server.close();
    });

    it('filters by an exact rt value', async () => {
      const { server, client } = discovery();
      const res = await client.request({ uri: '/.well-known/core?rt=idprov.keys' });
      assert.equal(res.payload.toString(), '</idprov/keys>;rt="idprov.keys";ct=102;title="Key \\"set\\""');
      server.close();
    });

    it('filters by an rt prefix ending in *', async () => {
      const { server, client } = discovery();
      const res = await client.request({ uri: '/.well-known/core?rt=idprov.re*' });
      assert.equal(res.payload.toString(), '</idprov/request>;rt="idprov.request";ct=60,</idprov/refresh>;rt="idprov.refresh";ct=60');
      const all = await client.request({ uri: '/.well-known/core?rt=idprov*' });
      assert.equal(all.payload.toString().split(',').length, 3);
      server.close();
    });

    it('filters by href and ct', async () => {
      const { server, client } = discovery();
      const byHref = await client.request({ uri: '/.well-known/core?href=/idprov/k*' });
      assert.equal(byHref.payload.toString().split(',').length, 1);
      const byCt = await client.request({ uri: '/.well-known/core?ct=60' });
      assert.equal(byCt.payload.toString().split(',').length, 2);
      server.close();
    });

    it('answers a unicast query that matches nothing with 2.05 and an empty payload', async () => {
      const { server, client } = discovery();
      const res = await client.request({ uri: '/.well-known/core?rt=nothing' });
      assert.equal(res.code, '2.05');
      assert.equal(res.payload.length, 0);
      server.close();
    });

    it('does not answer a multicast query that matches nothing, but answers one that matches', async () => {
      const { server, serverT, clientT } = discovery();
      const got: Buffer[] = [];
      serverT.onSend = (d) => got.push(d);
      const from = { ...clientT.peer, multicast: true };
      serverT.injectSync(encodeRequest({ uri: '/.well-known/core?rt=nothing', type: 'NON' }), from);
      assert.equal(got.length, 0);
      serverT.injectSync(encodeRequest({ uri: '/.well-known/core?rt=idprov.keys', type: 'NON' }), from);
      assert.equal(got.length, 1);
      assert.equal(server.stats.suppressed, 1);
      server.close();
    });

    it('rejects methods other than GET on /.well-known/core with 4.05', async () => {
      const { server, client } = discovery();
      const res = await client.request({ method: 'POST', uri: '/.well-known/core' });
      assert.equal(res.code, '4.05');
      server.close();
    });
  });

  describe('error responses', () => {
    function errors() {
      const ctx = setup({ maxPayload: 64 });
      ctx.server.addResource({ path: '/p', ct: 60, accepts: [18], methods: { POST: () => ({ code: CoapCode.Changed }) } });
      return ctx;
    }

    it('answers an unknown path with 4.04', async () => {
      const { server, client } = errors();
      assert.equal((await client.request({ uri: '/nope' })).code, '4.04');
      server.close();
    });

    it('answers a method the resource lacks with 4.05', async () => {
      const { server, client } = errors();
      assert.equal((await client.request({ method: 'GET', uri: '/p' })).code, '4.05');
      assert.equal((await client.request({ method: 'DELETE', uri: '/p' })).code, '4.05');
      server.close();
    });

    it('answers an unknown method code with 4.05', async () => {
      const { server, client } = errors();
      const res = await client.request({ method: '0.09', uri: '/p' });
      assert.equal(res.code, '4.05');
      server.close();
    });

    it('answers a payload over maxPayload with 4.13 and Size1', async () => {
      const { server, client } = errors();
      const res = await client.request({ method: 'POST', uri: '/p', payload: Buffer.alloc(65) });
      assert.equal(res.code, '4.13');
      assert.equal(uint(opt(res, 60)), 64);
      const ok = await client.request({ method: 'POST', uri: '/p', payload: Buffer.alloc(64) });
      assert.equal(ok.code, '2.04');
      server.close();
    });

    it('answers a request carrying Block1 with 4.13 and Size1 (request bodies are not reassembled)', async () => {
      const { server, client } = errors();
      const res = await client.request({
        method: 'POST',
        uri: '/p',
        payload: Buffer.alloc(16),
        options: [{ name: 'Block1', value: uintBuf(0 * 16 + 8 + 0) }],
      });
      assert.equal(res.code, '4.13');
      assert.equal(uint(opt(res, 60)), 64);
      server.close();
    });

    it('answers a Content-Format the resource does not accept with 4.15, and accepts an absent one', async () => {
      const { server, client } = errors();
      const res = await client.request({ method: 'POST', uri: '/p', options: [{ name: 'Content-Format', value: uintBuf(60) }] });
      assert.equal(res.code, '4.15');
      const ok = await client.request({ method: 'POST', uri: '/p', options: [{ name: 'Content-Format', value: uintBuf(18) }] });
      assert.equal(ok.code, '2.04');
      assert.equal((await client.request({ method: 'POST', uri: '/p' })).code, '2.04');
      server.close();
    });

    it('answers an Accept the resource cannot produce with 4.06 without running the handler', async () => {
      const { server, client } = setup();
      let runs = 0;
      server.addResource({ path: '/p', ct: 60, methods: { POST: () => (runs++, { code: CoapCode.Changed }) } });
      const res = await client.request({ method: 'POST', uri: '/p', options: [{ name: 'Accept', value: uintBuf(50) }] });
      assert.equal(res.code, '4.06');
      assert.equal(runs, 0);
      server.close();
    });

    it('answers an unrecognised critical option in a CON with 4.02 without running the handler', async () => {
      const { server, client } = setup();
      let runs = 0;
      server.addResource({ path: '/p', methods: { GET: () => (runs++, hello()) } });
      for (const o of [{ name: '9', value: Buffer.from([1]) }, { name: 'If-Match', value: Buffer.from([1]) }, { name: '2051', value: Buffer.alloc(0) }]) {
        const res = await client.request({ uri: '/p', options: [o] });
        assert.equal(res.code, '4.02', `option ${o.name}`);
      }
      assert.equal(runs, 0);
      server.close();
    });

    it('treats a critical option with a value length out of range, or repeated, as unrecognised (4.02)', async () => {
      const { server, client } = setup();
      server.addResource({ path: '/p', methods: { GET: hello } });
      const longAccept = await client.request({ uri: '/p', options: [{ name: 'Accept', value: Buffer.from([1, 2, 3]) }] });
      assert.equal(longAccept.code, '4.02');
      const twoAccepts = await client.request({
        uri: '/p',
        options: [
          { name: 'Accept', value: Buffer.from([0]) },
          { name: 'Accept', value: Buffer.from([0]) },
        ],
      });
      assert.equal(twoAccepts.code, '4.02');
      server.close();
    });

    it('ignores unrecognised elective options', async () => {
      const { server, client } = setup();
      server.addResource({ path: '/p', methods: { GET: hello } });
      const res = await client.request({ uri: '/p', options: [{ name: '2048', value: Buffer.from([1]) }, { name: 'Observe', value: Buffer.alloc(0) }] });
      assert.equal(res.code, '2.05');
      server.close();
    });

    it('rejects a NON request with an unrecognised critical option with RST', async () => {
      const { server, client } = setup();
      server.addResource({ path: '/p', methods: { GET: hello } });
      client.sendRaw(encodeRequest({ uri: '/p', type: 'NON', messageId: 31, options: [{ name: '9', value: Buffer.from([1]) }] }));
      const res = await client.waitFor(() => true);
      assert.equal(res.reset, true);
      assert.equal(res.messageId, 31);
      server.close();
    });

    it('answers Proxy-Uri with 5.05', async () => {
      const { server, client } = setup();
      const res = await client.request({ uri: '/', options: [{ name: 'Proxy-Uri', value: Buffer.from('coap://example/') }] });
      assert.equal(res.code, '5.05');
      server.close();
    });

    it('answers a Uri-Path that is not UTF-8 with 4.00', async () => {
      const { server, client } = setup();
      const res = await client.request({ uri: '/', options: [{ name: 'Uri-Path', value: Buffer.from([0xc3, 0x28]) }] });
      assert.equal(res.code, '4.00');
      server.close();
    });

    it('answers 5.00 when a handler throws, logs it, and keeps serving', async () => {
      const lines: unknown[] = [];
      const log = silentLogger.child({});
      log.error = ((obj: unknown) => void lines.push(obj)) as typeof log.error;
      const { server, client } = setup({ log });
      server.addResource({
        path: '/boom',
        methods: {
          GET: () => {
            throw new Error('boom');
          },
          POST: async () => {
            throw new Error('async boom');
          },
        },
      });
      server.addResource({ path: '/hello', methods: { GET: hello } });
      assert.equal((await client.request({ uri: '/boom' })).code, '5.00');
      assert.equal((await client.request({ method: 'POST', uri: '/boom' })).code, '5.00');
      assert.equal((await client.request({ uri: '/hello' })).code, '2.05');
      assert.equal(server.stats.handlerErrors, 2);
      assert.equal(lines.length, 2);
      server.close();
    });

    it('answers 5.00 when a handler returns an invalid response', async () => {
      const { server, client } = setup();
      const bad = [null, {}, { code: '2.05' }, { code: 2.5 }, { code: 0x60 }, { code: 0x01 }, { code: 0x100 }, { code: CoapCode.Content, payload: 'text' }, { code: CoapCode.Content, contentFormat: -1 }, { code: CoapCode.Content, options: [{ number: 4 }] }];
      let i = 0;
      server.addResource({ path: '/bad', methods: { GET: () => bad[i++] as unknown as CoapResponse } });
      for (let k = 0; k < bad.length; k++) assert.equal((await client.request({ uri: '/bad' })).code, '5.00', JSON.stringify(bad[k]));
      server.close();
    });

    it('suppresses error responses to multicast requests and never resets them', async () => {
      const { server, serverT, clientT } = setup();
      const got: Buffer[] = [];
      serverT.onSend = (d) => got.push(d);
      const from = { ...clientT.peer, multicast: true };
      serverT.injectSync(encodeRequest({ uri: '/nope', type: 'NON' }), from);
      serverT.injectSync(encodeRequest({ uri: '/nope', type: 'CON' }), from);
      serverT.injectSync(encodeRequest({ uri: '/', type: 'NON', options: [{ name: '9', value: Buffer.from([1]) }] }), from);
      serverT.injectSync(generate({ code: '0.00', confirmable: true, messageId: 1 }), from);
      serverT.injectSync(Buffer.from([0x40, 0x01, 0x00, 0x01, 0xf0]), from);
      assert.equal(got.length, 0);
      server.close();
    });

    it('answers a CON request received by multicast with NON', async () => {
      const { server, serverT, clientT } = setup();
      server.addResource({ path: '/hello', methods: { GET: hello } });
      const got: Buffer[] = [];
      serverT.onSend = (d) => got.push(d);
      serverT.injectSync(encodeRequest({ uri: '/hello', type: 'CON' }), { ...clientT.peer, multicast: true });
      assert.equal(got.length, 1);
      assert.equal((got[0]![0]! >> 4) & 3, 1);
      server.close();
    });
  });

  describe('overload and time-outs', () => {
    it('answers 5.03 with Max-Age when maxInFlight handlers are running, and serves the retransmission later', async () => {
      const { server, client } = setup({ maxInFlight: 2 });
      const gate = deferred<void>();
      server.addResource({ path: '/s', methods: { POST: async () => (await gate.promise, hello()) } });
      client.sendRaw(encodeRequest({ method: 'POST', uri: '/s', messageId: 1 }));
      client.sendRaw(encodeRequest({ method: 'POST', uri: '/s', messageId: 2 }));
      const third = encodeRequest({ method: 'POST', uri: '/s', messageId: 3 });
      client.sendRaw(third);
      const busy = await client.waitFor((m) => m.messageId === 3);
      assert.equal(busy.code, '5.03');
      assert.equal(uint(opt(busy, 14)), 1);
      gate.resolve();
      await client.waitFor((m) => m.messageId === 1);
      await client.waitFor((m) => m.messageId === 2);
      client.sendRaw(third);
      assert.equal((await client.waitFor((m) => m.messageId === 3)).code, '2.05');
      assert.equal(server.stats.overloaded, 1);
      server.close();
    });

    it('abandons a handler that never answers with 5.03 after handlerTimeoutMs and ignores its late result', async () => {
      const { server, client } = setup({ handlerTimeoutMs: 1, separateResponseAfterMs: 10_000 });
      const gate = deferred<void>();
      server.addResource({ path: '/hang', methods: { GET: async () => (await gate.promise, hello()) } });
      const res = await client.request({ uri: '/hang', type: 'NON' });
      assert.equal(res.code, '5.03');
      assert.equal(server.memory().inFlight, 0);
      gate.resolve();
      assert.deepEqual(await client.barrier(), []);
      assert.equal(server.stats.handlerTimeouts, 1);
      server.close();
    });
  });

  describe('configuration', () => {
    it('refuses invalid options, listing every problem', () => {
      assert.throws(
        () => new CoapServer({ log: silentLogger, maxPayload: -1, blockSize: 100, dedup: { perPeer: 0 } }),
        (e: Error) => e instanceof RangeError && /maxPayload/.test(e.message) && /blockSize/.test(e.message) && /perPeer/.test(e.message),
      );
    });

    it('refuses duplicate, relative or method-less resources', () => {
      const s = new CoapServer({ log: silentLogger });
      s.addResource({ path: '/a', methods: { GET: hello } });
      assert.throws(() => s.addResource({ path: '/a', methods: { GET: hello } }), TypeError);
      assert.throws(() => s.addResource({ path: 'b', methods: { GET: hello } }), TypeError);
      assert.throws(() => s.addResource({ path: '/c', methods: {} }), TypeError);
      assert.throws(() => s.addResource({ path: '/d e', methods: { GET: hello } }), TypeError);
      assert.throws(() => s.addResource({ path: '/.well-known/core', methods: { GET: hello } }), TypeError);
    });

    it('ignores datagrams after close', async () => {
      const { server, serverT, clientT } = setup();
      server.addResource({ path: '/hello', methods: { GET: hello } });
      server.close();
      const got: Buffer[] = [];
      serverT.onSend = (d) => got.push(d);
      serverT.injectSync(encodeRequest({ uri: '/hello' }), clientT.peer);
      assert.equal(got.length, 0);
      assert.equal(server.stats.dropped, 1);
    });
  });

  describe('stats', () => {
    it('counts received datagrams, duplicates and responses by class', async () => {
      const { server, client } = setup();
      server.addResource({ path: '/hello', methods: { GET: hello } });
      const req = encodeRequest({ uri: '/hello', messageId: 9 });
      client.sendRaw(req);
      client.sendRaw(req);
      await client.request({ uri: '/nope' });
      client.sendRaw(Buffer.from([0x80, 0, 0, 0])); // version 2: ignored
      await client.barrier();
      const s = server.stats;
      assert.equal(s.received, 5);
      assert.equal(s.duplicates, 1);
      assert.equal(s.requests, 2);
      assert.equal(s.responses[2], 1);
      assert.equal(s.responses[4], 1);
      assert.equal(s.responses[5], 0);
      assert.equal(s.dropped, 1);
      assert.equal(s.pings, 1);
      server.close();
    });
  });
});
