/**
 * The admin sidecar (issue #3): a JSON API under `/api/v1` for admins and the Hub, Prometheus metrics,
 * and the approval web page. A thin layer over the services: it authenticates, checks roles, validates
 * input, and maps errors to JSON bodies with stable codes (`{"error": {"code", "message"}}`).
 */
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Readable } from 'node:stream';
import type { AllowEntry, DeviceRecord, EventRecord, FlagRecord, PendingRecord, Revocation } from '../domain.ts';
import { ERROR_TABLE, ProvError, isProvError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { formatMac, parseAllowRow } from '../protocol/allowlist.ts';
import { AdminQueries, MAX_QUERY_CHARS, type SearchOptions } from '../service/admin-queries.ts';
import type { AdminService } from '../service/admin.ts';
import type { Collection, ObservedStore } from '../service/changes.ts';
import type { ProvisioningService } from '../service/provisioning.ts';
import type { Page, Store } from '../store/store.ts';
import { keyFingerprint, keyFingerprintsIn } from '../tokens/ed25519.ts';
import type { TokenKeyring } from '../tokens/keyring.ts';
import { roleAllows, type AdminAuth, type Principal, type Role } from './auth.ts';
import { MAX_UPLOAD_BYTES, type AllowlistImporter } from './import.ts';
import type { Metrics } from './metrics.ts';
import { WatcherSlots, refusalMessage } from './watchers.ts';

/** Everything the sidecar needs, built by the composition root. */
export interface SidecarDeps {
  store: Store;
  changes: ObservedStore;
  service: ProvisioningService;
  admin: AdminService;
  keyring: TokenKeyring;
  auth: AdminAuth;
  importer: AllowlistImporter;
  metrics: Metrics;
  log: Logger;
  /** Seconds since the epoch. */
  now: () => number;
  version: string;
  /**
   * The live instances on a shared PostgreSQL database (docs/scale-out.md), this one included; absent
   * with SQLite (one instance).
   */
  instances?: () => ReadonlyArray<{ name: string; host: string; coapPort: number; coapsPort: number; adminPort: number; version: string; startedAt: number; seenAt: number }>;
  /** Shortest OOB secret an allowlist entry may have (setting minSecretLength). Default 12. */
  minSecretLength?: number;
  /** Longest long-poll wait (s). Default 30. */
  maxWaitS?: number;
  /** Cap of concurrent event watchers (SSE + long polls). Default 256; a quarter is kept for admin tokens. */
  maxWatchers?: number;
  /** Watchers one token may hold. Default 16. */
  watchersPerToken?: number;
  /** Lifetime of one event stream (s); the client reconnects. Default 300. */
  streamLifetimeS?: number;
  /** Serve HTTPS with this certificate and key (PEM). */
  https?: { cert: Buffer; key: Buffer };
}

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
  interface FastifyContextConfig {
    /** Least role the route needs; absent = public. */
    role?: Role;
  }
}

/**
 * Headers of every sidecar response (security review F12): no framing by any other page (clickjacking
 * of the approval buttons), no MIME sniffing, no Referer leaving the sidecar, and for everything but
 * the page a CSP that allows nothing at all.
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};
const API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
/** The approval page's CSP: its own script and style files only, no inline code, no framing. */
export const PAGE_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/** Reconnection delay an event stream asks its client for (ms). */
const RETRY_MS = 2000;

const hex = (b: Uint8Array | undefined): string | undefined => (b ? Buffer.from(b).toString('hex') : undefined);
const iso = (t: number | undefined): string | undefined => (t === undefined ? undefined : new Date(t * 1000).toISOString());
const TYPE_NAMES = ['device', 'service', 'consumer'] as const;

/** JSON views: keys as hex with their fingerprint, MACs as aa:bb:…, times as ISO 8601. No secrets. */
export const views = {
  allow: (e: AllowEntry) => ({
    id: e.id,
    pk: hex(e.pk),
    fingerprint: e.pk ? keyFingerprint(e.pk) : undefined,
    mac: e.mac ? formatMac(e.mac) : undefined,
    hasSecret: e.secret !== undefined,
    type: TYPE_NAMES[e.type],
    expires: iso(e.expires),
    createdAt: iso(e.createdAt),
    consumedAt: iso(e.consumedAt),
  }),
  pending: (p: PendingRecord) => ({
    id: p.id,
    status: p.status,
    pk: p.pk.length ? hex(p.pk) : undefined,
    fingerprint: p.pk.length ? keyFingerprint(p.pk) : undefined,
    mac: p.mac ? formatMac(p.mac) : undefined,
    type: TYPE_NAMES[p.type],
    source: p.source || undefined,
    firstSeen: iso(p.firstSeen),
    lastSeen: iso(p.lastSeen),
    count: p.count,
    decidedAt: iso(p.decidedAt),
    decidedBy: p.decidedBy,
  }),
  device: (d: DeviceRecord, r?: Revocation) => ({
    id: d.id,
    pk: hex(d.pk),
    fingerprint: keyFingerprint(d.pk),
    mac: d.mac ? formatMac(d.mac) : undefined,
    type: TYPE_NAMES[d.type],
    via: d.via,
    provisionedAt: iso(d.provisionedAt),
    lastSeen: iso(d.lastSeen),
    source: d.source,
    tokenExp: iso(d.tokenExp),
    revoked: r ? { at: iso(r.at), by: r.by, reason: r.reason } : undefined,
  }),
  flag: (f: FlagRecord) => ({
    id: f.id,
    kind: f.kind,
    status: f.clearedAt === undefined ? 'open' : 'cleared',
    deviceIds: f.deviceIds,
    subject: f.subject,
    evidence: f.evidence,
    // Keys in the evidence (64 hex digits: expected / got / recorded …) as the fingerprints people compare.
    fingerprints: keyFingerprintsIn(f.evidence),
    firstSeen: iso(f.firstSeen),
    lastSeen: iso(f.lastSeen),
    count: f.count,
    clearedAt: iso(f.clearedAt),
    clearedBy: f.clearedBy,
  }),
  event: (e: EventRecord) => ({
    seq: e.seq,
    at: iso(e.at),
    kind: e.kind,
    deviceId: e.deviceId,
    actor: e.actor,
    source: e.source,
    detail: e.detail,
  }),
};

function bodyObject(req: FastifyRequest): Record<string, unknown> {
  const b = req.body;
  if (b === undefined || b === null || b === '') return {};
  if (typeof b !== 'object' || Array.isArray(b)) throw new ProvError('malformed', 'body must be a JSON object');
  return b as Record<string, unknown>;
}

/**
 * The record ID a route names: its `:id` path segment, or, when that segment is `~`, the `id` query
 * parameter. Browsers and fetch collapse the dot segments `.` and `..` (even percent-encoded), so
 * those IDs — no longer valid, but an older database may hold them — travel in the query
 * (`/devices/~/revoke?id=..`). `~` is no valid ID, so the two forms never clash.
 */
export function routeId(req: FastifyRequest): string {
  const id = (req.params as { id: string }).id;
  if (id !== '~') return id;
  const q = (req.query as Record<string, unknown>)['id'];
  if (typeof q !== 'string' || q === '' || q.length > 256) throw new ProvError('malformed', 'with ~ in the path, give the ID as the id query parameter');
  return q;
}

function optString(o: Record<string, unknown>, k: string, max = 500): string | undefined {
  const v = o[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || v.length > max) throw new ProvError('malformed', `${k} must be a string of at most ${max} characters`);
  return v;
}

function listOpts(q: Record<string, unknown>): SearchOptions & { limit: number } {
  const limit = q['limit'] === undefined ? 100 : typeof q['limit'] === 'string' ? Number(q['limit']) : NaN;
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new ProvError('malformed', 'limit must be an integer from 1 to 1000');
  const after = q['after'];
  if (after !== undefined && (typeof after !== 'string' || after.length > 256)) throw new ProvError('malformed', 'after must be one cursor (the "next" of the previous page)');
  const search = q['q'];
  if (search !== undefined && (typeof search !== 'string' || search.length > MAX_QUERY_CHARS)) throw new ProvError('malformed', `q must be a string of at most ${MAX_QUERY_CHARS} characters`);
  return { limit, ...(after ? { after } : {}), ...(search ? { q: search } : {}) };
}

/** True when an If-None-Match header (a list of entity tags, or `*`) matches `tag` (weak comparison). */
function etagMatches(header: string | undefined, tag: string): boolean {
  if (!header) return false;
  return header.split(',').some((t) => {
    const x = t.trim();
    return x === '*' || x.replace(/^W\//, '') === tag;
  });
}

function pageOut<T, V>(p: Page<T>, view: (t: T) => V): { items: V[]; next?: string } {
  return p.next ? { items: p.items.map(view), next: p.next } : { items: p.items.map(view) };
}

/** Build the sidecar (not listening yet). */
export async function buildSidecar(d: SidecarDeps): Promise<FastifyInstance> {
  const app = Fastify({
    logger: false,
    bodyLimit: 1 << 20,
    trustProxy: false,
    // HTTPS when the composition root passes a certificate (adminCert / adminKey).
    ...((d.https ? { https: d.https } : {}) as object),
    // Errors the router raises before any route runs (undecodable URL, over-long path parameter) get the
    // same JSON body as every other error instead of fastify's own shape.
    frameworkErrors: (err, _req, reply) => {
      const message = err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'a path parameter is too long' : 'the URL does not decode';
      // No hooks run for these: the security headers are set here.
      void (reply as unknown as FastifyReply).status(400).headers({ ...SECURITY_HEADERS, 'content-security-policy': API_CSP }).send({ error: { code: 'malformed', message } });
    },
  });
  const maxWaitS = d.maxWaitS ?? 30;
  const queries = new AdminQueries({ store: d.store, keyring: d.keyring });
  const watcherLimits = { max: d.maxWatchers ?? 256, perToken: d.watchersPerToken ?? 16 };
  const watchers = new WatcherSlots(watcherLimits);
  /** A watcher slot for the request's token, or 429 naming the cap that refused it. */
  const watcherSlot = (req: FastifyRequest): (() => void) => {
    const r = watchers.acquire(req.principal!);
    if (typeof r === 'string') throw new ProvError('rate-limited', refusalMessage(r, watcherLimits));
    return r;
  };
  const streamLifetimeMs = (d.streamLifetimeS ?? 300) * 1000;
  const heartbeatMs = Math.min(15_000, Math.max(100, Math.floor(streamLifetimeMs / 3)));

  app.setErrorHandler((err: unknown, req, reply) => {
    let code: keyof typeof ERROR_TABLE = 'internal';
    let message = 'internal error';
    if (isProvError(err)) {
      code = err.code;
      message = err.message;
    } else if (typeof err === 'object' && err !== null && 'statusCode' in err && typeof err.statusCode === 'number' && err.statusCode < 500) {
      code = err.statusCode === 413 ? 'too-large' : err.statusCode === 415 ? 'unsupported-content-format' : err.statusCode === 404 ? 'not-found' : 'malformed';
      message = (err as unknown as Error).message;
    } else {
      d.log.error({ err, url: req.url }, 'sidecar internal error');
    }
    const status = ERROR_TABLE[code].http;
    if (status >= 400 && status < 500) d.log.info({ evt: 'admin-refused', code, url: req.url, by: req.principal?.name, src: req.ip }, message);
    void reply.status(status).send({ error: { code, message } });
  });
  app.addHook('onSend', async (_req, reply, payload) => {
    void reply.headers(SECURITY_HEADERS);
    if (!reply.hasHeader('content-security-policy')) void reply.header('content-security-policy', API_CSP);
    return payload;
  });
  app.setNotFoundHandler((_req, reply) => {
    void reply.status(404).send({ error: { code: 'not-found', message: 'no such route' } });
  });

  // Authentication and role check for every route that declares a role (everything but health and the page).
  app.addHook('onRequest', async (req) => {
    const need = req.routeOptions.config.role;
    if (!need) return;
    const h = req.headers.authorization;
    if (!h || !/^Bearer\s+\S+$/i.test(h)) throw new ProvError('unauthenticated', 'missing bearer token');
    const principal = await d.auth.verify(h.replace(/^Bearer\s+/i, ''), d.now());
    if (!roleAllows(principal.role, need)) throw new ProvError('forbidden', `this operation needs the ${need} role`);
    req.principal = principal;
  });

  const actor = (req: FastifyRequest) => ({ by: `admin:${req.principal!.name}`, source: req.ip });

  /**
   * Conditional GET: answer 304 when the collections behind the resource have not changed. The tag
   * covers the query string too, so each page of a list (and each filter) has its own. Call it after
   * the query is validated, so an invalid request is refused rather than answered 304.
   */
  const etagged = (req: FastifyRequest, reply: FastifyReply, cols: Collection[]): boolean => {
    const qs = req.url.indexOf('?');
    const query = qs < 0 ? '' : req.url.slice(qs + 1);
    const qtag = query ? `-${createHash('sha256').update(query).digest('base64url').slice(0, 12)}` : '';
    const tag = `"${d.changes.bootId}-${d.changes.versionOf(...cols)}${qtag}"`;
    void reply.header('etag', tag).header('cache-control', 'no-cache');
    if (etagMatches(req.headers['if-none-match'], tag)) {
      void reply.status(304).send();
      return true;
    }
    return false;
  };

  const v1 = '/api/v1';

  app.get(`${v1}/health`, async () => ({
    status: 'ok',
    version: d.version,
    provisioning: d.service.provisioning,
    kid: d.keyring.current.kid,
    // How many, not which: health needs no token.
    ...(d.instances ? { instances: d.instances().length } : {}),
  }));

  // ---- instances sharing the database (hosts and ports: a token is needed)
  app.get(`${v1}/instances`, { config: { role: 'hub' } }, async () => ({
    shared: d.instances !== undefined,
    instances: (d.instances?.() ?? []).map((i) => ({ name: i.name, host: i.host, coapPort: i.coapPort, coapsPort: i.coapsPort, adminPort: i.adminPort, version: i.version, startedAt: i.startedAt, seenAt: i.seenAt })),
  }));

  // ---- allowlist
  // Uploads are streamed to the importer raw (CSV or JSON), never buffered or parsed by fastify, so
  // line numbers refer to the file as sent and a million rows never sit in memory.
  await app.register(async (upload) => {
    upload.removeAllContentTypeParsers();
    upload.addContentTypeParser('*', (_req, payload, done) => done(null, payload));
    upload.post(`${v1}/allowlist`, { config: { role: 'admin' }, bodyLimit: MAX_UPLOAD_BYTES }, async (req, reply) => {
      const mode = (req.query as Record<string, string>)['mode'] ?? 'all';
      if (mode !== 'all' && mode !== 'valid') throw new ProvError('malformed', 'mode must be "all" (all or nothing) or "valid" (import the valid rows)');
      const ct = String(req.headers['content-type'] ?? '');
      if (!/^(text\/csv|text\/plain|application\/json|application\/octet-stream)\b/.test(ct)) {
        throw new ProvError('unsupported-content-format', 'send the allowlist as text/csv or application/json');
      }
      const body = req.body as Readable | undefined;
      if (!body || typeof body.pipe !== 'function') throw new ProvError('malformed', 'empty upload');
      const result = await d.importer.import(body, { format: ct.startsWith('application/json') ? 'json' : 'auto', mode, actor: actor(req) });
      d.log.info(
        { evt: 'admin', kind: 'allowlist.import', by: req.principal!.name, rows: result.rows, added: result.added, updated: result.updated, invalid: result.invalid, imported: result.imported },
        'allowlist upload',
      );
      void reply.status(result.imported || result.invalid === 0 ? 200 : 422);
      return result;
    });
  });
  app.get(`${v1}/allowlist`, { config: { role: 'admin' } }, async (req, reply) => {
    const opts = listOpts(req.query as Record<string, unknown>);
    if (etagged(req, reply, ['allowlist'])) return reply;
    return pageOut(await queries.listAllow(opts), views.allow);
  });
  // One entry, added or replaced, validated like a row of an allowlist file.
  app.put(`${v1}/allowlist/:id`, { config: { role: 'admin' } }, async (req, reply) => {
    const id = routeId(req);
    const b = bodyObject(req);
    if (b['id'] !== undefined && b['id'] !== id) throw new ProvError('malformed', 'the body names another id than the path');
    for (const k of Object.keys(b)) if (!['id', 'pk', 'mac', 'secret', 'type', 'expires'].includes(k)) throw new ProvError('malformed', `unknown field "${k.slice(0, 40)}"`);
    let parsed: ReturnType<typeof parseAllowRow>;
    try {
      parsed = parseAllowRow({ ...b, id }, { now: d.now(), minSecretLength: d.minSecretLength ?? 12 });
    } catch (e) {
      throw new ProvError('malformed', (e as Error).message);
    }
    const { entry, created } = await d.admin.putAllow(parsed.entry, actor(req));
    d.log.info({ evt: 'admin', kind: 'allowlist.put', by: req.principal!.name, id, created }, 'allowlist entry put');
    void reply.status(created ? 201 : 200);
    return { ...views.allow(entry), ...(parsed.warnings.length ? { warnings: parsed.warnings } : {}) };
  });
  app.get(`${v1}/allowlist/:id`, { config: { role: 'admin' } }, async (req) => {
    const e = await queries.getAllow(routeId(req));
    if (!e) throw new ProvError('not-found', 'no such allowlist entry');
    return views.allow(e);
  });
  app.delete(`${v1}/allowlist/:id`, { config: { role: 'admin' } }, async (req, reply) => {
    await d.admin.deleteAllow(routeId(req), actor(req));
    return reply.status(204).send();
  });

  // ---- pending requests
  app.get(`${v1}/pending`, { config: { role: 'hub' } }, async (req, reply) => {
    const q = req.query as Record<string, unknown>;
    const status = q['status'] ?? 'pending';
    if (typeof status !== 'string' || !['pending', 'approved', 'rejected'].includes(status)) throw new ProvError('malformed', 'status must be pending, approved or rejected');
    const opts = listOpts(q);
    if (etagged(req, reply, ['pending'])) return reply;
    return pageOut(await queries.listPending({ ...opts, status: status as PendingRecord['status'] }), views.pending);
  });
  app.get(`${v1}/pending/:id`, { config: { role: 'hub' } }, async (req) => {
    const p = await queries.getPending(routeId(req));
    if (!p) throw new ProvError('not-found', 'no pending request for this id');
    return views.pending(p);
  });
  app.post(`${v1}/pending/:id/approve`, { config: { role: 'admin' } }, async (req) => {
    const b = bodyObject(req);
    const fingerprint = optString(b, 'fingerprint', 40);
    const pkHex = optString(b, 'pk', 64);
    const p = await d.admin.approve(routeId(req), { ...(fingerprint ? { fingerprint } : {}), ...(pkHex ? { pkHex } : {}) }, actor(req));
    return views.pending(p);
  });
  app.post(`${v1}/pending/:id/reject`, { config: { role: 'admin' } }, async (req, reply) => {
    await d.admin.reject(routeId(req), optString(bodyObject(req), 'reason'), actor(req));
    return reply.status(204).send();
  });
  app.post(`${v1}/pending/:id/unreject`, { config: { role: 'admin' } }, async (req, reply) => {
    await d.admin.unreject(routeId(req), actor(req));
    return reply.status(204).send();
  });

  // ---- devices
  app.get(`${v1}/devices`, { config: { role: 'hub' } }, async (req, reply) => {
    const opts = listOpts(req.query as Record<string, unknown>);
    if (etagged(req, reply, ['devices', 'revocations'])) return reply;
    return pageOut(await queries.listDevices(opts), (x) => views.device(x.device, x.revocation));
  });
  app.get(`${v1}/devices/:id`, { config: { role: 'hub' } }, async (req) => {
    const x = await queries.getDevice(routeId(req));
    if (!x) throw new ProvError('not-found', 'no such device');
    return views.device(x.device, x.revocation);
  });
  app.post(`${v1}/devices/:id/revoke`, { config: { role: 'admin' } }, async (req, reply) => {
    await d.admin.revoke(routeId(req), optString(bodyObject(req), 'reason'), actor(req));
    return reply.status(204).send();
  });
  app.post(`${v1}/devices/:id/enable`, { config: { role: 'admin' } }, async (req, reply) => {
    await d.admin.reenable(routeId(req), actor(req));
    return reply.status(204).send();
  });

  // ---- security monitor flags (README "Security monitor")
  app.get(`${v1}/flags`, { config: { role: 'hub' } }, async (req, reply) => {
    const q = req.query as Record<string, unknown>;
    const status = q['status'] ?? 'open';
    if (typeof status !== 'string' || !['open', 'cleared', 'all'].includes(status)) throw new ProvError('malformed', 'status must be open, cleared or all');
    const opts = listOpts(q);
    if (etagged(req, reply, ['flags'])) return reply;
    return pageOut(await queries.listFlags({ ...opts, status: status as 'open' | 'cleared' | 'all' }), views.flag);
  });
  app.post(`${v1}/flags/:id/clear`, { config: { role: 'admin' } }, async (req) => {
    const f = await d.admin.clearFlag(routeId(req), optString(bodyObject(req), 'note'), actor(req));
    return views.flag(f);
  });

  // ---- provisioning switch
  app.get(`${v1}/provisioning`, { config: { role: 'hub' } }, async () => d.service.provisioning);
  app.put(`${v1}/provisioning`, { config: { role: 'admin' } }, async (req) => {
    const b = bodyObject(req);
    if (typeof b['enabled'] !== 'boolean') throw new ProvError('malformed', 'enabled must be true or false');
    await d.admin.setProvisioning(b['enabled'], optString(b, 'reason'), actor(req));
    return d.service.provisioning;
  });

  // ---- token keys and verification (what a Hub needs)
  app.get(`${v1}/keys/jwks`, { config: { role: 'hub' } }, async (req, reply) => {
    if (etagged(req, reply, ['keys'])) return reply;
    return d.keyring.jwks(d.now());
  });
  app.get(`${v1}/keys/cose`, { config: { role: 'hub' } }, async (req, reply) => {
    if (etagged(req, reply, ['keys'])) return reply;
    return reply.type('application/cose-key-set').send(d.keyring.keySet(d.now()));
  });
  app.post(`${v1}/tokens/verify`, { config: { role: 'hub' } }, async (req) => {
    const t = optString(bodyObject(req), 'token', 2048);
    if (!t) throw new ProvError('malformed', 'token is required (hex or base64url)');
    const bytes = /^[0-9a-fA-F]+$/.test(t) && t.length % 2 === 0 ? Buffer.from(t, 'hex') : Buffer.from(t, 'base64url');
    try {
      const c = d.keyring.verify(bytes, d.now());
      const revocation = await d.store.getRevocation(c.sub);
      const device = await d.store.getDevice(c.sub);
      const keyCurrent = device !== undefined && Buffer.from(device.pk).equals(Buffer.from(c.cnf));
      return {
        valid: !revocation && keyCurrent,
        ...(revocation ? { error: 'revoked' } : !keyCurrent ? { error: 'key-mismatch' } : {}),
        claims: {
          iss: c.iss,
          sub: c.sub,
          aud: c.aud,
          exp: c.exp,
          iat: c.iat,
          cti: hex(c.cti),
          role: c.role ?? 'device',
          cnf: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(c.cnf).toString('base64url') },
        },
      };
    } catch (e) {
      if (isProvError(e)) return { valid: false, error: e.code };
      throw e;
    }
  });

  // ---- event feed: long poll (GET /events?after=N&wait=S) and server-sent events (/events/stream)
  // Open feeds are ended when the sidecar closes (preClose), or `close()` would wait for every long poll
  // to time out and forever for an event stream.
  const openFeeds = new Set<() => void>();
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
    for (const end of [...openFeeds]) end();
  });

  /**
   * Resolve once an event is committed after `seenVersion` (the change version read before the caller's
   * last look at the store, so a commit in between is not missed), after `waitS`, or when the client or
   * the sidecar goes away.
   */
  const waitForEvents = (seenVersion: number, waitS: number, req: FastifyRequest): Promise<void> =>
    new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        unsub();
        openFeeds.delete(done);
        req.raw.off('close', done);
        resolve();
      };
      const timer = setTimeout(done, waitS * 1000);
      const unsub = d.changes.subscribe((muts, _v, foreign) => {
        if (muts.some((m) => m.kind === 'event') || foreign?.has('event')) done();
      });
      openFeeds.add(done);
      req.raw.once('close', done);
      if (closing || d.changes.versionOf('events') > seenVersion) done();
    });

  app.get(`${v1}/events`, { config: { role: 'hub' } }, async (req, reply) => {
    const q = req.query as Record<string, unknown>;
    const num = (k: string, def: number) => (q[k] === undefined ? def : typeof q[k] === 'string' && q[k] !== '' ? Number(q[k]) : NaN);
    const after = num('after', 0);
    const wait = num('wait', 0);
    const limit = num('limit', 100);
    if (!Number.isInteger(after) || after < 0) throw new ProvError('malformed', 'after must be a non-negative integer (an event seq)');
    if (!Number.isFinite(wait) || wait < 0 || wait > maxWaitS) throw new ProvError('malformed', `wait must be 0..${maxWaitS} seconds`);
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new ProvError('malformed', 'limit must be 1..1000');
    const seen = d.changes.versionOf('events');
    let events = await d.store.listEvents(after, limit);
    if (events.length === 0 && wait > 0 && !closing) {
      const release = watcherSlot(req);
      try {
        await waitForEvents(seen, wait, req);
      } finally {
        release();
      }
      events = await d.store.listEvents(after, limit);
    }
    void reply.header('cache-control', 'no-store');
    if (closing) void reply.header('connection', 'close');
    return { events: events.map(views.event), next: events.length ? events[events.length - 1]!.seq : after };
  });

  app.get(`${v1}/events/stream`, { config: { role: 'hub' } }, async (req, reply) => {
    if (closing) throw new ProvError('disabled', 'the server is shutting down');
    const q = req.query as Record<string, unknown>;
    const from = req.headers['last-event-id'] ?? q['after'] ?? '0';
    let cursor = typeof from === 'string' && from !== '' ? Number(from) : NaN;
    if (!Number.isInteger(cursor) || cursor < 0) throw new ProvError('malformed', 'after / Last-Event-ID must be an event seq');
    if (req.method === 'HEAD') return reply.header('content-type', 'text/event-stream').header('cache-control', 'no-store').send();
    const release = watcherSlot(req);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { ...SECURITY_HEADERS, 'content-security-policy': API_CSP, 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    // Send the headers now: a client waits for them, and there may be no event for a long time.
    res.flushHeaders();
    let wrote = false;
    /** Write, and wait while the client does not read (one batch is all a stream ever buffers). */
    const send = async (text: string): Promise<void> => {
      wrote = true;
      if (!res.write(text) && !closed) await new Promise<void>((r) => {
        const done = () => {
          res.off('drain', done);
          res.off('close', done);
          r();
        };
        res.once('drain', done);
        res.once('close', done);
      });
    };
    let busy = false;
    let again = false;
    let closed = false;
    const pump = async (): Promise<void> => {
      if (busy) {
        again = true;
        return;
      }
      busy = true;
      try {
        do {
          again = false;
          for (;;) {
            const batch = await d.store.listEvents(cursor, 500);
            if (closed || batch.length === 0) break;
            let text = '';
            for (const e of batch) text += `id: ${e.seq}\nevent: ${e.kind}\ndata: ${JSON.stringify(views.event(e))}\n\n`;
            await send(text);
            cursor = batch[batch.length - 1]!.seq!;
          }
        } while (again && !closed);
      } catch (e) {
        d.log.warn({ err: (e as Error).message }, 'event stream read failed');
      } finally {
        busy = false;
      }
    };
    const unsub = d.changes.subscribe((muts, _v, foreign) => {
      if (muts.some((m) => m.kind === 'event') || foreign?.has('event')) void pump();
    });
    // A comment line when nothing was written for a heartbeat period: proxies and clients see the
    // stream is alive, and a dead peer is noticed by the failed write.
    const heartbeat = setInterval(() => {
      if (!wrote && !res.writableNeedDrain) res.write(': keep-alive\n\n');
      wrote = false;
    }, heartbeatMs);
    const finish = () => {
      if (closed) return;
      closed = true;
      release();
      unsub();
      clearInterval(heartbeat);
      clearTimeout(lifetime);
      openFeeds.delete(end);
    };
    /** Server side end (the sidecar is closing): finish the stream and drop the connection. */
    const end = () => {
      finish();
      res.end();
      res.socket?.destroySoon();
    };
    // A stream lives at most streamLifetimeMs: then it ends and the client reconnects (after `retry`,
    // with Last-Event-ID), so no stream holds its slot forever. A client that stopped reading is cut off.
    const lifetime = setTimeout(() => {
      const stuck = res.writableNeedDrain;
      finish();
      // The last message sets the delay before the client reconnects.
      if (stuck) res.destroy();
      else res.end(`retry: ${RETRY_MS}\n\n`);
    }, streamLifetimeMs);
    openFeeds.add(end);
    req.raw.once('close', finish);
    await pump();
  });

  // ---- metrics (Prometheus text format)
  app.get('/metrics', { config: { role: 'hub' } }, async (_req, reply) => {
    const text = await d.metrics.render();
    return reply.type(d.metrics.contentType).send(text);
  });

  // ---- approval web page (static; its API calls carry the admin token the user pastes). Script and
  // styles are files of their own, so the page's CSP needs no 'unsafe-inline'.
  const asset = (name: string) => readFileSync(new URL(`./${name}`, import.meta.url), 'utf8');
  for (const [path, file, type] of [
    ['/', 'page.html', 'text/html; charset=utf-8'],
    ['/page.js', 'page.js', 'text/javascript; charset=utf-8'],
    ['/page.css', 'page.css', 'text/css; charset=utf-8'],
  ] as const) {
    const body = asset(file);
    app.get(path, async (_req, reply) => reply.type(type).header('cache-control', 'no-cache').header('content-security-policy', PAGE_CSP).send(body));
  }

  return app;
}
