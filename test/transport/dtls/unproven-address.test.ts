/**
 * Issue 11 review, finding 2: a session moved by a Connection ID record is unverified at its new
 * address. Before the fix, with a Connection ID (RFC 9146) the server moves a session to the source address of any newer
 * authenticated CID record, with no return-routability check (RFC 9146 §6). Anyone can hold a
 * session (anonymous ECDHE, or its own PSK), so it can send its own records with a victim's source
 * address: the server moves the session there and sends every answer — unbounded in size, and not
 * counted against the GET limit — to the victim. The address was never proven. Now the session's
 * datagrams to an address it has not proven are bounded to 3× the authenticated bytes received from
 * there, and its requests reach the CoAP engine as unverified (`peer.addressUnproven`).
 */
import { CoapCode } from '../../../src/protocol/coap-codes.ts';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { CT } from '../../../src/transport/dtls/wire.ts';
import { DtlsClient } from '../../../tools/dtls-peers/client.ts';
import { coapGet, coapReply, startDtls, until, type TestServer } from '../../support/dtls-server.ts';

describe('a DTLS session moved by a Connection ID to an address it has not proven', function () {
  this.timeout(30_000);
  let s: TestServer;
  before(async () => {
    s = await startDtls();
    s.coap.addResource({ path: '/big', methods: { GET: () => ({ code: CoapCode.Content, payload: Buffer.alloc(1000, 0x61) }) } });
  });
  after(async () => {
    await s.close();
  });

  it('sends a session\'s answers to a new source address no larger than three times what came from there', async () => {
    const c = await DtlsClient.connect({ host: '127.0.0.1', port: s.port, suites: [0xc0ae], cid: Buffer.alloc(0) });
    const victim = createSocket('udp4');
    await new Promise<void>((r) => victim.bind(0, '127.0.0.1', () => r()));
    let received = 0;
    victim.on('message', (m) => (received += m.length));
    try {
      assert.equal(c.serverCid?.length, 8);
      // The attacker's own, fresh CID record, sent "from" the victim (here: from the victim's socket,
      // which is what a spoofed source address looks like to the server).
      let sent = 0;
      for (let i = 0; i < 5; i++) {
        const rec = (c as unknown as { rec(type: number, epoch: 1, p: Buffer): Buffer }).rec(CT.appData, 1, coapGet('/big'));
        sent += rec.length;
        victim.send(rec, s.port, '127.0.0.1');
      }
      await until(() => s.t.stats().migrated > 0, 'the server to see the records');
      await new Promise((r) => setTimeout(r, 300)); // let answers arrive, if any (the assertion is on bytes, not time)
      assert.ok(received <= 3 * sent, `the victim received ${received} bytes for ${sent} bytes sent in its name`);
    } finally {
      c.abandon();
      victim.close();
    }
  });

  it('lifts the bound when the session comes back to the address its handshake proved', async () => {
    const c = await DtlsClient.connect({ host: '127.0.0.1', port: s.port, suites: [0xc0ae], cid: Buffer.alloc(0) });
    const victim = createSocket('udp4');
    await new Promise<void>((r) => victim.bind(0, '127.0.0.1', () => r()));
    let received = 0;
    victim.on('message', (m) => (received += m.length));
    try {
      const before = s.t.stats().migrated;
      const rec = (c as unknown as { rec(type: number, epoch: 1, p: Buffer): Buffer }).rec(CT.appData, 1, coapGet('/big'));
      victim.send(rec, s.port, '127.0.0.1');
      await until(() => s.t.stats().migrated > before, 'the move to the unproven address');
      // A newer record from the client's own socket moves the session back; the answer is whole.
      const r = coapReply(await c.request(coapGet('/big')));
      assert.equal(r.code, '2.05');
      assert.equal(r.payload.length, 1000);
      assert.ok(received <= 3 * rec.length);
    } finally {
      c.abandon();
      victim.close();
    }
  });
});
