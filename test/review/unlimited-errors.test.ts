/**
 * Review of the issue #11 F5 fix: only GETs from unverified addresses are rate-limited
 * (src/server.ts unverifiedLimits: `if (method !== 'GET') return 0`). Every other request that is not
 * an idprov POST — a POST, PUT or DELETE to any path, an unknown method code — is answered without
 * limit, with a diagnostic that makes the answer larger than the request (up to the factor 3), to
 * whatever source address the datagram carries.
 */
import assert from 'node:assert/strict';
import { silentLogger } from '../../src/log.ts';
import { unverifiedLimits } from '../../src/server.ts';
import { CoapServer } from '../../src/transport/coap/engine.ts';
import { createMemoryPair } from '../../src/transport/coap/memory.ts';
import type { Peer } from '../../src/transport/datagram.ts';
import { encodeRequest } from '../coap/helpers.ts';

const VICTIM: Peer = { address: '192.0.2.10', port: 5683, family: 'IPv4' };

describe('unauthenticated answers other than GET (review of F5)', () => {
  it('limits the answers to requests other than GET that a spoofed source draws, like GETs', () => {
    const [serverT] = createMemoryPair();
    const server = new CoapServer({
      log: silentLogger,
      unverified: unverifiedLimits({ coapAmplificationFactor: 3, rateLimitGet: 20, rateBurstGet: 100, rateLimitMaxKeys: 100_000 }),
    });
    server.addResource({ path: '/idprov/keys', methods: { GET: () => ({ code: '2.05', payload: Buffer.alloc(40, 7) }) } });
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
});
