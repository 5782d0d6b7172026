/**
 * The OpenAPI 3.1 document of the sidecar (issue 14), generated from the routes themselves: an
 * `onRoute` hook collects every route's method, URL, role and JSON schemas (the same ones fastify
 * validates requests with and serializes responses through), and {@link openApiDocument} turns them
 * into paths, parameters, request bodies and responses. Named schemas (schema.ts `named`) become
 * `components.schemas`. Served at `GET /api/v1/openapi.json`.
 */
import type { RouteOptions } from 'fastify';
import { SCHEMA_NAMES, type Schema } from './schema.ts';

/** One route as the hook saw it. */
export interface CollectedRoute {
  method: string;
  url: string;
  role: 'admin' | 'hub' | undefined;
  schema: Schema;
}

/** Collects routes: pass {@link RouteCollector.onRoute} to `app.addHook('onRoute', …)` before any route is added. */
export class RouteCollector {
  readonly routes: CollectedRoute[] = [];
  readonly onRoute = (r: RouteOptions): void => {
    for (const method of Array.isArray(r.method) ? r.method : [r.method]) {
      // fastify adds a HEAD route for every GET one (same handler, same role): the GET stands for it.
      if (method === 'HEAD') continue;
      const config = (r.config ?? {}) as { role?: 'admin' | 'hub' };
      this.routes.push({ method, url: r.url, role: config.role, schema: (r.schema ?? {}) as Schema });
    }
  };
}

const isObj = (x: unknown): x is Schema => typeof x === 'object' && x !== null && !Array.isArray(x);

/** The component name of `s`: a named schema, or a copy of one with another description. */
function nameOf(s: Schema): string | undefined {
  const direct = SCHEMA_NAMES.get(s);
  if (direct) return direct;
  const keys = Object.keys(s).filter((k) => k !== 'description');
  for (const [named, name] of SCHEMA_NAMES) {
    const nk = Object.keys(named).filter((k) => k !== 'description');
    if (nk.length === keys.length && nk.every((k) => (named as Schema)[k] === s[k])) return name;
  }
  return undefined;
}

/** A JSON schema for the document: named sub-schemas as `$ref`s (collected in `components`). */
function convert(s: unknown, components: Record<string, Schema>, top = false): unknown {
  if (Array.isArray(s)) return s.map((x) => convert(x, components));
  if (!isObj(s)) return s;
  const name = nameOf(s);
  if (name && !top) {
    if (!components[name]) {
      components[name] = {}; // reserve (recursion)
      const base = [...SCHEMA_NAMES].find(([, n]) => n === name)![0] as Schema;
      components[name] = convert(base, components, true) as Schema;
    }
    return typeof s['description'] === 'string' && s['description'] !== (([...SCHEMA_NAMES].find(([, n]) => n === name)![0] as Schema)['description'])
      ? { $ref: `#/components/schemas/${name}`, description: s['description'] }
      : { $ref: `#/components/schemas/${name}` };
  }
  const out: Schema = {};
  for (const [k, v] of Object.entries(s)) {
    // `properties` maps names to schemas: convert the values, not the map itself.
    if (k === 'properties' && isObj(v)) out[k] = Object.fromEntries(Object.entries(v).map(([pk, pv]) => [pk, convert(pv, components)]));
    else out[k] = convert(v, components);
  }
  return out;
}

const OPERATION_WORD = (seg: string): string => (seg.startsWith(':') ? `By${seg[1]!.toUpperCase()}${seg.slice(2)}` : seg.replace(/(^|[-_.])(\w)/g, (_m, _p, c: string) => c.toUpperCase()));

/** `get` + `/api/v1/devices/:id/revoke` → `postApiV1DevicesByIdRevoke`: unique and stable. */
function operationId(method: string, url: string): string {
  const words = url.split('/').filter(Boolean).map(OPERATION_WORD);
  return method.toLowerCase() + (words.join('') || 'Root');
}

function parameters(where: 'path' | 'query' | 'header', s: unknown, components: Record<string, Schema>): Schema[] {
  if (!isObj(s) || !isObj(s['properties'])) return [];
  const required = new Set((s['required'] as string[] | undefined) ?? []);
  return Object.entries(s['properties'] as Record<string, Schema>).map(([name, p]) => {
    const { description, ...schema } = p;
    return { name, in: where, required: where === 'path' || required.has(name), ...(typeof description === 'string' ? { description } : {}), schema: convert(schema, components) };
  });
}

function responses(r: unknown, components: Record<string, Schema>): Record<string, Schema> {
  const out: Record<string, Schema> = {};
  if (!isObj(r)) return { default: { description: 'the answer' } };
  for (const [code, s] of Object.entries(r)) {
    if (!isObj(s)) continue;
    const status = /^[1-5]xx$/.test(code) ? code.toUpperCase() : code;
    const description = typeof s['description'] === 'string' ? s['description'] : nameOf(s) ? `${nameOf(s)}` : 'the answer';
    if (s['type'] === 'null') out[status] = { description };
    else if (isObj(s['content'])) {
      out[status] = { description, content: Object.fromEntries(Object.entries(s['content'] as Record<string, Schema>).map(([t, c]) => [t, { schema: convert(c['schema'], components) }])) };
    } else out[status] = { description, content: { 'application/json': { schema: convert(s, components) } } };
  }
  return out;
}

/** A request body schema without the `null` fastify uses for "no body"; `required` false when it had one. */
function requestBody(s: unknown, components: Record<string, Schema>): Schema | undefined {
  if (!isObj(s)) return undefined;
  const type = s['type'];
  const optional = Array.isArray(type) && type.includes('null');
  const schema = optional ? { ...s, type: (type as string[]).filter((t) => t !== 'null')[0] } : s;
  return { required: !optional, content: { 'application/json': { schema: convert(schema, components) } } };
}

export interface OpenApiInfo {
  version: string;
}

/** The OpenAPI 3.1 document of `routes`. */
export function openApiDocument(routes: readonly CollectedRoute[], info: OpenApiInfo): Schema {
  const components: Record<string, Schema> = {};
  const paths: Record<string, Record<string, Schema>> = {};
  const tags = new Set<string>();
  for (const r of routes) {
    const path = r.url.replace(/:(\w+)/g, '{$1}');
    const s = r.schema;
    const op: Schema = { operationId: operationId(r.method, r.url) };
    if (typeof s['summary'] === 'string') op['summary'] = s['summary'];
    if (Array.isArray(s['tags'])) {
      op['tags'] = s['tags'];
      for (const t of s['tags'] as string[]) tags.add(t);
    }
    const params = [...parameters('path', s['params'], components), ...parameters('query', s['querystring'], components), ...parameters('header', s['headers'], components)];
    if (params.length) op['parameters'] = params;
    const body = isObj(s['x-body']) ? (convert(s['x-body'], components) as Schema) : requestBody(s['body'], components);
    if (body) op['requestBody'] = body;
    op['responses'] = responses(s['response'], components);
    if (r.role) {
      op['security'] = [{ bearer: [] }];
      op['x-idprov-role'] = r.role;
      op['description'] = `Needs a bearer token with the ${r.role} role${r.role === 'hub' ? ' (or admin)' : ''}.`;
    } else op['security'] = [];
    (paths[path] ??= {})[r.method.toLowerCase()] = op;
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'idprov admin sidecar API',
      version: info.version,
      description:
        'The admin and Hub API of idprov (docs/admin-api.md is the guide, docs/hub.md the Hub\'s). Every error is `{"error": {"code", "message"}}` with a stable code. fastify answers HEAD for every GET route, with the same role.',
      license: { name: 'MIT', identifier: 'MIT' },
    },
    tags: [...tags].sort().map((name) => ({ name })),
    paths,
    components: {
      schemas: Object.fromEntries(Object.entries(components).sort(([a], [b]) => (a < b ? -1 : 1))),
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'an admin or hub token (`idprov token create`); `<data>/admin.token` holds the first admin token' } },
    },
  };
}
