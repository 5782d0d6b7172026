import assert from 'node:assert/strict';
import { verify } from 'node:crypto';
import { decodeCbor } from '../../../src/protocol/cbor.ts';
import { parseSign1, sigStructure } from '../../../src/protocol/cose.ts';
import { parseRefreshBody, parseRequestBody } from '../../../src/protocol/messages.ts';
import { generateEd25519, keyFingerprint, privateKeyFromSeed, publicKeyFromRaw } from '../../../src/tokens/ed25519.ts';
import {
  DeviceClient,
  DeviceSimError,
  buildRefresh,
  buildRequest,
  parseServerUri,
  requestBody,
  tokenClaims,
  verifyToken,
} from '../../../tools/device-sim/client.ts';
import { hex, toHex } from '../../support/bytes.ts';
import { V } from '../../support/vectors.ts';
import { ScriptedExchange } from '../../support/device-sim-server.ts';

/** The vector device as a request input. */
const vectorRequest = {
  id: V.device.id as string,
  key: hex(V.device.ed25519_seed),
  nonce: hex(V.nonce),
  mac: hex(V.device.mac),
  xk: hex(V.device.x25519_pk),
  secret: V.device.oob_secret_utf8 as string,
};

describe('device-sim request building (docs/spec/idprov-coap-v1.md §2, shared vectors)', () => {
  it('builds the vector request byte for byte from the vector seed, nonce, MAC, xk and OOB secret', () => {
    assert.equal(toHex(buildRequest(vectorRequest)), V.request.cose_sign1_untagged);
  });

  it('builds the tagged vector envelope when asked for tag 18', () => {
    assert.equal(toHex(buildRequest({ ...vectorRequest, tagged: true })), V.request.cose_sign1_tagged);
  });

  it('computes the vector OOB proof as Body key 7', () => {
    assert.equal(toHex(requestBody(vectorRequest).oob!), V.oob_proof.hmac_sha256);
  });

  it('builds the same bytes from a KeyObject as from the seed', () => {
    assert.equal(toHex(buildRequest({ ...vectorRequest, key: privateKeyFromSeed(hex(V.device.ed25519_seed)) })), V.request.cose_sign1_untagged);
  });

  it('builds the vector request through a client made from the vector seed, X25519 secret, MAC and secret', () => {
    const c = new DeviceClient({
      id: V.device.id,
      seed: hex(V.device.ed25519_seed),
      x25519Secret: hex(V.device.x25519_sk),
      mac: '24:0a:c4:12:34:56',
      secret: V.device.oob_secret_utf8,
      seal: true,
      exchange: new ScriptedExchange([]),
    });
    assert.equal(toHex(c.publicKey), V.device.ed25519_pk);
    assert.equal(c.fingerprint, keyFingerprint(hex(V.device.ed25519_pk)));
    const map = c.requestBodyMap(hex(V.nonce));
    assert.equal(toHex(map.get(7) as Uint8Array), V.oob_proof.hmac_sha256);
    assert.equal(toHex(map.get(6) as Uint8Array), V.device.x25519_pk);
  });

  it('leaves the nonce and the OOB proof out of a first request, which has no nonce yet', () => {
    const body = parseRequestBody(parseSign1(buildRequest({ ...vectorRequest, nonce: undefined })).payload);
    assert.equal(body.nonce, undefined);
    assert.equal(body.oob, undefined);
    assert.equal(toHex(body.pk), V.device.ed25519_pk);
    assert.equal(toHex(body.mac!), V.device.mac);
  });

  it('sends the client type in key 5 only for services and consumers', () => {
    const key = generateEd25519().privateKey;
    assert.equal(requestBody({ id: 'd', key }).type, 0);
    assert.equal(parseRequestBody(parseSign1(buildRequest({ id: 'd', key, type: 2 })).payload).type, 2);
    assert.equal((decodeCbor(parseSign1(buildRequest({ id: 'd', key })).payload) as Map<number, unknown>).has(5), false, 'no key 5 for a device');
  });

  it('signs a refresh with the device key over the token exactly as issued', () => {
    const env = parseSign1(buildRefresh({ id: V.device.id, key: hex(V.device.ed25519_seed), token: hex(V.token.cwt), nonce: hex(V.nonce) }));
    const body = parseRefreshBody(env.payload);
    assert.equal(body.id, V.device.id);
    assert.equal(toHex(body.token), V.token.cwt);
    assert.equal(toHex(body.nonce!), V.nonce);
    assert.ok(verify(null, sigStructure(env.protectedBytes, env.payload), publicKeyFromRaw(hex(V.device.ed25519_pk)), env.signature));
  });

  it('decodes the vector token claims for display and verifies it against the vector key set', () => {
    const c = tokenClaims(hex(V.token.cwt));
    assert.equal(c.sub, V.device.id);
    assert.equal(c.iss, 'idprov');
    assert.equal(toHex(c.cnf), V.device.ed25519_pk);
    assert.equal(verifyToken(hex(V.token.cwt), [{ kid: hex(V.server.kid), x: hex(V.server.ed25519_pk) }]), true);
    assert.equal(verifyToken(hex(V.token.cwt), [{ kid: hex(V.server.kid), x: hex(V.device.ed25519_pk) }]), false);
    assert.equal(verifyToken(hex(V.token.cwt), []), false);
  });

  it('parses coap server URIs with IPv4, bracketed IPv6 and the default port', () => {
    assert.deepEqual(parseServerUri('coap://127.0.0.1:5999'), { host: '127.0.0.1', port: 5999 });
    assert.deepEqual(parseServerUri('coap://[::1]:5999'), { host: '::1', port: 5999 });
    assert.deepEqual(parseServerUri('coap://localhost'), { host: 'localhost', port: 5683 });
    assert.deepEqual(parseServerUri('127.0.0.1:6000'), { host: '127.0.0.1', port: 6000 });
    assert.throws(() => parseServerUri('coaps://127.0.0.1'), (e: unknown) => e instanceof DeviceSimError && e.code === 'usage');
    assert.throws(() => parseServerUri('http://127.0.0.1'), (e: unknown) => e instanceof DeviceSimError && e.code === 'usage');
  });

  it('refuses an invalid device ID or MAC before sending anything', () => {
    const exchange = new ScriptedExchange([]);
    assert.throws(() => new DeviceClient({ id: 'bad id', exchange }), (e: unknown) => e instanceof DeviceSimError && e.code === 'usage');
    assert.throws(() => new DeviceClient({ id: 'ok', mac: '01:02', exchange }), (e: unknown) => e instanceof DeviceSimError && e.code === 'usage');
    assert.equal(exchange.sent.length, 0);
  });
});
