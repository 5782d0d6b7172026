/**
 * The reference device client of idprov/coap v1 (docs/spec/idprov-coap-v1.md). Firmware authors: read this file top to
 * bottom; each step names the section of the wire contract it implements. The codecs are the
 * project's own (`src/protocol`, `src/tokens`) — the same bytes the server parses, checked against the
 * independent test vectors.
 *
 * A device:
 * 1. builds a request body (§2 table) and signs it as a COSE_Sign1 with its Ed25519 key (§2);
 * 2. POSTs it to `/idprov/request` with Content-Format 18 (§1);
 * 3. on 4.01 with `err` 3, re-signs with the fresh nonce from key 4 and repeats (§3);
 * 4. on 2.05 (pending) waits `retry` seconds and repeats with the nonce that came with it (§3, §4);
 * 5. on 2.01 takes the token from key 8, or opens key 13 with its X25519 key when it sent `xk` (§5);
 * 6. refreshes at half the token's lifetime (`ttl`, key 11) on `/idprov/refresh`, presenting the token
 *    in key 8 and signing with the same key (§2, §5).
 */
import { verify as edVerify, type KeyObject } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import type { ClientType } from '../../src/domain.ts';
import { ERROR_TABLE, type ProvErrorCode } from '../../src/errors.ts';
import { decodeCbor, encodeCanonical, type CborValue } from '../../src/protocol/cbor.ts';
import { encodeSign1, parseSign1, protectedHeader, sigStructure } from '../../src/protocol/cose.ts';
import { decodeClaims, decodeKeySet, type TokenClaims } from '../../src/protocol/cwt.ts';
import {
  STATUS,
  encodeRefreshBody,
  encodeRequestBody,
  DEVICE_ID_RULE,
  isValidDeviceId,
  parseResponse,
  type RequestBody,
  type ResponseBody,
} from '../../src/protocol/messages.ts';
import { oobProof } from '../../src/protocol/oob.ts';
import { ed25519Sign, keyFingerprint, privateKeyFromSeed, publicKeyFromRaw, rawPublicKey } from '../../src/tokens/ed25519.ts';
import { openSealed } from '../../src/tokens/seal.ts';
import { parseMac } from '../../src/protocol/allowlist.ts';
import { DeviceSimError } from './errors.ts';
import { deviceKeys, generateSecrets, loadOrCreateKeyFile, loadToken, saveToken, type DeviceKeys } from './keyfile.ts';
import { COAP_PORT, CoapUdpExchange, type Exchange, type ExchangeResponse } from './transport.ts';

export { DeviceSimError } from './errors.ts';
export type { DeviceSimErrorCode } from './errors.ts';

// ---------------------------------------------------------------------------------------------
// Constants of the wire contract

/** Resource paths (§1). */
export const PATHS = { request: '/idprov/request', refresh: '/idprov/refresh', keys: '/idprov/keys', core: '/.well-known/core' } as const;
/** Content-Formats (§1). */
import { CF } from '../../src/protocol/content-formats.ts';

export { CF };
/** Client types of Body key 5 (§2). */
export const CLIENT_TYPES = { device: 0, service: 1, consumer: 2 } as const;
export type ClientTypeName = keyof typeof CLIENT_TYPES;

/** `err` numbers (§4) to the project's error codes (first match: err 1 is `malformed`). */
const ERR_NAMES = new Map<number, ProvErrorCode>();
for (const [code, info] of Object.entries(ERROR_TABLE) as Array<[ProvErrorCode, (typeof ERROR_TABLE)[ProvErrorCode]]>) {
  if (info.err !== undefined && !ERR_NAMES.has(info.err)) ERR_NAMES.set(info.err, code);
}
const ERR_NONCE = ERROR_TABLE.nonce.err!;

/** The name of a §4 `err` number (`3` → `nonce`). */
export function errName(err: number | undefined): ProvErrorCode | undefined {
  return err === undefined ? undefined : ERR_NAMES.get(err);
}

/**
 * How many times one attempt re-signs after a 4.01 `nonce` (§3). The first POST of a device has no
 * nonce, so one re-sign is the normal case; a second covers a held nonce that expired meanwhile.
 */
const MAX_RESIGN = 2;
/** Wait used when a server asks to wait but sends no `retry` (§4 says pending starts at 60 s). */
const FALLBACK_RETRY_S = 60;

// ---------------------------------------------------------------------------------------------
// Pure request building (§2) — no I/O; the shared test vectors check these byte for byte.

/** An Ed25519 private key: its 32-byte seed (RFC 8032) or a node:crypto KeyObject. */
export type SigningKey = Uint8Array | KeyObject;

function asKeyObject(k: SigningKey): KeyObject {
  return k instanceof Uint8Array ? privateKeyFromSeed(k) : k;
}

/**
 * §2 "Signed request envelope": COSE_Sign1 `[h'A10127' ({1: -8}), {}, payload, signature]`, the
 * signature being Ed25519 over `["Signature1", protected, h'', payload]`. Untagged unless `tagged`.
 */
export function signEnvelope(payload: Uint8Array, key: SigningKey, tagged = false): Buffer {
  const prot = protectedHeader();
  const sig = ed25519Sign(asKeyObject(key), sigStructure(prot, payload));
  return encodeSign1(prot, payload, sig, tagged);
}

/** Inputs of a `/idprov/request` body (§2 table). */
export interface RequestParams {
  /** Key 1. */
  id: string;
  /** The device key; its public key is key 2. */
  key: SigningKey;
  /** Key 4: the server nonce being answered (§3); absent on the very first POST. */
  nonce?: Uint8Array | undefined;
  /** Key 3: EUI-48 / EUI-64. */
  mac?: Uint8Array;
  /** Key 5: 0 device (default, not sent), 1 service, 2 consumer. */
  type?: ClientType;
  /** Key 6: X25519 public key to seal the token to (§5). */
  xk?: Uint8Array;
  /**
   * The printed out-of-band secret. Key 7 carries HMAC-SHA256(secret, "idprov-oob-v1" ‖ nonce ‖ pk);
   * it needs a nonce, so it is only sent with one (a POST without nonce gets 4.01 before any check).
   */
  secret?: string;
  /** Wrap the envelope in CBOR tag 18 (optional in §2). */
  tagged?: boolean;
}

/** The typed body of a `/idprov/request` (keys 1..7 of §2). */
export function requestBody(p: RequestParams): RequestBody {
  const pk = rawPublicKey(asKeyObject(p.key));
  const body: RequestBody = { id: p.id, pk, type: p.type ?? 0 };
  if (p.mac) body.mac = p.mac;
  if (p.nonce) body.nonce = p.nonce;
  if (p.xk) body.xk = p.xk;
  if (p.secret !== undefined && p.nonce) body.oob = oobProof(p.secret, p.nonce, pk);
  return body;
}

/** The complete CoAP payload of a `/idprov/request`: the body (§2), signed (§2 envelope). */
export function buildRequest(p: RequestParams): Buffer {
  return signEnvelope(encodeRequestBody(requestBody(p)), p.key, p.tagged);
}

/** Inputs of a `/idprov/refresh` body (§2 "Refresh body"). */
export interface RefreshParams {
  /** Key 1: must equal the token's `sub`. */
  id: string;
  /** The key the token is bound to (its `cnf`, §5): it signs the refresh. */
  key: SigningKey;
  /** Key 8: the current token, exactly as issued. */
  token: Uint8Array;
  /** Key 4 (§3). */
  nonce?: Uint8Array;
  /** Key 6: seal the new token (§5). */
  xk?: Uint8Array;
  tagged?: boolean;
}

/** The complete CoAP payload of a `/idprov/refresh`. */
export function buildRefresh(p: RefreshParams): Buffer {
  const body: Parameters<typeof encodeRefreshBody>[0] = { id: p.id, token: p.token };
  if (p.nonce) body.nonce = p.nonce;
  if (p.xk) body.xk = p.xk;
  return signEnvelope(encodeRefreshBody(body), p.key, p.tagged);
}

/** Decode a token's claims for display (§5). Does not verify the signature. */
export function tokenClaims(token: Uint8Array): TokenClaims {
  return decodeClaims(parseSign1(token, 'token').payload);
}

/** The `kid` of a token's protected header (§5), if any. */
export function tokenKid(token: Uint8Array): Uint8Array | undefined {
  return parseSign1(token, 'token').kid;
}

/**
 * Verify a token against a COSE_KeySet from `/idprov/keys` (§5): the key whose `kid` the token names
 * must have signed it. (A Hub does this; a device may, to check it was not handed garbage.)
 */
export function verifyToken(token: Uint8Array, keySet: ReadonlyArray<{ kid: Uint8Array; x: Uint8Array }>): boolean {
  const s = parseSign1(token, 'token');
  if (!s.kid) return false;
  const k = keySet.find((e) => Buffer.from(e.kid).equals(Buffer.from(s.kid!)));
  if (!k) return false;
  return edVerify(null, sigStructure(s.protectedBytes, s.payload), publicKeyFromRaw(k.x), s.signature);
}

/** Parse `coap://host[:port]` (IPv6 in brackets). coaps (§6) is not simulated. */
export function parseServerUri(uri: string): { host: string; port: number } {
  const u = /^[a-z][a-z0-9+.-]*:\/\//i.test(uri) ? uri : `coap://${uri}`;
  let url: URL;
  try {
    url = new URL(u);
  } catch {
    throw new DeviceSimError('usage', `not a server URI: ${uri} (expected coap://host:port)`);
  }
  if (url.protocol === 'coaps:') throw new DeviceSimError('usage', 'coaps:// (DTLS, docs/spec/idprov-coap-v1.md §6) is not supported by the simulator; use coap://');
  if (url.protocol !== 'coap:') throw new DeviceSimError('usage', `unsupported scheme ${url.protocol} (expected coap://)`);
  if (!url.hostname) throw new DeviceSimError('usage', `no host in ${uri}`);
  return { host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port: url.port ? Number(url.port) : COAP_PORT };
}

/** A MAC given as bytes or text (`aa:bb:cc:dd:ee:ff`, 6 or 8 bytes; the allowlist's own parser). */
export function toMac(mac: string | Uint8Array): Uint8Array {
  if (mac instanceof Uint8Array) {
    if (mac.length !== 6 && mac.length !== 8) throw new DeviceSimError('usage', 'mac must be 6 or 8 bytes');
    return mac;
  }
  try {
    return parseMac(mac);
  } catch (e) {
    throw new DeviceSimError('usage', (e as Error).message);
  }
}

/** Sleep `seconds` (setTimeout overflows past ~24.8 days, so long waits go in chunks). */
export async function sleepSeconds(seconds: number, signal?: AbortSignal): Promise<void> {
  let ms = Math.max(0, seconds * 1000);
  const CHUNK = 2 ** 31 - 1;
  do {
    const step = Math.min(ms, CHUNK);
    await delay(step, undefined, signal ? { signal } : undefined);
    ms -= step;
  } while (ms > 0);
}

// ---------------------------------------------------------------------------------------------
// The client

/** Options of a {@link DeviceClient}. */
export interface DeviceClientOptions {
  /** Server host (name or IP literal). Required unless `exchange` is given. */
  host?: string;
  /** CoAP/UDP port, 5683 by default (§1). */
  port?: number;
  /** Device ID, Body key 1: 1..64 of `[A-Za-z0-9._:-]` (§2). */
  id: string;
  /**
   * Key file (see keyfile.ts): created when missing; the token is loaded from and saved to
   * `<keyFile>.token`. Without `keyFile` or `seed`, the client makes a throwaway key.
   */
  keyFile?: string;
  /** Ed25519 seed to use instead of a key file. */
  seed?: Uint8Array;
  /** X25519 secret key to use with `seed` (random when absent). */
  x25519Secret?: Uint8Array;
  /** MAC address, Body key 3. */
  mac?: string | Uint8Array;
  /** Out-of-band secret: proven in Body key 7 (§2). */
  secret?: string;
  /** Client type, Body key 5. */
  type?: ClientType | ClientTypeName;
  /** Send `xk` (key 6) and open the sealed token (key 13) (§5). */
  seal?: boolean;
  /** Per-request timeout in ms (default 30 000). */
  timeoutMs?: number;
  /** Trace of every exchange, one line each, for humans. */
  log?: (line: string) => void;
  /** A token to start from (for `refresh`); overrides one stored next to the key file. */
  token?: Uint8Array;
  /** Replaces CoAP/UDP (tests); `host`/`port`/`timeoutMs` are then unused. */
  exchange?: Exchange;
}

/** The outcome of `provision` or `refresh`. */
export interface ProvisionResult {
  /** approved: a token was issued; pending: waiting for an admin; refused: anything else. */
  status: 'approved' | 'pending' | 'refused';
  /** CoAP code of the last response, e.g. `2.01`, `2.05`, `4.03`. */
  code: string;
  /** POSTs sent, 4.01 challenges included. */
  attempts: number;
  /** The token (opened, when it came sealed). */
  token?: Buffer;
  /** Its claims, decoded for display. */
  claims?: TokenClaims;
  /** True when the token came sealed (key 13) and was opened. */
  sealed?: boolean;
  /** Key 9: token expiry (epoch s). */
  exp?: number;
  /** Key 11: token lifetime (s); refresh after half of it. */
  ttl?: number;
  /** Key 10 (or Max-Age): seconds to wait before the next attempt. */
  retry?: number;
  /** Key 15: machine-readable reason. */
  err?: number;
  /** `err` as a name (`rejected`, `nonce`, …). */
  errName?: ProvErrorCode;
  /** Key 12: human-readable reason. */
  diag?: string;
  /** Key 14: the Hub the token is meant for. */
  hub?: string;
}

/** Options of {@link DeviceClient.provision}. */
export interface ProvisionOptions {
  /** Keep polling while pending (and through 4.29 / 5.03), waiting `retry` seconds each time. */
  waitPending?: boolean;
  /** Give up waiting (returning the last result) rather than sleep past this many seconds in total. */
  maxWaitS?: number;
  /** How to wait `retry` seconds; tests inject one that returns at once. */
  sleep?: (seconds: number) => Promise<void>;
  /** Called before each wait with the answer that asked to wait and the seconds it will wait. */
  onWait?: (r: ProvisionResult, retryS: number) => void;
}

/** A raw response, for tests that drive the protocol by hand. */
export interface Reply extends ExchangeResponse {
  /** The decoded CBOR response body (§4), when the payload is one. */
  body?: ResponseBody;
  /** Why the payload did not decode as a response body, when it did not. */
  bodyError?: string;
}

/** Options of {@link DeviceClient.post}. */
export interface PostOptions {
  /** Sign a body map with this key instead of the device key (e.g. to send a wrong signature). */
  signWith?: SigningKey;
  /** Use CBOR tag 18 on the envelope. */
  tagged?: boolean;
  /** Content-Format to send; 18 by default, `null` to omit the option. */
  contentFormat?: number | null;
}

/** A simulated device: its keys, its token, and the protocol steps of docs/spec/idprov-coap-v1.md. */
export class DeviceClient {
  /** Body key 1. */
  readonly id: string;
  /** The device's keys. */
  readonly deviceKeys: DeviceKeys;
  /** The key file in use, if any. */
  readonly keyFile: string | undefined;
  /** True when this client created the key file. */
  readonly keyFileCreated: boolean;
  /** Problems found while loading (key file mode, a stored token for another ID, …). */
  readonly warnings: string[] = [];
  private readonly mac: Uint8Array | undefined;
  private readonly secret: string | undefined;
  private readonly type: ClientType;
  private readonly seal: boolean;
  private readonly exchange: Exchange;
  private readonly trace: (line: string) => void;
  /** A fresh nonce from the last response that carried one, not yet used (§3). */
  private nonce: Uint8Array | undefined;
  private currentToken: Buffer | undefined;

  constructor(o: DeviceClientOptions) {
    if (!isValidDeviceId(o.id)) throw new DeviceSimError('usage', `device ID ${DEVICE_ID_RULE}, got ${JSON.stringify(o.id)}`);
    this.id = o.id;
    if (o.keyFile !== undefined && o.seed !== undefined) throw new DeviceSimError('usage', 'give a key file or a seed, not both');
    if (o.keyFile !== undefined) {
      const loaded = loadOrCreateKeyFile(o.keyFile);
      this.deviceKeys = loaded.keys;
      this.keyFileCreated = loaded.created;
      this.warnings.push(...loaded.warnings);
    } else {
      const fresh = generateSecrets();
      this.deviceKeys = deviceKeys({ seed: o.seed ?? fresh.seed, x25519Secret: o.x25519Secret ?? fresh.x25519Secret });
      this.keyFileCreated = false;
    }
    this.keyFile = o.keyFile;
    if (o.mac !== undefined) this.mac = toMac(o.mac);
    this.secret = o.secret;
    const type = o.type ?? 0;
    this.type = typeof type === 'string' ? CLIENT_TYPES[type] : type;
    if (this.type === undefined || ![0, 1, 2].includes(this.type)) throw new DeviceSimError('usage', `unknown client type ${String(o.type)}`);
    this.seal = o.seal ?? false;
    this.trace = o.log ?? (() => undefined);
    if (o.exchange) this.exchange = o.exchange;
    else {
      if (!o.host) throw new DeviceSimError('usage', 'a server host is required');
      this.exchange = new CoapUdpExchange({ host: o.host, ...(o.port !== undefined ? { port: o.port } : {}), ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}) });
    }
    const stored = o.token ?? (o.keyFile !== undefined ? loadToken(o.keyFile) : undefined);
    if (stored) this.adoptStoredToken(Buffer.from(stored), o.token !== undefined);
  }

  private adoptStoredToken(token: Buffer, given: boolean): void {
    try {
      const c = tokenClaims(token);
      if (c.sub !== this.id || !this.deviceKeys.publicKey.equals(Buffer.from(c.cnf))) {
        this.warnings.push(`ignoring the ${given ? 'given' : 'stored'} token: it was issued to ${c.sub} with another key`);
        return;
      }
      this.currentToken = token;
    } catch (e) {
      this.warnings.push(`ignoring the ${given ? 'given' : 'stored'} token: ${(e as Error).message}`);
    }
  }

  /** The key fingerprint admins see next to a pending request (`keyFingerprint` of key 2). */
  get fingerprint(): string {
    return keyFingerprint(this.deviceKeys.publicKey);
  }

  /** Raw Ed25519 public key (Body key 2). */
  get publicKey(): Buffer {
    return this.deviceKeys.publicKey;
  }

  /** The current token, if any. */
  get token(): Buffer | undefined {
    return this.currentToken;
  }

  /** Claims of the current token, decoded for display. */
  get claims(): TokenClaims | undefined {
    return this.currentToken ? tokenClaims(this.currentToken) : undefined;
  }

  /** The unused nonce the client holds for its next POST (§3), if any. */
  get heldNonce(): Uint8Array | undefined {
    return this.nonce;
  }

  /** Forget the current token (e.g. after the server said it expired). The stored file is kept. */
  dropToken(): void {
    this.currentToken = undefined;
  }

  // -- bodies ---------------------------------------------------------------------------------

  private requestParams(nonce: Uint8Array | undefined): RequestParams {
    const p: RequestParams = { id: this.id, key: this.deviceKeys.privateKey, type: this.type };
    if (nonce) p.nonce = nonce;
    if (this.mac) p.mac = this.mac;
    if (this.seal) p.xk = this.deviceKeys.x25519Public;
    if (this.secret !== undefined) p.secret = this.secret;
    return p;
  }

  private refreshParams(token: Uint8Array, nonce: Uint8Array | undefined): RefreshParams {
    const p: RefreshParams = { id: this.id, key: this.deviceKeys.privateKey, token };
    if (nonce) p.nonce = nonce;
    if (this.seal) p.xk = this.deviceKeys.x25519Public;
    return p;
  }

  /** The `/idprov/request` body this device would send, as a map to edit in tests. */
  requestBodyMap(nonce?: Uint8Array): Map<number | string, CborValue> {
    return decodeCbor(encodeRequestBody(requestBody(this.requestParams(nonce)))) as Map<number | string, CborValue>;
  }

  /** The `/idprov/refresh` body this device would send with its current token, as a map. */
  refreshBodyMap(nonce?: Uint8Array): Map<number | string, CborValue> {
    const token = this.requireToken();
    const p = this.refreshParams(token, nonce);
    const body: Parameters<typeof encodeRefreshBody>[0] = { id: p.id, token: p.token };
    if (p.nonce) body.nonce = p.nonce;
    if (p.xk) body.xk = p.xk;
    return decodeCbor(encodeRefreshBody(body)) as Map<number | string, CborValue>;
  }

  private requireToken(): Buffer {
    if (!this.currentToken) throw new DeviceSimError('no-token', `${this.id} has no token; provision first`);
    return this.currentToken;
  }

  // -- raw exchanges --------------------------------------------------------------------------

  private async send(path: string, payload: Uint8Array, contentFormat: number | null): Promise<Reply> {
    const res = await this.exchange.request({ method: 'POST', path, payload, ...(contentFormat === null ? {} : { contentFormat }) });
    const reply: Reply = { ...res };
    if (res.payload.length) {
      try {
        reply.body = parseResponse(res.payload);
      } catch (e) {
        reply.bodyError = (e as Error).message;
      }
    }
    return reply;
  }

  /**
   * POST to `path`. A map is encoded as the body and signed with the device key (or `signWith`);
   * bytes are sent exactly as given (for malformed or hand-made envelopes). No state changes.
   */
  post(path: string, body: ReadonlyMap<number | string, CborValue> | Uint8Array, opts: PostOptions = {}): Promise<Reply> {
    const payload = body instanceof Uint8Array ? body : signEnvelope(encodeCanonical(body as CborValue), opts.signWith ?? this.deviceKeys.privateKey, opts.tagged);
    return this.send(path, payload, opts.contentFormat === undefined ? CF.coseSign1 : opts.contentFormat);
  }

  /** GET `path` (optionally with a Uri-Query such as `rt=idprov*`). */
  get(path: string, query?: string): Promise<ExchangeResponse> {
    return this.exchange.request({ method: 'GET', path, ...(query !== undefined ? { query } : {}) });
  }

  // -- §3: sign, send, answer the challenge ---------------------------------------------------

  /**
   * Send a signed POST built by `build(nonce)`, answering 4.01 `nonce` challenges (§3): every 4.01 and
   * 2.05 response carries a fresh nonce in key 4; the device re-signs with it and repeats. A nonce
   * held from an earlier response (e.g. a pending one) is used first, so a device that waits as told
   * needs no extra round trip.
   */
  private async signedPost(path: string, build: (nonce: Uint8Array | undefined) => Uint8Array, count: { attempts: number }): Promise<Reply> {
    for (let resign = 0; ; resign++) {
      const nonce = this.nonce;
      this.nonce = undefined; // a nonce is accepted once (§3)
      const payload = build(nonce);
      this.trace(`→ POST ${path} ${payload.length} B, ${nonce ? `nonce ${hexShort(nonce)}` : 'no nonce'}`);
      const reply = await this.send(path, payload, CF.coseSign1);
      count.attempts++;
      this.trace(`← ${describeReply(reply)}`);
      if (reply.body?.nonce) this.nonce = reply.body.nonce; // keep it for the next POST
      const challenged = reply.code === '4.01' && reply.body?.err === ERR_NONCE && reply.body.nonce !== undefined;
      if (!challenged || resign >= MAX_RESIGN) return reply;
      this.trace('  re-signing with the fresh nonce (§3)');
    }
  }

  // -- §4, §5: what a response means -----------------------------------------------------------

  /** Check an issued token is ours: `sub` is our ID and `cnf` our key (§5). */
  private checkToken(token: Buffer): TokenClaims {
    let claims: TokenClaims;
    try {
      claims = tokenClaims(token);
    } catch (e) {
      throw new DeviceSimError('bad-response', `the issued token does not decode: ${(e as Error).message}`);
    }
    if (claims.sub !== this.id) throw new DeviceSimError('token-mismatch', `the token is for ${claims.sub}, not ${this.id}`);
    if (!this.deviceKeys.publicKey.equals(Buffer.from(claims.cnf))) throw new DeviceSimError('token-mismatch', 'the token is bound (cnf) to another key');
    return claims;
  }

  /** Turn the final response into a result (§4 outcome table). */
  private outcome(reply: Reply, attempts: number): ProvisionResult {
    const b = reply.body;
    if (reply.code === '2.01') {
      // Approved: 0=0, token in 8 (or sealed in 13), 9 exp, 11 ttl, 14 hub.
      if (!b || b.status !== STATUS.approved) throw new DeviceSimError('bad-response', `2.01 without status 0${reply.bodyError ? `: ${reply.bodyError}` : ''}`);
      let token: Buffer;
      let sealed = false;
      if (b.sealed) {
        // §5 Sealing: crypto_box_open(box, nonce, epk, our X25519 secret).
        const opened = openSealed(b.sealed, this.deviceKeys.x25519Secret);
        if (!opened) throw new DeviceSimError('seal', 'the sealed token (key 13) does not open with this device\'s X25519 key');
        token = Buffer.from(opened);
        sealed = true;
      } else if (b.token) {
        token = Buffer.from(b.token);
        if (this.seal) this.trace('  warning: a sealed token was asked for (key 6) but it came in clear (key 8)');
      } else {
        throw new DeviceSimError('bad-response', '2.01 without a token (key 8) or a sealed token (key 13)');
      }
      const claims = this.checkToken(token);
      const r: ProvisionResult = { status: 'approved', code: reply.code, attempts, token, claims, sealed, exp: b.exp ?? claims.exp, ttl: b.ttl ?? claims.exp - claims.iat };
      if (b.hub !== undefined) r.hub = b.hub;
      return r;
    }
    if (reply.code === '2.05' && b?.status === STATUS.pending) {
      // Pending: 0=1, 4 nonce (kept by signedPost), 10 retry.
      const r: ProvisionResult = { status: 'pending', code: reply.code, attempts };
      const retry = b.retry ?? reply.maxAge;
      if (retry !== undefined) r.retry = retry;
      return r;
    }
    if (reply.code.startsWith('2.')) throw new DeviceSimError('bad-response', `unexpected ${reply.code}${b?.status !== undefined ? ` with status ${b.status}` : ''}`);
    // Everything else is a refusal: 4.00, 4.01, 4.03, 4.29, 5.03 and transport-level errors.
    const r: ProvisionResult = { status: 'refused', code: reply.code, attempts };
    const retry = b?.retry ?? reply.maxAge;
    if (retry !== undefined) r.retry = retry;
    if (b?.err !== undefined) {
      r.err = b.err;
      const name = errName(b.err);
      if (name) r.errName = name;
    }
    if (b?.diag !== undefined) r.diag = b.diag;
    return r;
  }

  private adopt(r: ProvisionResult): void {
    if (r.status !== 'approved' || !r.token) return;
    this.currentToken = r.token;
    if (this.keyFile !== undefined) saveToken(this.keyFile, r.token);
  }

  // -- the use cases ----------------------------------------------------------------------------

  /**
   * Ask to be provisioned (`POST /idprov/request`). Answers nonce challenges; with `waitPending`,
   * keeps polling at the server's `retry` while pending (and through 4.29 / 5.03) until approved,
   * refused, or `maxWaitS` would be exceeded.
   */
  async provision(opts: ProvisionOptions = {}): Promise<ProvisionResult> {
    const sleep = opts.sleep ?? ((s: number) => sleepSeconds(s));
    const maxWait = opts.maxWaitS ?? Infinity;
    const count = { attempts: 0 };
    let waited = 0;
    for (;;) {
      const reply = await this.signedPost(PATHS.request, (nonce) => buildRequest(this.requestParams(nonce)), count);
      const r = this.outcome(reply, count.attempts);
      this.adopt(r);
      const waitable = r.status === 'pending' || r.code === '4.29' || r.code === '5.03';
      if (r.status === 'approved' || !opts.waitPending || !waitable) return r;
      const retry = r.retry ?? FALLBACK_RETRY_S;
      if (waited + retry > maxWait) return r;
      this.trace(`  waiting ${retry} s as told (§4 retry)`);
      opts.onWait?.(r, retry);
      await sleep(retry);
      waited += retry;
    }
  }

  /**
   * Refresh the current token (`POST /idprov/refresh`, §2, §5): key 8 carries the token, the request
   * is signed with the key it is bound to. The new token replaces the old one.
   */
  async refresh(): Promise<ProvisionResult> {
    const token = this.requireToken();
    const count = { attempts: 0 };
    const reply = await this.signedPost(PATHS.refresh, (nonce) => buildRefresh(this.refreshParams(token, nonce)), count);
    const r = this.outcome(reply, count.attempts);
    this.adopt(r);
    return r;
  }

  /** `GET /idprov/keys`: the server's token keys, newest first (§5). */
  async keys(): Promise<Array<{ kid: Uint8Array; x: Uint8Array }>> {
    const res = await this.get(PATHS.keys);
    if (res.code !== '2.05') throw new DeviceSimError('bad-response', `GET ${PATHS.keys} answered ${res.code}`);
    try {
      return decodeKeySet(res.payload);
    } catch (e) {
      throw new DeviceSimError('bad-response', `GET ${PATHS.keys}: ${(e as Error).message}`);
    }
  }

  /** Close the socket so the process can exit. */
  close(): Promise<void> {
    return this.exchange.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Display helpers

function hexShort(b: Uint8Array): string {
  const h = Buffer.from(b).toString('hex');
  return h.length > 16 ? `${h.slice(0, 16)}…` : h;
}

/** One line describing a reply, for traces. */
export function describeReply(r: Reply): string {
  const b = r.body;
  const parts = [r.code];
  if (b?.status !== undefined) parts.push(['approved', 'pending', 'rejected'][b.status]!);
  if (b?.err !== undefined) parts.push(`err ${b.err} ${errName(b.err) ?? ''}`.trim());
  if (b?.retry !== undefined) parts.push(`retry ${b.retry} s`);
  if (b?.nonce) parts.push(`nonce ${hexShort(b.nonce)}`);
  if (b?.token) parts.push(`token ${b.token.length} B`);
  if (b?.sealed) parts.push(`sealed token ${b.sealed.box.length - 16} B`);
  if (b?.diag) parts.push(`"${b.diag}"`);
  if (r.bodyError) parts.push(`(undecodable body: ${r.bodyError})`);
  return parts.join(', ');
}
