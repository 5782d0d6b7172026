/**
 * DTLS-PSK handshakes follow the allowlist (src/service/psk-index.ts, docs/dtls.md "PSK keys"): keys
 * come from memory, the copy follows this server's writes at once and another process's writes to the
 * SQLite file within the store's look interval, and a session outlives no change of its device's
 * secret — the request over it is judged against the entry as committed now.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadConfig } from '../../../src/config.ts';
import { silentLogger } from '../../../src/log.ts';
import { parseResponse } from '../../../src/protocol/messages.ts';
import { startServer, type RunningServer } from '../../../src/server.ts';
import { FOREIGN_POLL_MS, SqliteStore } from '../../../src/store/sqlite/store.ts';
import { DtlsClient, HandshakeError } from '../../../tools/dtls-peers/client.ts';
import { TestDevice } from '../../support/device.ts';
import { coapPost, coapReply } from '../../support/dtls-server.ts';
import { tempDir } from '../../support/temp-dir.ts';

const SECRET = 'printed-on-the-box-2024';
const actor = { by: 'test' };

describe('DTLS-PSK handshakes follow the allowlist (SQLite store)', function () {
  this.timeout(60_000);
  let server: RunningServer;
  const t = tempDir();
  const dataDir = join(t.dir, 'data');
  before(async () => {
    server = await startServer(loadConfig({ env: {}, flags: { dataDir, coapPort: 0, coapsPort: 0, adminPort: 0, bind: '127.0.0.1', mdns: false } }), silentLogger);
    await server.pskIndex.settled();
  });
  after(async () => {
    await server.close();
    t.cleanup();
  });
  const allow = (id: string, secret = SECRET) => server.admin.putAllow({ id, secret, type: 0, createdAt: server.service.now() }, actor);
  const connect = (id: string, secret = SECRET) => DtlsClient.connect({ host: '127.0.0.1', port: server.coapsPort, psk: { identity: id, key: Buffer.from(secret) } });
  const refused = (p: Promise<unknown>) => assert.rejects(p, (e: unknown) => e instanceof HandshakeError && e.alert === 20);
  async function provisionOver(c: DtlsClient, dev: TestDevice) {
    const nonce = parseResponse(coapReply(await c.request(coapPost('/idprov/request', dev.request()))).payload).nonce!;
    const r = coapReply(await c.request(coapPost('/idprov/request', dev.request({ nonce }))));
    return { code: r.code, body: parseResponse(r.payload) };
  }

  it('looks keys up in memory: handshakes read no store once the index is loaded', async () => {
    const dev = new TestDevice('psk-mem-01');
    await allow(dev.id);
    const before = server.pskIndex.stats.storeLookups;
    for (let i = 0; i < 3; i++) (await connect(dev.id)).close();
    await refused(connect('psk-mem-unknown'));
    assert.equal(server.pskIndex.stats.storeLookups, before);
  });

  it('a session made before its secret was replaced no longer proves it: 4.01, and the old key no longer shakes hands', async () => {
    const dev = new TestDevice('psk-replaced-01');
    await allow(dev.id);
    const c = await connect(dev.id);
    try {
      await allow(dev.id, 'a-new-secret-on-a-new-label');
      const r = await provisionOver(c, dev);
      assert.equal(r.code, '4.01');
      assert.equal(r.body.err, 11, 'oob-mismatch: the out-of-band secret was not proven');
    } finally {
      c.close();
    }
    await refused(connect(dev.id));
    const fresh = await connect(dev.id, 'a-new-secret-on-a-new-label');
    try {
      assert.equal((await provisionOver(fresh, dev)).code, '2.01');
    } finally {
      fresh.close();
    }
  });

  it('a removed entry: its open session proves nothing and its next handshake fails like a wrong key', async () => {
    const dev = new TestDevice('psk-removed-01');
    await allow(dev.id);
    const c = await connect(dev.id);
    try {
      await server.admin.deleteAllow(dev.id, actor);
      const r = await provisionOver(c, dev);
      assert.notEqual(r.code, '2.01');
    } finally {
      c.close();
    }
    await refused(connect(dev.id));
  });

  it("picks up another process's writes to the database file (the CLI) within the look interval", async () => {
    const other = await SqliteStore.open(join(dataDir, 'idprov.db'));
    try {
      await other.apply([{ kind: 'allow.upsert', entry: { id: 'psk-cli-01', secret: SECRET, type: 0, createdAt: server.service.now() } }]);
      await other.apply([{ kind: 'allow.delete', id: 'psk-mem-01' }]);
    } finally {
      await other.close();
    }
    const deadline = Date.now() + FOREIGN_POLL_MS * 5;
    while (server.pskIndex.lookup('psk-cli-01') === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    await server.pskIndex.settled();
    (await connect('psk-cli-01')).close();
    await refused(connect('psk-mem-01'));
  });
});
