/** Operations: health (no token), the instances sharing the database, Prometheus metrics. */
import type { FastifyInstance } from 'fastify';
import { V1, type SidecarDeps } from '../context.ts';
import { ERRORS } from '../schema.ts';
import { HealthSchema, InstancesSchema } from '../views.ts';

export async function opsRoutes(app: FastifyInstance, d: SidecarDeps): Promise<void> {
  app.get(`${V1}/health`, { schema: { summary: 'Liveness, version, the provisioning switch and the current token key', tags: ['ops'], response: { 200: HealthSchema, ...ERRORS } } }, async () => ({
    status: 'ok',
    version: d.version,
    provisioning: d.service.provisioning,
    kid: d.queries.currentKid(),
    // How many, not which: health needs no token.
    ...(d.instances ? { instances: d.instances().length } : {}),
  }));

  // Instances sharing the database (hosts and ports: a token is needed).
  app.get(
    `${V1}/instances`,
    { config: { role: 'hub' }, schema: { summary: 'The instances live on the shared database (docs/scale-out.md)', tags: ['ops'], response: { 200: InstancesSchema, ...ERRORS } } },
    async () => ({
      shared: d.instances !== undefined,
      instances: (d.instances?.() ?? []).map((i) => ({ name: i.name, host: i.host, coapPort: i.coapPort, coapsPort: i.coapsPort, adminPort: i.adminPort, version: i.version, startedAt: i.startedAt, seenAt: i.seenAt })),
    }),
  );

  app.get(
    '/metrics',
    {
      config: { role: 'hub' },
      schema: { summary: 'Prometheus metrics (text exposition format)', tags: ['ops'], response: { 200: { description: 'metrics', content: { 'text/plain': { schema: { type: 'string' } } } }, ...ERRORS } },
    },
    async (_req, reply) => {
      const text = await d.metrics.render();
      return reply.type(d.metrics.contentType).send(text);
    },
  );
}
