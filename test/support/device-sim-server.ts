/** Helpers for the device simulator's tests: a scripted exchange and a real server on loopback. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { encodeResponse, type ResponseBody } from '../../src/protocol/messages.ts';
import type { AdminService } from '../../src/service/admin.ts';
import type { AllowlistImporter } from '../../src/service/allowlist-import.ts';
import type { Exchange, ExchangeRequest, ExchangeResponse } from '../../tools/device-sim/transport.ts';
import { tempDir } from './temp-dir.ts';

/** A response to script: a CoAP code and a body to encode (or raw bytes). */
export type Scripted = { code: string; body?: ResponseBody; raw?: Uint8Array; maxAge?: number };

/** An exchange that answers from a script and records what the client sent. */
export class ScriptedExchange implements Exchange {
  readonly sent: ExchangeRequest[] = [];
  closed = false;
  constructor(private readonly script: Array<Scripted | ((req: ExchangeRequest) => Scripted)>) {}

  async request(req: ExchangeRequest): Promise<ExchangeResponse> {
    this.sent.push(req);
    const next = this.script.shift();
    if (!next) throw new Error(`the script has no response left for ${req.method} ${req.path}`);
    const s = typeof next === 'function' ? next(req) : next;
    const out: ExchangeResponse = { code: s.code, payload: s.raw ? Buffer.from(s.raw) : s.body ? encodeResponse(s.body) : Buffer.alloc(0), contentFormat: 60 };
    if (s.maxAge !== undefined) out.maxAge = s.maxAge;
    return out;
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

/** What the end-to-end tests need from a running server (src/server.ts `RunningServer`). */
export interface LiveServer {
  port: number;
  admin: AdminService;
  /** The one allowlist import path. */
  importer: AllowlistImporter;
  close(): Promise<void>;
}

const ENGINE = new URL('../../src/transport/coap/engine.ts', import.meta.url);
const UDP = new URL('../../src/transport/coap/udp.ts', import.meta.url);

/**
 * Start the real server (src/server.ts) on 127.0.0.1 with an ephemeral CoAP port and a temporary
 * data directory. Fails with a clear message while the CoAP engine is not in the tree.
 */
export async function startLiveServer(flags: Record<string, unknown> = {}): Promise<LiveServer> {
  const missing = [ENGINE, UDP].filter((u) => !existsSync(u)).map((u) => u.pathname.replace(/^.*\/src\//, 'src/'));
  if (missing.length) {
    throw new Error(`end-to-end tests need the CoAP engine, which is not in the tree yet: missing ${missing.join(', ')}`);
  }
  let mods: [typeof import('../../src/server.ts'), typeof import('../../src/config.ts'), typeof import('../../src/log.ts')];
  try {
    mods = await Promise.all([import('../../src/server.ts'), import('../../src/config.ts'), import('../../src/log.ts')]);
  } catch (e) {
    throw new Error(`end-to-end tests cannot load src/server.ts (startServer): ${(e as Error).message}`);
  }
  const [{ startServer }, { loadConfig }, { silentLogger }] = mods;
  const tmp = tempDir('idprov-devsim-');
  const cfg = loadConfig({
    env: {},
    flags: { dataDir: join(tmp.dir, 'data'), bind: '127.0.0.1', coapPort: 0, coapsPort: 0, adminPort: 0, mdns: false, logLevel: 'silent', ...flags },
  });
  let server: Awaited<ReturnType<typeof startServer>>;
  try {
    server = await startServer(cfg, silentLogger);
  } catch (e) {
    tmp.cleanup();
    throw e;
  }
  return {
    port: server.coapPort,
    admin: server.admin,
    importer: server.importer,
    async close() {
      await server.close();
      tmp.cleanup();
    },
  };
}
