/**
 * Issue 11 review, findings 3 and 6: the limit on answers to unverified sources (src/server.ts
 * `unverifiedLimits`) is keyed by a source address anyone can forge.
 * - Finding 3: before the fix a blind spoofer that never sees an answer spent the GET budget of a
 *   victim's address, and the genuine device there got 4.29 for `GET /idprov/keys` (which the
 *   device library needs to verify its token) and `GET /.well-known/core` for as long as the
 *   spoofer went on. Now a GET over the limit is answered in the smallest form (16-byte blocks, at
 *   most SMALLEST_EXTRA bytes longer than its request): the spoofer gains next to nothing, and the
 *   device still gets its answer.
 * - Finding 6: before the fix only GETs were limited; every other request that is not an idprov
 *   POST (POST/PUT/DELETE to any path, an unknown method) was answered without limit, with a
 *   diagnostic up to three times the request. Now those share the limit and get no answer over it.
 */
import { CoapCode } from '../../src/protocol/coap-codes.ts';
import assert from 'node:assert/strict';
import { parse } from 'coap-packet';
import { silentLogger } from '../../src/log.ts';
import { unverifiedLimits } from '../../src/device-api/unverified.ts';
import { CoapServer, SMALLEST_EXTRA } from '../../src/transport/coap/engine.ts';
import { createMemoryPair } from '../support/memory-transport.ts';
import type { Peer } from '../../src/transport/datagram.ts';
import { encodeRequest } from '../support/coap-engine.ts';

const VICTIM: Peer = { address: '192.0.2.10', port: 5683, family: 'IPv4' };
const KEYS = Buffer.from(Array.from({ length: 40 }, (_, i) => i));

function rig() {
  const [serverT] = createMemoryPair();
  const server = new CoapServer({
    log: silentLogger,
    unverified: unverifiedLimits({ coapAmplificationFactor: 3, rateLimitGet: 20, rateBurstGet: 100, rateLimitMaxKeys: 100_000 }),
  });
  server.addResource({ path: '/idprov/keys', rt: 'idprov.keys', ct: 102, methods: { GET: () => ({ code: CoapCode.Content, contentFormat: 102, payload: KEYS }) } });
  server.addResource({ path: '/idprov/request', methods: { POST: () => ({ code: CoapCode.BadRequest, payload: Buffer.from('a diagnostic') }) } });
  server.attach(serverT);
  const out: Buffer[] = [];
  serverT.onSend = (d) => out.push(d);
  return { server, serverT, out };
}

describe('the GET limit and a blind spoofer', () => {
  it('keeps answering a genuine device\'s GET /idprov/keys while a spoofer sends GETs with its address', () => {
    const { server, serverT, out } = rig();
    // The spoofer: 150 GETs from the victim's address and another port; it never reads an answer.
    for (let i = 0; i < 150; i++) serverT.injectSync(encodeRequest({ uri: '/idprov/keys', messageId: 1000 + i, token: Buffer.alloc(0) }), { ...VICTIM, port: 40000 + i });
    out.length = 0;
    serverT.injectSync(encodeRequest({ uri: '/idprov/keys', messageId: 1, token: Buffer.alloc(4, 1) }), { ...VICTIM });
    assert.equal(out.length, 1);
    assert.equal(parse(out[0]!).code, '2.05', 'the genuine device gets the key set, not 4.29');
    server.close();
  });

  it('answers GETs over the limit in 16-byte blocks no more than SMALLEST_EXTRA bytes longer than the request, which add up to the representation', () => {
    const { server, serverT, out } = rig();
    for (let i = 0; i < 150; i++) serverT.injectSync(encodeRequest({ uri: '/idprov/keys', messageId: 1000 + i, token: Buffer.alloc(0) }), { ...VICTIM, port: 40000 + i });
    const parts: Buffer[] = [];
    for (let num = 0; num < 10; num++) {
      out.length = 0;
      const req = encodeRequest({ uri: '/idprov/keys', messageId: 1 + num, token: Buffer.alloc(4, 1), ...(num > 0 ? { options: [{ name: 'Block2', value: Buffer.from([num * 16]) }] } : {}) });
      serverT.injectSync(req, { ...VICTIM });
      assert.equal(out.length, 1);
      assert.ok(out[0]!.length <= req.length + SMALLEST_EXTRA, `${out[0]!.length} bytes for a ${req.length}-byte request`);
      const m = parse(out[0]!);
      assert.equal(m.code, '2.05');
      assert.ok(m.payload.length <= 16);
      assert.equal(m.options.some((o) => o.name === 'Size2'), false);
      parts.push(m.payload);
      const b = m.options.find((o) => o.name === 'Block2')!.value as Buffer;
      if ((b[b.length - 1]! & 8) === 0) break;
    }
    assert.deepEqual(Buffer.concat(parts), KEYS);
    server.close();
  });

  it('sends no answer to a group request over the limit', () => {
    const { server, serverT, out } = rig();
    for (let i = 0; i < 150; i++) serverT.injectSync(encodeRequest({ uri: '/idprov/keys', messageId: 1000 + i, token: Buffer.alloc(0) }), { ...VICTIM, port: 40000 + i });
    out.length = 0;
    serverT.injectSync(encodeRequest({ uri: '/idprov/keys', type: 'NON', messageId: 7, token: Buffer.alloc(0) }), { ...VICTIM, multicast: true });
    assert.equal(out.length, 0);
    server.close();
  });
});

describe('unauthenticated answers other than GET', () => {
  it('limits the answers to requests other than GET that a spoofed source draws, like GETs', () => {
    const [serverT] = createMemoryPair();
    const server = new CoapServer({
      log: silentLogger,
      unverified: unverifiedLimits({ coapAmplificationFactor: 3, rateLimitGet: 20, rateBurstGet: 100, rateLimitMaxKeys: 100_000 }),
    });
    server.addResource({ path: '/idprov/keys', methods: { GET: () => ({ code: CoapCode.Content, payload: Buffer.alloc(40, 7) }) } });
    server.attach(serverT);
    let reqBytes = 0;
    let resBytes = 0;
    let answered = 0;
    serverT.onSend = (d) => {
      resBytes += d.length;
      answered++;
    };
    for (let i = 0; i < 1000; i++) {
      const q = encodeRequest({ uri: '/x', method: 'POST', messageId: i, token: Buffer.alloc(0) });
      reqBytes += q.length;
      serverT.injectSync(q, { ...VICTIM, port: 1000 + i });
    }
    assert.ok(answered <= 200, `${answered} answers (${resBytes} bytes for ${reqBytes} bytes of requests) to one spoofed address`);
    server.close();
  });

  it('leaves POSTs to the idprov resources to the provisioning service\'s limits', () => {
    const { server, serverT, out } = rig();
    for (let i = 0; i < 300; i++) serverT.injectSync(encodeRequest({ uri: '/idprov/request', method: 'POST', messageId: i, token: Buffer.alloc(0) }), { ...VICTIM, port: 1000 + i });
    assert.equal(out.length, 300);
    assert.ok(out.every((d) => parse(d).code === '4.00'));
    server.close();
  });
});

describe('unauthenticated requests the engine refuses itself', () => {
  it('counts a POST to an idprov resource that the engine refuses (a bad critical option) against the limit', () => {
    const { server, serverT, out } = rig();
    for (let i = 0; i < 300; i++) {
      const q = encodeRequest({ uri: '/idprov/request', method: 'POST', messageId: i, token: Buffer.alloc(0), options: [{ name: '9', value: Buffer.from([1]) }] });
      serverT.injectSync(q, { ...VICTIM, port: 1000 + i });
    }
    assert.ok(out.length <= 200, `${out.length} answers`);
    assert.ok(out.length >= 100, 'the burst is answered');
    server.close();
  });
});
