/**
 * The admin sidecar (issue #3): a JSON API under `/api/v1` for admins and the Hub, Prometheus metrics,
 * and the admin console. A thin layer over the services: it authenticates, checks roles, validates
 * input against each route's JSON schema, and maps errors to JSON bodies with stable codes
 * (`{"error": {"code", "message"}}`). The routes are fastify plugins by concern (src/admin/routes/);
 * their schemas also make the OpenAPI document (`GET /api/v1/openapi.json`, src/admin/openapi.ts).
 */
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import { ERROR_TABLE, ProvError, isProvError } from '../errors.ts';
import { roleAllows } from './auth.ts';
import { API_CSP, SECURITY_HEADERS, V1, type SidecarDeps } from './context.ts';
import { RouteCollector, openApiDocument } from './openapi.ts';
import { feedRoutes } from './routes/feed.ts';
import { keyRoutes } from './routes/keys.ts';
import { opsRoutes } from './routes/ops.ts';
import { pageRoutes } from './routes/page.ts';
import { provisioningRoutes } from './routes/provisioning.ts';
import { recordRoutes } from './routes/records.ts';
import { tokenRoutes } from './routes/tokens.ts';

export { API_CSP, PAGE_CSP, SECURITY_HEADERS, routeId, type SidecarDeps } from './context.ts';
export { views } from './views.ts';
export type * from './views.ts';

/**
 * Query parameters arrive as text; the schemas say which are integers or numbers. This turns a
 * decimal number's text into the number before validation (and nothing else: `abc`, `1e3`, a repeated
 * parameter and an empty one stay as they are and fail the schema). Bodies are not coerced at all: a
 * JSON body must carry the types its schema names.
 */
function numericQuery(schema: unknown, query: Record<string, unknown>): void {
  const props = (schema as { properties?: Record<string, { type?: unknown }> } | undefined)?.properties;
  if (!props) return;
  for (const [k, p] of Object.entries(props)) {
    const v = query[k];
    if (typeof v === 'string' && (p.type === 'integer' || p.type === 'number') && /^-?[0-9]{1,16}(\.[0-9]{1,16})?$/.test(v)) query[k] = Number(v);
  }
}

/** Build the sidecar (not listening yet). */
export async function buildSidecar(d: SidecarDeps): Promise<FastifyInstance> {
  const app = Fastify({
    logger: false,
    bodyLimit: 1 << 20,
    trustProxy: false,
    // Strict request validation: no type coercion (query numbers are converted by numericQuery), and
    // a field a schema forbids is refused, never silently dropped.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
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

  const collector = new RouteCollector();
  app.addHook('onRoute', collector.onRoute);

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

  // Authentication and role check for every route that declares a role (everything but health, the
  // OpenAPI document and the page). Before validation: without a token, nothing about the request is said.
  app.addHook('onRequest', async (req) => {
    const need = req.routeOptions.config.role;
    if (!need) return;
    const h = req.headers.authorization;
    if (!h || !/^Bearer\s+\S+$/i.test(h)) throw new ProvError('unauthenticated', 'missing bearer token');
    const principal = await d.auth.verify(h.replace(/^Bearer\s+/i, ''), d.now());
    if (!roleAllows(principal.role, need)) throw new ProvError('forbidden', `this operation needs the ${need} role`);
    req.principal = principal;
  });
  app.addHook('preValidation', async (req) => {
    if (req.query && typeof req.query === 'object') numericQuery(req.routeOptions.schema?.querystring, req.query as Record<string, unknown>);
  });

  await app.register(async (i) => opsRoutes(i, d));
  await app.register(async (i) => recordRoutes(i, d));
  await app.register(async (i) => provisioningRoutes(i, d));
  await app.register(async (i) => keyRoutes(i, d));
  await app.register(async (i) => tokenRoutes(i, d));
  await app.register(async (i) => feedRoutes(i, d));
  await app.register(async (i) => pageRoutes(i));

  // The OpenAPI document: public, like health. It describes this version's routes — the same for
  // every installation and published with the source — and holds no record, host or secret.
  let doc: string | undefined;
  app.get(
    `${V1}/openapi.json`,
    { schema: { summary: 'This document: the OpenAPI 3.1 description of the sidecar', tags: ['ops'], response: { 200: { description: 'the OpenAPI document', content: { 'application/json': { schema: { type: 'object' } } } } } } },
    async (_req, reply) => {
      doc ??= JSON.stringify(openApiDocument(collector.routes, { version: d.version }));
      return reply.type('application/json; charset=utf-8').header('cache-control', 'no-cache').send(doc);
    },
  );

  return app;
}

