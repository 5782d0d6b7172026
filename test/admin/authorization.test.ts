/**
 * The authorization matrix of the admin sidecar: every route × every kind of credential. The table
 * below names each route with the role it needs; a test compares it with the routes fastify has
 * registered, so a route added without a row here fails the suite.
 */
import assert from 'node:assert/strict';
import { DeviceClient } from '../../tools/device-sim/client.ts';
import { assertError, call, makeTokens, readSse, registeredRoutes, startAdminServer, type AdminFixture, type Answer, type Tokens } from '../support/admin-server.ts';

type Need = 'public' | 'hub' | 'admin';

interface Row {
  method: string;
  /** The route as fastify knows it (`/api/v1/devices/:id`). */
  route: string;
  need: Need;
  /** The answer of an allowed request. */
  ok: number;
  /** Build the concrete request; may create what the request acts on (a pending device, …). */
  request?: (f: AdminFixture) => Promise<{ path?: string; json?: unknown; body?: string; contentType?: string }>;
  /** An event stream: read the headers, then hang up. */
  stream?: boolean;
}

const ROWS: Row[] = [
  { method: 'GET', route: '/', need: 'public', ok: 200 },
  { method: 'GET', route: '/page.js', need: 'public', ok: 200 },
  { method: 'GET', route: '/page.css', need: 'public', ok: 200 },
  { method: 'GET', route: '/api/v1/health', need: 'public', ok: 200 },
  { method: 'GET', route: '/api/v1/instances', need: 'hub', ok: 200 },
  {
    method: 'POST',
    route: '/api/v1/allowlist',
    need: 'admin',
    ok: 200,
    request: async () => ({ body: 'id,mac\nmatrix-upload,aa:bb:cc:00:00:01\n', contentType: 'text/csv' }),
  },
  { method: 'GET', route: '/api/v1/allowlist', need: 'admin', ok: 200 },
  {
    method: 'GET',
    route: '/api/v1/allowlist/:id',
    need: 'admin',
    ok: 200,
    request: async (f) => {
      await f.allow({ id: 'matrix-entry', mac: Buffer.from('aabbcc000002', 'hex') });
      return { path: '/api/v1/allowlist/matrix-entry' };
    },
  },
  {
    method: 'PUT',
    route: '/api/v1/allowlist/:id',
    need: 'admin',
    ok: 201,
    request: async () => ({ path: `/api/v1/allowlist/matrix-put-${Math.random().toString(36).slice(2, 8)}`, json: { mac: 'aa:bb:cc:00:00:04' } }),
  },
  {
    method: 'DELETE',
    route: '/api/v1/allowlist/:id',
    need: 'admin',
    ok: 204,
    request: async (f) => {
      await f.allow({ id: 'matrix-doomed', mac: Buffer.from('aabbcc000003', 'hex') });
      return { path: '/api/v1/allowlist/matrix-doomed' };
    },
  },
  { method: 'GET', route: '/api/v1/pending', need: 'hub', ok: 200 },
  {
    method: 'GET',
    route: '/api/v1/pending/:id',
    need: 'hub',
    ok: 200,
    request: async (f) => ({ path: `/api/v1/pending/${(await f.pendingDevice()).id}` }),
  },
  {
    method: 'POST',
    route: '/api/v1/pending/:id/approve',
    need: 'admin',
    ok: 200,
    request: async (f) => {
      const c = await f.pendingDevice();
      return { path: `/api/v1/pending/${c.id}/approve`, json: { fingerprint: c.fingerprint } };
    },
  },
  {
    method: 'POST',
    route: '/api/v1/pending/:id/reject',
    need: 'admin',
    ok: 204,
    request: async (f) => {
      const c = await f.pendingDevice();
      return { path: `/api/v1/pending/${c.id}/reject`, json: { reason: 'matrix' } };
    },
  },
  {
    method: 'POST',
    route: '/api/v1/pending/:id/unreject',
    need: 'admin',
    ok: 204,
    request: async (f) => {
      const id = `matrix-rejected-${Math.random().toString(36).slice(2, 8)}`;
      await f.server.admin.reject(id, 'matrix', { by: 'test' });
      return { path: `/api/v1/pending/${id}/unreject` };
    },
  },
  { method: 'GET', route: '/api/v1/flags', need: 'hub', ok: 200 },
  {
    method: 'POST',
    route: '/api/v1/flags/:id/clear',
    need: 'admin',
    ok: 200,
    request: async (f) => ({ path: `/api/v1/flags/${await openFlag(f)}/clear`, json: { note: 'matrix' } }),
  },
  { method: 'GET', route: '/api/v1/provisioning', need: 'hub', ok: 200 },
  { method: 'PUT', route: '/api/v1/provisioning', need: 'admin', ok: 200, request: async () => ({ json: { enabled: true } }) },
  { method: 'GET', route: '/api/v1/devices', need: 'hub', ok: 200 },
  {
    method: 'GET',
    route: '/api/v1/devices/:id',
    need: 'hub',
    ok: 200,
    request: async (f) => ({ path: `/api/v1/devices/${(await provisioned(f)).id}` }),
  },
  {
    method: 'POST',
    route: '/api/v1/devices/:id/revoke',
    need: 'admin',
    ok: 204,
    request: async (f) => {
      const c = await f.provisionedDevice();
      return { path: `/api/v1/devices/${c.id}/revoke`, json: { reason: 'matrix' } };
    },
  },
  {
    method: 'POST',
    route: '/api/v1/devices/:id/enable',
    need: 'admin',
    ok: 204,
    request: async (f) => {
      const c = await f.provisionedDevice();
      await f.server.admin.revoke(c.id, 'matrix', { by: 'test' });
      return { path: `/api/v1/devices/${c.id}/enable` };
    },
  },
  { method: 'GET', route: '/api/v1/keys/jwks', need: 'hub', ok: 200 },
  { method: 'GET', route: '/api/v1/keys/cose', need: 'hub', ok: 200 },
  {
    method: 'POST',
    route: '/api/v1/tokens/verify',
    need: 'hub',
    ok: 200,
    request: async (f) => ({ json: { token: (await provisioned(f)).token!.toString('hex') } }),
  },
  { method: 'GET', route: '/api/v1/openapi.json', need: 'public', ok: 200 },
  { method: 'GET', route: '/api/v1/tokens', need: 'admin', ok: 200 },
  {
    method: 'POST',
    route: '/api/v1/tokens/:jti/revoke',
    need: 'admin',
    ok: 200,
    request: async (f) => {
      const { record } = await f.server.auth.mintRecord({ name: 'matrix-doomed', role: 'hub', ttlS: 3600 }, Math.floor(Date.now() / 1000));
      return { path: `/api/v1/tokens/${record.jti}/revoke`, json: { reason: 'matrix' } };
    },
  },
  { method: 'GET', route: '/api/v1/events', need: 'hub', ok: 200 },
  { method: 'GET', route: '/api/v1/events/stream', need: 'hub', ok: 200, stream: true },
  { method: 'GET', route: '/metrics', need: 'hub', ok: 200 },
];

/** fastify answers HEAD for every GET route: the same rules apply. */
const MATRIX: Row[] = ROWS.flatMap((r) => (r.method === 'GET' ? [r, { ...r, method: 'HEAD' }] : [r]));

let shared: DeviceClient | undefined;
/** One provisioned device shared by the read-only rows. */
async function provisioned(f: AdminFixture): Promise<DeviceClient> {
  shared ??= await f.provisionedDevice();
  return shared;
}

/** An open flag to clear: a waiting device ID asks again with another key (`key-changed`). */
async function openFlag(f: AdminFixture): Promise<string> {
  const first = await f.pendingDevice();
  const again = f.device({ id: first.id });
  assert.equal((await again.provision()).status, 'pending');
  const page = await f.server.store.listFlags({ status: 'open', limit: 1000 });
  const flag = page.items.find((x) => x.kind === 'key-changed' && x.deviceIds.includes(first.id));
  assert.ok(flag, 'a key-changed flag was raised');
  return flag.id;
}


const key = (r: { method: string; route: string }) => `${r.method} ${r.route}`;

describe('admin sidecar authorization matrix', () => {
  let f: AdminFixture;
  let t: Tokens;

  before(async () => {
    f = await startAdminServer('mx');
    t = await makeTokens(f.server);
  });
  after(async () => {
    shared = undefined;
    await f?.close();
  });

  /** Send the row's request with an Authorization header (or none). */
  async function send(row: Row, authorization: string | undefined, withFixture = false): Promise<Answer> {
    const req = withFixture && row.request ? await row.request(f) : {};
    const path = req.path ?? row.route;
    if (row.stream && row.method === 'GET' && authorization !== undefined) {
      const token = authorization.replace(/^Bearer /, '');
      const r = await readSse(f.base + path, token, () => true);
      let json: unknown;
      try {
        json = JSON.parse(r.text);
      } catch {
        json = undefined;
      }
      return { status: r.status, headers: new Headers(r.contentType ? { 'content-type': r.contentType } : {}), text: r.text, json };
    }
    if (row.stream && row.method === 'HEAD' && authorization !== undefined) {
      // The stream stays open after the headers: read the status and hang up.
      const ac = new AbortController();
      const res = await fetch(f.base + path, { method: 'HEAD', headers: { authorization }, signal: ac.signal });
      ac.abort();
      return { status: res.status, headers: res.headers, text: '', json: undefined };
    }
    return call(f.base, row.method, path, {
      ...(authorization !== undefined ? { authorization } : {}),
      ...(req.json !== undefined ? { json: req.json } : {}),
      ...(req.body !== undefined ? { body: req.body, contentType: req.contentType ?? 'text/plain' } : {}),
    });
  }

  function assertRefused(a: Answer, row: Row, status: number, code: string, what: string): void {
    if (row.method === 'HEAD') assert.equal(a.status, status, `${what}: HEAD status`);
    else assertError(a, status, code, `${key(row)} ${what}`);
  }

  it('has a row for every route the sidecar registers, and no row for a route it lacks', () => {
    const registered = registeredRoutes(f.server.sidecar.printRoutes({ commonPrefix: false })).map(key).sort();
    assert.ok(registered.length >= 20, `parsed the route tree:\n${f.server.sidecar.printRoutes({ commonPrefix: false })}`);
    assert.deepEqual(MATRIX.map(key).sort(), registered);
  });

  for (const row of MATRIX) {
    const name = `${row.method} ${row.route}`;
    if (row.need === 'public') {
      it(`answers ${name} without a token (${row.ok})`, async () => {
        const a = await send(row, undefined);
        assert.equal(a.status, row.ok, a.text.slice(0, 200));
      });
      continue;
    }

    it(`refuses ${name} without a token, or with a malformed, forged, tampered, unsigned or expired one (401 unauthenticated)`, async () => {
      const cases: Array<[string, string | undefined]> = [
        ['no Authorization header', undefined],
        ['an empty bearer', 'Bearer '],
        ['another scheme', `Basic ${Buffer.from('admin:admin').toString('base64')}`],
        ['a malformed token', `Bearer ${t.malformed}`],
        ['a token signed by another key', `Bearer ${t.wrongSignature}`],
        ['a hub token edited to say admin', `Bearer ${t.tampered}`],
        ['an unsigned (alg none) token', `Bearer ${t.unsigned}`],
        ['an expired token', `Bearer ${t.expired}`],
      ];
      for (const [what, auth] of cases) assertRefused(await send(row, auth), row, 401, 'unauthenticated', what);
    });

    if (row.need === 'admin') {
      it(`refuses ${name} to a hub token (403 forbidden)`, async () => {
        assertRefused(await send(row, `Bearer ${t.hub}`), row, 403, 'forbidden', 'hub token');
      });
    } else {
      it(`answers ${name} to a hub token (${row.ok})`, async () => {
        const a = await send(row, `Bearer ${t.hub}`, true);
        assert.equal(a.status, row.ok, a.text.slice(0, 300));
      });
    }

    it(`answers ${name} to an admin token (${row.ok})`, async () => {
      const a = await send(row, `Bearer ${t.admin}`, true);
      assert.equal(a.status, row.ok, a.text.slice(0, 300));
    });
  }

  it('accepts the admin token the server wrote to <data>/admin.token at first start', async () => {
    const a = await call(f.base, 'GET', '/api/v1/devices', { token: f.adminToken });
    assert.equal(a.status, 200, a.text);
  });

  it('accepts a token with a lifetime until it ends, and refuses it after (the server clock decides)', async () => {
    const now = Math.floor(Date.now() / 1000);
    const live = await f.server.auth.mint({ name: 'short', role: 'hub', ttlS: 3600 }, now - 100);
    assert.equal((await call(f.base, 'GET', '/api/v1/devices', { token: live })).status, 200);
    const dead = await f.server.auth.mint({ name: 'short', role: 'hub', ttlS: 50 }, now - 100);
    assertError(await call(f.base, 'GET', '/api/v1/devices', { token: dead }), 401, 'unauthenticated');
  });
});
