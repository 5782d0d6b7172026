#!/usr/bin/env -S npx tsx
/**
 * A Hub's two jobs against idprov, as a small runnable example (docs/hub.md): verify a device token
 * (a CWT: untagged COSE_Sign1, Ed25519) with the keys of the JWKS, and follow the event feed (long poll
 * or server-sent events). It uses only Node's own modules and a CBOR decoder (cbor-x), nothing of
 * idprov's source, so it reads as what a Hub in any language does.
 *
 *   npx tsx tools/hub-example/verify-and-follow.ts --server http://127.0.0.1:8445 --token-file hub.token verify <token hex|base64url>
 *   npx tsx tools/hub-example/verify-and-follow.ts --server … --token-file … follow [--sse] [--after SEQ] [--max N]
 *
 * `verify` prints the checked claims as JSON (exit 0) or why the token is not valid (exit 1); with
 * `--ask-server` it also asks `POST /api/v1/tokens/verify`, which knows revocations. `follow` prints one
 * JSON event per line.
 */
import { Decoder, Encoder } from 'cbor-x';
import { createPublicKey, verify as edVerify, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';

const cbor = new Decoder({ mapsAsObjects: false });
const cborOut = new Encoder({ mapsAsObjects: false, useRecords: false });

/** One key of the JWKS (`GET /api/v1/keys/jwks`). */
export interface Jwk {
  kty: 'OKP';
  crv: 'Ed25519';
  kid: string;
  x: string;
}

/** The token keys, fetched with the ETag of the last answer (a 304 costs no body). */
export class KeyCache {
  private etag: string | undefined;
  private keys = new Map<string, KeyObject>();
  constructor(
    private readonly server: string,
    private readonly token: string,
  ) {}

  /** Fetch the JWKS if it changed; returns true when the keys were (re)loaded. */
  async refresh(): Promise<boolean> {
    const res = await fetch(`${this.server}/api/v1/keys/jwks`, {
      headers: { authorization: `Bearer ${this.token}`, ...(this.etag ? { 'if-none-match': this.etag } : {}) },
    });
    if (res.status === 304) return false;
    if (!res.ok) throw new Error(`GET /keys/jwks: ${res.status} ${await res.text()}`);
    this.etag = res.headers.get('etag') ?? undefined;
    const { keys } = (await res.json()) as { keys: Jwk[] };
    this.keys = new Map(keys.filter((k) => k.kty === 'OKP' && k.crv === 'Ed25519').map((k) => [k.kid, createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: k.x }, format: 'jwk' })]));
    return true;
  }

  /** The key of a kid (base64url), refreshing once when it is unknown (a rotation since the last fetch). */
  async get(kid: string): Promise<KeyObject | undefined> {
    if (!this.keys.has(kid)) await this.refresh();
    return this.keys.get(kid);
  }
}

/** The claims of a verified token. */
export interface VerifiedToken {
  iss: string;
  sub: string;
  aud?: string;
  exp: number;
  iat: number;
  /** Token ID, hex. */
  cti: string;
  /** "service" / "consumer"; absent for devices. */
  role?: string;
  /** The device's Ed25519 public key the token is bound to (hex): challenge the holder to sign with it. */
  cnf: string;
  /** The kid the token names, base64url — as in the JWKS. */
  kid: string;
}

const bytes = (v: unknown): Uint8Array | undefined => (v instanceof Uint8Array ? v : undefined);

/**
 * Verify a token the way docs/hub.md describes: COSE_Sign1 structure, protected header `{1: -8, 4: kid}`,
 * the kid's key from the JWKS (kid = base64url of header label 4's bytes), the Ed25519 signature over
 * the Sig_structure, then the claims (`exp` against `now`, `iss`), and the `cnf` key.
 * @throws Error saying what failed.
 */
export async function verifyToken(tokenBytes: Uint8Array, keys: KeyCache, opts: { now: number; issuer?: string }): Promise<VerifiedToken> {
  // 1. An untagged COSE_Sign1: [protected bstr, unprotected map, payload bstr, signature bstr].
  const msg = cbor.decode(tokenBytes) as unknown;
  if (!Array.isArray(msg) || msg.length !== 4) throw new Error('not a COSE_Sign1 (an array of 4)');
  const [protectedBytes, , payload, signature] = msg as [unknown, unknown, unknown, unknown];
  const pb = bytes(protectedBytes);
  const pl = bytes(payload);
  const sig = bytes(signature);
  if (!pb || !pl || !sig || sig.length !== 64) throw new Error('COSE_Sign1 fields have the wrong types');
  // 2. The protected header: alg -8 (EdDSA) and kid (label 4), 8 bytes.
  const header = cbor.decode(pb) as Map<number, unknown>;
  if (!(header instanceof Map) || header.get(1) !== -8) throw new Error('protected header: alg is not -8 (EdDSA)');
  const kidBytes = bytes(header.get(4));
  if (!kidBytes) throw new Error('protected header: no kid (label 4)');
  // 3. The catch: the JWKS names a key by base64url of those bytes (not hex, not the bytes' UTF-8).
  const kid = Buffer.from(kidBytes).toString('base64url');
  const key = await keys.get(kid);
  if (!key) throw new Error(`unknown kid ${kid}`);
  // 4. The signature covers Sig_structure = ["Signature1", protected, external_aad = h'', payload].
  const toBeSigned = cborOut.encode(['Signature1', Buffer.from(pb), Buffer.alloc(0), Buffer.from(pl)]);
  if (!edVerify(null, toBeSigned, key, sig)) throw new Error('signature does not verify');
  // 5. The claims: 1 iss, 2 sub, 3 aud, 4 exp, 6 iat, 7 cti, 8 cnf {1: COSE_Key}, "role".
  const c = cbor.decode(pl) as Map<number | string, unknown>;
  if (!(c instanceof Map)) throw new Error('claims are not a map');
  const iss = c.get(1);
  const sub = c.get(2);
  const exp = c.get(4);
  const iat = c.get(6);
  if (typeof iss !== 'string' || typeof sub !== 'string' || typeof exp !== 'number' || typeof iat !== 'number') throw new Error('claims: iss, sub, exp or iat missing');
  if (exp <= opts.now) throw new Error(`expired at ${new Date(exp * 1000).toISOString()}`);
  if (opts.issuer !== undefined && iss !== opts.issuer) throw new Error(`issuer ${iss}, not ${opts.issuer}`);
  // 6. cnf: {1: {1: 1 (OKP), -1: 6 (Ed25519), -2: x}} — the key the device proves it holds.
  const cnf = c.get(8);
  const coseKey = cnf instanceof Map ? cnf.get(1) : undefined;
  const x = coseKey instanceof Map && coseKey.get(1) === 1 && coseKey.get(-1) === 6 ? bytes(coseKey.get(-2)) : undefined;
  if (!x || x.length !== 32) throw new Error('cnf: no Ed25519 COSE_Key');
  const aud = c.get(3);
  const role = c.get('role');
  return {
    iss,
    sub,
    ...(typeof aud === 'string' ? { aud } : {}),
    exp,
    iat,
    cti: Buffer.from(bytes(c.get(7)) ?? []).toString('hex'),
    ...(typeof role === 'string' ? { role } : {}),
    cnf: Buffer.from(x).toString('hex'),
    kid,
  };
}

/** One event of the feed. */
export interface FeedEvent {
  seq: number;
  at: string;
  kind: string;
  deviceId?: string;
  actor: string;
  detail?: Record<string, unknown>;
}

/** Follow the feed with long polls: `GET /events?after=SEQ&wait=25` answers at once when events exist, else when one is committed (or after 25 s, empty). */
export async function* followLongPoll(server: string, token: string, after = 0, waitS = 25, onPoll?: (after: number) => void): AsyncGenerator<FeedEvent> {
  for (;;) {
    onPoll?.(after);
    const res = await fetch(`${server}/api/v1/events?after=${after}&wait=${waitS}`, { headers: { authorization: `Bearer ${token}` } });
    if (res.status === 429) {
      // Too many watchers on this token: back off and try again.
      await new Promise((r) => setTimeout(r, 2000));
      continue;
    }
    if (!res.ok) throw new Error(`GET /events: ${res.status} ${await res.text()}`);
    const page = (await res.json()) as { events: FeedEvent[]; next: number };
    for (const e of page.events) yield e;
    after = page.next;
  }
}

/**
 * Follow the feed as server-sent events (`GET /events/stream`): `id:` is the seq, `event:` the kind,
 * `data:` the event as JSON. The server ends a stream after a while (`retry:` says when to come back);
 * reconnect with `Last-Event-ID` (a browser's EventSource does both by itself).
 */
export async function* followSse(server: string, token: string, after = 0, onConnect?: (after: number) => void): AsyncGenerator<FeedEvent> {
  let last = after;
  let retryMs = 2000;
  for (;;) {
    const res = await fetch(`${server}/api/v1/events/stream`, { headers: { authorization: `Bearer ${token}`, 'last-event-id': String(last), accept: 'text/event-stream' } });
    if (!res.ok || !res.body) throw new Error(`GET /events/stream: ${res.status} ${await res.text()}`);
    onConnect?.(last);
    const decoder = new TextDecoder();
    let buf = '';
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += decoder.decode(chunk, { stream: true });
      let end: number;
      // Messages are separated by a blank line; lines starting with ':' are comments (keep-alives).
      while ((end = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, end);
        buf = buf.slice(end + 2);
        let data = '';
        for (const line of block.split('\n')) {
          if (line.startsWith('data: ')) data += line.slice(6);
          else if (line.startsWith('id: ')) last = Number(line.slice(4));
          else if (line.startsWith('retry: ')) retryMs = Number(line.slice(7));
        }
        if (data) yield JSON.parse(data) as FeedEvent;
      }
    }
    await new Promise((r) => setTimeout(r, retryMs));
  }
}

// ---- command line

function arg(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

async function main(args: string[]): Promise<number> {
  const server = arg(args, '--server') ?? process.env['IDPROV_ADMIN_URL'] ?? 'http://127.0.0.1:8445';
  const tokenFile = arg(args, '--token-file');
  const token = (tokenFile ? readFileSync(tokenFile, 'utf8') : (process.env['IDPROV_HUB_TOKEN'] ?? '')).trim();
  if (!token) throw new Error('give a hub token: --token-file FILE or IDPROV_HUB_TOKEN');
  // Positional arguments: what is left without the options and their values.
  const WITH_VALUE = new Set(['--server', '--token-file', '--after', '--max']);
  const positional = args.filter((a, i) => !a.startsWith('--') && !WITH_VALUE.has(args[i - 1] ?? ''));
  const [command, text = ''] = positional;
  if (command === 'verify') {
    const tokenBytes = /^[0-9a-fA-F]+$/.test(text) && text.length % 2 === 0 ? Buffer.from(text, 'hex') : Buffer.from(text, 'base64url');
    try {
      const claims = await verifyToken(tokenBytes, new KeyCache(server, token), { now: Math.floor(Date.now() / 1000) });
      let server_: unknown;
      if (args.includes('--ask-server')) {
        // The server also knows what a signature cannot say: whether the device was revoked since.
        const res = await fetch(`${server}/api/v1/tokens/verify`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ token: text }) });
        server_ = await res.json();
        if (!(server_ as { valid?: boolean }).valid) {
          console.log(JSON.stringify({ valid: false, error: (server_ as { error?: string }).error ?? 'refused by the server', claims }));
          return 1;
        }
      }
      console.log(JSON.stringify({ valid: true, claims }));
      return 0;
    } catch (e) {
      console.log(JSON.stringify({ valid: false, error: (e as Error).message }));
      return 1;
    }
  }
  if (command === 'follow') {
    const after = Number(arg(args, '--after') ?? 0);
    const max = Number(arg(args, '--max') ?? Infinity);
    let n = 0;
    // Progress on stderr, events on stdout.
    const note = (what: string) => (n: number) => console.error(`${what} after ${n}`);
    for await (const e of args.includes('--sse') ? followSse(server, token, after, note('stream open')) : followLongPoll(server, token, after, 25, note('polling'))) {
      console.log(JSON.stringify(e));
      if (++n >= max) return 0;
    }
    return 0;
  }
  console.error('usage: verify-and-follow.ts [--server URL] [--token-file FILE] verify TOKEN [--ask-server] | follow [--sse] [--after SEQ] [--max N]');
  return 2;
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: Error) => {
      console.error(`error: ${e.message}`);
      process.exit(2);
    },
  );
}
