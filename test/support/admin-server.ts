/**
 * Helpers of the admin sidecar tests: the real server (src/server.ts) on loopback with a temporary
 * data directory, an HTTP helper for the sidecar, simulated devices, and tokens of every kind.
 */
import assert from 'node:assert/strict';
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { loadConfig, type Config } from '../../src/config.ts';
import type { AllowEntry } from '../../src/domain.ts';
import { silentLogger } from '../../src/log.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import { DeviceClient, type DeviceClientOptions } from '../../tools/device-sim/client.ts';
import { tempDir } from './temp-dir.ts';

export const nowS = (): number => Math.floor(Date.now() / 1000);

/** A running server with what the tests need around it. */
export interface AdminFixture {
  server: RunningServer;
  /** `http://127.0.0.1:<adminPort>` */
  base: string;
  dataDir: string;
  tmp: string;
  /** The admin token the server wrote at first start (`<data>/admin.token`). */
  adminToken: string;
  /** Devices made with {@link AdminFixture.device}; closed by `close`. */
  devices: DeviceClient[];
  /** A simulated device talking CoAP to the server, with a fresh ID unless given. */
  device(o?: Partial<DeviceClientOptions>): DeviceClient;
  /** Put entries in the allowlist through the service (not the sidecar). */
  allow(e: Partial<AllowEntry> & { id: string }): Promise<unknown>;
  /** A pending request: a fresh device that asked once and was told to wait. */
  pendingDevice(o?: Partial<DeviceClientOptions>): Promise<DeviceClient>;
  /** A provisioned device (allowlisted by key, then provisioned). */
  provisionedDevice(o?: Partial<DeviceClientOptions>): Promise<DeviceClient>;
  close(): Promise<void>;
}

let serial = 0;

/**
 * Start the real server in-process: CoAP and the sidecar on 127.0.0.1, ephemeral ports. `settings`
 * adds or overrides configuration (e.g. smaller caps); `clock` (ms) replaces the wall clock.
 */
export async function startAdminServer(prefix = 'adm', settings: Partial<Record<keyof Config, unknown>> = {}, clock?: () => number): Promise<AdminFixture> {
  const tmp = tempDir('idprov-admin-');
  const dataDir = join(tmp.dir, 'data');
  let server: RunningServer;
  try {
    server = await startServer(
      loadConfig({ env: {}, flags: { dataDir, coapPort: 0, coapsPort: 0, adminPort: 0, bind: '127.0.0.1', mdns: false, logLevel: 'silent', ...settings } }),
      silentLogger,
      ...(clock ? [clock] : []),
    );
  } catch (e) {
    tmp.cleanup();
    throw e;
  }
  const devices: DeviceClient[] = [];
  const f: AdminFixture = {
    server,
    base: `http://127.0.0.1:${server.adminPort}`,
    dataDir,
    tmp: tmp.dir,
    adminToken: readFileSync(server.adminTokenFile, 'utf8').trim(),
    devices,
    device(o = {}) {
      const c = new DeviceClient({ host: '127.0.0.1', port: server.coapPort, id: `${prefix}-${process.pid}-${++serial}`, timeoutMs: 10_000, ...o });
      devices.push(c);
      return c;
    },
    allow(e) {
      return server.importer.importEntries([{ type: 0, createdAt: nowS(), ...e }], { actor: { by: 'test' } });
    },
    async pendingDevice(o = {}) {
      const c = f.device(o);
      const r = await c.provision();
      assert.equal(r.status, 'pending', JSON.stringify(r));
      return c;
    },
    async provisionedDevice(o = {}) {
      const c = f.device(o);
      await f.allow({ id: c.id, pk: c.publicKey });
      const r = await c.provision();
      assert.equal(r.status, 'approved', JSON.stringify(r));
      return c;
    },
    async close() {
      await Promise.all(devices.splice(0).map((c) => c.close()));
      await server.close();
      tmp.cleanup();
    },
  };
  return f;
}

/** What {@link call} returns: status, headers, and the body as text and (when it parses) JSON. */
export interface Answer {
  status: number;
  headers: Headers;
  text: string;
  json: any;
}

export interface CallOptions {
  token?: string;
  /** The whole Authorization header (overrides `token`). */
  authorization?: string;
  json?: unknown;
  body?: string | Uint8Array;
  contentType?: string;
  headers?: Record<string, string>;
}

/** One request to the sidecar. */
export async function call(base: string, method: string, path: string, o: CallOptions = {}): Promise<Answer> {
  const headers: Record<string, string> = { ...o.headers };
  if (o.authorization !== undefined) headers['authorization'] = o.authorization;
  else if (o.token !== undefined) headers['authorization'] = `Bearer ${o.token}`;
  let body: string | Uint8Array | undefined = o.body;
  if (o.json !== undefined) {
    body = JSON.stringify(o.json);
    headers['content-type'] = 'application/json';
  }
  if (o.contentType) headers['content-type'] = o.contentType;
  const res = await fetch(base + path, { method, headers, ...(body !== undefined ? { body } : {}) });
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** Assert an error answer: the status and `{"error": {"code", "message"}}` with the stable code. */
export function assertError(a: Answer, status: number, code: string, what = ''): void {
  assert.equal(a.status, status, `${what} status (body ${a.text.slice(0, 300)})`);
  assert.equal(a.headers.get('content-type')?.split(';')[0], 'application/json', `${what} content type`);
  assert.equal(typeof a.json?.error, 'object', `${what} body has an error object: ${a.text.slice(0, 300)}`);
  assert.equal(a.json.error.code, code, `${what} error code`);
  assert.equal(typeof a.json.error.message, 'string', `${what} error message`);
  assert.ok(a.json.error.message.length > 0, `${what} error message is not empty`);
}

/** Tokens of every kind the authorization matrix needs. */
export interface Tokens {
  admin: string;
  hub: string;
  /** Not a token at all. */
  malformed: string;
  /** Signed by a key the server does not know. */
  wrongSignature: string;
  /** Signed by the server, with a 1-second lifetime that ended long ago. */
  expired: string;
  /** A hub token whose payload was edited to say admin (signature no longer matches). */
  tampered: string;
  /** `alg: none`, claiming admin. */
  unsigned: string;
}

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');

export async function makeTokens(server: RunningServer): Promise<Tokens> {
  const now = nowS();
  const admin = await server.auth.mint({ name: 'matrix-admin', role: 'admin', ttlS: 3600 }, now);
  const hub = await server.auth.mint({ name: 'matrix-hub', role: 'hub', ttlS: 3600 }, now);
  const expired = await server.auth.mint({ name: 'matrix-admin', role: 'admin', ttlS: 1 }, now - 100);
  const { privateKey } = generateKeyPairSync('ed25519');
  const wrongSignature = await new SignJWT({ role: 'admin' })
    .setProtectedHeader({ alg: 'EdDSA', typ: 'JWT' })
    .setIssuer('idprov-admin')
    .setSubject('mallory')
    .setIssuedAt(now)
    .setExpirationTime(now + 3600)
    .sign(createPrivateKey(privateKey.export({ format: 'pem', type: 'pkcs8' })));
  const [h, p, s] = hub.split('.');
  const payload = JSON.parse(Buffer.from(p!, 'base64url').toString()) as Record<string, unknown>;
  const tampered = `${h}.${b64({ ...payload, role: 'admin' })}.${s}`;
  const unsigned = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ ...payload, role: 'admin' })}.`;
  return { admin, hub, malformed: 'not-a-jwt', wrongSignature, expired, tampered, unsigned };
}

/** Read a server-sent event stream until `until(text so far)` holds; then abort it. */
export async function readSse(url: string, token: string, until: (text: string) => boolean, headers: Record<string, string> = {}, onOpen?: () => void | Promise<void>): Promise<{ status: number; contentType: string | null; text: string }> {
  const ac = new AbortController();
  const res = await fetch(url, { headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream', ...headers }, signal: ac.signal });
  let text = '';
  try {
    if (res.status !== 200) return { status: res.status, contentType: res.headers.get('content-type'), text: await res.text() };
    await onOpen?.();
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    while (!until(text)) {
      const { value, done } = await reader.read();
      if (done) break;
      text += dec.decode(value, { stream: true });
    }
    return { status: res.status, contentType: res.headers.get('content-type'), text };
  } finally {
    ac.abort();
  }
}

/** The seq of the last event in the feed (pages to the end). */
export async function lastEventSeq(base: string, token: string): Promise<number> {
  let after = 0;
  for (;;) {
    const a = await call(base, 'GET', `/api/v1/events?after=${after}&limit=1000`, { token });
    assert.equal(a.status, 200, a.text);
    after = a.json.next;
    if (a.json.events.length < 1000) return after;
  }
}

/**
 * The routes fastify registered, from `printRoutes({ commonPrefix: false })`: each line is a path
 * segment (indented four columns per level) with its methods in parentheses.
 */
export function registeredRoutes(tree: string): Array<{ method: string; route: string }> {
  const out: Array<{ method: string; route: string }> = [];
  const stack: string[] = [];
  for (const line of tree.split('\n')) {
    const m = /^([\s│]*)[└├]── (.*?)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (!m) continue;
    const depth = m[1]!.length / 4;
    stack.length = depth;
    stack.push(m[2]!);
    const route = stack.join('').replace(/\/{2,}/g, '/');
    for (const method of (m[3] ?? '').split(',').map((s) => s.trim()).filter(Boolean)) out.push({ method, route });
  }
  return out;
}
