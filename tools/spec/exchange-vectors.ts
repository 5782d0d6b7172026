/**
 * Full-packet CoAP exchange vectors for docs/spec/ (issue 13): every flow of idprov/coap v1, request
 * datagram bytes → response datagram bytes, made by the real server — the ProvisioningService behind
 * the CoAP engine with the production resources (`registerResources`), on an in-memory SQLite store and
 * an in-memory datagram pair — with a fixed clock, a fixed random source and fixed keys, so that the
 * same code gives the same bytes.
 *
 *   npx tsx tools/spec/exchange-vectors.ts           # write fixtures/spec/exchanges.json and docs/spec/exchanges.md
 *   npx tsx tools/spec/exchange-vectors.ts --check   # exit 1 when either differs from what the server makes now
 *
 * test/spec/exchanges.test.ts runs the same generation and fails on any byte difference.
 *
 * Fixed inputs: clock 2026-01-01T00:00:00Z (advanced by the flows), the device and server keys of
 * fixtures/vectors/idprov-v1.json, a fixed nonce secret, and a random source that returns the bytes
 * 08 09 0a … in the order asked. Sealing draws its ephemeral key and nonce from node:crypto's
 * `randomBytes` (src/tokens/seal.ts); while generating, that function is replaced by one that returns
 * the shared vector's ephemeral secret (32 bytes) and box nonce (24 bytes) to calls from seal.ts (and
 * real randomness to any other caller), so the sealed flow reproduces the shared sealed vector byte
 * for byte. (Passing the service's random source to `sealToken` would make this unnecessary.)
 */
import crypto from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { AllowEntry } from '../../src/domain.ts';
import { silentLogger } from '../../src/log.ts';
import { DEFAULTS } from '../../src/config.ts';
import { serviceSettings } from '../../src/service/settings.ts';
import { encodeSign1, parseSign1, protectedHeader, sigStructure } from '../../src/protocol/cose.ts';
import { encodeRefreshBody, encodeRequestBody, parseResponse, type RequestBody } from '../../src/protocol/messages.ts';
import { oobProof } from '../../src/protocol/oob.ts';
import { registerResources } from '../../src/device-api/resources.ts';
import { AdminService } from '../../src/service/admin.ts';
import { AllowlistImporter } from '../../src/service/allowlist-import.ts';
import { ProvisioningService, type MonitorSettings, type ServiceSettings } from '../../src/service/provisioning.ts';
import { SqliteStore } from '../../src/store/sqlite/store.ts';
import { ed25519Sign, keyFingerprint, privateKeyFromSeed, rawPublicKey } from '../../src/tokens/ed25519.ts';
import { TokenKeyring } from '../../src/tokens/keyring.ts';
import { CoapServer } from '../../src/transport/coap/engine.ts';
import { createMemoryPair } from '../../test/support/memory-transport.ts';
import type { Peer } from '../../src/transport/datagram.ts';
import { diagnostic, renderLines, type Schema } from './cbor-annotate.ts';
import { annotateMessage, decodeMessage, encodeMessage, uintValue, uriOptions, type Opt } from './coap-annotate.ts';
import { KEYSET, REFRESH_BODY, REQUEST_BODY, RESPONSE, sign1 } from './schemas.ts';

const hex = (s: string): Buffer => Buffer.from(s, 'hex');
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** The shared vectors (device and server keys, sealing inputs). */
export const VECTORS = JSON.parse(readFileSync(new URL('../../fixtures/vectors/idprov-v1.json', import.meta.url), 'utf8'));

/** 2026-01-01T00:00:00Z, the shared token's `iat`. */
export const T0 = 1_767_225_600;
/** The nonce secret of the vectors (32 ASCII bytes). */
export const NONCE_SECRET = Buffer.from('nonce-secret-for-test-vectors-01', 'ascii');
/** The first byte the random source returns. */
const RANDOM_START = 0x08;
const SERVER: Peer = { address: '192.0.2.1', port: 5683, family: 'IPv4' };
const DEVICE: Peer = { address: '192.0.2.10', port: 49152, family: 'IPv4' };

const DEVICE_ID: string = VECTORS.device.id;
const DEVICE_KEY = privateKeyFromSeed(hex(VECTORS.device.ed25519_seed));
const DEVICE_PK = rawPublicKey(DEVICE_KEY);
const DEVICE_XK = hex(VECTORS.device.x25519_pk);
const DEVICE_MAC = hex(VECTORS.device.mac);
const DEVICE_SECRET: string = VECTORS.device.oob_secret_utf8;
/** A second key, for the flows where the wrong key signs or is allowlisted: seed 0x21 0x22 … 0x40. */
const OTHER_KEY = privateKeyFromSeed(Buffer.from(Array.from({ length: 32 }, (_, i) => 0x21 + i)));

/** The configured defaults (src/config.ts), with a smaller used-once set. */
const SETTINGS: ServiceSettings = { ...serviceSettings(DEFAULTS), maxUsedNonces: 10_000 };

/** One request → response. Hex strings. */
export interface ExchangeStep {
  /** Server clock (epoch s) when the request arrives. */
  at: number;
  note: string;
  method: string;
  uri: string;
  request: string;
  response: string;
  /** Response code, and the payloads in diagnostic notation (for people; the hex is normative). */
  code: string;
  requestPayload?: string;
  responsePayload?: string;
}

/** An admin action between exchanges (through the admin API or `oob`; not on the CoAP wire). */
export interface AdminStep {
  at: number;
  admin: string;
}

export type Step = ExchangeStep | AdminStep;

export interface Flow {
  name: string;
  title: string;
  about: string;
  /** Server state before the first step. */
  setup: string[];
  /** Annotate these exchanges byte by byte in docs/spec/exchanges.md. */
  detail: boolean;
  steps: Step[];
}

export interface ExchangeFile {
  about: string;
  material: Record<string, unknown>;
  flows: Flow[];
}

/** The random source: 08 09 0a … (wrapping at ff), in the order the server asks. */
function counterRandom(start: number): (n: number) => Buffer {
  let next = start;
  return (n) => {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = next++ & 0xff;
    return b;
  };
}

/** Run `fn` with node:crypto's randomBytes giving the shared sealing inputs (see the file comment). */
async function withSealingInputs<T>(fn: () => Promise<T>): Promise<T> {
  const original = crypto.randomBytes;
  // Only calls from src/tokens/seal.ts get the fixed bytes; anything else running in this process (a
  // timer of another test, say) keeps real randomness.
  const fixed = (n: number, ...rest: unknown[]): Buffer => {
    if (!/[\\/]tokens[\\/]seal\.[jt]s/.test(new Error().stack ?? '')) return (original as (...a: unknown[]) => Buffer)(n, ...rest);
    if (n === 32) return hex(VECTORS.sealed.ephemeral_x25519_sk);
    if (n === 24) return hex(VECTORS.sealed.box_nonce);
    throw new Error(`exchange vectors: sealing drew randomBytes(${n}); expected 32 (ephemeral key) and 24 (nonce)`);
  };
  (crypto as { randomBytes: unknown }).randomBytes = fixed;
  syncBuiltinESMExports();
  try {
    return await fn();
  } finally {
    (crypto as { randomBytes: unknown }).randomBytes = original;
    syncBuiltinESMExports();
  }
}

/** A device's signed payloads, built from the shared device keys. */
function signed(payload: Uint8Array, key = DEVICE_KEY): Buffer {
  const prot = protectedHeader();
  return encodeSign1(prot, payload, ed25519Sign(key, sigStructure(prot, payload)));
}

interface RequestOpts {
  nonce?: Uint8Array | undefined;
  mac?: Uint8Array;
  oob?: 'right' | 'wrong';
  xk?: boolean;
  type?: 0 | 1 | 2;
  pk?: Uint8Array;
  key?: crypto.KeyObject;
}

function requestPayload(o: RequestOpts = {}): Buffer {
  const body: RequestBody = { id: DEVICE_ID, pk: o.pk ?? DEVICE_PK, type: o.type ?? 0 };
  if (o.mac) body.mac = o.mac;
  if (o.nonce) body.nonce = o.nonce;
  if (o.xk) body.xk = DEVICE_XK;
  if (o.oob && o.nonce) body.oob = oobProof(o.oob === 'right' ? DEVICE_SECRET : 'not-the-printed-secret', o.nonce, body.pk);
  return signed(encodeRequestBody(body), o.key);
}

function refreshPayload(token: Uint8Array, nonce?: Uint8Array): Buffer {
  return signed(encodeRefreshBody({ id: DEVICE_ID, token, ...(nonce ? { nonce } : {}) }));
}

/** A fresh server (empty in-memory store) and a device endpoint talking to it. */
class Rig {
  readonly steps: Step[] = [];
  private mid = 0x1000;
  private tok = 0;
  private readonly inbox: Buffer[] = [];
  private waiter: (() => void) | undefined;

  private constructor(
    /** The server clock (epoch s); flows advance it. */
    readonly clock: { s: number },
    readonly store: SqliteStore,
    readonly svc: ProvisioningService,
    readonly admin: AdminService,
    private readonly coap: CoapServer,
    private readonly send: (b: Buffer) => void,
  ) {}

  static async open(opts: { monitor?: Partial<MonitorSettings>; psk?: boolean } = {}): Promise<Rig> {
    const store = await SqliteStore.open(':memory:');
    const clock = { s: T0 };
    const record = {
      kid: VECTORS.server.kid as string,
      publicKey: hex(VECTORS.server.ed25519_pk),
      privateKey: privateKeyFromSeed(hex(VECTORS.server.ed25519_seed)).export({ format: 'der', type: 'pkcs8' }),
      createdAt: T0 - 86_400,
    };
    const keyring = new TokenKeyring([record], SETTINGS.tokenTtl);
    const svc = new ProvisioningService({
      store,
      keyring,
      log: silentLogger,
      clock: () => clock.s * 1000,
      random: counterRandom(RANDOM_START),
      nonceSecret: NONCE_SECRET,
      settings: { ...SETTINGS, monitor: { ...SETTINGS.monitor, ...opts.monitor } },
    });
    await svc.start();
    const admin = new AdminService({ store, keyring, log: silentLogger, now: () => svc.now(), monitor: svc.monitor, switch: svc.switch });
    // A frozen engine clock: no exchange ever counts as slow, so every answer is piggybacked.
    const coap = new CoapServer({ log: silentLogger, now: () => 0, random: () => 0 });
    registerResources(coap, svc);
    // A PSK session's peer as the DTLS transport gives it: the identity and a check of the session's key.
    const device: Peer = opts.psk
      ? { ...DEVICE, pskIdentity: DEVICE_ID, pskMatches: (k) => Buffer.from(k).equals(Buffer.from(DEVICE_SECRET, 'utf8')), sessionKey: 'psk-session' }
      : DEVICE;
    const [serverT, deviceT] = createMemoryPair({ a: SERVER, b: device });
    coap.attach(serverT);
    const rig = new Rig(clock, store, svc, admin, coap, (b) => deviceT.send(b, SERVER));
    deviceT.onMessage((data) => rig.receive(data));
    return rig;
  }

  private receive(data: Buffer): void {
    this.inbox.push(Buffer.from(data));
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  /** Send one CON request and record it with the one datagram that answers it. */
  async exchange(
    note: string,
    method: 'GET' | 'POST',
    uri: string,
    payload?: Uint8Array,
    extra: { contentFormat?: number | null; sameMessageAs?: ExchangeStep } = {},
  ): Promise<{ step: ExchangeStep; body: ReturnType<typeof parseResponse> | undefined }> {
    let request: Buffer;
    if (extra.sameMessageAs) {
      request = hex(extra.sameMessageAs.request);
    } else {
      const options: Opt[] = uriOptions(uri);
      const cf = extra.contentFormat === undefined ? (method === 'POST' ? 18 : undefined) : extra.contentFormat;
      if (cf !== undefined && cf !== null) options.push({ number: 12, value: uintValue(cf) });
      this.mid = (this.mid + 1) & 0xffff;
      this.tok++;
      request = encodeMessage({ type: 0, code: method === 'GET' ? '0.01' : '0.02', messageId: this.mid, token: Uint8Array.from([0x71, this.tok]), options, ...(payload ? { payload } : {}) });
    }
    const got = new Promise<void>((r) => (this.waiter = r));
    this.send(request);
    await got;
    const response = this.inbox.shift()!;
    if (this.inbox.length !== 0) throw new Error(`${note}: more than one datagram answered`);
    const res = decodeMessage(response);
    const reqMsg = decodeMessage(request);
    const step: ExchangeStep = { at: this.clock.s, note, method, uri, request: toHex(request), response: toHex(response), code: res.code };
    if (reqMsg.payload.length > 0 && reqMsg.contentFormat === 18) {
      try {
        step.requestPayload = diagnostic(reqMsg.payload, requestSchema(uri));
      } catch {
        // not CBOR (a malformed-request vector): the hex says it all
      }
    }
    let body: ReturnType<typeof parseResponse> | undefined;
    if (res.contentFormat === 60) {
      step.responsePayload = diagnostic(res.payload, RESPONSE);
      body = parseResponse(res.payload);
    } else if (res.contentFormat === 102) step.responsePayload = diagnostic(res.payload, KEYSET);
    else if (res.payload.length > 0) step.responsePayload = JSON.stringify(Buffer.from(res.payload).toString('utf8'));
    this.steps.push(step);
    return { step, body };
  }

  /** POST /idprov/request; returns the response body. */
  async request(note: string, o: RequestOpts = {}): Promise<ReturnType<typeof parseResponse>> {
    const { body } = await this.exchange(note, 'POST', '/idprov/request', requestPayload(o));
    return body!;
  }

  /** POST /idprov/refresh; returns the response body. */
  async refresh(note: string, token: Uint8Array, nonce?: Uint8Array): Promise<ReturnType<typeof parseResponse>> {
    const { body } = await this.exchange(note, 'POST', '/idprov/refresh', refreshPayload(token, nonce));
    return body!;
  }

  /** The usual two round trips: without a nonce (4.01 + nonce), then with it. */
  async provision(o: Omit<RequestOpts, 'nonce'> = {}, notes: [string, string] = ['no nonce yet: the server answers with a challenge', 'signed again with the nonce']): Promise<ReturnType<typeof parseResponse>> {
    const first = await this.request(notes[0], o);
    return this.request(notes[1], { ...o, nonce: first.nonce });
  }

  async adminStep(what: string, act: () => Promise<unknown>): Promise<void> {
    await act();
    this.steps.push({ at: this.clock.s, admin: what });
  }

  allow(e: Omit<AllowEntry, 'id' | 'type' | 'createdAt'> & { type?: 0 | 1 | 2 }): Promise<unknown> {
    const importer = new AllowlistImporter(this.store, () => this.svc.now(), DEFAULTS.minSecretLength);
    return importer.importEntries([{ id: DEVICE_ID, type: 0, createdAt: T0 - 3600, ...e }], { actor: { by: 'spec' } });
  }

  async close(): Promise<void> {
    this.coap.close();
    await this.store.close();
  }
}

function requestSchema(uri: string): Schema {
  return sign1(uri === '/idprov/refresh' ? REFRESH_BODY : REQUEST_BODY);
}

const ACTOR = { by: 'admin:spec' };

/** A flow: its description and the function that drives it on a fresh rig. */
interface FlowSpec {
  name: string;
  title: string;
  about: string;
  setup: string[];
  detail?: boolean;
  rig?: { monitor?: Partial<MonitorSettings>; psk?: boolean };
  run(r: Rig): Promise<void>;
}

const FLOWS: FlowSpec[] = [
  {
    name: 'discovery',
    title: 'Resource discovery and the key set',
    about: 'What a device can GET without credentials: the resources, filtered by rt, and the token verification keys.',
    setup: ['a fresh server'],
    async run(r) {
      await r.exchange('all resources', 'GET', '/.well-known/core');
      await r.exchange('filtered by resource type (a prefix match)', 'GET', '/.well-known/core?rt=idprov.k*');
      await r.exchange('the COSE_KeySet of the token keys', 'GET', '/idprov/keys');
    },
  },
  {
    name: 'allowlisted-key',
    title: 'Allowlisted key',
    about: 'The allowlist entry holds the device ID and its public key. Two round trips: a challenge, then the signed request; the token equals the shared vector token.',
    setup: ['allowlist: vec-device-01 with pk = the device key (type 0)'],
    detail: true,
    async run(r) {
      await r.allow({ pk: DEVICE_PK });
      await r.provision();
    },
  },
  {
    name: 'mac',
    title: 'Allowlisted MAC address',
    about: 'The entry holds the ID and a MAC. A request without key 3 is refused (4.03 mac-mismatch, the nonce is spent); the device asks for a new nonce and sends its MAC.',
    setup: ['allowlist: vec-device-01 with mac = 24:0a:c4:12:34:56 (no key: the first successful key is recorded)'],
    async run(r) {
      await r.allow({ mac: DEVICE_MAC });
      await r.provision({}, ['no nonce yet', 'signed with the nonce, but without key 3 (mac)']);
      await r.provision({ mac: DEVICE_MAC }, ['a fresh challenge (4.03 carries no nonce)', 'with key 3 = the allowlisted MAC']);
    },
  },
  {
    name: 'oob-secret',
    title: 'Out-of-band secret, sealed token',
    about: 'The entry holds the printed secret. The device proves it with key 7 and asks for a sealed token (key 6); the response body equals the shared sealed vector.',
    setup: ['allowlist: vec-device-01 with secret "label-code-7Q4K"'],
    detail: true,
    async run(r) {
      await r.allow({ secret: DEVICE_SECRET });
      await r.provision({ oob: 'right', xk: true }, ['no nonce yet', 'with key 7 = HMAC-SHA256(secret, "idprov-oob-v1" ‖ nonce ‖ pk) and key 6 = xk']);
    },
  },
  {
    name: 'oob-psk',
    title: 'Out-of-band secret proven by a DTLS-PSK session',
    about: 'The same entry, reached over coaps with PSK identity "vec-device-01" and the secret as PSK: no key 7 needed. The datagrams shown are the CoAP messages inside the DTLS records.',
    setup: ['allowlist: vec-device-01 with secret "label-code-7Q4K"', 'the device is in a DTLS-PSK session with identity "vec-device-01"'],
    rig: { psk: true },
    async run(r) {
      await r.allow({ secret: DEVICE_SECRET });
      await r.provision();
    },
  },
  {
    name: 'pending-approve',
    title: 'Unknown device: pending, approved by an admin',
    about: 'No allowlist entry. The device polls as told (2.05, retry 60 then 90, each with a nonce valid for retry + 300 s) until an admin approves the key fingerprint shown to them.',
    setup: ['a fresh server (no allowlist entry)'],
    async run(r) {
      const a = await r.provision({}, ['no nonce yet', 'signed with the nonce: stored as pending']);
      r.clock.s += a.retry!;
      const b = await r.request('after retry seconds, with the nonce from the 2.05', { nonce: a.nonce });
      await r.adminStep(`approve vec-device-01, fingerprint ${keyFingerprint(DEVICE_PK)}`, () => r.admin.approve(DEVICE_ID, { fingerprint: keyFingerprint(DEVICE_PK) }, ACTOR));
      r.clock.s += b.retry!;
      await r.request('after retry seconds: approved', { nonce: b.nonce });
    },
  },
  {
    name: 'refresh',
    title: 'Refresh',
    about: 'A provisioned device refreshes when half of ttl has passed: the refresh body carries the current token, signed by the key in its cnf. The new token lives tokenTtl (30 days).',
    setup: ['allowlist: vec-device-01 with pk = the device key'],
    detail: true,
    async run(r) {
      await r.allow({ pk: DEVICE_PK });
      const issued = await r.provision();
      r.clock.s += issued.ttl! / 2;
      const again = await r.refresh('half of ttl later, signed with the nonce the 2.01 carried (key 4): one round trip', issued.token!, issued.nonce);
      r.clock.s += again.ttl! / 2;
      await r.refresh('the next refresh, with the nonce of that 2.01', again.token!, again.nonce);
    },
  },
  {
    name: 'refresh-without-next-nonce',
    title: 'Refresh by a device that ignores the 2.01 nonce',
    about: 'A device built before the 2.01 carried the next nonce (key 4, §3) ignores it and starts its refresh without a nonce: it is challenged (4.01 with a fresh nonce) and signs again, two round trips as before.',
    setup: ['allowlist: vec-device-01 with pk = the device key'],
    async run(r) {
      await r.allow({ pk: DEVICE_PK });
      const issued = await r.provision();
      r.clock.s += issued.ttl! / 2;
      const c = await r.refresh('half of ttl later; no nonce (key 4 of the 2.01 ignored)', issued.token!);
      await r.refresh('with the nonce of the 4.01', issued.token!, c.nonce);
    },
  },
  {
    name: 'rejected',
    title: 'Rejected by an admin',
    about: 'A pending device that an admin rejects gets 4.03 rejected (status 2, retry 3600) on its next poll.',
    setup: ['a fresh server (no allowlist entry)'],
    async run(r) {
      const a = await r.provision({}, ['no nonce yet', 'signed with the nonce: pending']);
      await r.adminStep('reject vec-device-01', () => r.admin.reject(DEVICE_ID, 'not ours', ACTOR));
      r.clock.s += a.retry!;
      await r.request('after retry seconds, with the nonce from the 2.05', { nonce: a.nonce });
    },
  },
  {
    name: 'revoked',
    title: 'Revoked by an admin',
    about: 'A provisioned device that an admin revokes can neither refresh nor provision again: 4.03 revoked.',
    setup: ['allowlist: vec-device-01 with pk = the device key'],
    async run(r) {
      await r.allow({ pk: DEVICE_PK });
      const issued = await r.provision();
      await r.adminStep('revoke vec-device-01', () => r.admin.revoke(DEVICE_ID, 'lost', ACTOR));
      r.clock.s += 60;
      const c = await r.refresh('refresh, no nonce yet', issued.token!);
      await r.refresh('refresh with the nonce', issued.token!, c.nonce);
      await r.provision({}, ['provisioning again, no nonce yet', 'with the nonce']);
    },
  },
  {
    name: 'rate-limited',
    title: 'Rate limited',
    about: 'A device that polls faster than told runs out of its own budget (its claim: the device ID with its key, spent only by requests that key signed): 4.29 with retry (key 10), err 9 and Max-Age, nothing else, and its nonce is not spent. Here the per-device limit is 1 request/s with a burst of 1 (defaults: 2/s, burst 10).',
    setup: ['a fresh server with rateLimitDevice 1, rateBurstDevice 1'],
    rig: { monitor: { deviceRate: 1, deviceBurst: 1 } },
    async run(r) {
      const a = await r.provision({}, ['no nonce yet', 'with the nonce: pending, retry 60']);
      await r.request('at once again, ignoring the retry hint', { nonce: a.nonce });
    },
  },
  {
    name: 'disabled',
    title: 'Provisioning disabled',
    about: 'An admin (or a rogue-server alert) switched provisioning off: /idprov/request answers 5.03 disabled before anything else; /idprov/refresh keeps working.',
    setup: ['allowlist: vec-device-01 with pk = the device key'],
    async run(r) {
      await r.allow({ pk: DEVICE_PK });
      const issued = await r.provision();
      await r.adminStep('disable provisioning', () => r.admin.setProvisioning(false, 'maintenance', ACTOR));
      r.clock.s += 60;
      await r.request('a request (any request) while disabled');
      const c = await r.refresh('refresh still works: no nonce yet', issued.token!);
      await r.refresh('with the nonce', issued.token!, c.nonce);
    },
  },
  {
    name: 'errors',
    title: 'Errors',
    about: 'One exchange per error a device can meet, each on the state the previous steps left.',
    setup: ['allowlist: vec-device-01 with pk = the device key'],
    async run(r) {
      await r.allow({ pk: DEVICE_PK });
      await r.exchange('wrong method', 'GET', '/idprov/request');
      await r.exchange('unknown path', 'GET', '/idprov/nothing');
      await r.exchange('wrong Content-Format (60 instead of 18)', 'POST', '/idprov/request', requestPayload(), { contentFormat: 60 });
      await r.exchange('payload over 1024 bytes', 'POST', '/idprov/request', Buffer.alloc(1025, 0x00));
      await r.exchange('payload that is not a COSE_Sign1', 'POST', '/idprov/request', Buffer.from([0xa1, 0x01]));
      const ch = await r.request('no nonce: challenge');
      const bad = await r.request('signed by another key than pk (key 2)', { nonce: ch.nonce, key: OTHER_KEY });
      const ok = await r.exchange('the nonce of that 4.01, correctly signed: approved', 'POST', '/idprov/request', requestPayload({ nonce: bad.nonce }));
      await r.exchange('the same datagram again (same message ID): a retransmission, answered from the cache', 'POST', '/idprov/request', undefined, { sameMessageAs: ok.step });
      await r.exchange('the same request in a new message: a replay, the nonce is used', 'POST', '/idprov/request', decodeMessage(hex(ok.step.request)).payload);
      const ch2 = await r.request('another key for a provisioned ID: challenge', { pk: rawPublicKey(OTHER_KEY), key: OTHER_KEY });
      await r.request('signed by that key: 4.03 key-mismatch', { pk: rawPublicKey(OTHER_KEY), key: OTHER_KEY, nonce: ch2.nonce });
      const token = ok.body!.token!;
      r.clock.s += 3600;
      const ch3 = await r.refresh('an hour later the token has expired: challenge', token);
      await r.refresh('refresh with an expired token', token, ch3.nonce);
      const forged = forgeToken(token);
      const ch4 = await r.refresh('a token signed by a key the server does not have: challenge', forged);
      await r.refresh('refresh with it', forged, ch4.nonce);
      await r.adminStep('upload an allowlist entry for vec-device-01 with secret "label-code-7Q4K"', () => r.allow({ secret: DEVICE_SECRET }));
      const ch5 = await r.request('the entry now asks for the secret: challenge');
      await r.request('key 7 made with another secret', { nonce: ch5.nonce, oob: 'wrong' });
    },
  },
];

/** The token with its signature made by OTHER_KEY (same kid): the server must answer unknown-token-key. */
function forgeToken(token: Uint8Array): Buffer {
  const t = parseSign1(token, 'token');
  return encodeSign1(t.protectedBytes, t.payload, ed25519Sign(OTHER_KEY, sigStructure(t.protectedBytes, t.payload)));
}

/** Generate every flow on a fresh server. */
export async function generateExchanges(): Promise<ExchangeFile> {
  const flows: Flow[] = [];
  await withSealingInputs(async () => {
    for (const f of FLOWS) {
      const r = await Rig.open(f.rig ?? {});
      try {
        await f.run(r);
      } finally {
        await r.close();
      }
      flows.push({ name: f.name, title: f.title, about: f.about, setup: f.setup, detail: f.detail === true, steps: r.steps });
    }
  });
  return {
    about:
      'idprov/coap v1 full-packet exchange vectors: CoAP request datagram → response datagram, as the server answers them. Generated by tools/spec/exchange-vectors.ts; explained in docs/spec/exchanges.md. Hex strings; the payload diagnostics are for people, the hex is normative.',
    material: {
      clock: `${T0} (2026-01-01T00:00:00Z) at the start of every flow; "at" is the server clock of each step`,
      device: 'fixtures/vectors/idprov-v1.json#device (Ed25519 seed, X25519 key, MAC, secret)',
      serverTokenKey: 'fixtures/vectors/idprov-v1.json#server (kid bbc3f7d0c18ed599)',
      otherKeySeed: toHex(Buffer.from(Array.from({ length: 32 }, (_, i) => 0x21 + i))),
      nonceSecret: toHex(NONCE_SECRET),
      random: 'the server random source returns 08 09 0a 0b … (one counter per flow, wrapping at ff) in the order asked: 8 bytes per nonce, 8 per cti',
      sealing: 'ephemeral X25519 secret and box nonce of fixtures/vectors/idprov-v1.json#sealed',
      settings: { issuer: 'idprov', provisionTokenTtl: 3600, tokenTtl: 2_592_000, nonceTtl: 300, disabledRetry: 300, pendingRetry: '60 + 30 per repeat, at most 600', rejectedRetry: 3600 },
      server: `${SERVER.address}:${SERVER.port}`,
      device_address: `${DEVICE.address}:${DEVICE.port}`,
      coap: 'every request is CON with a 2-byte token 71 nn and message IDs from 0x1001; every answer is piggybacked in the ACK',
    },
    flows,
  };
}

const PAYLOAD_SCHEMA = (s: ExchangeStep, which: 'request' | 'response'): Schema | 'text' | 'none' | 'raw' => {
  const m = decodeMessage(hex(which === 'request' ? s.request : s.response));
  if (m.payload.length === 0) return 'none';
  if (which === 'request') return m.contentFormat !== 18 ? 'text' : s.requestPayload !== undefined ? requestSchema(s.uri) : 'raw';
  if (m.contentFormat === 60) return RESPONSE;
  if (m.contentFormat === 102) return KEYSET;
  return 'text';
};

function wrap(text: string, width = 100): string {
  const out: string[] = [];
  for (let i = 0; i < text.length; i += width) out.push(text.slice(i, i + width));
  return out.join('\n');
}

function datagram(s: ExchangeStep, which: 'request' | 'response', detail: boolean): string {
  const bytes = hex(which === 'request' ? s.request : s.response);
  const schema = PAYLOAD_SCHEMA(s, which);
  const payloadDiag = which === 'request' ? s.requestPayload : s.responsePayload;
  // Byte by byte: in detailed flows, and for short payloads everywhere; long raw or text payloads are
  // only counted (the JSON file has them).
  const payloadBytes = decodeMessage(bytes).payload.length;
  const bytewise = typeof schema === 'object' && (detail || payloadBytes <= 80);
  const mode = bytewise || ((schema === 'text' || schema === 'raw') && payloadBytes <= 400) ? schema : 'none';
  const parts = [renderLines(annotateMessage(bytes, mode))];
  if (mode === 'none' && typeof schema === 'object' && payloadDiag) parts.push('', 'payload (diagnostic notation):', wrap(payloadDiag));
  return parts.join('\n');
}

/** docs/spec/exchanges.md, from the generated file. */
export function renderMarkdown(file: ExchangeFile): string {
  const out: string[] = [
    '<!-- Generated by tools/spec/exchange-vectors.ts from the running server code; do not edit. -->',
    '# Exchange vectors (informative)',
    '',
    'Every flow of [the contract](idprov-coap-v1.md) as full CoAP datagrams: the bytes a device sends and the',
    'bytes idprov answers. The machine-readable copy is',
    '[`fixtures/spec/exchanges.json`](../../fixtures/spec/exchanges.json); `test/spec/exchanges.test.ts`',
    'regenerates both from the server code and fails on any byte difference, so they cannot drift from the',
    'server. Each flow starts from a fresh server. Which inputs are fixed, and how to replay a flow against',
    'your own client, is in [vectors.md](vectors.md#exchange-vectors).',
    '',
    'Fixed inputs:',
    '',
    ...Object.entries(file.material).map(([k, v]) => `- **${k}**: ${typeof v === 'string' ? v : '`' + JSON.stringify(v) + '`'}`),
    '',
    'Hex dumps: bytes on the left, meaning after `#`. Indentation shows nesting; a byte string that holds',
    'CBOR (a COSE protected header, a COSE payload, a token) is followed by its content, one level deeper.',
    'Flows marked *byte by byte* annotate every payload byte; the others annotate the CoAP header, the',
    'options and payloads of up to 80 bytes byte by byte, and show longer payloads in diagnostic notation',
    '(RFC 8949 §8, embedded CBOR as `<< >>`), with the full hex in the JSON file.',
    '',
    '## Flows',
    '',
    ...file.flows.map((f) => `- [${f.title}](#${f.name.replace(/[^a-z0-9-]/g, '')}) — ${f.steps.filter((s) => 'request' in s).length} exchanges${f.detail ? ', byte by byte' : ''}`),
    '',
  ];
  for (const f of file.flows) {
    out.push(`<a id="${f.name}"></a>`, '', `## ${f.title}`, '', f.about, '', `Setup: ${f.setup.join('; ')}.`, '');
    let n = 0;
    for (const s of f.steps) {
      if ('admin' in s) {
        out.push(`**Admin** (t = ${s.at}): ${s.admin}.`, '');
        continue;
      }
      n++;
      out.push(`### ${f.name} ${n}: ${s.method} ${s.uri} → ${s.code}`, '', `t = ${s.at}. ${s.note[0]!.toUpperCase()}${s.note.slice(1)}.`, '');
      out.push(`Request (${hex(s.request).length} bytes):`, '', '```text', datagram(s, 'request', f.detail), '```', '');
      out.push(`Response (${hex(s.response).length} bytes):`, '', '```text', datagram(s, 'response', f.detail), '```', '');
    }
  }
  return out.join('\n');
}

export const JSON_PATH = fileURLToPath(new URL('../../fixtures/spec/exchanges.json', import.meta.url));
export const MD_PATH = fileURLToPath(new URL('../../docs/spec/exchanges.md', import.meta.url));

/** The two files' expected contents. */
export async function expectedFiles(): Promise<{ json: string; md: string }> {
  const file = await generateExchanges();
  return { json: `${JSON.stringify(file, null, 2)}\n`, md: `${renderMarkdown(file)}\n` };
}

async function main(): Promise<void> {
  const { json, md } = await expectedFiles();
  if (process.argv.includes('--check')) {
    const same = (p: string, want: string): boolean => {
      try {
        return readFileSync(p, 'utf8') === want;
      } catch {
        return false;
      }
    };
    const bad = [[JSON_PATH, json], [MD_PATH, md]].filter(([p, w]) => !same(p!, w!)).map(([p]) => p);
    if (bad.length) {
      console.error(`out of date: ${bad.join(', ')} (run npx tsx tools/spec/exchange-vectors.ts)`);
      process.exit(1);
    }
    console.log('exchange vectors are up to date');
    return;
  }
  writeFileSync(JSON_PATH, json);
  writeFileSync(MD_PATH, md);
  console.log(`wrote ${JSON_PATH} and ${MD_PATH}`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
