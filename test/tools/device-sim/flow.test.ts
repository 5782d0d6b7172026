/**
 * The client's protocol steps (docs/spec/idprov-coap-v1.md §3–§5) against a scripted server: what it sends after each
 * answer, and how it reads answers a real server would only give when broken.
 */
import assert from 'node:assert/strict';
import { verify } from 'node:crypto';
import { decodeCbor } from '../../../src/protocol/cbor.ts';
import { parseSign1, sigStructure } from '../../../src/protocol/cose.ts';
import { parseRefreshBody, parseRequestBody, type ResponseBody } from '../../../src/protocol/messages.ts';
import { publicKeyFromRaw } from '../../../src/tokens/ed25519.ts';
import { DeviceClient, DeviceSimError, type DeviceClientOptions } from '../../../tools/device-sim/client.ts';
import type { ExchangeRequest } from '../../../tools/device-sim/transport.ts';
import { hex, toHex } from '../../support/bytes.ts';
import { V } from '../../support/vectors.ts';
import { ScriptedExchange, type Scripted } from '../../support/device-sim-server.ts';

const N1 = Buffer.alloc(24, 0x11);
const N2 = Buffer.alloc(24, 0x22);
const N3 = Buffer.alloc(24, 0x33);
const EXP = Date.parse('2026-01-01T01:00:00Z') / 1000;

const challenge = (nonce: Buffer): Scripted => ({ code: '4.01', body: { nonce, err: 3, diag: 'a server nonce is required (key 4)' } });
const pending = (nonce: Buffer, retry: number): Scripted => ({ code: '2.05', body: { status: 1, nonce, retry }, maxAge: retry });
const approved = (extra: ResponseBody = {}): Scripted => ({ code: '2.01', body: { status: 0, token: hex(V.token.cwt), exp: EXP, ttl: 3600, ...extra } });

/** The vector device, talking to a script. */
function vectorDevice(script: ConstructorParameters<typeof ScriptedExchange>[0], extra: Partial<DeviceClientOptions> = {}) {
  const exchange = new ScriptedExchange(script);
  const client = new DeviceClient({ id: V.device.id, seed: hex(V.device.ed25519_seed), x25519Secret: hex(V.device.x25519_sk), exchange, ...extra });
  return { client, exchange };
}

const sentRequest = (r: ExchangeRequest) => parseRequestBody(parseSign1(r.payload!).payload);
const sentRefresh = (r: ExchangeRequest) => parseRefreshBody(parseSign1(r.payload!).payload);

describe('device-sim protocol steps against a scripted server', () => {
  it('answers a 4.01 challenge by re-signing with the nonce it carried (§3)', async () => {
    const { client, exchange } = vectorDevice([challenge(N1), approved()]);
    const r = await client.provision();
    assert.equal(r.status, 'approved');
    assert.equal(r.code, '2.01');
    assert.equal(r.attempts, 2);
    assert.equal(toHex(r.token!), V.token.cwt);
    assert.equal(r.claims!.sub, V.device.id);
    assert.deepEqual(
      exchange.sent.map((s) => [s.method, s.path, s.contentFormat]),
      [['POST', '/idprov/request', 18], ['POST', '/idprov/request', 18]],
    );
    assert.equal(sentRequest(exchange.sent[0]!).nonce, undefined);
    assert.deepEqual(sentRequest(exchange.sent[1]!).nonce, N1);
    assert.deepEqual(client.token, r.token);
  });

  it('opens the vector sealed response with the device X25519 key (§5)', async () => {
    const { client, exchange } = vectorDevice([challenge(N1), { code: '2.01', raw: hex(V.sealed.approved_response_body) }], { seal: true });
    const r = await client.provision();
    assert.equal(r.status, 'approved');
    assert.equal(r.sealed, true);
    assert.equal(toHex(r.token!), V.token.cwt);
    assert.equal(r.exp, EXP);
    assert.equal(r.ttl, 3600);
    assert.equal(toHex(sentRequest(exchange.sent[1]!).xk!), V.device.x25519_pk);
  });

  it('uses the nonce of a pending response for its next attempt, without an extra round trip (§3)', async () => {
    const { client, exchange } = vectorDevice([challenge(N1), pending(N2, 60), approved()]);
    const first = await client.provision();
    assert.equal(first.status, 'pending');
    assert.equal(first.retry, 60);
    assert.equal(first.attempts, 2);
    assert.deepEqual(client.heldNonce, N2);
    const second = await client.provision();
    assert.equal(second.status, 'approved');
    assert.equal(second.attempts, 1);
    assert.deepEqual(sentRequest(exchange.sent[2]!).nonce, N2);
    assert.equal(client.heldNonce, undefined);
  });

  it('waits the retry hint of each pending response through the injected sleep, then takes the token', async () => {
    const { client, exchange } = vectorDevice([challenge(N1), pending(N2, 60), pending(N3, 90), approved()]);
    const slept: number[] = [];
    const r = await client.provision({ waitPending: true, sleep: async (s) => void slept.push(s) });
    assert.equal(r.status, 'approved');
    assert.equal(r.attempts, 4);
    assert.deepEqual(slept, [60, 90]);
    assert.deepEqual(exchange.sent.map((s) => sentRequest(s).nonce), [undefined, N1, N2, N3]);
  });

  it('proves the OOB secret again with each new nonce it answers', async () => {
    const secret = V.device.oob_secret_utf8 as string;
    const { client, exchange } = vectorDevice([challenge(hex(V.nonce)), pending(N2, 60), approved()], { secret });
    await client.provision({ waitPending: true, sleep: async () => undefined });
    assert.equal(sentRequest(exchange.sent[0]!).oob, undefined);
    assert.equal(toHex(sentRequest(exchange.sent[1]!).oob!), V.oob_proof.hmac_sha256);
    assert.notEqual(toHex(sentRequest(exchange.sent[2]!).oob!), V.oob_proof.hmac_sha256);
  });

  it('stops waiting and reports pending when the next wait would pass maxWaitS', async () => {
    const { client } = vectorDevice([challenge(N1), pending(N2, 60), pending(N3, 90)]);
    const slept: number[] = [];
    const r = await client.provision({ waitPending: true, maxWaitS: 100, sleep: async (s) => void slept.push(s) });
    assert.equal(r.status, 'pending');
    assert.equal(r.retry, 90);
    assert.deepEqual(slept, [60]);
  });

  it('gives up after re-signing twice when the server keeps refusing the nonce', async () => {
    const { client } = vectorDevice([challenge(N1), challenge(N2), challenge(N3)]);
    const r = await client.provision();
    assert.equal(r.status, 'refused');
    assert.equal(r.code, '4.01');
    assert.equal(r.errName, 'nonce');
    assert.equal(r.attempts, 3);
  });

  it('reports a refusal with its err name, diag and retry, and does not wait through it', async () => {
    const { client } = vectorDevice([challenge(N1), { code: '4.03', body: { status: 2, err: 6, retry: 3600, diag: 'an admin rejected this device' }, maxAge: 3600 }]);
    const slept: number[] = [];
    const r = await client.provision({ waitPending: true, sleep: async (s) => void slept.push(s) });
    assert.deepEqual(
      { status: r.status, code: r.code, err: r.err, errName: r.errName, retry: r.retry, diag: r.diag },
      { status: 'refused', code: '4.03', err: 6, errName: 'rejected', retry: 3600, diag: 'an admin rejected this device' },
    );
    assert.deepEqual(slept, []);
    assert.equal(client.token, undefined);
  });

  it('waits through 5.03 while provisioning is disabled when told to wait', async () => {
    const { client } = vectorDevice([{ code: '5.03', body: { err: 10, retry: 300, diag: 'disabled' } }, challenge(N1), approved()]);
    const slept: number[] = [];
    const r = await client.provision({ waitPending: true, sleep: async (s) => void slept.push(s) });
    assert.equal(r.status, 'approved');
    assert.deepEqual(slept, [300]);
  });

  it('takes the retry hint from Max-Age when the body has none', async () => {
    const { client } = vectorDevice([{ code: '4.29', body: { err: 9 }, maxAge: 42 }]);
    const r = await client.provision();
    assert.equal(r.retry, 42);
    assert.equal(r.errName, 'rate-limited');
  });

  it('fails with token-mismatch when the issued token is bound to another key', async () => {
    const exchange = new ScriptedExchange([approved()]);
    const client = new DeviceClient({ id: V.device.id, exchange });
    await assert.rejects(client.provision(), (e: unknown) => e instanceof DeviceSimError && e.code === 'token-mismatch');
    assert.equal(client.token, undefined);
  });

  it('fails with seal when the sealed token does not open with the device key', async () => {
    const exchange = new ScriptedExchange([{ code: '2.01', raw: hex(V.sealed.approved_response_body) }]);
    const client = new DeviceClient({ id: V.device.id, seed: hex(V.device.ed25519_seed), seal: true, exchange });
    await assert.rejects(client.provision(), (e: unknown) => e instanceof DeviceSimError && e.code === 'seal');
  });

  it('fails with bad-response on an approval without a token or an undecodable body', async () => {
    await assert.rejects(vectorDevice([{ code: '2.01', body: { status: 0, exp: EXP } }]).client.provision(), (e: unknown) => e instanceof DeviceSimError && e.code === 'bad-response');
    await assert.rejects(vectorDevice([{ code: '2.01', raw: Buffer.from([0xff]) }]).client.provision(), (e: unknown) => e instanceof DeviceSimError && e.code === 'bad-response');
  });

  it('refreshes with the current token in key 8, signed by the key it is bound to (§2, §5)', async () => {
    const { client, exchange } = vectorDevice([challenge(N1), approved({ ttl: 2_592_000 })], { token: hex(V.token.cwt) });
    const r = await client.refresh();
    assert.equal(r.status, 'approved');
    assert.equal(r.ttl, 2_592_000);
    assert.equal(r.attempts, 2);
    const sent = exchange.sent[1]!;
    assert.equal(sent.path, '/idprov/refresh');
    const body = sentRefresh(sent);
    assert.equal(body.id, V.device.id);
    assert.equal(toHex(body.token), V.token.cwt);
    assert.deepEqual(body.nonce, N1);
    const env = parseSign1(sent.payload!);
    assert.ok(verify(null, sigStructure(env.protectedBytes, env.payload), publicKeyFromRaw(hex(V.device.ed25519_pk)), env.signature));
  });

  it('refreshes in one round trip with the nonce a 2.01 carried (key 4, §3), and in two after one without', async () => {
    const { client, exchange } = vectorDevice([challenge(N1), approved({ nonce: N2 }), approved(), challenge(N3), approved()]);
    assert.equal((await client.provision()).attempts, 2);
    assert.deepEqual(client.heldNonce, N2, 'kept from the 2.01');
    const r = await client.refresh();
    assert.equal(r.status, 'approved');
    assert.equal(r.attempts, 1, 'no 4.01 first');
    assert.deepEqual(sentRefresh(exchange.sent[2]!).nonce, N2);
    const again = await client.refresh();
    assert.equal(again.attempts, 2, 'that 2.01 carried none (an older server): challenged first');
    assert.equal(sentRefresh(exchange.sent[3]!).nonce, undefined);
    assert.deepEqual(sentRefresh(exchange.sent[4]!).nonce, N3);
  });

  it('refuses to refresh without a token, with code no-token, sending nothing', async () => {
    const { client, exchange } = vectorDevice([]);
    await assert.rejects(client.refresh(), (e: unknown) => e instanceof DeviceSimError && e.code === 'no-token');
    assert.equal(exchange.sent.length, 0);
  });

  it('posts a body map signed with the device key, and raw bytes exactly as given', async () => {
    const { client, exchange } = vectorDevice([challenge(N1), challenge(N2), challenge(N3)]);
    const map = client.requestBodyMap(N1);
    map.set(99, 'an unknown key');
    const reply = await client.post('/idprov/request', map);
    assert.equal(reply.code, '4.01');
    assert.deepEqual(reply.body!.nonce, N1);
    const env = parseSign1(exchange.sent[0]!.payload!);
    assert.equal((decodeCbor(env.payload) as Map<number, unknown>).get(99), 'an unknown key');
    assert.ok(verify(null, sigStructure(env.protectedBytes, env.payload), publicKeyFromRaw(hex(V.device.ed25519_pk)), env.signature));
    await client.post('/idprov/request', hex(V.request.cose_sign1_tagged), { contentFormat: null });
    assert.equal(toHex(exchange.sent[1]!.payload!), V.request.cose_sign1_tagged);
    assert.equal(exchange.sent[1]!.contentFormat, undefined);
    await client.post('/idprov/request', map, { contentFormat: 60 });
    assert.equal(exchange.sent[2]!.contentFormat, 60);
    assert.equal(client.heldNonce, undefined, 'post leaves the client state alone');
  });

  it('decodes the key set of /idprov/keys', async () => {
    const { client, exchange } = vectorDevice([{ code: '2.05', raw: hex(V.keyset) }]);
    const keys = await client.keys();
    assert.deepEqual(keys.map((k) => [toHex(k.kid), toHex(k.x)]), [[V.server.kid, V.server.ed25519_pk]]);
    assert.deepEqual([exchange.sent[0]!.method, exchange.sent[0]!.path], ['GET', '/idprov/keys']);
  });
});
