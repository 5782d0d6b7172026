/** The admin-API token registry (issue 14): list the tokens, revoke one at once. Admins only. */
import type { FastifyInstance } from 'fastify';
import { V1, actorOf, listOpts, pageOut, type SidecarDeps } from '../context.ts';
import { MAX_QUERY_CHARS } from '../../service/admin-queries.ts';
import { ERRORS, listQuery, nstr, obj, optBody, pageOf, str } from '../schema.ts';
import { AdminTokenSchema, adminTokenView } from '../views.ts';

export async function tokenRoutes(app: FastifyInstance, d: SidecarDeps): Promise<void> {
  app.get(
    `${V1}/tokens`,
    {
      config: { role: 'admin' },
      schema: {
        summary: 'List the admin and hub tokens of the registry, by ID (never the token text)',
        tags: ['tokens'],
        querystring: obj({ ...listQuery, q: str('case-insensitive part of the token ID (jti) or its name; at most 20,000 tokens are looked at per request, so a short page may come with `next`', { maxLength: MAX_QUERY_CHARS }) }),
        response: { 200: pageOf(AdminTokenSchema, 'a page of tokens, by jti'), ...ERRORS },
      },
    },
    async (req) => {
      const now = d.now();
      return pageOut(await d.auth.list(listOpts(req.query as object)), (t) => adminTokenView(t, now));
    },
  );
  app.post(
    `${V1}/tokens/:jti/revoke`,
    {
      config: { role: 'admin' },
      schema: {
        summary: 'Revoke a token: every instance on the database refuses it from its next request',
        tags: ['tokens'],
        params: obj({ jti: str('the token ID', { minLength: 1, maxLength: 64 }) }, ['jti']),
        body: optBody({ reason: nstr('goes to the registry and the admin.token.revoke event', { maxLength: 500 }) }),
        response: { 200: { ...AdminTokenSchema, description: 'the revoked token' }, ...ERRORS },
      },
    },
    async (req) => {
      const { jti } = req.params as { jti: string };
      const reason = (req.body as { reason?: string | null } | null)?.reason ?? undefined;
      const now = d.now();
      return adminTokenView(await d.auth.revoke(jti, reason, actorOf(req), now), now);
    },
  );
}
