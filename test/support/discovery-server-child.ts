/**
 * The real server (src/server.ts) as a child process for the namespace tests: flags as JSON in
 * argv[2]; pino JSON log lines on stderr (level from CHILD_LOG, default info); on stdout
 * `{"ready":true,"port":N}`, then one `{"done":n,...}` line per admin operation read from stdin as
 * `{"op":"setProvisioning","args":[...]}` (any AdminService method), `{"op":"store.listEvents","args":[0,100]}` (a Store method) or `{"op":"close"}` (graceful
 * shutdown: mDNS goodbyes, then exit 0).
 */
import { createInterface } from 'node:readline';
import { loadConfig } from '../../src/config.ts';
import { createLogger } from '../../src/log.ts';
import { startServer } from '../../src/server.ts';

const cfg = loadConfig({ env: {}, flags: JSON.parse(process.argv[2] ?? '{}') });
const log = createLogger(process.env['CHILD_LOG'] ?? 'info', 2);
const server = await startServer(cfg, log);
process.stdout.write(`${JSON.stringify({ ready: true, port: server.coapPort, kid: server.keyring.current.kid })}\n`);
let n = 0;
const admin = server.admin as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
for await (const line of createInterface({ input: process.stdin })) {
  n++;
  const { op, args } = JSON.parse(line) as { op: string; args?: unknown[] };
  if (op === 'close') {
    await server.close();
    log.flush();
    process.stdout.write(`${JSON.stringify({ done: n, closed: true })}\n`, () => process.exit(0));
    break;
  }
  try {
    const store = server.store as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
    const result = op.startsWith('store.') ? await store[op.slice(6)]!.apply(server.store, args ?? []) : await admin[op]!.apply(server.admin, args ?? []);
    process.stdout.write(`${JSON.stringify({ done: n, result: result ?? null, kid: server.keyring.current.kid })}\n`);
  } catch (e) {
    process.stdout.write(`${JSON.stringify({ done: n, error: (e as Error).message })}\n`);
  }
}
