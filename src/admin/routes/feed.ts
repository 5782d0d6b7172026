/**
 * The event feed: the audit trail paged by `seq`, as a long poll (`GET /events?after=N&wait=S`) and as
 * server-sent events (`GET /events/stream`), within the watcher caps (src/admin/watchers.ts).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ProvError } from '../../errors.ts';
import { API_CSP, SECURITY_HEADERS, V1, type SidecarDeps } from '../context.ts';
import { ERRORS, int, obj, str } from '../schema.ts';
import { EventSchema, views } from '../views.ts';
import { WatcherSlots, refusalMessage } from '../watchers.ts';

/** Reconnection delay an event stream asks its client for (ms). */
const RETRY_MS = 2000;

export async function feedRoutes(app: FastifyInstance, d: SidecarDeps): Promise<void> {
  const maxWaitS = d.maxWaitS ?? 30;
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

  app.get(
    `${V1}/events`,
    {
      config: { role: 'hub' },
      schema: {
        summary: 'The audit trail, oldest first; with wait, a long poll',
        tags: ['events'],
        querystring: obj({
          after: int('cursor: the seq of the last event seen (the `next` of the previous answer)', { minimum: 0, default: 0 }),
          wait: { type: 'number', minimum: 0, maximum: maxWaitS, default: 0, description: `long poll: wait up to this many seconds (≤ ${maxWaitS}) for an event when there is none` },
          limit: int('events at most', { minimum: 1, maximum: 1000, default: 100 }),
        }),
        response: {
          200: obj({ events: { type: 'array', items: EventSchema }, next: int('pass as `after` of the next call') }, ['events', 'next']),
          ...ERRORS,
        },
      },
    },
    async (req, reply) => {
      const { after, wait, limit } = req.query as { after: number; wait: number; limit: number };
      const seen = d.changes.versionOf('events');
      let events = await d.queries.listEvents(after, limit);
      if (events.length === 0 && wait > 0 && !closing) {
        const release = watcherSlot(req);
        try {
          await waitForEvents(seen, wait, req);
        } finally {
          release();
        }
        events = await d.queries.listEvents(after, limit);
      }
      void reply.header('cache-control', 'no-store');
      if (closing) void reply.header('connection', 'close');
      return { events: events.map(views.event), next: events.length ? events[events.length - 1]!.seq : after };
    },
  );

  app.get(
    `${V1}/events/stream`,
    {
      config: { role: 'hub' },
      schema: {
        summary: 'The audit trail as server-sent events (id: seq, event: kind, data: the event as JSON)',
        tags: ['events'],
        querystring: obj({ after: str('the seq to start after (Last-Event-ID wins when both are sent)', { pattern: '^[0-9]+$', maxLength: 16 }) }),
        headers: obj({ 'last-event-id': str('the id: of the last event received (EventSource sends it when it reconnects)', { maxLength: 32 }) }),
        response: {
          200: {
            description: `a stream of events; it ends after adminStreamLifetime with retry: ${RETRY_MS}, and a client reconnects with Last-Event-ID`,
            content: { 'text/event-stream': { schema: { type: 'string' } } },
          },
          ...ERRORS,
        },
      },
    },
    async (req, reply) => {
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
              const batch = await d.queries.listEvents(cursor, 500);
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
    },
  );
}
