/**
 * The OpenAPI 3.1 document the sidecar generates from its routes' schemas (issue 14): valid by the
 * OpenAPI schema (@seriousme/openapi-schema-validator), public, and listing exactly the routes fastify
 * registered — each with its role, parameters and responses.
 */
import assert from 'node:assert/strict';
import { Validator } from '@seriousme/openapi-schema-validator';
import { call, registeredRoutes, startAdminServer, type AdminFixture } from '../support/admin-server.ts';

describe('OpenAPI document', () => {
  let f: AdminFixture;
  let doc: any;

  before(async () => {
    f = await startAdminServer('oas');
    const a = await call(f.base, 'GET', '/api/v1/openapi.json');
    assert.equal(a.status, 200, a.text);
    assert.equal(a.headers.get('content-type')?.split(';')[0], 'application/json');
    doc = a.json;
  });
  after(async () => {
    await f?.close();
  });

  it('is a valid OpenAPI 3.1 document, every $ref resolving', async () => {
    const v = new Validator();
    const res = await v.validate(structuredClone(doc));
    assert.equal(res.valid, true, JSON.stringify(res.errors, null, 2)?.slice(0, 3000));
    assert.equal(v.version, '3.1');
    assert.equal(doc.openapi, '3.1.0');
    const resolved = JSON.stringify(v.resolveRefs());
    assert.ok(!resolved.includes('"$ref"'), 'every $ref resolves');
  });

  it('lists every route the sidecar registered, and nothing else (HEAD stands with its GET)', () => {
    const registered = registeredRoutes(f.server.sidecar.printRoutes({ commonPrefix: false }))
      .filter((r) => r.method !== 'HEAD')
      .map((r) => `${r.method} ${r.route.replace(/:(\w+)/g, '{$1}')}`)
      .sort();
    assert.ok(registered.length >= 25, 'parsed the route tree');
    const documented = Object.entries(doc.paths as Record<string, Record<string, unknown>>)
      .flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`))
      .sort();
    assert.deepEqual(documented, registered);
    // And every HEAD the router has belongs to a documented GET.
    for (const r of registeredRoutes(f.server.sidecar.printRoutes({ commonPrefix: false })).filter((x) => x.method === 'HEAD')) {
      assert.ok(doc.paths[r.route.replace(/:(\w+)/g, '{$1}')]?.get, `HEAD ${r.route} has a GET`);
    }
  });

  it('says which role each operation needs, and those that need none are the ones that answer without a token', async () => {
    for (const [path, ops] of Object.entries(doc.paths as Record<string, Record<string, any>>)) {
      for (const [method, op] of Object.entries(ops)) {
        const role = op['x-idprov-role'];
        if (role) {
          assert.ok(['admin', 'hub'].includes(role), `${method} ${path}`);
          assert.deepEqual(op.security, [{ bearer: [] }], `${method} ${path}`);
        } else assert.deepEqual(op.security, [], `${method} ${path} is public`);
        if (method === 'get' && !path.includes('{') && path !== '/api/v1/events/stream') {
          const a = await call(f.base, 'GET', path);
          if (role) assert.equal(a.status, 401, `${path} without a token`);
          else assert.equal(a.status, 200, `${path} without a token`);
        }
      }
    }
    assert.equal(doc.paths['/api/v1/tokens'].get['x-idprov-role'], 'admin');
    assert.equal(doc.paths['/api/v1/devices'].get['x-idprov-role'], 'hub');
    assert.equal(doc.paths['/api/v1/health'].get['x-idprov-role'], undefined);
  });

  it('describes parameters, request bodies and responses from the schemas the routes validate with', async () => {
    const put = doc.paths['/api/v1/allowlist/{id}'].put;
    assert.deepEqual(put.parameters.map((p: { name: string; in: string }) => `${p.in}:${p.name}`), ['path:id', 'query:id']);
    assert.equal(put.requestBody.required, true);
    const body = doc.components.schemas[put.requestBody.content['application/json'].schema.$ref.split('/').pop()];
    assert.equal(body.additionalProperties, false);
    assert.ok(['pk', 'mac', 'secret', 'type', 'expires'].every((k) => k in body.properties));
    assert.ok(put.responses['200'] && put.responses['201'] && put.responses['4XX']);
    const list = doc.paths['/api/v1/devices'].get;
    const q = list.parameters.find((p: { name: string }) => p.name === 'q');
    assert.equal(q.in, 'query');
    assert.equal(q.schema.maxLength, 64);
    assert.equal(list.parameters.find((p: { name: string }) => p.name === 'limit').schema.maximum, 1000);
    assert.ok(list.responses['304'], 'conditional GET');
    assert.equal(doc.paths['/api/v1/pending/{id}/reject'].post.requestBody.required, false, 'the reason is optional, and so is the body');
    assert.ok(doc.paths['/api/v1/keys/cose'].get.responses['200'].content['application/cose-key-set']);
    assert.ok(doc.paths['/api/v1/events/stream'].get.responses['200'].content['text/event-stream']);
    // A request the schema refuses is refused by the route (the schemas are the ones in use).
    const admin = await f.server.auth.mint({ name: 'oas', role: 'admin', ttlS: 600 }, Math.floor(Date.now() / 1000));
    const refused = await call(f.base, 'PUT', '/api/v1/allowlist/oas-1', { token: admin, json: { mac: '02:00:00:00:00:01', colour: 'red' } });
    assert.equal(refused.status, 400);
    assert.equal(refused.json.error.code, 'malformed');
  });

  it('has named component schemas for the views, with the fields clients read', () => {
    const s = doc.components.schemas;
    for (const name of ['AllowEntry', 'PendingRequest', 'Device', 'Flag', 'Event', 'Jwks', 'TokenCheck', 'AdminToken', 'ImportResult', 'Error']) assert.ok(s[name], name);
    assert.ok(s.Device.required.includes('fingerprint'));
    assert.deepEqual(s.Error.required, ['error']);
    assert.equal(doc.components.securitySchemes.bearer.scheme, 'bearer');
  });
});
