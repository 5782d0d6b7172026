/**
 * Upper bounds of allowlist fields outside the file parser (security review F8): the service path
 * that adds entries, and the DTLS PSK lookup for an over-long secret an old database may still hold.
 */
import assert from 'node:assert/strict';
import { ALERT } from '../../src/transport/dtls/wire.ts';
import { DtlsClient, HandshakeError } from '../../tools/dtls-peers/client.ts';
import { nowS, startAdminServer, type AdminFixture } from '../support/admin-server.ts';

const PSK_CCM8 = 0xc0a8;

describe('allowlist field bounds outside the file parser (F8)', () => {
  let f: AdminFixture;
  before(async () => {
    f = await startAdminServer('bnd');
  });
  after(async () => f?.close());

  it('refuses to add an entry with a secret over 64 bytes, or an id the protocol refuses, through the admin service', async () => {
    await assert.rejects(f.allow({ id: 'svc-long', secret: 's'.repeat(65) }), (e: Error & { code?: string }) => e.code === 'malformed' && /longer than 64 bytes/.test(e.message));
    await assert.rejects(f.allow({ id: '..', secret: 's'.repeat(20) }), (e: Error & { code?: string }) => e.code === 'malformed' && /id:/.test(e.message));
    assert.equal(await f.server.store.getAllow('svc-long'), undefined);
    await f.allow({ id: 'svc-64', secret: 's'.repeat(64) });
    assert.equal((await f.server.store.getAllow('svc-64'))?.secret?.length, 64);
  });

  it('takes no over-long secret as a DTLS pre-shared key, even one already in the database', async () => {
    const long = 'L'.repeat(65);
    const ok = 'K'.repeat(64);
    // Written to the store directly, as a database from before the bound would hold it.
    await f.server.store.apply([
      { kind: 'allow.upsert', entry: { id: 'psk-long', secret: long, type: 0, createdAt: nowS() } },
      { kind: 'allow.upsert', entry: { id: 'psk-64', secret: ok, type: 0, createdAt: nowS() } },
    ]);
    // Written past the server's change notification: the in-memory PSK copy sees it at its next load.
    await f.server.pskIndex.reload();
    const connect = (identity: string, key: string) => DtlsClient.connect({ host: '127.0.0.1', port: f.server.coapsPort, suites: [PSK_CCM8], psk: { identity, key: Buffer.from(key) } });
    (await connect('psk-64', ok)).close();
    await assert.rejects(connect('psk-long', long), (e: unknown) => e instanceof HandshakeError && e.alert === ALERT.badRecordMac);
  });
});
