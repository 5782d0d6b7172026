/**
 * DTLS PSK failure timing (issue 11 F11): the time from the client's flight 5 leaving to the
 * server's `bad_record_mac` alert arriving, for three classes of identity against the real server
 * (src/server.ts, in a child process so that client and server each get a core):
 *   unknown    — an ID that is not in the allowlist
 *   wrong-psk  — an allowlisted ID with a secret, and a wrong key
 *   no-secret  — an allowlisted ID without a secret
 * Classes are interleaved in a shuffled order, one handshake at a time. Prints the median and
 * quartiles per class (µs) and the differences of the medians. A report, not a test: the machine's
 * noise decides what is resolvable (docs/dtls.md "Security properties" has a run).
 *
 *   npx tsx tools/dtls-peers/psk-timing.ts [--samples 3000]
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { CT } from '../../src/transport/dtls/wire.ts';
import { DtlsClient } from './client.ts';

const SECRET = 'correct horse battery';
const IDS = { unknown: 'timing-unknown-dev', 'wrong-psk': 'timing-known-dev', 'no-secret': 'timing-nosecret-dev' } as const;
type Klass = keyof typeof IDS;
const arg = (name: string, def: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};

if (process.argv[2] === 'serve') {
  const { mkdtempSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { loadConfig } = await import('../../src/config.ts');
  const { silentLogger } = await import('../../src/log.ts');
  const { startServer } = await import('../../src/server.ts');
  const dir = mkdtempSync(join(tmpdir(), 'idprov-psk-timing-'));
  const flags: Record<string, unknown> = { dataDir: dir, bind: '127.0.0.1', coapPort: 0, coapsPort: 0, adminPort: 0, mdns: false, coapMulticast: false, logLevel: 'silent' };
  // Newer servers limit handshakes per address; this measurement makes thousands from one.
  try {
    loadConfig({ env: {}, flags: { ...flags, dtlsHandshakeRate: 0 } });
    flags['dtlsHandshakeRate'] = 0;
  } catch {
    /* an older server without the setting */
  }
  const s = await startServer(loadConfig({ env: {}, flags }), silentLogger);
  const now = Math.floor(Date.now() / 1000);
  const entries = [
    { id: IDS['wrong-psk'], type: 0 as const, createdAt: now, secret: SECRET },
    { id: IDS['no-secret'], type: 0 as const, createdAt: now, pk: new Uint8Array(32).fill(7) },
  ];
  // The one import path; a server from before it had AdminService.importAllowlist instead.
  const old = s as unknown as { importer?: unknown; admin: { importAllowlist(e: typeof entries, a: { by: string }): Promise<unknown> } };
  if (old.importer === undefined) await old.admin.importAllowlist(entries, { by: 'psk-timing' });
  else await s.importer.importEntries(entries, { actor: { by: 'psk-timing' } });
  process.stdout.write(`${JSON.stringify({ port: s.coapsPort })}\n`);
  for await (const line of createInterface({ input: process.stdin })) if (line === 'quit') break;
  await s.close();
  process.exit(0);
}

/** One failing handshake; the µs from flight 5 leaving to the alert arriving. */
async function sample(port: number, identity: string): Promise<number> {
  let sentAt = 0n;
  let alertAt = 0n;
  try {
    const c = await DtlsClient.connect({
      host: '127.0.0.1',
      port,
      psk: { identity, key: Buffer.from('definitely not the key') },
      retransmitMs: 5_000,
      tap: () => (sentAt = process.hrtime.bigint()),
      onReceive: (d) => {
        if (alertAt === 0n && d[0] === CT.alert) alertAt = process.hrtime.bigint();
      },
    });
    c.close();
    throw new Error('the handshake unexpectedly succeeded');
  } catch (e) {
    if (alertAt === 0n || sentAt === 0n || alertAt < sentAt) throw e;
  }
  return Number(alertAt - sentAt) / 1000;
}

const q = (xs: number[], p: number): number => xs[Math.min(xs.length - 1, Math.floor(p * xs.length))]!;

const n = arg('samples', 3000);
const child = spawn(process.execPath, ['--import', 'tsx', new URL(import.meta.url).pathname, 'serve'], { stdio: ['pipe', 'pipe', 'inherit'] });
const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
const { port } = JSON.parse((await lines.next()).value as string) as { port: number };
const classes = Object.keys(IDS) as Klass[];
const out: Record<Klass, number[]> = { unknown: [], 'wrong-psk': [], 'no-secret': [] };
for (let i = 0; i < 200; i++) await sample(port, IDS[classes[i % 3]!]); // warm-up (JIT, statement cache)
for (let i = 0; i < n; i++) {
  const order = [...classes].sort(() => Math.random() - 0.5);
  for (const k of order) out[k].push(await sample(port, IDS[k]));
}
child.stdin!.end('quit\n');
const med: Record<string, number> = {};
for (const k of classes) {
  const xs = out[k].sort((a, b) => a - b);
  med[k] = q(xs, 0.5);
  console.log(`${k.padEnd(10)} n=${xs.length}  median ${q(xs, 0.5).toFixed(1)} µs  p25 ${q(xs, 0.25).toFixed(1)}  p75 ${q(xs, 0.75).toFixed(1)}`);
}
console.log(`median differences: wrong-psk − unknown ${(med['wrong-psk']! - med['unknown']!).toFixed(1)} µs, no-secret − unknown ${(med['no-secret']! - med['unknown']!).toFixed(1)} µs`);
