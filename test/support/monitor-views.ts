/**
 * Helpers of the security monitor tests: the real server (test/support/admin-server.ts) plus reads of its
 * flags and events through the sidecar, as an admin or a Hub would see them.
 */
import assert from 'node:assert/strict';
import { call, type AdminFixture } from './admin-server.ts';

/** A flag as `GET /api/v1/flags` shows it. */
export interface FlagView {
  id: string;
  kind: string;
  status: 'open' | 'cleared';
  deviceIds: string[];
  subject: string;
  evidence: Record<string, string>;
  firstSeen: string;
  lastSeen: string;
  count: number;
  clearedAt?: string;
  clearedBy?: string;
}

/** An event as `GET /api/v1/events` shows it. */
export type { EventView } from '../../tools/oob/format.ts';
import type { EventView } from '../../tools/oob/format.ts';

/** Every flag in `status` (open by default), through the sidecar with the admin token. */
export async function flags(f: AdminFixture, status: 'open' | 'cleared' | 'all' = 'open'): Promise<FlagView[]> {
  const a = await call(f.base, 'GET', `/api/v1/flags?status=${status}&limit=1000`, { token: f.adminToken });
  assert.equal(a.status, 200, a.text);
  return a.json.items as FlagView[];
}

/** The open flags that name `id`. */
export async function flagsOf(f: AdminFixture, id: string): Promise<FlagView[]> {
  return (await flags(f)).filter((x) => x.deviceIds.includes(id));
}

/** The one open flag of `kind` naming `id` (fails when there is none or more than one). */
export async function oneFlag(f: AdminFixture, kind: string, id: string): Promise<FlagView> {
  const found = (await flagsOf(f, id)).filter((x) => x.kind === kind);
  assert.equal(found.length, 1, `one open ${kind} flag naming ${id}; open flags: ${JSON.stringify(await flags(f), null, 1)}`);
  return found[0]!;
}

/** Every event after `after`, through the sidecar. */
export async function events(f: AdminFixture, after = 0): Promise<EventView[]> {
  const out: EventView[] = [];
  for (;;) {
    const a = await call(f.base, 'GET', `/api/v1/events?after=${after}&limit=1000`, { token: f.adminToken });
    assert.equal(a.status, 200, a.text);
    out.push(...(a.json.events as EventView[]));
    if (a.json.events.length < 1000) return out;
    after = a.json.next;
  }
}

/** A MAC as bytes from `aa:bb:…`. */
export const mac = (s: string): Buffer => Buffer.from(s.replace(/:/g, ''), 'hex');
