/**
 * What happens when a rogue provisioning server is seen (docs/spec/idprov-coap-v1.md §7, issue #5): a log line, an
 * `alert.rogue-server` event in the event log (and so in the sidecar's feed), provisioning disabled
 * (`/idprov/request` answers 5.03 `err` 10 until an admin enables it; `/idprov/refresh` keeps
 * working), and an optional webhook POST.
 */
import type { Logger } from '../log.ts';
import { describeRogue, type RogueReport } from './rogue.ts';

/** Event kind written to the event log. */
export const ROGUE_EVENT = 'alert.rogue-server';

/** The admin operations the alert needs (AdminService provides them). */
export interface AlertTarget {
  setProvisioning(enabled: boolean, reason: string | undefined, actor: { by: string }): Promise<void>;
  recordAlert(kind: string, detail: Record<string, unknown>, actor?: { by: string }): Promise<void>;
}

/** The body of the webhook POST (JSON). */
export interface RogueWebhookBody {
  kind: typeof ROGUE_EVENT;
  /** ISO 8601 time of the alert. */
  at: string;
  /** This server's instance name, when it advertises. */
  server?: string;
  message: string;
  rogue: RogueReport;
}

/** Options of {@link raiseRogueAlert}. */
export interface RogueAlertDeps {
  admin: AlertTarget;
  log: Logger;
  /** Webhook URL; empty or undefined: none. */
  webhook?: string;
  /** Our instance name, for the webhook body. */
  server?: string | undefined;
  /** Milliseconds since the epoch. */
  now: () => number;
  /** Injectable for tests; the global fetch by default. */
  fetch?: typeof fetch;
  /** Webhook timeout (ms). */
  webhookTimeoutMs?: number;
}

/** The reason stored with the provisioning switch (shown by `oob status` and the sidecar). */
export function rogueReason(r: RogueReport): string {
  return `rogue provisioning server seen: ${describeRogue(r)}`;
}

/** The event detail: everything about the rogue, JSON-safe. */
export function rogueDetail(r: RogueReport): Record<string, unknown> {
  const d: Record<string, unknown> = { instance: r.instance, addresses: r.addresses, source: r.source };
  if (r.host !== undefined) d['host'] = r.host;
  if (r.port !== undefined) d['port'] = r.port;
  if (r.txt !== undefined) d['txt'] = r.txt;
  if (r.impersonates) d['impersonates'] = true;
  if (r.partial) d['partial'] = true;
  return d;
}

/**
 * Raise the alert: disable provisioning (durable before it takes effect), write the event, log (error
 * level, `evt: "alert"`), then POST the webhook (failures are logged, never thrown).
 */
export async function raiseRogueAlert(r: RogueReport, d: RogueAlertDeps): Promise<void> {
  const reason = rogueReason(r);
  try {
    await d.admin.setProvisioning(false, reason, { by: 'system' });
    await d.admin.recordAlert(ROGUE_EVENT, rogueDetail(r), { by: 'system' });
  } finally {
    // Logged once the switch and the event are committed (or failed: the line is written anyway).
    d.log.error({ evt: 'alert', kind: ROGUE_EVENT, rogue: rogueDetail(r), provisioning: 'disabled' }, reason);
  }
  if (d.webhook) await postWebhook(d.webhook, { kind: ROGUE_EVENT, at: new Date(d.now()).toISOString(), ...(d.server ? { server: d.server } : {}), message: reason, rogue: r }, d);
}

/** The URL without path, query or credentials, for logs (a webhook URL may carry a secret). */
function origin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(invalid URL)';
  }
}

async function postWebhook(url: string, body: RogueWebhookBody, d: RogueAlertDeps): Promise<void> {
  const f = d.fetch ?? fetch;
  const where = origin(url);
  try {
    const res = await f(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': 'idprov' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(d.webhookTimeoutMs ?? 10_000),
    });
    if (!res.ok) d.log.warn({ evt: 'alert', url: where, status: res.status }, 'alert webhook answered with an error status');
    else d.log.info({ evt: 'alert', url: where, status: res.status }, 'alert webhook delivered');
  } catch (err) {
    d.log.warn({ evt: 'alert', url: where, err: (err as Error).message }, 'alert webhook failed');
  }
}
