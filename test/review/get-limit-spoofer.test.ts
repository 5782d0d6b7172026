/**
 * Review of the issue #11 F5 fix: the limit on unauthenticated GETs is keyed by the source address of
 * a plain CoAP/UDP datagram, which anyone can forge. A blind spoofer that never sees an answer can
 * therefore spend the GET budget of a victim's address, and the genuine device there then gets 4.29
 * for `GET /idprov/keys` (which the device library needs to verify its token, docs/device.md) and for
 * `GET /.well-known/core` for as long as the spoofer goes on — the F4 pattern again.
 */
import assert from 'node:assert/strict';
import { parse } from 'coap-packet';
import { silentLogger } from '../../src/log.ts';
import { unverifiedLimits } from '../../src/server.ts';
import { CoapServer } from '../../src/transport/coap/engine.ts';
import { createMemoryPair } from '../../src/transport/coap/memory.ts';
import type { Peer } from '../../src/transport/datagram.ts';
import { encodeRequest } from '../coap/helpers.ts';

const VICTIM: Peer = { address: '192.0.2.10', port: 5683, family: 'IPv4' };

describe('the GET limit and a blind spoofer (review of F5)', () => {
  it('keeps answering a genuine device\'s GET /idprov/keys while a spoofer sends GETs with its address', () => {
    const [serverT] = createMemoryPair();
    const server = new CoapServer({
      log: silentLogger,
      unverified: unverifiedLimits({ coapAmplificationFactor: 3, rateLimitGet: 20, rateBurstGet: 100, rateLimitMaxKeys: 100_000 }),
    });
    server.addResource({ path: '/idprov/keys', rt: 'idprov.keys', ct: 102, methods: { GET: () => ({ code: '2.05', contentFormat: 102, payload: Buffer.alloc(40, 7) }) } });
    server.attach(serverT);
    const out: Buffer[] = [];
    serverT.onSend = (d) => out.push(d);
    // The spoofer: 150 GETs from the victim's address and another port; it never reads an answer.
    for (let i = 0; i < 150; i++) serverT.injectSync(encodeRequest({ uri: '/idprov/keys', messageId: 1000 + i, token: Buffer.alloc(0) }), { ...VICTIM, port: 40000 + i });
    out.length = 0;
    serverT.injectSync(encodeRequest({ uri: '/idprov/keys', messageId: 1, token: Buffer.alloc(4, 1) }), { ...VICTIM });
    assert.equal(out.length, 1);
    assert.equal(parse(out[0]!).code, '2.05', 'the genuine device gets the key set, not 4.29');
    server.close();
  });
});
