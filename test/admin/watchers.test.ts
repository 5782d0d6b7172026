/**
 * Event feed watchers (security review F13): event streams end after their lifetime (the client
 * reconnects with Last-Event-ID), idle ones get heartbeats, one token holds at most
 * `adminWatchersPerToken` watchers, and hub tokens never get the quarter of the slots kept for admin
 * tokens — so the page and `oob watch` keep working whatever a hub token opens.
 */
import assert from 'node:assert/strict';
import { assertError, call, nowS, readSse, startAdminServer, type AdminFixture } from '../support/admin-server.ts';

/** An open event stream (status 200 once its headers came) and how to close it. */
async function openStream(base: string, token: string): Promise<{ status: number; text: string; close(): void }> {
  const ac = new AbortController();
  const res = await fetch(`${base}/api/v1/events/stream`, { headers: { authorization: `Bearer ${token}` }, signal: ac.signal });
  if (res.status !== 200) return { status: res.status, text: await res.text(), close: () => undefined };
  return { status: 200, text: '', close: () => ac.abort() };
}

describe('event feed watchers (F13)', () => {
  describe('with the default settings', () => {
    let f: AdminFixture;
    before(async () => {
      f = await startAdminServer('wcd');
    });
    after(async () => f?.close());

    it('leaves the admin page its feed after one hub token opened every stream it could', async () => {
      const hub = await f.server.auth.mint({ name: 'greedy-hub', role: 'hub', ttlS: 600 }, nowS());
      const open: { close(): void }[] = [];
      try {
        let refused = 0;
        for (let i = 0; i < 260 && !refused; i++) {
          const s = await openStream(f.base, hub);
          if (s.status === 200) open.push(s);
          else refused = s.status;
        }
        assert.equal(refused, 429);
        assert.ok(open.length <= 16, `one hub token holds ${open.length} streams`);
        const poll = await call(f.base, 'GET', '/api/v1/events?wait=1&after=999999', { token: f.adminToken });
        assert.equal(poll.status, 200, poll.text);
      } finally {
        for (const s of open) s.close();
      }
    });
  });

  describe('with 8 slots', () => {
    let f: AdminFixture;
    before(async () => {
      f = await startAdminServer('wch', { adminMaxWatchers: 8, adminWatchersPerToken: 100 });
    });
    after(async () => f?.close());

    it('keeps a quarter of the slots for admin tokens: hub tokens get 429 past the rest, and the admin still watches', async () => {
      const hub = await f.server.auth.mint({ name: 'greedy-hub', role: 'hub', ttlS: 600 }, nowS());
      const other = await f.server.auth.mint({ name: 'other-hub', role: 'hub', ttlS: 600 }, nowS());
      const open: { close(): void }[] = [];
      try {
        let accepted = 0;
        let refused: { status: number; text: string } | undefined;
        for (let i = 0; i < 12 && !refused; i++) {
          const s = await openStream(f.base, hub);
          if (s.status === 200) {
            accepted++;
            open.push(s);
          } else refused = s;
        }
        assert.equal(accepted, 6, 'hub tokens get 8 - 2 slots');
        assert.equal(refused?.status, 429);
        assert.equal(JSON.parse(refused!.text).error.code, 'rate-limited');
        // Another hub token finds the hub share full too; a long poll counts the same.
        assert.equal((await openStream(f.base, other)).status, 429);
        assertError(await call(f.base, 'GET', '/api/v1/events?wait=1&after=999999', { token: other }), 429, 'rate-limited');
        // The admin's page (a long poll) and stream still get theirs.
        const poll = await call(f.base, 'GET', '/api/v1/events?wait=1&after=999999', { token: f.adminToken });
        assert.equal(poll.status, 200, poll.text);
        const adminStream = await openStream(f.base, f.adminToken);
        assert.equal(adminStream.status, 200);
        open.push(adminStream);
      } finally {
        for (const s of open) s.close();
      }
    });
  });

  describe('with 2 slots per token', () => {
    let f: AdminFixture;
    before(async () => {
      f = await startAdminServer('wcp', { adminWatchersPerToken: 2 });
    });
    after(async () => f?.close());

    it('lets one token hold at most 2 watchers, streams and long polls together, while another token still gets its own', async () => {
      const hub = await f.server.auth.mint({ name: 'hub-a', role: 'hub', ttlS: 600 }, nowS());
      const hubB = await f.server.auth.mint({ name: 'hub-b', role: 'hub', ttlS: 600 }, nowS());
      const open: { close(): void }[] = [];
      try {
        for (let i = 0; i < 2; i++) {
          const s = await openStream(f.base, hub);
          assert.equal(s.status, 200);
          open.push(s);
        }
        const third = await openStream(f.base, hub);
        assert.equal(third.status, 429);
        assert.match(JSON.parse(third.text).error.message, /this token already holds 2/);
        assertError(await call(f.base, 'GET', '/api/v1/events?wait=1&after=999999', { token: hub }), 429, 'rate-limited');
        const b = await openStream(f.base, hubB);
        assert.equal(b.status, 200);
        open.push(b);
      } finally {
        for (const s of open) s.close();
      }
    });
  });

  describe('with a stream lifetime of 2 s', () => {
    let f: AdminFixture;
    before(async () => {
      f = await startAdminServer('wcl', { adminStreamLifetime: 2, adminWatchersPerToken: 1 });
    });
    after(async () => f?.close());

    it('ends an idle stream at its lifetime with a retry hint, after heartbeats, and frees its slot for the reconnection', async () => {
      const hub = await f.server.auth.mint({ name: 'hub-l', role: 'hub', ttlS: 600 }, nowS());
      let secondWhileOpen = 0;
      const r = await readSse(`${f.base}/api/v1/events/stream`, hub, () => false, {}, async () => {
        // The token's one slot is held while the stream is open.
        secondWhileOpen = (await openStream(f.base, hub)).status;
      });
      assert.equal(r.status, 200);
      assert.equal(secondWhileOpen, 429);
      assert.match(r.text, /^: keep-alive\n\n/m, 'an idle stream gets heartbeats');
      assert.match(r.text, /retry: \d+\n\n$/, 'the last message sets the reconnection delay');
      // The reconnection (what EventSource does by itself) gets the slot back.
      const again = await openStream(f.base, hub);
      assert.equal(again.status, 200);
      again.close();
    });
  });
});
