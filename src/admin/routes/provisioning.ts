/** The provisioning switch: `/idprov/request` on or off (refresh keeps working). */
import type { FastifyInstance } from 'fastify';
import { V1, actorOf, type SidecarDeps } from '../context.ts';
import { ERRORS, bool, nstr, obj } from '../schema.ts';
import { ProvisioningSchema } from '../views.ts';

export async function provisioningRoutes(app: FastifyInstance, d: SidecarDeps): Promise<void> {
  app.get(`${V1}/provisioning`, { config: { role: 'hub' }, schema: { summary: 'The provisioning switch', tags: ['provisioning'], response: { 200: ProvisioningSchema, ...ERRORS } } }, async () => d.service.provisioning);
  app.put(
    `${V1}/provisioning`,
    {
      config: { role: 'admin' },
      schema: {
        summary: 'Switch /idprov/request on or off',
        tags: ['provisioning'],
        body: obj({ enabled: bool(), reason: nstr('shown to devices while off', { maxLength: 500 }) }, ['enabled'], { additionalProperties: true }),
        response: { 200: ProvisioningSchema, ...ERRORS },
      },
    },
    async (req) => {
      const b = req.body as { enabled: boolean; reason?: string | null };
      await d.admin.setProvisioning(b.enabled, b.reason ?? undefined, actorOf(req));
      return d.service.provisioning;
    },
  );
}
