/**
 * Measurement: does an allowlist upload stall the device path? (docs/architecture.md "Performance targets": "without stalling the
 * device path"; security review F7.) Starts `idprov serve` as a child process on a fresh data
 * directory, then uploads (1) a single-line CSV of `--line-mb` MB and (2) a JSON array of `--json-mb`
 * MB (valid rows), while a CoAP GET /.well-known/core is sent to the server every 10 ms. Prints per
 * upload: status, rows, seconds, the server's peak RSS (VmHWM), and the CoAP probes answered, the
 * worst round trip and how many got no answer. Bodies are built before each upload, so this process
 * does little else meanwhile.
 *
 *   npx tsx tools/bench/import-stall.ts [--line-mb 10] [--json-mb 50]
 */
import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generate, parse } from 'coap-packet';

const arg = (name: string, def: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const MB = 2 ** 20;
const mac = (i: number): string => (0x240ac4000000 + i).toString(16).padStart(12, '0').replace(/(..)(?!$)/g, '$1:');

const dir = mkdtempSync(join(tmpdir(), 'idprov-bench-stall-'));
const child = spawn(process.execPath, ['bin/idprov.js', 'serve', '--data', dir, '--coap-port', '0', '--coaps-port', '0', '--admin-port', '0', '--bind', '127.0.0.1', '--log-level', 'info'], {
  stdio: ['ignore', 'pipe', 'inherit'],
  env: { ...process.env, IDPROV_MDNS: 'false', IDPROV_COAP_MULTICAST: 'false', IDPROV_ROGUE_MONITOR: 'false' },
});
try {
  const { coap, admin } = await new Promise<{ coap: number; admin: number }>((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = /"coap":(\d+).*"admin":"http:\/\/[^:]+:(\d+)"/.exec(buf);
      if (m) resolve({ coap: Number(m[1]), admin: Number(m[2]) });
    });
    child.once('exit', (c) => reject(new Error(`server exited ${c}`)));
  });
  child.stdout!.resume();
  const token = readFileSync(join(dir, 'admin.token'), 'utf8').trim();

  const sock = createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  let mid = 1;
  const sentAt = new Map<number, number>();
  let worst = 0;
  let answered = 0;
  sock.on('message', (m) => {
    const id = parse(m).messageId;
    const t = sentAt.get(id);
    if (t === undefined) return;
    worst = Math.max(worst, Date.now() - t);
    answered++;
    sentAt.delete(id);
  });
  const path = ['.well-known', 'core'].map((p) => ({ name: 'Uri-Path', value: Buffer.from(p) }));
  const probe = setInterval(() => {
    mid = (mid % 0xffff) + 1;
    sentAt.set(mid, Date.now());
    sock.send(generate({ messageId: mid, code: 'GET', confirmable: true, token: Buffer.from([1]), options: path }), coap, '127.0.0.1');
  }, 10);

  const upload = async (label: string, contentType: string, chunks: Buffer[]): Promise<void> => {
    [worst, answered] = [0, 0];
    sentAt.clear();
    const t = Date.now();
    let k = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        if (k < chunks.length) c.enqueue(chunks[k++]!);
        else c.close();
      },
    });
    const res = await fetch(`http://127.0.0.1:${admin}/api/v1/allowlist`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': contentType }, body, duplex: 'half' } as RequestInit);
    const j = (await res.json()) as { rows: number; invalid: number; imported: boolean };
    const hwm = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]) / 1024;
    console.log(
      `${label}: ${res.status}, ${j.rows} rows, ${j.invalid} invalid, imported ${j.imported}, ${((Date.now() - t) / 1000).toFixed(1)} s, server peak RSS ${hwm.toFixed(0)} MB; ` +
        `CoAP probes answered ${answered}, worst round trip ${worst} ms, unanswered ${sentAt.size}`,
    );
  };

  const lineMb = arg('line-mb', 10);
  await upload(`${lineMb} MB single-line CSV`, 'text/csv', [Buffer.from('id,secret\nx,'), ...Array.from({ length: lineMb * 16 }, () => Buffer.alloc(MB / 16, 0x78))]);
  const json: Buffer[] = [Buffer.from('[')];
  let size = 0;
  let i = 0;
  while (size < arg('json-mb', 50) * MB) {
    let chunk = '';
    while (chunk.length < 65536) chunk += `${i ? ',' : ''}{"id": "json-${i}", "mac": "${mac(i)}", "secret": "printed-secret-${String(i++).padStart(8, '0')}"}\n`;
    size += chunk.length;
    json.push(Buffer.from(chunk));
  }
  json.push(Buffer.from(']'));
  await upload(`${arg('json-mb', 50)} MB JSON`, 'application/json', json);
  clearInterval(probe);
  sock.close();
} finally {
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  rmSync(dir, { recursive: true, force: true });
}
