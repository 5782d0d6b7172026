import assert from 'node:assert/strict';
import { CoapUdpExchange } from '../../../tools/device-sim/transport.ts';
import { startLiveServer, type LiveServer } from '../../support/device-sim-server.ts';

describe('the simulator transport over node-coap', () => {
  let server: LiveServer;
  before(async () => {
    server = await startLiveServer();
  });
  after(async () => server.close());

  it('reports the Content-Format and Max-Age options that node-coap hands over already decoded', async () => {
    const x = new CoapUdpExchange({ host: '127.0.0.1', port: server.port });
    try {
      const keys = await x.request({ method: 'GET', path: '/idprov/keys' });
      assert.equal(keys.code, '2.05');
      assert.equal(keys.contentFormat, 102);
      await server.admin.setProvisioning(false, 'test', { by: 'test' });
      const off = await x.request({ method: 'POST', path: '/idprov/request', payload: Buffer.from('a0', 'hex'), contentFormat: 18 });
      assert.equal(off.code, '5.03');
      assert.equal(off.contentFormat, 60);
      assert.equal(off.maxAge, 300, 'the retry hint is repeated as Max-Age (docs/spec/idprov-coap-v1.md §4)');
    } finally {
      await x.close();
    }
  });
});
