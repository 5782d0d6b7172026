/**
 * The approval web page: static files; its API calls carry the admin token the user pastes. Script and
 * styles are files of their own, so the page's CSP needs no 'unsafe-inline'.
 */
import type { FastifyInstance } from 'fastify';
import { readFileSync } from 'node:fs';
import { PAGE_CSP } from '../context.ts';

const ASSETS = [
  ['/', 'page.html', 'text/html', 'The admin console (HTML)'],
  ['/page.js', 'page.js', 'text/javascript', "The console's script"],
  ['/page.css', 'page.css', 'text/css', "The console's styles"],
] as const;

export async function pageRoutes(app: FastifyInstance): Promise<void> {
  const asset = (name: string) => readFileSync(new URL(`../${name}`, import.meta.url), 'utf8');
  for (const [path, file, type, summary] of ASSETS) {
    const body = asset(file);
    app.get(path, { schema: { summary, tags: ['page'], response: { 200: { description: file, content: { [type]: { schema: { type: 'string' } } } } } } }, async (_req, reply) =>
      reply.type(`${type}; charset=utf-8`).header('cache-control', 'no-cache').header('content-security-policy', PAGE_CSP).send(body),
    );
  }
}
