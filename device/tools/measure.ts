/**
 * Bytes on the air and time per flow, measured with the host CLI against the real server on loopback
 * (for docs/device.md):  node --import tsx device/tools/measure.ts [runs]
 * Counts CoAP datagrams and bytes (UDP payloads; IPv4 + UDP headers add 28 B per datagram) as the
 * CLI's -v statistics line reports them, and the time from before the key is loaded to the token stored
 * (over coaps: every DTLS datagram, handshake included, and the wall time of the whole process).
 */
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { startAdminServer } from '../../test/support/admin-server.ts';
import { tempDir } from '../../test/support/temp-dir.ts';

const CLI = join(import.meta.dirname, '../build/host/idprov-device');
const runs = Number(process.argv[2] ?? 20);
const f = await startAdminServer('meas');
const tmp = tempDir('idprov-measure-');
const server = ['--server', `coap://127.0.0.1:${f.server.coapPort}`];

interface Sample { out: number; outB: number; inn: number; inB: number; ms: number }

const run = promisify(execFile);
/* The server runs in this process: the CLI must run asynchronously. */
async function once(args: string[]): Promise<Sample> {
  const r = await run(CLI, [...args, '-v'], { encoding: 'utf8' });
  const m = /coap: (\d+) datagrams out \((\d+) B\), (\d+) in \((\d+) B\), (\d+) retransmissions, (\d+) ms/.exec(r.stderr);
  if (!m) throw new Error(r.stderr);
  return { out: +m[1]!, outB: +m[2]!, inn: +m[3]!, inB: +m[4]!, ms: +m[6]! };
}

const rows: Record<string, Sample[]> = { provision: [], 'provision --seal': [], 'provision --seal --verify': [], refresh: [], 'provision over coaps (DTLS-PSK, handshake included)': [] };
/* over coaps: the DTLS counters (every datagram on the wire, handshake included) replace the CoAP ones */
async function coaps(args: string[]): Promise<Sample> {
  const t0 = Date.now();
  const r = await run(CLI, [...args, '-v'], { encoding: 'utf8' });
  const ms = Date.now() - t0;
  const m = /dtls: (\d+) datagrams out \((\d+) B\), (\d+) in \((\d+) B\)/.exec(r.stderr);
  if (!m) throw new Error(r.stderr);
  return { out: +m[1]!, outB: +m[2]!, inn: +m[3]!, inB: +m[4]!, ms };
}
for (let i = 0; i < runs; i++) {
  for (const extra of [[], ['--seal'], ['--seal', '--verify']]) {
    const id = `meas-${i}-${extra.length}`;
    const key = join(tmp.dir, `${id}.key`);
    const g = JSON.parse(execFileSync(CLI, ['keygen', '--key', key, '--json'], { encoding: 'utf8' })) as { pk: string };
    await f.allow({ id, pk: Buffer.from(g.pk, 'hex') });
    rows[['provision', ...extra].join(' ')]!.push(await once(['provision', ...server, '--id', id, '--key', key, ...extra]));
    if (extra.length === 0) rows['refresh']!.push(await once(['refresh', ...server, '--id', id, '--key', key]));
  }
  const pid = `meas-psk-${i}`;
  await f.allow({ id: pid, secret: 'measure-secret-0042' });
  rows['provision over coaps (DTLS-PSK, handshake included)']!.push(
    await coaps(['provision', '--server', `coaps://127.0.0.1:${f.server.coapsPort}`, '--id', pid, '--psk', 'measure-secret-0042']),
  );
}
const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
const max = (a: number[]) => Math.max(...a);
console.log(`| flow | datagrams out / in | CoAP bytes out / in | median / max ms (${runs} runs, loopback) |\n| --- | --- | --- | --- |`);
for (const [k, v] of Object.entries(rows)) {
  console.log(`| \`${k}\` | ${v[0]!.out} / ${v[0]!.inn} | ${v[0]!.outB} / ${v[0]!.inB} | ${med(v.map((x) => x.ms))} / ${max(v.map((x) => x.ms))} |`);
}
await f.close();
tmp.cleanup();
