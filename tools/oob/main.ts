import type { AllowView, DeviceView, FlagView, ImportView, Jwk, PageView, PendingView } from '../../src/admin/views.ts';
/**
 * `oob`: the out-of-band admin tool of idprov. A client of the admin sidecar's HTTP API (`/api/v1`):
 * upload allowlists, see who is waiting, approve / reject / revoke, switch provisioning, follow the
 * event feed, and fetch the token keys a Hub verifies with.
 *
 * Human-readable tables by default, `--json` for scripts. Server and token come from flags,
 * the environment (IDPROV_ADMIN_URL, IDPROV_ADMIN_TOKEN) or the data directory (`<data>/admin.token`).
 */
import { Command, CommanderError, Option } from 'commander';
import { createReadStream, statSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { createInterface } from 'node:readline/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { AdminClient, EXIT, OobError, readJson, recordPath, resolveConnection, type ConnectionOptions } from './client.ts';
import { VERSION } from '../../src/version.ts';
import { ProgressBar, bytes, epochTime, eventLine, plural, shortTime, table, type Column, type EventView } from './format.ts';
import { fingerprintMatches, keyFingerprint } from '../../src/tokens/ed25519.ts';

// ------------------------------------------------------------------------------------------------
// Plumbing

interface GlobalOptions extends ConnectionOptions {
  json?: boolean;
}

const out = (s: string): void => {
  process.stdout.write(`${s}\n`);
};
const err = (s: string): void => {
  process.stderr.write(`${s}\n`);
};
const printJson = (v: unknown): void => out(JSON.stringify(v, null, 2));

function globals(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals() as GlobalOptions;
}

function client(cmd: Command): AdminClient {
  return new AdminClient(resolveConnection(globals(cmd)));
}


/** The request record of `id` (any status), or undefined when the server has none. */
async function findRequest(c: AdminClient, id: string): Promise<PendingView | undefined> {
  try {
    return await c.json<PendingView>(recordPath('pending', id));
  } catch (e) {
    if (e instanceof OobError && e.status === 404) return undefined;
    throw e;
  }
}

/** Ask a yes/no question on the terminal (stderr), default no. */
async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const a = await rl.question(`${question} [y/N] `);
    return /^y(es)?$/i.test(a.trim());
  } finally {
    rl.close();
  }
}

/** `n` as a positive integer option value, or a usage error. */
function intOption(name: string, lo: number, hi: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v.trim()) || n < lo || n > hi) throw new OobError(EXIT.usage, `${name} must be an integer from ${lo} to ${hi}, got "${v}"`);
    return n;
  };
}

const deviceState = (d: DeviceView): string => (d.revoked ? `revoked by ${d.revoked.by ?? '?'}${d.revoked.reason ? ` (${d.revoked.reason})` : ''}` : 'active');

/** `GET /api/v1/instances`. */
interface InstancesView {
  shared: boolean;
  instances: Array<{ name: string; host: string; coapPort: number; coapsPort: number; adminPort: number; version: string; seenAt: number }>;
}

/** One live instance, on one line. */
const instanceLine = (i: InstancesView['instances'][number]): string =>
  `${i.name || '(no mDNS name)'}  ${i.host}  coap ${i.coapPort}  coaps ${i.coapsPort}  admin ${i.adminPort}  v${i.version}  seen ${epochTime(i.seenAt)}`;

/** A body `{reason}` only when a reason was given (no body at all otherwise). */
const reasonBody = (reason: unknown): { json?: unknown } => (typeof reason === 'string' && reason ? { json: { reason } } : {});

// ------------------------------------------------------------------------------------------------
// Commands

const program = new Command('oob')
  .description('Out-of-band admin tool for idprov: allowlists, approvals, revocations, events and token keys over the admin sidecar')
  .addOption(new Option('-s, --server <url>', `admin sidecar URL [env IDPROV_ADMIN_URL, default http://127.0.0.1:8445]`))
  .option('-t, --token <token>', 'bearer token [env IDPROV_ADMIN_TOKEN]')
  .option('--token-file <file>', 'read the bearer token from a file')
  .option('-d, --data <dir>', 'server data directory: the token is read from <dir>/admin.token [env IDPROV_DATA, default ./data]')
  .option('--json', 'machine-readable JSON on stdout')
  .version(VERSION, '-V, --version', 'print the idprov version')
  .showHelpAfterError('(oob --help lists the commands and options)')
  .addHelpText(
    'after',
    `
Token: --token, else --token-file, else IDPROV_ADMIN_TOKEN, else <data>/admin.token.
Exit codes: 0 ok; 1 refused by the server (not found, conflict, invalid rows) or declined;
  2 usage or local setup; 3 sidecar unreachable; 4 token refused (401/403); 5 server error.`,
  );

program
  .command('status')
  .description('server health, version, the provisioning switch and, on a shared database, the live instances (needs no token; lists the instances with one)')
  .action(async (_o: unknown, cmd: Command) => {
    const g = globals(cmd);
    const conn = resolveConnection(g, process.env, { tokenOptional: true });
    const c = new AdminClient(conn);
    const h = await c.json<{ status: string; version: string; provisioning: { enabled: boolean; reason?: string }; kid: string; instances?: number }>('/api/v1/health');
    // The list of instances needs a token (hub or admin); without one (or with one refused), the count
    // the health shows: status itself needs no token.
    const live = h.instances !== undefined && conn.token ? await c.json<InstancesView>('/api/v1/instances').then((r) => r.instances, () => undefined) : undefined;
    if (g.json) return printJson(live ? { ...h, live } : h);
    out(`idprov ${h.version} at ${c.conn.baseUrl}: ${h.status}`);
    out(`provisioning: ${h.provisioning.enabled ? 'enabled' : `DISABLED${h.provisioning.reason ? ` (${h.provisioning.reason})` : ''}`}`);
    out(`token key:    ${h.kid}`);
    if (h.instances === undefined) return;
    out(`instances:    ${plural(live?.length ?? h.instances, 'instance')} live on the shared database${live ? ':' : ' (with a token, `oob status` lists them)'}`);
    if (live) for (const i of live) out(`  ${instanceLine(i)}`);
  });

program
  .command('instances')
  .description('the idprov instances live on the shared PostgreSQL database (docs/scale-out.md)')
  .action(async (_o: unknown, cmd: Command) => {
    const g = globals(cmd);
    const c = client(cmd);
    const r = await c.json<InstancesView>('/api/v1/instances');
    if (g.json) return printJson(r);
    if (!r.shared) return out('one instance (SQLite store): nothing is shared');
    for (const i of r.instances) out(instanceLine(i));
  });

program
  .command('import')
  .argument('<file>', 'allowlist file: CSV with a header row, or a JSON array')
  .description('upload an allowlist (upsert); all or nothing unless --valid-only')
  .option('--valid-only', 'import the valid rows even when some rows are invalid')
  .addOption(new Option('--format <format>', 'file format (default: from the extension or the content)').choices(['csv', 'json']))
  .option('--no-progress', 'no progress bar on stderr')
  .action(async (file: string, o: { validOnly?: boolean; format?: 'csv' | 'json'; progress: boolean }, cmd: Command) => {
    const g = globals(cmd);
    const c = client(cmd);
    let size: number;
    try {
      const st = statSync(file);
      if (!st.isFile()) throw new Error('not a regular file');
      size = st.size;
    } catch (e) {
      throw new OobError(EXIT.usage, `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    let format = o.format ?? (/\.json$/i.test(file) ? 'json' : /\.csv$/i.test(file) ? 'csv' : undefined);
    if (!format) {
      const head = await new Promise<string>((res, rej) => {
        let s = '';
        createReadStream(file, { start: 0, end: 1023, encoding: 'utf8' })
          .on('data', (d) => (s += d))
          .on('end', () => res(s))
          .on('error', rej);
      });
      format = head.replace(/^\uFEFF/, '').trimStart().startsWith('[') ? 'json' : 'csv';
    }
    const bar = o.progress ? new ProgressBar(process.stderr, `uploading ${basename(file)}`, size) : undefined;
    let sent = 0;
    bar?.update(0);
    const src = createReadStream(file)[Symbol.asyncIterator]();
    const body = new ReadableStream<Uint8Array>({
      async pull(ctl) {
        const r = await src.next();
        if (r.done) {
          bar?.update(size);
          bar?.finish('— sent; the server is checking and importing the rows…');
          ctl.close();
          return;
        }
        const chunk = r.value as Buffer;
        sent += chunk.length;
        bar?.update(sent);
        ctl.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length));
      },
      async cancel() {
        await src.return?.();
      },
    });
    const q = o.validOnly ? '?mode=valid' : '';
    let res: Response;
    try {
      res = await c.request(`/api/v1/allowlist${q}`, { method: 'POST', body, contentType: format === 'json' ? 'application/json' : 'text/csv; charset=utf-8', accept: [422] });
    } finally {
      bar?.finish();
    }
    const r = (await readJson(res, c.url('/api/v1/allowlist'))) as ImportView;
    process.exitCode = r.imported && (r.invalid === 0 || o.validOnly) ? EXIT.ok : EXIT.failed;
    if (g.json) return printJson(r);
    const name = basename(file);
    for (const w of r.warnings) err(`warning: line ${w.line}${w.id ? ` (${w.id})` : ''}: ${w.message}`);
    if (r.imported) out(`${name}: ${plural(r.rows, 'row')} — ${r.added} added, ${r.updated} updated, ${r.invalid} invalid`);
    else if (r.invalid) out(`${name}: ${plural(r.rows, 'row')}, ${r.invalid} invalid — nothing imported (all or nothing; fix the rows below, or use --valid-only)`);
    else out(`${name}: no entries — nothing imported`);
    for (const e of r.errors) out(`  line ${e.line}${e.id ? ` (${e.id})` : ''}: ${e.message}`);
    if (r.invalid > r.errors.length) out(`  … and ${plural(r.invalid - r.errors.length, 'more invalid row')}`);
  });

const LISTS = {
  pending: {
    path: '/api/v1/pending',
    empty: 'no device is waiting for approval',
    cols: [
      { header: 'id', get: (p) => p.id },
      { header: 'fingerprint', get: (p) => p.fingerprint },
      { header: 'type', get: (p) => p.type },
      { header: 'mac', get: (p) => p.mac },
      { header: 'source', get: (p) => p.source },
      { header: 'first seen', get: (p) => shortTime(p.firstSeen) },
      { header: 'last seen', get: (p) => shortTime(p.lastSeen) },
      { header: 'requests', get: (p) => p.count },
    ] as Array<Column<PendingView>>,
    decidedCols: [
      { header: 'status', get: (p) => p.status },
      { header: 'decided', get: (p) => shortTime(p.decidedAt) },
      { header: 'by', get: (p) => p.decidedBy },
    ] as Array<Column<PendingView>>,
    /** `--status rejected`: why (an approval has no reason). */
    rejectedCols: [{ header: 'reason', get: (p) => p.decidedReason }] as Array<Column<PendingView>>,
  },
  devices: {
    path: '/api/v1/devices',
    empty: 'no device is provisioned',
    cols: [
      { header: 'id', get: (d) => d.id },
      { header: 'fingerprint', get: (d) => d.fingerprint },
      { header: 'type', get: (d) => d.type },
      { header: 'via', get: (d) => d.via },
      { header: 'provisioned', get: (d) => shortTime(d.provisionedAt) },
      { header: 'last seen', get: (d) => shortTime(d.lastSeen) },
      { header: 'token expires', get: (d) => shortTime(d.tokenExp) },
      { header: 'state', get: (d) => deviceState(d) },
    ] as Array<Column<DeviceView>>,
  },
  allowlist: {
    path: '/api/v1/allowlist',
    empty: 'the allowlist is empty',
    cols: [
      { header: 'id', get: (a) => a.id },
      { header: 'fingerprint', get: (a) => a.fingerprint },
      { header: 'mac', get: (a) => a.mac },
      { header: 'secret', get: (a) => (a.hasSecret ? 'yes' : 'no') },
      { header: 'type', get: (a) => a.type },
      { header: 'expires', get: (a) => shortTime(a.expires) },
      { header: 'consumed', get: (a) => shortTime(a.consumedAt) },
    ] as Array<Column<AllowView>>,
  },
};

program
  .command('list')
  .argument('<what>', 'pending | devices | allowlist')
  .description('list pending requests, provisioned devices, or allowlist entries (by ID)')
  .addOption(new Option('--status <status>', 'pending requests in this state').choices(['pending', 'approved', 'rejected']).default('pending'))
  .option('--limit <n>', 'entries per page (1..1000)', intOption('--limit', 1, 1000), 100)
  .option('--after <cursor>', 'start after this cursor (the ID printed as "more:")')
  .option('--all', 'follow the cursors to the end')
  .action(async (what: string, o: { status: string; limit: number; after?: string; all?: boolean }, cmd: Command) => {
    if (!(what in LISTS)) throw new OobError(EXIT.usage, `list what? "${what}" is not one of pending, devices, allowlist`);
    const kind = what as keyof typeof LISTS;
    const g = globals(cmd);
    const c = client(cmd);
    const spec = LISTS[kind];
    const items: unknown[] = [];
    let after = o.after;
    let next: string | undefined;
    do {
      const qs = new URLSearchParams({ limit: String(o.limit) });
      if (kind === 'pending') qs.set('status', o.status);
      if (after) qs.set('after', after);
      const page = await c.json<PageView<unknown>>(`${spec.path}?${qs}`);
      items.push(...page.items);
      next = page.next;
      after = next;
    } while (o.all && next);
    if (g.json) return printJson(next ? { items, next } : { items });
    if (!items.length) out(kind === 'pending' && o.status !== 'pending' ? `no ${o.status} requests` : spec.empty);
    else if (kind === 'pending') {
      const p = LISTS.pending;
      out(table(items as PendingView[], o.status === 'pending' ? p.cols : [...p.cols, ...p.decidedCols, ...(o.status === 'rejected' ? p.rejectedCols : [])]));
    }
    else if (kind === 'devices') out(table(items as DeviceView[], LISTS.devices.cols));
    else out(table(items as AllowView[], LISTS.allowlist.cols));
    if (next) err(`more: oob list ${kind}${kind === 'pending' && o.status !== 'pending' ? ` --status ${o.status}` : ''} --after ${next}   (or --all)`);
  });

program
  .command('device')
  .argument('<id>', 'device ID')
  .description('show one provisioned device')
  .action(async (id: string, _o: unknown, cmd: Command) => {
    const d = await client(cmd).json<DeviceView>(recordPath('devices', id));
    if (globals(cmd).json) return printJson(d);
    const rows: Array<[string, unknown]> = [
      ['id', d.id],
      ['fingerprint', d.fingerprint],
      ['public key', d.pk],
      ['type', d.type],
      ['mac', d.mac],
      ['via', d.via],
      ['provisioned', shortTime(d.provisionedAt)],
      ['last seen', shortTime(d.lastSeen)],
      ['source', d.source],
      ['token expires', shortTime(d.tokenExp)],
      ['state', deviceState(d)],
    ];
    for (const [k, v] of rows) out(`${k.padEnd(14)}${v ?? '-'}`);
  });

program
  .command('approve')
  .argument('<id>', 'device ID of a pending request')
  .description('approve a pending request, pinned to the key fingerprint shown (the device gets its token at its next poll)')
  .option('--fingerprint <fp>', 'pin this fingerprint (as the device or its label shows it; any case, spaces allowed, or the old base64url form) instead of the one listed')
  .option('-y, --yes', 'do not ask for confirmation (required when stdin is not a terminal)')
  .action(async (id: string, o: { fingerprint?: string; yes?: boolean }, cmd: Command) => {
    const g = globals(cmd);
    const c = client(cmd);
    const found = await findRequest(c, id);
    const p = found?.status === 'pending' ? found : undefined;
    if (!p) {
      const decided = found;
      if (decided?.status === 'approved') throw new OobError(EXIT.failed, `${id} is already approved (by ${decided.decidedBy ?? '?'}); it gets its token at its next poll`, 'conflict');
      if (decided?.status === 'rejected') throw new OobError(EXIT.failed, `${id} was rejected (by ${decided.decidedBy ?? '?'}${decided.decidedReason ? `: ${decided.decidedReason}` : ''}); \`oob unreject ${id}\` re-admits it`, 'conflict');
      throw new OobError(EXIT.failed, `no pending request for ${id} (\`oob list pending\` shows who is waiting)`, 'not-found');
    }
    if (!p.fingerprint || !p.pk) throw new OobError(EXIT.failed, `the pending request of ${id} has no key to pin`, 'conflict');
    // A typed pin is compared here (any case, spaces, O for 0, I/L for 1, or the old format), and the
    // fingerprint listed is what is sent: the server checks the key has not changed since.
    if (o.fingerprint && !fingerprintMatches(Buffer.from(p.pk, 'hex'), o.fingerprint)) {
      throw new OobError(EXIT.failed, `the key of ${id} is ${p.fingerprint}, not ${o.fingerprint} — do not approve it unless the device shows ${p.fingerprint}`, 'conflict');
    }
    if (!g.json || !o.yes) {
      const say = g.json ? err : out;
      say(`pending request ${id}`);
      say(`  key fingerprint  ${p.fingerprint ?? '-'}`);
      say(`  type             ${p.type ?? '-'}${p.mac ? `, mac ${p.mac}` : ''}`);
      say(`  source           ${p.source ?? '-'}, ${plural(p.count ?? 0, 'request')}, first ${shortTime(p.firstSeen) ?? '-'}, last ${shortTime(p.lastSeen) ?? '-'}`);
    }
    if (!o.yes) {
      if (!process.stdin.isTTY) throw new OobError(EXIT.usage, 'not approving: stdin is not a terminal, so there is no one to confirm; pass --yes');
      if (!(await confirm(`Approve ${id} with key ${p.fingerprint}? It must match the fingerprint the device or its label shows.`))) {
        throw new OobError(EXIT.failed, 'not approved');
      }
    }
    const fingerprint = p.fingerprint;
    const r = await c.json<PendingView>(recordPath('pending', id, 'approve'), { method: 'POST', json: { fingerprint } });
    if (g.json) return printJson(r);
    out(`approved ${id} (key ${fingerprint}); it gets its token at its next poll`);
  });

program
  .command('reject')
  .argument('<id>', 'device ID')
  .description('reject a device ID: its requests are refused (4.03), even with an allowlist entry')
  .option('--reason <text>', 'why (kept with the rejection and in the event log)')
  .action(async (id: string, o: { reason?: string }, cmd: Command) => {
    await client(cmd).request(recordPath('pending', id, 'reject'), { method: 'POST', ...reasonBody(o.reason) });
    if (globals(cmd).json) return printJson({ id, status: 'rejected' });
    out(`rejected ${id}`);
  });

program
  .command('unreject')
  .argument('<id>', 'device ID')
  .description('undo a rejection: the next request of the ID waits for approval again')
  .action(async (id: string, _o: unknown, cmd: Command) => {
    await client(cmd).request(recordPath('pending', id, 'unreject'), { method: 'POST' });
    if (globals(cmd).json) return printJson({ id, status: 'unknown' });
    out(`${id} is no longer rejected; its next request waits for approval`);
  });

program
  .command('revoke')
  .argument('<id>', 'device ID')
  .description('revoke a provisioned device: its refreshes fail at once')
  .option('--reason <text>', 'why (kept with the revocation)')
  .action(async (id: string, o: { reason?: string }, cmd: Command) => {
    await client(cmd).request(recordPath('devices', id, 'revoke'), { method: 'POST', ...reasonBody(o.reason) });
    if (globals(cmd).json) return printJson({ id, revoked: true });
    out(`revoked ${id}; its refreshes are refused from now on`);
  });

program
  .command('reenable')
  .argument('<id>', 'device ID')
  .description('lift the revocation of a device')
  .action(async (id: string, _o: unknown, cmd: Command) => {
    await client(cmd).request(recordPath('devices', id, 'enable'), { method: 'POST' });
    if (globals(cmd).json) return printJson({ id, revoked: false });
    out(`${id} is enabled again`);
  });

program
  .command('delete')
  .argument('<id>', 'device ID')
  .description('delete an allowlist entry')
  .action(async (id: string, _o: unknown, cmd: Command) => {
    await client(cmd).request(recordPath('allowlist', id), { method: 'DELETE' });
    if (globals(cmd).json) return printJson({ id, deleted: true });
    out(`deleted the allowlist entry ${id}`);
  });

program
  .command('allow')
  .argument('<id>', 'device ID')
  .description('add (or replace) the allowlist entry of one device: its key, MAC or out-of-band secret')
  .option('--pk <hex>', 'the device\'s Ed25519 public key, 64 hex digits (device-sim keygen prints it as "pk")')
  .option('--mac <mac>', 'the device\'s MAC (aa:bb:cc:dd:ee:ff, aa-bb-…, or 12 hex digits)')
  .option('--secret <secret>', 'an out-of-band secret printed on the device\'s label (visible in the process list: prefer an allowlist file for many)')
  .addOption(new Option('--type <type>', 'the role its token gets').choices(['device', 'service', 'consumer']))
  .option('--expires <time>', 'the entry is valid until this ISO 8601 time (e.g. 2027-01-31T00:00:00Z)')
  .action(async (id: string, o: { pk?: string; mac?: string; secret?: string; type?: string; expires?: string }, cmd: Command) => {
    if (o.pk === undefined && o.mac === undefined && o.secret === undefined) throw new OobError(EXIT.usage, 'allow how? give --pk HEX, --mac MAC or --secret S (or several)');
    if (o.pk !== undefined && !/^[0-9a-fA-F]{64}$/.test(o.pk)) throw new OobError(EXIT.usage, `--pk must be 64 hex digits (32 bytes), got ${o.pk.length} characters`);
    if (o.expires !== undefined && Number.isNaN(Date.parse(o.expires))) throw new OobError(EXIT.usage, `--expires must be an ISO 8601 time, got "${o.expires}"`);
    const json: Record<string, string> = {};
    for (const k of ['pk', 'mac', 'secret', 'type', 'expires'] as const) if (o[k] !== undefined) json[k] = o[k]!;
    const res = await client(cmd).request(recordPath('allowlist', id), { method: 'PUT', json });
    const text = res.status === 204 ? '' : await res.text();
    let a: AllowView | undefined;
    try {
      a = text ? (JSON.parse(text) as AllowView) : undefined;
    } catch {
      a = undefined;
    }
    if (globals(cmd).json) return printJson(a ?? { id, ...json, ...(json['secret'] ? { secret: undefined, hasSecret: true } : {}) });
    const how = [a?.fingerprint ? `key ${a.fingerprint}` : o.pk ? 'key' : undefined, (a?.mac ?? o.mac) ? `mac ${a?.mac ?? o.mac}` : undefined, (a?.hasSecret ?? o.secret !== undefined) ? 'a secret' : undefined].filter(Boolean);
    out(`allowed ${id}${how.length ? ` (${how.join(', ')})` : ''}${a?.expires ? ` until ${shortTime(a.expires)}` : ''}; its next request is provisioned`);
  });

/** `k=v k=v` of a flag's evidence, for the table; keys (64 hex digits) as their fingerprints, as everywhere else. */
const evidenceText = (e: Record<string, string> | undefined): string =>
  Object.entries(e ?? {})
    .map(([k, v]) => (/^[0-9a-f]{64}$/i.test(v) ? `${k}=${keyFingerprint(Buffer.from(v, 'hex'))}` : `${k}=${v.length > 24 ? `${v.slice(0, 20)}…` : v}`))
    .join(' ');

program
  .command('flags')
  .argument('[action]', '"list" (default) or "clear"')
  .argument('[id]', 'with clear: the flag ID (first column of the list)')
  .description('security monitor flags: list them (open ones by default), or clear one after review')
  .addOption(new Option('--status <status>', 'flags in this state').choices(['open', 'cleared', 'all']).default('open'))
  .option('--note <text>', 'with clear: what was found (kept in the event log)')
  .option('--limit <n>', 'entries per page (1..1000)', intOption('--limit', 1, 1000), 100)
  .option('--after <cursor>', 'start after this cursor (the ID printed as "more:")')
  .option('--all', 'follow the cursors to the end')
  .action(async (action: string | undefined, id: string | undefined, o: { status: string; note?: string; limit: number; after?: string; all?: boolean }, cmd: Command) => {
    const g = globals(cmd);
    const c = client(cmd);
    if (action === 'clear') {
      if (!id) throw new OobError(EXIT.usage, 'which flag? `oob flags clear ID` (`oob flags` lists them)');
      const f = await c.json<FlagView>(recordPath('flags', id, 'clear'), { method: 'POST', ...(o.note ? { json: { note: o.note } } : {}) });
      if (g.json) return printJson(f);
      out(`cleared flag ${f.id} (${f.kind}: ${f.deviceIds.join(', ')}, seen ${plural(f.count ?? 1, 'time')})`);
      return;
    }
    if (action !== undefined && action !== 'list') throw new OobError(EXIT.usage, `flags what? "${action}" is not list or clear`);
    if (id !== undefined) throw new OobError(EXIT.usage, '`oob flags list` takes no ID');
    const items: FlagView[] = [];
    let after = o.after;
    let next: string | undefined;
    do {
      const qs = new URLSearchParams({ limit: String(o.limit), status: o.status });
      if (after) qs.set('after', after);
      const page = await c.json<PageView<FlagView>>(`/api/v1/flags?${qs}`);
      items.push(...page.items);
      next = page.next;
      after = next;
    } while (o.all && next);
    if (g.json) return printJson(next ? { items, next } : { items });
    if (!items.length) out(o.status === 'open' ? 'no open flags' : `no ${o.status === 'all' ? '' : `${o.status} `}flags`);
    else
      out(
        table(items, [
          { header: 'id', get: (f) => f.id },
          { header: 'kind', get: (f) => f.kind },
          { header: 'devices', get: (f) => f.deviceIds.join(',') },
          { header: 'count', get: (f) => f.count },
          { header: 'first seen', get: (f) => shortTime(f.firstSeen) },
          { header: 'last seen', get: (f) => shortTime(f.lastSeen) },
          ...(o.status === 'open' ? [] : [{ header: 'cleared by', get: (f: FlagView) => f.clearedBy }]),
          { header: 'evidence', get: (f) => evidenceText(f.evidence) },
        ] as Array<Column<FlagView>>),
      );
    if (next) err(`more: oob flags --status ${o.status} --after ${next}   (or --all)`);
  });

async function setProvisioning(cmd: Command, enabled: boolean, reason?: string): Promise<void> {
  const r = await client(cmd).json<{ enabled: boolean; reason?: string }>('/api/v1/provisioning', { method: 'PUT', json: reason ? { enabled, reason } : { enabled } });
  if (globals(cmd).json) return printJson(r);
  out(r.enabled ? 'provisioning enabled: new devices are accepted' : `provisioning disabled: new devices get 5.03${r.reason ? ` (${r.reason})` : ''}; refreshes keep working`);
}

program
  .command('enable')
  .description('enable provisioning (new devices are accepted again)')
  .option('--reason <text>', 'why (kept in the event log)')
  .action(async (o: { reason?: string }, cmd: Command) => setProvisioning(cmd, true, o.reason));

program
  .command('disable')
  .description('disable provisioning: new requests get 5.03 (refreshes keep working)')
  .option('--reason <text>', 'why (shown to admins and in the event log)')
  .action(async (o: { reason?: string }, cmd: Command) => setProvisioning(cmd, false, o.reason));

program
  .command('watch')
  .description('follow the event feed: one line per decision and admin action (Ctrl-C to stop)')
  .option('--after <seq>', 'start after this event (default: only new events)', intOption('--after', 0, Number.MAX_SAFE_INTEGER))
  .option('--count <n>', 'exit after this many events', intOption('--count', 1, Number.MAX_SAFE_INTEGER))
  .option('--wait <s>', 'long-poll wait per request, seconds', intOption('--wait', 1, 30), 25)
  .action(async (o: { after?: number; count?: number; wait: number }, cmd: Command) => {
    const g = globals(cmd);
    const c = client(cmd);
    type Batch = { events: EventView[]; next: number };
    let cursor: number;
    if (o.after !== undefined) cursor = o.after;
    else {
      // Skip the history: page to the end of the feed.
      cursor = 0;
      for (;;) {
        const b: Batch = await c.json<Batch>(`/api/v1/events?after=${cursor}&limit=1000`);
        cursor = b.next;
        if (b.events.length < 1000) break;
      }
    }
    err(`watching the events of ${c.conn.baseUrl} after #${cursor} (Ctrl-C to stop)`);
    let seen = 0;
    let backoff = 1;
    for (;;) {
      let b: Batch;
      try {
        b = await c.json<Batch>(`/api/v1/events?after=${cursor}&wait=${o.wait}&limit=1000`);
        backoff = 1;
      } catch (e) {
        // A restart of the server is normal while watching, and so is 429 when every watcher slot
        // is taken: keep trying; a refused token is not.
        if (!(e instanceof OobError) || (e.exitCode !== EXIT.unreachable && e.exitCode !== EXIT.server && e.status !== 429)) throw e;
        err(`${e.message}; retrying in ${backoff} s`);
        await delay(backoff * 1000);
        backoff = Math.min(backoff * 2, 30);
        continue;
      }
      for (const e of b.events) {
        out(g.json ? JSON.stringify(e) : eventLine(e));
        if (o.count !== undefined && ++seen >= o.count) return;
      }
      cursor = b.next;
    }
  });

program
  .command('keys')
  .description('the token keys a Hub verifies device tokens with (JWKS), or the COSE_KeySet bytes')
  .option('--cose [file]', 'write the COSE_KeySet (CBOR) to FILE, or to stdout when no file is given')
  .action(async (o: { cose?: string | boolean }, cmd: Command) => {
    const g = globals(cmd);
    const c = client(cmd);
    if (o.cose !== undefined && o.cose !== false) {
      const res = await c.request('/api/v1/keys/cose', { headers: { accept: 'application/cose-key-set' } });
      const buf = Buffer.from(await res.arrayBuffer());
      if (typeof o.cose === 'string' && o.cose !== '-') {
        writeFileSync(o.cose, buf);
        err(`wrote the COSE_KeySet (${bytes(buf.length)}) to ${o.cose}`);
      } else {
        if (process.stdout.isTTY) throw new OobError(EXIT.usage, 'the COSE_KeySet is binary: redirect stdout (oob keys --cose > keys.cbor) or give a file (--cose keys.cbor)');
        process.stdout.write(buf);
      }
      return;
    }
    const [jwks, health] = await Promise.all([
      c.json<{ keys: Jwk[] }>('/api/v1/keys/jwks'),
      c.json<{ kid?: string }>('/api/v1/health').catch(() => ({}) as { kid?: string }),
    ]);
    if (g.json) return printJson(jwks);
    const kidHex = (k: Jwk) => Buffer.from(k.kid, 'base64url').toString('hex');
    out(
      table(jwks.keys, [
        { header: 'kid (hex)', get: kidHex },
        { header: 'kid (jwk)', get: (k) => k.kid },
        { header: 'alg', get: (k) => k.alg ?? `${k.kty}/${k.crv}` },
        { header: 'x (public key)', get: (k) => k.x },
        { header: 'state', get: (k) => (health.kid === undefined ? '' : kidHex(k) === health.kid ? 'current' : 'retired') },
      ]),
    );
  });

program
  .command('verify')
  .argument('<token>', 'a device token (CWT) as hex or base64url')
  .description('ask the server whether a device token is valid (signature, expiry, revocation, current key)')
  .action(async (token: string, _o: unknown, cmd: Command) => {
    const r = await client(cmd).json<{ valid: boolean; error?: string; claims?: Record<string, unknown> }>('/api/v1/tokens/verify', { method: 'POST', json: { token } });
    process.exitCode = r.valid ? EXIT.ok : EXIT.failed;
    if (globals(cmd).json) return printJson(r);
    if (!r.valid) out(`invalid: ${r.error ?? 'unknown reason'}`);
    else out(`valid`);
    if (r.claims) {
      const cl = r.claims;
      out(`  sub ${cl['sub']}, role ${cl['role']}, issued ${epochTime(Number(cl['iat']))}, expires ${epochTime(Number(cl['exp']))}`);
    }
  });

// ------------------------------------------------------------------------------------------------
// Run

process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw e;
});

program.exitOverride();
program.configureOutput({ writeErr: (s) => process.stderr.write(s) });
for (const sub of program.commands) sub.exitOverride();

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) {
    process.exitCode = e.exitCode === 0 ? EXIT.ok : EXIT.usage;
  } else if (e instanceof OobError) {
    err(`oob: ${e.message}`);
    process.exitCode = e.exitCode;
  } else {
    err(`oob: unexpected error: ${(e as Error)?.stack ?? String(e)}`);
    process.exitCode = EXIT.server;
  }
}
