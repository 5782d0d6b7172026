/**
 * Devices for the network-namespace tests, run inside the devices' namespace: reads JSON commands on
 * stdin, one per line, and answers each with one JSON line `{"n":<line number>, ...}` on stdout.
 *
 *   {"op":"provision","host":"10.213.9.11","port":5683,"id":"d1","key":"<PKCS#8 DER, base64>"}
 *     challenge, then the signed request: {code, maxAge?, err?, diag?, token? (hex), ms}
 *   {"op":"refresh", ...the same..., "token":"<hex>"}
 *     challenge, then the signed refresh: the same answer
 *   {"op":"discover","iface":"10.213.9.2","timeoutMs":3000}
 *     mDNS/DNS-SD for _idprov._udp, CoAP multicast when mDNS finds nothing: {servers:[{uri, via, instance}]}
 *
 * A request that gets no answer within `timeoutMs` (default 40 s, the bound on a hang) answers
 * `{code:"none", error}`.
 */
import { createPrivateKey } from 'node:crypto';
import { createInterface } from 'node:readline';
import { discoverCoap, discoverMdns } from '../../tools/device-sim/discover.ts';
import { parseResponse } from '../../src/protocol/messages.ts';
import { coapRequest } from './coap-client.ts';
import { TestDevice } from './device.ts';

interface Cmd {
  op: 'provision' | 'refresh' | 'discover';
  host?: string;
  port?: number;
  id?: string;
  key?: string;
  token?: string;
  iface?: string;
  timeoutMs?: number;
}

async function exchange(c: Cmd, path: string, build: (dev: TestDevice, nonce?: Uint8Array) => Buffer): Promise<Record<string, unknown>> {
  const dev = new TestDevice(c.id!, createPrivateKey({ key: Buffer.from(c.key!, 'base64'), format: 'der', type: 'pkcs8' }));
  const post = async (payload: Buffer) => {
    const r = await coapRequest({ host: c.host!, port: c.port ?? 5683, method: 'POST', path, payload, contentFormat: 18, timeoutMs: c.timeoutMs ?? 40_000 });
    return { r, body: r.payload.length ? parseResponse(r.payload) : {} };
  };
  const t0 = Date.now();
  try {
    let { r, body } = await post(build(dev));
    if (r.code === '4.01' && body.nonce) ({ r, body } = await post(build(dev, body.nonce)));
    return {
      code: r.code,
      ...(r.maxAge !== undefined ? { maxAge: r.maxAge } : {}),
      ...(body.err !== undefined ? { err: body.err } : {}),
      ...(body.diag !== undefined ? { diag: body.diag } : {}),
      ...(body.token ? { token: Buffer.from(body.token).toString('hex') } : {}),
      ms: Date.now() - t0,
    };
  } catch (e) {
    return { code: 'none', error: (e as Error).message, ms: Date.now() - t0 };
  }
}

let n = 0;
for await (const line of createInterface({ input: process.stdin })) {
  const c = JSON.parse(line) as Cmd;
  const me = ++n;
  // Commands run concurrently (a load and a probe at once); answers carry their line number.
  void (async () => {
    let out: Record<string, unknown>;
    try {
      if (c.op === 'provision') out = await exchange(c, '/idprov/request', (d, nonce) => d.request(nonce ? { nonce } : {}));
      else if (c.op === 'refresh') out = await exchange(c, '/idprov/refresh', (d, nonce) => d.refresh(Buffer.from(c.token!, 'hex'), nonce));
      else {
        const o = { timeoutMs: c.timeoutMs ?? 3000, all: true, ...(c.iface ? { iface: c.iface } : {}) };
        let servers = await discoverMdns(o);
        if (servers.length === 0) servers = await discoverCoap(o);
        out = { servers: servers.map((s) => ({ uri: s.uri, via: s.via, address: s.address, port: s.port, ...(s.instance ? { instance: s.instance } : {}) })) };
      }
    } catch (e) {
      out = { error: (e as Error).message };
    }
    process.stdout.write(`${JSON.stringify({ n: me, ...out })}\n`);
  })();
}
