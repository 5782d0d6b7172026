/**
 * Devices for the network-namespace tests, run inside the devices' namespace: reads JSON commands on
 * stdin, one per line, and answers each with one JSON line `{"n":<line number>, ...}` on stdout.
 *
 *   {"op":"provision","host":"10.213.9.11","port":5683,"id":"d1","key":"<PKCS#8 DER, base64>"}
 *     challenge, then the signed request: {code, maxAge?, err?, diag?, token? (hex), ms}
 *   {"op":"refresh", ...the same..., "token":"<hex>"}
 *     challenge, then the signed refresh: the same answer
 *   {"op":"discover","iface":"10.213.9.2","timeoutMs":3000}
 *     mDNS/DNS-SD for _idprov._udp, CoAP multicast when mDNS finds nothing:
 *     {servers:[{uri, via, address, port, instance?, coaps?, fp?}]} (coaps and fp from the TXT record)
 *   {"op":"coaps-connect","host":"10.213.9.11","coaps":5684,"fp":"<base64url>","timeoutMs":10000}
 *     an anonymous ECDHE-ECDSA DTLS handshake that pins the certificate's fingerprint: {session} or
 *     {code:"none", error}
 *   {"op":"coaps-refresh","session":"s1", ...as refresh, without host/port}
 *     challenge, then the signed refresh, over that DTLS session: the same answer as refresh
 *
 * A request that gets no answer within `timeoutMs` (default 40 s, the bound on a hang) answers
 * `{code:"none", error}`.
 */
import { createPrivateKey } from 'node:crypto';
import { createInterface } from 'node:readline';
import { discoverCoap, discoverMdns } from '../../tools/device-sim/discover.ts';
import { DtlsClient } from '../../tools/dtls-peers/client.ts';
import { parseResponse } from '../../src/protocol/messages.ts';
import { coapRequest } from './coap-client.ts';
import { coapPost, coapReply } from './dtls-server.ts';
import { TestDevice } from './device.ts';

interface Cmd {
  op: 'provision' | 'refresh' | 'discover' | 'coaps-connect' | 'coaps-refresh';
  session?: string;
  coaps?: number;
  fp?: string;
  host?: string;
  port?: number;
  id?: string;
  key?: string;
  token?: string;
  iface?: string;
  timeoutMs?: number;
}

type Post = (path: string, payload: Buffer) => Promise<{ code: string; maxAge?: number; payload: Buffer }>;

/** A POST over CoAP/UDP to the command's host and port. */
const udpPost =
  (c: Cmd): Post =>
  (path, payload) =>
    coapRequest({ host: c.host!, port: c.port ?? 5683, method: 'POST', path, payload, contentFormat: 18, timeoutMs: c.timeoutMs ?? 40_000 });

/** A POST over an open DTLS session (one CoAP exchange, retransmitted by the client). */
const dtlsPost =
  (c: Cmd, session: DtlsClient): Post =>
  async (path, payload) => {
    const r = coapReply(await session.request(coapPost(path, payload), { timeoutMs: c.timeoutMs ?? 40_000 }));
    return { code: r.code, payload: r.payload };
  };

const sessions = new Map<string, DtlsClient>();

async function exchange(c: Cmd, path: string, build: (dev: TestDevice, nonce?: Uint8Array) => Buffer, send: Post = udpPost(c)): Promise<Record<string, unknown>> {
  const dev = new TestDevice(c.id!, createPrivateKey({ key: Buffer.from(c.key!, 'base64'), format: 'der', type: 'pkcs8' }));
  const post = async (payload: Buffer) => {
    const r = await send(path, payload);
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
      else if (c.op === 'coaps-connect') {
        try {
          const session = await DtlsClient.connect({ host: c.host!, port: c.coaps!, localAddress: '0.0.0.0', suites: [0xc0ae], fingerprint: c.fp!, timeoutMs: c.timeoutMs ?? 10_000 });
          const name = `s${me}`;
          sessions.set(name, session);
          out = { session: name };
        } catch (e) {
          out = { code: 'none', error: (e as Error).message };
        }
      } else if (c.op === 'coaps-refresh') {
        const session = sessions.get(c.session!);
        out = session
          ? await exchange(c, '/idprov/refresh', (d, nonce) => d.refresh(Buffer.from(c.token!, 'hex'), nonce), dtlsPost(c, session))
          : { error: `no session ${c.session}` };
      } else {
        const o = { timeoutMs: c.timeoutMs ?? 3000, all: true, ...(c.iface ? { iface: c.iface } : {}) };
        let servers = await discoverMdns(o);
        if (servers.length === 0) servers = await discoverCoap(o);
        out = {
          servers: servers.map((s) => ({
            uri: s.uri,
            via: s.via,
            address: s.address,
            port: s.port,
            ...(s.instance ? { instance: s.instance } : {}),
            ...(s.coaps !== undefined ? { coaps: s.coaps } : {}),
            ...(s.fp !== undefined ? { fp: s.fp } : {}),
          })),
        };
      }
    } catch (e) {
      out = { error: (e as Error).message };
    }
    process.stdout.write(`${JSON.stringify({ n: me, ...out })}\n`);
  })();
}
