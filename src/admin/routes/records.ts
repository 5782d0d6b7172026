/**
 * Records routes: the allowlist (upload, list, one entry, delete), pending requests (approve, reject,
 * un-reject), devices (revoke, enable) and the security monitor's flags.
 */
import type { FastifyInstance } from 'fastify';
import type { Readable } from 'node:stream';
import { ProvError } from '../../errors.ts';
import { parseAllowRow } from '../../protocol/allowlist.ts';
import type { PendingRecord } from '../../domain.ts';
import { V1, actorOf, etagged, listOpts, pageOut, routeId, type SidecarDeps } from '../context.ts';
import { MAX_UPLOAD_BYTES } from '../../service/allowlist-import.ts';
import { ERRORS, IdParams, NO_BODY, listQuery, named, nstr, obj, optBody, pageOf, str, tildeId, type Schema } from '../schema.ts';
import { AllowSchema, DeviceSchema, FlagSchema, ImportSchema, PendingSchema, views } from '../views.ts';

const reasonBody = (what: string): Schema => optBody({ reason: nstr(what, { maxLength: 500 }) });
const NOT_MODIFIED = NO_BODY('not modified (the ETag sent in If-None-Match still holds)');

/** `PUT /allowlist/{id}`: one row of an allowlist file, without (or with the same) `id`. */
export const AllowPutBody = named(
  'AllowEntryPut',
  obj(
    {
      id: str('optional; must be the ID of the path'),
      pk: str('Ed25519 public key: 64 hex digits or a PEM SPKI block', { maxLength: 256 }),
      mac: str('MAC address aa:bb:cc:dd:ee:ff, EUI-64 too', { maxLength: 23 }),
      secret: str('out-of-band secret (at least minSecretLength characters, at most 64 bytes UTF-8); never shown back', { maxLength: 64 }),
      type: { oneOf: [str('device, service or consumer', { maxLength: 16 }), { type: 'integer', minimum: 0, maximum: 2 }] },
      expires: { oneOf: [str('ISO 8601', { maxLength: 40 }), { type: 'integer', minimum: 0, description: 'epoch seconds' }] },
    },
    [],
    { additionalProperties: false, minProperties: 1, description: 'One allowlist entry: at least one of pk, mac, secret (README "Allowlist files")' },
  ),
);

export async function recordRoutes(app: FastifyInstance, d: SidecarDeps): Promise<void> {
  const q = d.queries;

  // ---- allowlist
  // Uploads are streamed to the importer raw (CSV or JSON), never buffered or parsed by fastify, so
  // line numbers refer to the file as sent and a million rows never sit in memory.
  await app.register(async (upload) => {
    upload.removeAllContentTypeParsers();
    upload.addContentTypeParser('*', (_req, payload, done) => done(null, payload));
    upload.post(
      `${V1}/allowlist`,
      {
        config: { role: 'admin' },
        bodyLimit: MAX_UPLOAD_BYTES,
        schema: {
          summary: 'Import an allowlist file (CSV or a JSON array), streamed',
          tags: ['allowlist'],
          querystring: obj({ mode: str('all: nothing is imported when a row is bad; valid: the valid rows are', { enum: ['all', 'valid'], default: 'all' }) }),
          // The body is a file, streamed to the importer: described here, not validated by fastify.
          'x-body': {
            required: true,
            content: {
              'text/csv': { schema: { type: 'string' } },
              'application/json': { schema: { type: 'array', items: { type: 'object' } } },
            },
          },
          response: { 200: { ...ImportSchema, description: 'imported (or nothing to import)' }, 422: { ...ImportSchema, description: 'bad rows kept it from importing; nothing was written' }, ...ERRORS },
        },
      },
      async (req, reply) => {
        const mode = (req.query as { mode: 'all' | 'valid' }).mode;
        const ct = String(req.headers['content-type'] ?? '');
        if (!/^(text\/csv|text\/plain|application\/json|application\/octet-stream)\b/.test(ct)) {
          throw new ProvError('unsupported-content-format', 'send the allowlist as text/csv or application/json');
        }
        const body = req.body as Readable | undefined;
        if (!body || typeof body.pipe !== 'function') throw new ProvError('malformed', 'empty upload');
        const result = await d.importer.import(body, { format: ct.startsWith('application/json') ? 'json' : 'auto', mode, actor: actorOf(req) });
        d.log.info(
          { evt: 'admin', kind: 'allowlist.import', by: req.principal!.name, rows: result.rows, added: result.added, updated: result.updated, invalid: result.invalid, imported: result.imported },
          'allowlist upload',
        );
        void reply.status(result.imported || result.invalid === 0 ? 200 : 422);
        return result;
      },
    );
  });

  app.get(
    `${V1}/allowlist`,
    {
      config: { role: 'admin' },
      schema: { summary: 'List the allowlist (secrets never shown)', tags: ['allowlist'], querystring: obj(listQuery), response: { 200: pageOf(AllowSchema, 'a page of entries, by ID'), 304: NOT_MODIFIED, ...ERRORS } },
    },
    async (req, reply) => {
      const opts = listOpts(req.query as object);
      if (etagged(d.changes, req, reply, ['allowlist'])) return reply;
      return pageOut(await q.listAllow(opts), views.allow);
    },
  );
  app.get(
    `${V1}/allowlist/:id`,
    { config: { role: 'admin' }, schema: { summary: 'One allowlist entry', tags: ['allowlist'], params: IdParams, querystring: obj(tildeId), response: { 200: AllowSchema, ...ERRORS } } },
    async (req) => {
      const e = await q.getAllow(routeId(req));
      if (!e) throw new ProvError('not-found', 'no such allowlist entry');
      return views.allow(e);
    },
  );
  // One entry, added or replaced, validated like a row of an allowlist file.
  app.put(
    `${V1}/allowlist/:id`,
    {
      config: { role: 'admin' },
      schema: {
        summary: 'Add or replace one allowlist entry',
        tags: ['allowlist'],
        params: IdParams,
        querystring: obj(tildeId),
        body: AllowPutBody,
        response: { 200: { ...AllowSchema, description: 'replaced' }, 201: { ...AllowSchema, description: 'added' }, ...ERRORS },
      },
    },
    async (req, reply) => {
      const id = routeId(req);
      const b = req.body as Record<string, unknown>;
      if (b['id'] !== undefined && b['id'] !== id) throw new ProvError('malformed', 'the body names another id than the path');
      let parsed: ReturnType<typeof parseAllowRow>;
      try {
        parsed = parseAllowRow({ ...b, id }, { now: d.now(), minSecretLength: d.minSecretLength ?? 12 });
      } catch (e) {
        throw new ProvError('malformed', (e as Error).message);
      }
      const { entry, created } = await d.admin.putAllow(parsed.entry, actorOf(req));
      d.log.info({ evt: 'admin', kind: 'allowlist.put', by: req.principal!.name, id, created }, 'allowlist entry put');
      void reply.status(created ? 201 : 200);
      return { ...views.allow(entry), ...(parsed.warnings.length ? { warnings: parsed.warnings } : {}) };
    },
  );
  app.delete(
    `${V1}/allowlist/:id`,
    { config: { role: 'admin' }, schema: { summary: 'Delete an allowlist entry', tags: ['allowlist'], params: IdParams, querystring: obj(tildeId), response: { 204: NO_BODY('deleted'), ...ERRORS } } },
    async (req, reply) => {
      await d.admin.deleteAllow(routeId(req), actorOf(req));
      return reply.status(204).send();
    },
  );

  // ---- pending requests
  app.get(
    `${V1}/pending`,
    {
      config: { role: 'hub' },
      schema: {
        summary: 'List requests from unknown device IDs (or the approved / rejected ones)',
        tags: ['pending'],
        querystring: obj({ status: str(undefined, { enum: ['pending', 'approved', 'rejected'], default: 'pending' }), ...listQuery }),
        response: { 200: pageOf(PendingSchema, 'a page of requests, by ID'), 304: NOT_MODIFIED, ...ERRORS },
      },
    },
    async (req, reply) => {
      const query = req.query as { status: PendingRecord['status'] };
      const opts = listOpts(req.query as object);
      if (etagged(d.changes, req, reply, ['pending'])) return reply;
      return pageOut(await q.listPending({ ...opts, status: query.status }), views.pending);
    },
  );
  app.get(
    `${V1}/pending/:id`,
    { config: { role: 'hub' }, schema: { summary: 'One request (any status)', tags: ['pending'], params: IdParams, querystring: obj(tildeId), response: { 200: PendingSchema, ...ERRORS } } },
    async (req) => {
      const p = await q.getPending(routeId(req));
      if (!p) throw new ProvError('not-found', 'no pending request for this id');
      return views.pending(p);
    },
  );
  app.post(
    `${V1}/pending/:id/approve`,
    {
      config: { role: 'admin' },
      schema: {
        summary: 'Approve exactly the key shown (a pin: its fingerprint or the whole key)',
        tags: ['pending'],
        params: IdParams,
        querystring: obj(tildeId),
        body: optBody({ fingerprint: nstr('the fingerprint shown', { maxLength: 40 }), pk: nstr('the key shown, 64 hex digits', { maxLength: 64 }) }),
        response: { 200: { ...PendingSchema, description: 'approved; the device gets its token at its next request' }, ...ERRORS },
      },
    },
    async (req) => {
      const b = (req.body ?? {}) as { fingerprint?: string; pk?: string };
      const p = await d.admin.approve(routeId(req), { ...(b.fingerprint ? { fingerprint: b.fingerprint } : {}), ...(b.pk ? { pkHex: b.pk } : {}) }, actorOf(req));
      return views.pending(p);
    },
  );
  app.post(
    `${V1}/pending/:id/reject`,
    {
      config: { role: 'admin' },
      schema: { summary: 'Reject a device ID (overrides any allowlist entry)', tags: ['pending'], params: IdParams, querystring: obj(tildeId), body: reasonBody('goes to the admin.reject event'), response: { 204: NO_BODY('rejected'), ...ERRORS } },
    },
    async (req, reply) => {
      await d.admin.reject(routeId(req), (req.body as { reason?: string | null } | null)?.reason ?? undefined, actorOf(req));
      return reply.status(204).send();
    },
  );
  app.post(
    `${V1}/pending/:id/unreject`,
    { config: { role: 'admin' }, schema: { summary: 'Forget a rejection', tags: ['pending'], params: IdParams, querystring: obj(tildeId), response: { 204: NO_BODY('the ID is unknown again'), ...ERRORS } } },
    async (req, reply) => {
      await d.admin.unreject(routeId(req), actorOf(req));
      return reply.status(204).send();
    },
  );

  // ---- devices
  app.get(
    `${V1}/devices`,
    {
      config: { role: 'hub' },
      schema: { summary: 'List provisioned devices', tags: ['devices'], querystring: obj(listQuery), response: { 200: pageOf(DeviceSchema, 'a page of devices, by ID'), 304: NOT_MODIFIED, ...ERRORS } },
    },
    async (req, reply) => {
      const opts = listOpts(req.query as object);
      if (etagged(d.changes, req, reply, ['devices', 'revocations'])) return reply;
      return pageOut(await q.listDevices(opts), (x) => views.device(x.device, x.revocation));
    },
  );
  app.get(
    `${V1}/devices/:id`,
    { config: { role: 'hub' }, schema: { summary: 'One device', tags: ['devices'], params: IdParams, querystring: obj(tildeId), response: { 200: DeviceSchema, ...ERRORS } } },
    async (req) => {
      const x = await q.getDevice(routeId(req));
      if (!x) throw new ProvError('not-found', 'no such device');
      return views.device(x.device, x.revocation);
    },
  );
  app.post(
    `${V1}/devices/:id/revoke`,
    {
      config: { role: 'admin' },
      schema: {
        summary: 'Revoke a device: refresh stops at once, requests get 4.03 revoked',
        tags: ['devices'],
        params: IdParams,
        querystring: obj(tildeId),
        body: reasonBody("shown in the device's revoked.reason and the admin.revoke event"),
        response: { 204: NO_BODY('revoked'), ...ERRORS },
      },
    },
    async (req, reply) => {
      await d.admin.revoke(routeId(req), (req.body as { reason?: string | null } | null)?.reason ?? undefined, actorOf(req));
      return reply.status(204).send();
    },
  );
  app.post(
    `${V1}/devices/:id/enable`,
    { config: { role: 'admin' }, schema: { summary: 'Lift a revocation', tags: ['devices'], params: IdParams, querystring: obj(tildeId), response: { 204: NO_BODY('enabled'), ...ERRORS } } },
    async (req, reply) => {
      await d.admin.reenable(routeId(req), actorOf(req));
      return reply.status(204).send();
    },
  );

  // ---- security monitor flags (README "Security monitor")
  app.get(
    `${V1}/flags`,
    {
      config: { role: 'hub' },
      schema: {
        summary: "List the security monitor's flags; q matches the flag ID or one of its devices' IDs",
        tags: ['flags'],
        querystring: obj({ status: str(undefined, { enum: ['open', 'cleared', 'all'], default: 'open' }), ...listQuery }),
        response: { 200: pageOf(FlagSchema, 'a page of flags, by ID'), 304: NOT_MODIFIED, ...ERRORS },
      },
    },
    async (req, reply) => {
      const query = req.query as { status: 'open' | 'cleared' | 'all' };
      const opts = listOpts(req.query as object);
      if (etagged(d.changes, req, reply, ['flags'])) return reply;
      return pageOut(await q.listFlags({ ...opts, status: query.status }), views.flag);
    },
  );
  app.post(
    `${V1}/flags/:id/clear`,
    {
      config: { role: 'admin' },
      schema: {
        summary: 'Clear a flag after review',
        tags: ['flags'],
        params: IdParams,
        querystring: obj(tildeId),
        body: optBody({ note: nstr('goes to the flag.cleared event', { maxLength: 500 }) }),
        response: { 200: { ...FlagSchema, description: 'the cleared flag' }, ...ERRORS },
      },
    },
    async (req) => {
      const f = await d.admin.clearFlag(routeId(req), (req.body as { note?: string | null } | null)?.note ?? undefined, actorOf(req));
      return views.flag(f);
    },
  );
}
