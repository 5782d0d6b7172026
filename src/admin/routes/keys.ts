/** What a Hub needs to check device tokens: the token keys (JWKS, COSE_KeySet) and `POST /tokens/verify`. */
import type { FastifyInstance } from 'fastify';
import { V1, etagged, type SidecarDeps } from '../context.ts';
import { ERRORS, NO_BODY, obj, str } from '../schema.ts';
import { JwksSchema, TokenCheckSchema } from '../views.ts';

export async function keyRoutes(app: FastifyInstance, d: SidecarDeps): Promise<void> {
  app.get(
    `${V1}/keys/jwks`,
    { config: { role: 'hub' }, schema: { summary: 'The token verification keys as a JWKS', tags: ['keys'], response: { 200: JwksSchema, 304: NO_BODY('not modified'), ...ERRORS } } },
    async (req, reply) => {
      if (etagged(d.changes, req, reply, ['keys'])) return reply;
      return d.queries.jwks(d.now());
    },
  );
  app.get(
    `${V1}/keys/cose`,
    {
      config: { role: 'hub' },
      schema: {
        summary: 'The same keys as a COSE_KeySet (CBOR), byte for byte what CoAP /idprov/keys serves',
        tags: ['keys'],
        response: { 200: { description: 'a CBOR array of COSE_Keys', content: { 'application/cose-key-set': { schema: { type: 'string', contentMediaType: 'application/cose-key-set' } } } }, 304: NO_BODY('not modified'), ...ERRORS },
      },
    },
    async (req, reply) => {
      if (etagged(d.changes, req, reply, ['keys'])) return reply;
      return reply.type('application/cose-key-set').send(d.queries.keySet(d.now()));
    },
  );
  app.post(
    `${V1}/tokens/verify`,
    {
      config: { role: 'hub' },
      schema: {
        summary: 'Check a device token: signature, expiry, revocation, and that the device still holds the key it is bound to',
        tags: ['keys'],
        body: obj({ token: str('the CWT, hex or base64url', { minLength: 1, maxLength: 2048 }) }, ['token'], { additionalProperties: true }),
        response: { 200: TokenCheckSchema, ...ERRORS },
      },
    },
    async (req) => d.queries.verifyDeviceToken((req.body as { token: string }).token, d.now()),
  );
}
