/**
 * `device-sim`: a simulated device on the command line (see README.md beside this file).
 *
 *   device-sim provision --server coap://127.0.0.1:5683 --id sensor-01 --key sensor-01.key [--wait]
 *   device-sim refresh   --server coap://127.0.0.1:5683 --id sensor-01 --key sensor-01.key
 *   device-sim run       --server coap://127.0.0.1:5683 --id sensor-01 --key sensor-01.key
 *   device-sim keygen      --key sensor-01.key
 *   device-sim fingerprint --key sensor-01.key
 *   device-sim discover    [--interface 192.168.1.20] [--state FILE]   (discover.ts)
 *
 * Exit status: 0 approved (or done), 2 pending, 3 refused, 1 error.
 */
import { existsSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import {
  CLIENT_TYPES,
  DeviceClient,
  DeviceSimError,
  parseServerUri,
  sleepSeconds,
  tokenKid,
  type ClientTypeName,
  type DeviceClientOptions,
  type ProvisionResult,
} from './client.ts';
import { createKeyFile, readKeyFile, tokenFileOf } from './keyfile.ts';
import { registerDiscover } from './discover.ts';
import { keyFingerprint } from '../../src/tokens/ed25519.ts';
import { VERSION } from '../../src/version.ts';

/** Exit status per outcome. */
const EXIT = { ok: 0, error: 1, pending: 2, refused: 3 } as const;

interface DeviceFlags {
  server: string;
  id: string;
  key?: string;
  mac?: string;
  secret?: string;
  type: ClientTypeName;
  seal?: boolean;
  wait?: boolean;
  maxWait?: number;
  timeout: number;
  json?: boolean;
  verbose?: boolean;
}

const out = (line: string): void => {
  process.stdout.write(`${line}\n`);
};
const err = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

/** Options shared by the commands that talk to a server. */
function deviceCommand(program: Command, name: string, summary: string): Command {
  return program
    .command(name)
    .description(summary)
    .option('--server <uri>', 'server URI, coap://host[:port] (docs/spec/idprov-coap-v1.md §1)', 'coap://127.0.0.1:5683')
    .requiredOption('--id <id>', 'device ID, Body key 1 (1..64 of [A-Za-z0-9._:-])')
    .option('--key <file>', 'key file, created (mode 0600) when missing; the token is kept in <file>.token')
    .option('--mac <mac>', 'MAC address, Body key 3 (aa:bb:cc:dd:ee:ff)')
    .option('--secret <secret>', 'out-of-band secret, proven in Body key 7 (or IDPROV_OOB_SECRET)')
    .addOption(new Option('--type <type>', 'client type, Body key 5').choices(Object.keys(CLIENT_TYPES)).default('device'))
    .option('--seal', 'send the X25519 key (Body key 6) and open the sealed token (key 13)')
    .option('--timeout <ms>', 'per-request timeout in ms', positiveInt, 30_000)
    .option('--json', 'machine-readable output: one JSON object per line')
    .option('-v, --verbose', 'trace every CoAP exchange on stderr');
}

function clientOf(f: DeviceFlags): DeviceClient {
  const { host, port } = parseServerUri(f.server);
  const o: DeviceClientOptions = { host, port, id: f.id, type: f.type, timeoutMs: f.timeout };
  if (f.key !== undefined) o.keyFile = f.key;
  if (f.mac !== undefined) o.mac = f.mac;
  const secret = f.secret ?? process.env['IDPROV_OOB_SECRET'];
  if (secret) o.secret = secret;
  if (f.seal) o.seal = true;
  if (f.verbose) o.log = err;
  return new DeviceClient(o);
}

/** Say which key the device uses (the fingerprint is what an admin compares before approving). */
function announce(c: DeviceClient, f: DeviceFlags): void {
  for (const w of c.warnings) err(`warning: ${w}`);
  if (f.json) return;
  const where = c.keyFile === undefined ? 'throwaway key (use --key FILE to keep it)' : `${c.keyFile}${c.keyFileCreated ? ', created' : ''}`;
  out(`device  ${c.id}`);
  out(`key     ${c.fingerprint}  (${where})`);
  out(`server  ${f.server}`);
}

const iso = (s: number): string => new Date(s * 1000).toISOString().replace('.000Z', 'Z');

/** Print a result: human lines, or one JSON object. */
function report(op: string, c: DeviceClient, r: ProvisionResult, f: Pick<DeviceFlags, 'json'>): void {
  const nowS = Math.floor(Date.now() / 1000);
  if (f.json) {
    const j: Record<string, unknown> = { op, id: c.id, fingerprint: c.fingerprint, status: r.status, code: r.code, attempts: r.attempts };
    if (r.token) {
      j.tokenBytes = r.token.length;
      j.token = r.token.toString('hex');
      j.sealed = r.sealed ?? false;
      const kid = tokenKid(r.token);
      if (kid) j.kid = Buffer.from(kid).toString('hex');
    }
    if (r.claims) {
      const { cti, cnf, ...rest } = r.claims;
      j.claims = { ...rest, cti: Buffer.from(cti).toString('hex'), cnf: Buffer.from(cnf).toString('hex') };
    }
    for (const k of ['exp', 'ttl', 'retry', 'err', 'errName', 'diag', 'hub'] as const) if (r[k] !== undefined) j[k] = r[k];
    if (c.keyFile !== undefined && r.token) j.tokenFile = tokenFileOf(c.keyFile);
    out(JSON.stringify(j));
    return;
  }
  const tries = `after ${r.attempts} request${r.attempts === 1 ? '' : 's'}`;
  if (r.status === 'approved') {
    out(`${op}  approved (${r.code}) ${tries}`);
    const kid = r.token ? tokenKid(r.token) : undefined;
    out(`token   ${r.token!.length} bytes${r.sealed ? ', came sealed' : ''}${kid ? `, kid ${Buffer.from(kid).toString('hex')}` : ''}${r.claims?.role ? `, role ${r.claims.role}` : ''}`);
    if (r.exp !== undefined) out(`expires ${iso(r.exp)} (in ${r.exp - nowS} s; refresh after ${Math.floor((r.ttl ?? r.exp - nowS) / 2)} s)`);
    if (r.hub) out(`hub     ${r.hub}`);
    if (c.keyFile !== undefined) out(`saved   ${tokenFileOf(c.keyFile)}`);
  } else if (r.status === 'pending') {
    out(`${op}  pending (${r.code}) ${tries}${r.retry !== undefined ? `; retry in ${r.retry} s` : ''}`);
    out(`        an admin must approve ${c.id} with key ${c.fingerprint}`);
  } else {
    const why = [r.errName ?? (r.err !== undefined ? `err ${r.err}` : undefined), r.diag].filter(Boolean).join(': ');
    out(`${op}  refused (${r.code}${why ? ` ${why}` : ''}) ${tries}${r.retry !== undefined ? `; retry in ${r.retry} s` : ''}`);
  }
}

/** One line per poll of `provision --wait`: the answer that asked to wait, and how long it waits. */
function waiting(c: DeviceClient, r: ProvisionResult, retryS: number, f: Pick<DeviceFlags, 'json'>): void {
  if (f.json) out(JSON.stringify({ op: 'provision', id: c.id, status: r.status, code: r.code, attempts: r.attempts, waiting: retryS }));
  else if (r.status === 'pending') out(`provision  pending, retry in ${retryS} s (${r.code}; an admin must approve ${c.id} with key ${c.fingerprint})`);
  else out(`provision  ${r.code}, retry in ${retryS} s`);
}

const exitOf = (r: ProvisionResult): number => (r.status === 'approved' ? EXIT.ok : r.status === 'pending' ? EXIT.pending : EXIT.refused);

/** Run `fn` with a client, closing it afterwards; DeviceSimErrors become a message and exit 1. */
async function withClient(f: DeviceFlags, fn: (c: DeviceClient) => Promise<number>): Promise<void> {
  let c: DeviceClient | undefined;
  try {
    c = clientOf(f);
    announce(c, f);
    process.exitCode = await fn(c);
  } catch (e) {
    fail(e, f);
  } finally {
    await c?.close();
  }
}

function fail(e: unknown, f: Pick<DeviceFlags, 'json'>): void {
  const code = e instanceof DeviceSimError ? e.code : 'internal';
  if (f.json) out(JSON.stringify({ error: code, message: (e as Error).message }));
  err(`device-sim: ${(e as Error).message}`);
  if (!(e instanceof DeviceSimError)) err((e as Error).stack ?? '');
  process.exitCode = EXIT.error;
}

/**
 * `run`: provision (waiting while pending), then refresh at half of each token's lifetime, forever.
 * Refusals and lost servers are retried after the server's `retry` (or 30 s); a refresh that is
 * refused for good (token expired, key changed, revoked, unknown token key) falls back to provision.
 */
async function runForever(c: DeviceClient, f: DeviceFlags, signal: AbortSignal): Promise<void> {
  const sleep = (s: number) => sleepSeconds(s, signal);
  // Ctrl-C: closing the client fails a request in flight at once instead of waiting for its timeout.
  signal.addEventListener('abort', () => void c.close(), { once: true });
  const nowS = () => Math.floor(Date.now() / 1000);
  /** When the current token should be refreshed (epoch s): half its life after issue. */
  let refreshAt: number | undefined;
  const planFrom = (r: ProvisionResult) => {
    // A device without a clock would count ttl/2 from receipt; with a clock, iat + (exp-iat)/2 is the same.
    refreshAt = nowS() + Math.floor((r.ttl ?? 0) / 2);
  };
  if (c.claims) {
    const { iat, exp } = c.claims;
    if (exp > nowS()) refreshAt = iat + Math.floor((exp - iat) / 2);
  }
  while (!signal.aborted) {
    try {
      if (refreshAt === undefined) {
        // One attempt at a time so that every pending answer is shown; the held nonce (§3) makes
        // the next attempt a single round trip.
        const r = await c.provision();
        report('provision', c, r, f);
        if (r.status === 'approved') planFrom(r);
        else await sleep(r.retry ?? 30);
        continue;
      }
      const wait = refreshAt - nowS();
      if (wait > 0) {
        if (!f.json) out(`        next refresh at ${iso(refreshAt)} (in ${wait} s)`);
        await sleep(wait);
      }
      const r = await c.refresh();
      report('refresh', c, r, f);
      if (r.status === 'approved') planFrom(r);
      else if (r.errName && ['token-expired', 'unknown-token-key', 'key-mismatch', 'revoked', 'rejected'].includes(r.errName)) {
        c.dropToken();
        refreshAt = undefined;
        if (r.errName === 'revoked' || r.errName === 'rejected') await sleep(r.retry ?? 3600);
      } else await sleep(r.retry ?? 30);
    } catch (e) {
      if (signal.aborted) break;
      if (!(e instanceof DeviceSimError) || (e.code !== 'timeout' && e.code !== 'transport')) throw e;
      err(`device-sim: ${e.message}; trying again in 30 s`);
      await sleep(30).catch(() => undefined);
    }
  }
}

/** The command-line program. */
function program(): Command {
  const p = new Command('device-sim')
    .description('A simulated idprov device: the reference client of docs/spec/idprov-coap-v1.md (idprov/coap v1)')
    .version(VERSION, '-V, --version', 'print the idprov version')
    .showHelpAfterError();

  deviceCommand(p, 'provision', 'ask to be provisioned (POST /idprov/request)')
    .option('--wait', 'keep polling while pending, at the server\'s retry hint')
    .option('--max-wait <s>', 'with --wait: stop waiting after this many seconds', positiveInt)
    .action(async (f: DeviceFlags) => {
      await withClient(f, async (c) => {
        const r = await c.provision({
          waitPending: f.wait ?? false,
          ...(f.maxWait !== undefined ? { maxWaitS: f.maxWait } : {}),
          onWait: (w, retryS) => waiting(c, w, retryS, f),
        });
        report('provision', c, r, f);
        return exitOf(r);
      });
    });

  deviceCommand(p, 'refresh', 'refresh the token kept next to the key file (POST /idprov/refresh)').action(async (f: DeviceFlags) => {
    if (f.key === undefined) {
      fail(new DeviceSimError('usage', 'refresh needs --key FILE (the key and the token of an earlier provision)'), f);
      return;
    }
    await withClient(f, async (c) => {
      const r = await c.refresh();
      report('refresh', c, r, f);
      return exitOf(r);
    });
  });

  deviceCommand(p, 'run', 'provision, then refresh at half of each token\'s lifetime, until Ctrl-C').action(async (f: DeviceFlags) => {
    const ac = new AbortController();
    const stop = () => ac.abort();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    await withClient(f, async (c) => {
      try {
        await runForever(c, f, ac.signal);
      } catch (e) {
        if (!ac.signal.aborted) throw e;
      }
      if (!f.json) out('stopped');
      return EXIT.ok;
    });
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  });

  p.command('keygen')
    .description('create a key file (Ed25519 identity + X25519 sealing key), mode 0600')
    .requiredOption('--key <file>', 'key file to create')
    .option('--json', 'machine-readable output')
    .action((f: { key: string; json?: boolean }) => {
      try {
        if (existsSync(f.key)) throw new DeviceSimError('key-file', `${f.key} already exists; a device keeps its key (delete the file to start over)`);
        printKey(f.key, createKeyFile(f.key).keys, true, f.json);
      } catch (e) {
        fail(e, f);
      }
    });

  p.command('fingerprint')
    .description('print the fingerprint of a key file\'s key, as admins see it')
    .requiredOption('--key <file>', 'key file')
    .option('--json', 'machine-readable output')
    .action((f: { key: string; json?: boolean }) => {
      try {
        const loaded = readKeyFile(f.key);
        for (const w of loaded.warnings) err(`warning: ${w}`);
        printKey(f.key, loaded.keys, false, f.json);
      } catch (e) {
        fail(e, f);
      }
    });

  registerDiscover(p, { out, err, fail, positiveInt });
  return p;
}

function printKey(file: string, k: { publicKey: Uint8Array; x25519Public: Uint8Array }, created: boolean, json?: boolean): void {
  const fp = keyFingerprint(k.publicKey);
  const pk = Buffer.from(k.publicKey).toString('hex');
  const xk = Buffer.from(k.x25519Public).toString('hex');
  if (json) out(JSON.stringify({ keyFile: file, created, fingerprint: fp, pk, xk }));
  else {
    out(`fingerprint ${fp}`);
    out(`pk          ${pk}  <- the allowlist's pk column`);
    out(`xk          ${xk}  (X25519 sealing key; not for the allowlist)`);
    if (created) out(`created     ${file} (mode 0600)`);
  }
}

await program().parseAsync(process.argv);
