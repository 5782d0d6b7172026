/**
 * What the sidecar's route plugins share: the dependencies the composition root passes, and the
 * helpers every concern uses (the actor of a request, the record ID of a path, conditional GET).
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { createHash } from 'node:crypto';
import { ProvError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Actor, AdminService } from '../service/admin.ts';
import type { AdminQueries, Page, SearchOptions } from '../service/admin-queries.ts';
import type { Collection, ObservedStore } from '../service/changes.ts';
import type { ProvisioningService } from '../service/provisioning.ts';
import type { AdminAuth, Principal, Role } from './auth.ts';
import type { AllowlistImporter } from '../service/allowlist-import.ts';
import type { Metrics } from './metrics.ts';

/** Everything the sidecar needs, built by the composition root. */
export interface SidecarDeps {
  /** The store as observed (change versions for ETags, the change feed for long polls and streams). */
  changes: ObservedStore;
  service: ProvisioningService;
  admin: AdminService;
  /** Reads: lists, records, keys, token checks. */
  queries: AdminQueries;
  /** Admin and hub bearer tokens: verify, mint, list, revoke. */
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
export const API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
/** The approval page's CSP: its own script and style files only, no inline code, no framing. */
export const PAGE_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

export const V1 = '/api/v1';

/** Who performs the request's admin action: `admin:<token name>` from the client's address. */
export const actorOf = (req: FastifyRequest): Actor => ({ by: `admin:${req.principal!.name}`, source: req.ip });

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
  if (typeof q !== 'string' || q === '') throw new ProvError('malformed', 'with ~ in the path, give the ID as the id query parameter');
  return q;
}

/** The list options of a validated list query (`after`, `limit`, `q`; see schema.ts `listQuery`). */
export function listOpts(q: { after?: string; limit?: number; q?: string }): SearchOptions & { limit: number } {
  return { limit: q.limit ?? 100, ...(q.after ? { after: q.after } : {}), ...(q.q ? { q: q.q } : {}) };
}

export function pageOut<T, V>(p: Page<T>, view: (t: T) => V): { items: V[]; next?: string } {
  return p.next ? { items: p.items.map(view), next: p.next } : { items: p.items.map(view) };
}

/** True when an If-None-Match header (a list of entity tags, or `*`) matches `tag` (weak comparison). */
function etagMatches(header: string | undefined, tag: string): boolean {
  if (!header) return false;
  return header.split(',').some((t) => {
    const x = t.trim();
    return x === '*' || x.replace(/^W\//, '') === tag;
  });
}

/**
 * Conditional GET: answer 304 when the collections behind the resource have not changed. The tag
 * covers the query string too, so each page of a list (and each filter) has its own. Call it after
 * the query is validated, so an invalid request is refused rather than answered 304.
 */
export function etagged(changes: ObservedStore, req: FastifyRequest, reply: FastifyReply, cols: Collection[]): boolean {
  const qs = req.url.indexOf('?');
  const query = qs < 0 ? '' : req.url.slice(qs + 1);
  const qtag = query ? `-${createHash('sha256').update(query).digest('base64url').slice(0, 12)}` : '';
  const tag = `"${changes.bootId}-${changes.versionOf(...cols)}${qtag}"`;
  void reply.header('etag', tag).header('cache-control', 'no-cache');
  if (etagMatches(req.headers['if-none-match'], tag)) {
    void reply.status(304).send();
    return true;
  }
  return false;
}
