/**
 * Issue 11 F5, in the engine: what a request from an unverified address (no DTLS session) can make
 * the server send (RFC 7252 §11.3). Datagrams are injected synchronously and every answer is
 * captured from the server's end of an in-memory link.
 */
import { CoapCode } from '../../../src/protocol/coap-codes.ts';
import assert from 'node:assert/strict';
import { parse } from 'coap-packet';
import { silentLogger } from '../../../src/log.ts';
import { CoapServer, type UnverifiedLimits } from '../../../src/transport/coap/engine.ts';
import { createMemoryPair } from '../../support/memory-transport.ts';
import type { Peer } from '../../../src/transport/datagram.ts';
import { encodeRequest, opt, uint, uintBuf } from '../../support/coap-engine.ts';

const BIG = Buffer.from(Array.from({ length: 1045 }, (_, i) => i & 0xff));
const CLIENT: Peer = { address: '192.0.2.10', port: 5000, family: 'IPv4' };

function rig(unverified: UnverifiedLimits) {
  const [serverT] = createMemoryPair();
  const server = new CoapServer({ log: silentLogger, unverified });
  let served = 0;
  server.addResource({ path: '/idprov/keys', rt: 'idprov.keys', ct: 102, methods: { GET: () => (served++, { code: CoapCode.Content, contentFormat: 102, payload: BIG }) } });
  server.attach(serverT);
  const out: Buffer[] = [];
  serverT.onSend = (d) => out.push(d);
  /** Send one request from `peer` and return what the server sent for it (synchronously). */
  const ask = (req: Buffer, peer: Peer = CLIENT): Buffer[] => {
    out.length = 0;
    serverT.injectSync(req, { ...peer });
    return [...out];
  };
  return { server, ask, served: () => served };
}

/** GET /idprov/keys with no token: 4 + 7 + 5 = 16 bytes. */
const get16 = (mid: number, block2?: number) =>
  encodeRequest({ uri: '/idprov/keys', messageId: mid, token: Buffer.alloc(0), ...(block2 !== undefined ? { options: [{ name: 'Block2', value: uintBuf(block2) }] } : {}) });

describe('CoAP answers to unverified addresses (RFC 7252 §11.3, issue 11 F5)', () => {
  it('answers a 16-byte GET with at most three times its size, block-wise, and the blocks add up to the representation', () => {
    const { server, ask } = rig({ amplificationFactor: 3 });
    const req = get16(1);
    assert.equal(req.length, 16);
    const parts: Buffer[] = [];
    let block2: number | undefined;
    for (let i = 0; i < 200; i++) {
      const q = i === 0 ? req : get16(100 + i, block2);
      const [res] = ask(q);
      assert.ok(res, `block ${i} answered`);
      assert.ok(res.length <= 3 * q.length, `block ${i}: ${res.length} bytes for a ${q.length}-byte request`);
      const m = parse(res);
      assert.equal(m.code, '2.05');
      parts.push(m.payload);
      const v = uint(opt(m, 23))!;
      if ((v & 8) === 0) break;
      block2 = (Math.floor(v / 16) + 1) * 16 + (v & 7);
    }
    assert.deepEqual(Buffer.concat(parts), BIG);
    assert.ok(server.stats.amplificationBounded > 0);
    server.close();
  });

  it('does not replay a cached answer to a shorter datagram with the same Message ID beyond the bound', () => {
    const { server, ask } = rig({ amplificationFactor: 3 });
    const long = encodeRequest({ uri: '/idprov/keys', messageId: 7, token: Buffer.alloc(8, 1) });
    const [first] = ask(long);
    assert.ok(first!.length > 3 * 6);
    const short = encodeRequest({ uri: '/x', messageId: 7, token: Buffer.alloc(0) }); // 6 bytes, same MID
    assert.deepEqual(ask(short), []);
    assert.deepEqual(ask(long), [first], 'the genuine retransmission is still answered');
    assert.equal(server.stats.amplificationDropped, 1);
    server.close();
  });

  it('sends the whole representation to a DTLS session, whose address its handshake proved', () => {
    const { server, ask } = rig({ amplificationFactor: 3 });
    const [res] = ask(get16(2), { ...CLIENT, sessionKey: 'dtls1' });
    assert.equal(parse(res!).payload.length, 1024, 'one full 1024-byte block');
    assert.equal(server.stats.amplificationBounded, 0);
    server.close();
  });

  it('leaves out the diagnostic payload of an error that would exceed the bound', () => {
    const { server, ask } = rig({ amplificationFactor: 1 });
    const req = encodeRequest({ uri: '/x', messageId: 3, token: Buffer.alloc(0) }); // 6 bytes; 4.04 "not found" would be 14
    const [res] = ask(req);
    const m = parse(res!);
    assert.equal(m.code, '4.04');
    assert.equal(m.payload.length, 0);
    assert.ok(res!.length <= req.length);
    server.close();
  });

  it('answers 4.29 with Max-Age when admit says wait, without running the handler, and nothing to a group', () => {
    let calls = 0;
    const { server, ask, served } = rig({ amplificationFactor: 3, admit: () => (++calls > 2 ? 7 : 0) });
    assert.equal(parse(ask(get16(10))[0]!).code, '2.05');
    assert.equal(parse(ask(get16(10))[0]!).code, '2.05', 'a retransmission is answered from the cache while admitted');
    const [res] = ask(get16(10));
    const m = parse(res!);
    assert.equal(m.code, '4.29', 'and charged too: a replay is no way around the limit');
    assert.equal(uint(opt(m, 14)), 7);
    assert.ok(res!.length <= 16);
    assert.deepEqual(ask(get16(11), { ...CLIENT, multicast: true }), []);
    assert.equal(server.stats.rateLimited, 2);
    assert.equal(served(), 1, 'the handler ran for the first request only');
    server.close();
  });

  it('never asks admit about a DTLS session', () => {
    let calls = 0;
    const { server, ask } = rig({ admit: () => (++calls, 5) });
    assert.equal(parse(ask(get16(20), { ...CLIENT, sessionKey: 'dtls2' })[0]!).code, '2.05');
    assert.equal(calls, 0);
    server.close();
  });

  it('bounds and admits a DTLS session that a Connection ID moved to an address it has not proven, like a plain CoAP source', () => {
    let calls = 0;
    const { server, ask } = rig({ amplificationFactor: 3, admit: () => (++calls > 1 ? 5 : 0) });
    const moved = { ...CLIENT, sessionKey: 'dtls3', addressUnproven: true };
    const req = get16(21);
    const res = ask(req, moved)[0]!;
    assert.equal(parse(res).code, '2.05');
    assert.ok(res.length <= 3 * req.length, `${res.length} bytes for a ${req.length}-byte request`);
    assert.equal(parse(ask(get16(22), moved)[0]!).code, '4.29');
    assert.equal(calls, 2);
    server.close();
  });
});
