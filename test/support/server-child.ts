/**
 * A server process for crash tests: starts the real server (src/server.ts) on the flags given as JSON
 * in argv[2], prints `{"ready":true,"port":N}`, then runs admin operations read from stdin as JSON
 * lines `{"op":"approve","args":[...]}` and prints `{"done":<line number>}` once each has committed.
 */
import { createInterface } from 'node:readline';
import { loadConfig } from '../../src/config.ts';
import { createLogger } from '../../src/log.ts';
import { startServer } from '../../src/server.ts';

const cfg = loadConfig({ env: {}, flags: JSON.parse(process.argv[2] ?? '{}') });
const server = await startServer(cfg, createLogger(process.env['CHILD_LOG'] ?? 'silent', 2));
process.stdout.write(`${JSON.stringify({ ready: true, port: server.coapPort })}\n`);
let n = 0;
const admin = server.admin as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
for await (const line of createInterface({ input: process.stdin })) {
  n++;
  const { op, args } = JSON.parse(line) as { op: string; args: unknown[] };
  try {
    const store = server.store as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
    const result = op.startsWith('store.') ? await store[op.slice(6)]!.apply(server.store, args) : await admin[op]!.apply(server.admin, args);
    process.stdout.write(`${JSON.stringify({ done: n, result })}\n`);
  } catch (e) {
    process.stdout.write(`${JSON.stringify({ done: n, error: (e as Error).message })}\n`);
  }
}
