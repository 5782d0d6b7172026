/**
 * Server configuration: one table of settings read from defaults < config file (JSON) <
 * environment (IDPROV_*) < command-line flags, validated with every error reported at once, then
 * frozen. The README's settings table is generated from {@link SETTINGS} (`npm run docs:config`).
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { instanceNameProblem } from './discovery/records.ts';

type Kind = 'int' | 'port' | 'string' | 'bool' | 'hex32' | 'list';

interface Setting {
  key: keyof Config;
  kind: Kind;
  def: unknown;
  env: string;
  flag?: string;
  min?: number;
  max?: number;
  doc: string;
}

/** The validated, frozen configuration. Durations are seconds. */
export interface Config {
  dataDir: string;
  store: string;
  databaseUrl: string;
  bind: string;
  coapPort: number;
  coapsPort: number;
  adminPort: number;
  adminBind: string;
  adminCert: string;
  adminKey: string;
  adminMaxWatchers: number;
  adminWatchersPerToken: number;
  adminStreamLifetime: number;
  adminTokenTtl: number;
  allowlist: string;
  mdns: boolean;
  logLevel: string;
  logFormat: string;
  issuer: string;
  audience: string;
  hubUri: string;
  provisionTokenTtl: number;
  tokenTtl: number;
  nonceTtl: number;
  nonceSecret: string;
  maxUsedNonces: number;
  maxUsedNoncesUnvouched: number;
  pendingRetryInitial: number;
  pendingRetryStep: number;
  pendingRetryMax: number;
  rejectedRetry: number;
  disabledRetry: number;
  minSecretLength: number;
  maxPayload: number;
  coapAmplificationFactor: number;
  rateLimitGet: number;
  rateBurstGet: number;
  instanceName: string;
  trustedServers: string[];
  rogueMonitor: boolean;
  coapMulticast: boolean;
  discoveryInterfaces: string[];
  alertWebhook: string;
  dtlsCert: string;
  dtlsKey: string;
  dtlsMaxSessions: number;
  dtlsMaxHandshakes: number;
  dtlsMaxHandshakesPerAddress: number;
  dtlsHandshakeRate: number;
  dtlsHandshakeBurst: number;
  dtlsIdleTimeout: number;
  dtlsHandshakeTimeout: number;
  dtlsMtu: number;
  rateLimitAddress: number;
  rateBurstAddress: number;
  rateLimitDevice: number;
  rateBurstDevice: number;
  rateLimitMaxKeys: number;
  manyIdsThreshold: number;
  manyIdsWindow: number;
  monitorMaxAddresses: number;
  holdFlagged: boolean;
  maxFlags: number;
  maxPending: number;
  pendingExpiry: number;
  eventRetention: number;
  maxEvents: number;
}

const DAY = 86_400;

/** Every setting: key in the config file, environment variable, flag, default and meaning. */
export const SETTINGS: readonly Setting[] = [
  { key: 'dataDir', kind: 'string', def: './data', env: 'IDPROV_DATA', flag: 'data', doc: 'Data directory (mode 0700): the SQLite database `idprov.db` (mode 0600) with every record and the token signing keys.' },
  { key: 'store', kind: 'string', def: 'sqlite', env: 'IDPROV_STORE', flag: 'store', doc: 'Where records live: `sqlite` (the embedded default, in dataDir) or `postgres` (databaseUrl; several instances may share it, see docs/scale-out.md).' },
  { key: 'databaseUrl', kind: 'string', def: '', env: 'IDPROV_DATABASE_URL', flag: 'database-url', doc: 'PostgreSQL connection URL (`postgres://user@host:5432/db`) when store is `postgres`; a password is better kept in `~/.pgpass` or `PGPASSWORD` than here.' },
  { key: 'bind', kind: 'string', def: '::', env: 'IDPROV_BIND', flag: 'bind', doc: 'Address for CoAP/CoAPS. `::` is dual-stack; falls back to 0.0.0.0 when IPv6 is off.' },
  { key: 'coapPort', kind: 'port', def: 5683, env: 'IDPROV_COAP_PORT', flag: 'coap-port', doc: 'CoAP/UDP port (0 = any free port).' },
  { key: 'coapsPort', kind: 'port', def: 5684, env: 'IDPROV_COAPS_PORT', flag: 'coaps-port', doc: 'CoAP over DTLS 1.2 port (0 = any free port); see docs/dtls.md.' },
  { key: 'adminPort', kind: 'port', def: 8445, env: 'IDPROV_ADMIN_PORT', flag: 'admin-port', doc: 'Admin sidecar HTTP port (JSON API, metrics, approval page); see README "Admin sidecar".' },
  { key: 'adminBind', kind: 'string', def: '127.0.0.1', env: 'IDPROV_ADMIN_BIND', doc: 'Admin sidecar bind address (loopback by default; set adminCert/adminKey before exposing it).' },
  { key: 'adminCert', kind: 'string', def: '', env: 'IDPROV_ADMIN_CERT', doc: 'PEM certificate file: the sidecar speaks HTTPS when set (with adminKey).' },
  { key: 'adminKey', kind: 'string', def: '', env: 'IDPROV_ADMIN_KEY', doc: 'PEM private key file of adminCert.' },
  { key: 'adminMaxWatchers', kind: 'int', def: 256, min: 2, max: 100_000, env: 'IDPROV_ADMIN_MAX_WATCHERS', doc: 'Event feed watchers (long polls and event streams) open at once at most; a quarter is kept for admin tokens, so hub tokens cannot take them all. Over it: 429.' },
  { key: 'adminWatchersPerToken', kind: 'int', def: 16, min: 1, max: 100_000, env: 'IDPROV_ADMIN_WATCHERS_PER_TOKEN', doc: 'Event feed watchers one bearer token may hold at once.' },
  { key: 'adminStreamLifetime', kind: 'int', def: 300, min: 1, max: DAY, env: 'IDPROV_ADMIN_STREAM_LIFETIME', doc: 'An event stream (`/api/v1/events/stream`) is ended after this long (s); clients reconnect with `Last-Event-ID` (EventSource does it by itself). Idle streams get a heartbeat comment every 15 s (a third of this when shorter).' },
  { key: 'adminTokenTtl', kind: 'int', def: 30 * DAY, min: 60, max: 3650 * DAY, env: 'IDPROV_ADMIN_TOKEN_TTL', doc: 'Lifetime of the first admin token, the one the server writes to `<data>/admin.token` (s). At start an expired token there (or one minted before the token registry) is replaced by a new one; see docs/operations.md "Admin tokens".' },
  { key: 'allowlist', kind: 'string', def: '', env: 'IDPROV_ALLOWLIST', flag: 'allowlist', doc: 'Allowlist file (JSON or CSV) imported (upsert) at start; all or nothing.' },
  { key: 'mdns', kind: 'bool', def: true, env: 'IDPROV_MDNS', doc: 'Advertise `_idprov._udp` by mDNS and watch for rogue servers (`--no-mdns` turns both off); see docs/discovery.md.' },
  { key: 'logLevel', kind: 'string', def: 'info', env: 'IDPROV_LOG_LEVEL', flag: 'log-level', doc: 'pino level: fatal, error, warn, info, debug, trace, silent.' },
  { key: 'logFormat', kind: 'string', def: 'auto', env: 'IDPROV_LOG_FORMAT', flag: 'log-format', doc: 'Log lines: `json` (one JSON object per line), `pretty` (for people), or `auto` = pretty when stdout is a terminal, JSON otherwise.' },
  { key: 'issuer', kind: 'string', def: 'idprov', env: 'IDPROV_ISSUER', doc: 'Token `iss` claim.' },
  { key: 'audience', kind: 'string', def: '', env: 'IDPROV_AUDIENCE', doc: 'Token `aud` claim (omitted when empty).' },
  { key: 'hubUri', kind: 'string', def: '', env: 'IDPROV_HUB_URI', doc: 'Hub URI sent to approved devices (response key 14).' },
  { key: 'provisionTokenTtl', kind: 'int', def: 3600, min: 60, max: 365 * DAY, env: 'IDPROV_PROVISION_TOKEN_TTL', doc: 'Lifetime of tokens from /idprov/request (s).' },
  { key: 'tokenTtl', kind: 'int', def: 30 * DAY, min: 60, max: 365 * DAY, env: 'IDPROV_TOKEN_TTL', doc: 'Lifetime of tokens from /idprov/refresh (s).' },
  { key: 'nonceTtl', kind: 'int', def: 300, min: 10, max: 3600, env: 'IDPROV_NONCE_TTL', doc: 'Validity of a server nonce (s).' },
  { key: 'nonceSecret', kind: 'hex32', def: '', env: 'IDPROV_NONCE_SECRET', doc: '64 hex digits shared by instances that accept each other\'s nonces; generated and kept in the database when empty.' },
  { key: 'maxUsedNonces', kind: 'int', def: 2_000_000, min: 1000, max: 50_000_000, env: 'IDPROV_MAX_USED_NONCES', doc: 'Used-once nonces remembered at most for requests signed with a vouched key (allowlisted, provisioned, admin-approved or proven by the entry\'s out-of-band secret); forgers cannot fill this part. Full: 4.29 with Max-Age. See docs/security.md.' },
  { key: 'maxUsedNoncesUnvouched', kind: 'int', def: 500_000, min: 1000, max: 50_000_000, env: 'IDPROV_MAX_USED_NONCES_UNVOUCHED', doc: 'Used-once nonces remembered at most for every other request (unknown IDs, waiting requests, other keys); when full these get 4.29 with Max-Age until entries expire, vouched devices are not affected.' },
  { key: 'pendingRetryInitial', kind: 'int', def: 60, min: 1, max: DAY, env: 'IDPROV_PENDING_RETRY_INITIAL', doc: 'First retry hint for a pending device (s).' },
  { key: 'pendingRetryStep', kind: 'int', def: 30, min: 0, max: DAY, env: 'IDPROV_PENDING_RETRY_STEP', doc: 'Added per repeat (s).' },
  { key: 'pendingRetryMax', kind: 'int', def: 600, min: 1, max: DAY, env: 'IDPROV_PENDING_RETRY_MAX', doc: 'Largest pending retry hint (s).' },
  { key: 'rejectedRetry', kind: 'int', def: 3600, min: 1, max: 7 * DAY, env: 'IDPROV_REJECTED_RETRY', doc: 'Retry hint for refused devices (s).' },
  { key: 'disabledRetry', kind: 'int', def: 300, min: 1, max: DAY, env: 'IDPROV_DISABLED_RETRY', doc: 'Retry hint while provisioning is disabled (s).' },
  { key: 'minSecretLength', kind: 'int', def: 12, min: 8, max: 64, env: 'IDPROV_MIN_SECRET_LENGTH', doc: 'Shortest out-of-band secret accepted at import (characters; a secret is at most 64 UTF-8 bytes).' },
  { key: 'maxPayload', kind: 'int', def: 1024, min: 256, max: 1024, env: 'IDPROV_MAX_PAYLOAD', doc: 'Largest request payload (bytes); larger gets 4.13.' },
  { key: 'coapAmplificationFactor', kind: 'int', def: 3, min: 0, max: 100, env: 'IDPROV_COAP_AMPLIFICATION_FACTOR', doc: 'No CoAP/UDP answer is larger than this many times its request (RFC 7252 §11.3; 0 = no bound): larger ones go block-wise (Block2) in smaller blocks. CoAP over DTLS is not bounded, except a session a Connection ID moved to an address it has not proven (always 3× the bytes received from there).' },
  { key: 'rateLimitGet', kind: 'int', def: 20, min: 0, max: 1_000_000, env: 'IDPROV_RATE_LIMIT_GET', doc: 'Unauthenticated CoAP/UDP requests other than the idprov POSTs (GETs of `/.well-known/core` and `/idprov/keys`, each block counts, and every request that draws an error) per second per source address (an IPv6 /64: four times as many; 0 = no limit). Anyone can spend it with a forged address, so over it a GET is still answered, in the smallest form (16-byte blocks, at most 24 bytes longer than the request); anything else, and any multicast request, gets no answer. CoAP over DTLS is not limited, except a session a Connection ID moved to an address it has not proven.' },
  { key: 'rateBurstGet', kind: 'int', def: 100, min: 1, max: 10_000_000, env: 'IDPROV_RATE_BURST_GET', doc: 'Requests counted by `rateLimitGet` one source address may send at once before that rate applies.' },
  { key: 'instanceName', kind: 'string', def: '', env: 'IDPROV_INSTANCE_NAME', doc: 'mDNS instance name (default `idprov-<hostname>`).' },
  { key: 'dtlsCert', kind: 'string', def: '', env: 'IDPROV_DTLS_CERT', doc: 'PEM certificate (P-256) for the ECDHE_ECDSA suites; empty = `<dataDir>/dtls-cert.pem`, created with its key at first start.' },
  { key: 'dtlsKey', kind: 'string', def: '', env: 'IDPROV_DTLS_KEY', doc: 'PEM private key (P-256) of `dtlsCert`; empty = `<dataDir>/dtls-key.pem` (mode 0600).' },
  { key: 'dtlsMaxSessions', kind: 'int', def: 10_000, min: 1, max: 1_000_000, env: 'IDPROV_DTLS_MAX_SESSIONS', doc: 'Established DTLS sessions kept at most; the least recently active is closed for a new one.' },
  { key: 'dtlsMaxHandshakes', kind: 'int', def: 1000, min: 1, max: 100_000, env: 'IDPROV_DTLS_MAX_HANDSHAKES', doc: 'Half-open DTLS handshakes (cookie returned, not finished) at most; the oldest is dropped for a new one.' },
  { key: 'dtlsMaxHandshakesPerAddress', kind: 'int', def: 32, min: 1, max: 100_000, env: 'IDPROV_DTLS_MAX_HANDSHAKES_PER_ADDRESS', doc: 'Half-open DTLS handshakes one source address may hold (an IPv6 /64: four times as many); past it its own oldest is dropped. At a full table the source holding the most slots loses one, never another source\'s only slot.' },
  { key: 'dtlsHandshakeRate', kind: 'int', def: 20, min: 0, max: 1_000_000, env: 'IDPROV_DTLS_HANDSHAKE_RATE', doc: 'New DTLS handshakes (cookie-verified ClientHellos) per second one source address may start (an IPv6 /64: four times as many; 0 = no limit); over it the ClientHello is dropped and the client retries on its timer. Bounds the ECDHE work one host can cause.' },
  { key: 'dtlsHandshakeBurst', kind: 'int', def: 40, min: 1, max: 1_000_000, env: 'IDPROV_DTLS_HANDSHAKE_BURST', doc: 'New DTLS handshakes one source address may start at once before `dtlsHandshakeRate` applies.' },
  { key: 'dtlsIdleTimeout', kind: 'int', def: 600, min: 1, max: 7 * DAY, env: 'IDPROV_DTLS_IDLE_TIMEOUT', doc: 'A DTLS session without traffic for this long is closed (s).' },
  { key: 'dtlsHandshakeTimeout', kind: 'int', def: 60, min: 1, max: 3600, env: 'IDPROV_DTLS_HANDSHAKE_TIMEOUT', doc: 'A DTLS handshake not finished in this long is dropped (s).' },
  { key: 'dtlsMtu', kind: 'int', def: 1200, min: 200, max: 16_384, env: 'IDPROV_DTLS_MTU', doc: 'Largest datagram the DTLS server sends during a handshake; longer handshake messages are fragmented (bytes).' },
  { key: 'trustedServers', kind: 'list', def: [], env: 'IDPROV_TRUSTED_SERVERS', doc: 'Other `_idprov._udp` instance names that are not rogue, e.g. the other server of an HA pair (comma-separated in the environment); see docs/discovery.md.' },
  { key: 'rogueMonitor', kind: 'bool', def: true, env: 'IDPROV_ROGUE_MONITOR', doc: 'Watch the link for other `_idprov._udp` servers; an untrusted one raises an alert and disables provisioning (needs `mdns`).' },
  { key: 'coapMulticast', kind: 'bool', def: true, env: 'IDPROV_COAP_MULTICAST', doc: 'Answer CoAP multicast discovery (`GET /.well-known/core?rt=idprov*` to 224.0.0.187 / ff02::fd on the CoAP port).' },
  { key: 'discoveryInterfaces', kind: 'list', def: [], env: 'IDPROV_DISCOVERY_INTERFACES', doc: 'Interfaces (names or addresses) for mDNS and CoAP multicast; empty = every interface but loopback (comma-separated in the environment).' },
  { key: 'alertWebhook', kind: 'string', def: '', env: 'IDPROV_ALERT_WEBHOOK', doc: 'URL that receives a JSON POST when an alert (e.g. a rogue server) is raised; empty = none.' },
  { key: 'rateLimitAddress', kind: 'int', def: 50, min: 0, max: 1_000_000, env: 'IDPROV_RATE_LIMIT_ADDRESS', doc: 'Signature checks per second for one source address, and for one IPv6 /64 (an IPv6 /56: four times as many, a /48: sixteen times; requests whose nonce was sent to that address; token-bucket refill; 0 = no limit); a second bucket of the same size counts requests that do not decode (and 5.03 answers while provisioning is off). Over it: 4.29. Nonce challenges are never limited. See README "Rate limits".' },
  { key: 'rateBurstAddress', kind: 'int', def: 500, min: 1, max: 10_000_000, env: 'IDPROV_RATE_BURST_ADDRESS', doc: 'Signature checks (and undecodable requests) one source address or IPv6 /64 may spend at once before `rateLimitAddress` applies (bucket size; a /56: four times as many signature checks, a /48: sixteen times).' },
  { key: 'rateLimitDevice', kind: 'int', def: 2, min: 0, max: 1_000_000, env: 'IDPROV_RATE_LIMIT_DEVICE', doc: 'Authenticated requests per second per device ID, counted for its vouched (allowlisted, provisioned, approved or OOB-proven) key, and separately per ID and key for any other key (0 = no limit); over it: 4.29. A request signed with another key never spends the device\'s budget.' },
  { key: 'rateBurstDevice', kind: 'int', def: 10, min: 1, max: 1_000_000, env: 'IDPROV_RATE_BURST_DEVICE', doc: 'Authenticated requests one device ID (or ID and other key) may send at once before `rateLimitDevice` applies.' },
  { key: 'rateLimitMaxKeys', kind: 'int', def: 100_000, min: 100, max: 10_000_000, env: 'IDPROV_RATE_LIMIT_MAX_KEYS', doc: 'Keys (addresses, /64, /56 and /48 prefixes, device IDs, device ID and key pairs) whose rate-limit buckets each table keeps in memory at most (least recently used dropped).' },
  { key: 'manyIdsThreshold', kind: 'int', def: 50, min: 0, max: 100_000, env: 'IDPROV_MANY_IDS_THRESHOLD', doc: 'Distinct device IDs from one source (an IPv4 address or an IPv6 /64) within `manyIdsWindow` that raise a `many-ids` flag (0 = off).' },
  { key: 'manyIdsWindow', kind: 'int', def: 60, min: 1, max: DAY, env: 'IDPROV_MANY_IDS_WINDOW', doc: 'Window of the `many-ids` count (s).' },
  { key: 'monitorMaxAddresses', kind: 'int', def: 10_000, min: 10, max: 1_000_000, env: 'IDPROV_MONITOR_MAX_ADDRESSES', doc: 'Sources (IPv4 addresses, IPv6 /64s) the `many-ids` tracker counts exactly at most; beyond, the one with the fewest IDs is dropped and its count kept in a fixed-size sketch (README "Security monitor").' },
  { key: 'holdFlagged', kind: 'bool', def: false, env: 'IDPROV_HOLD_FLAGGED', doc: 'Hold a device that has open flags pending (2.05, no token) instead of provisioning it, until an admin clears the flags.' },
  { key: 'maxFlags', kind: 'int', def: 10_000, min: 10, max: 1_000_000, env: 'IDPROV_MAX_FLAGS', doc: 'Flags kept at most (open and cleared); past it the least recently seen open flag is closed and the oldest cleared ones deleted.' },
  { key: 'maxPending', kind: 'int', def: 100_000, min: 10, max: 10_000_000, env: 'IDPROV_MAX_PENDING', doc: 'Waiting requests from unknown IDs kept at most; a new one drops the least recently seen.' },
  { key: 'pendingExpiry', kind: 'int', def: 7 * DAY, min: 60, max: 365 * DAY, env: 'IDPROV_PENDING_EXPIRY', doc: 'A waiting request not seen for this long is deleted (s); approvals and rejections are kept.' },
  { key: 'eventRetention', kind: 'int', def: 365, min: 1, max: 36_500, env: 'IDPROV_EVENT_RETENTION', doc: 'Days the event log (audit trail) keeps an event.' },
  { key: 'maxEvents', kind: 'int', def: 1_000_000, min: 1000, max: 1_000_000_000, env: 'IDPROV_MAX_EVENTS', doc: 'Events kept at most, even within `eventRetention` (the oldest go first).' },
];

/**
 * Every setting at its default, frozen: what `loadConfig()` returns with no sources, built from
 * {@link SETTINGS} (the one place a default is written). Tests start from it.
 */
export const DEFAULTS: Readonly<Config> = Object.freeze(Object.fromEntries(SETTINGS.map((s) => [s.key, Array.isArray(s.def) ? Object.freeze([...s.def]) : s.def])) as unknown as Config);

/** Invalid configuration: every problem at once. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
  }
}

const LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);
const LOG_FORMATS = ['auto', 'json', 'pretty'];

function coerce(s: Setting, raw: unknown, from: string, problems: string[]): unknown {
  const bad = (why: string): undefined => {
    problems.push(`${s.key} (${from}): ${why}`);
    return undefined;
  };
  switch (s.kind) {
    case 'int':
    case 'port': {
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^-?\d+$/.test(raw.trim()) ? Number(raw) : NaN;
      const [min, max] = s.kind === 'port' ? [0, 65535] : [s.min ?? 0, s.max ?? Number.MAX_SAFE_INTEGER];
      if (!Number.isInteger(n)) return bad(`must be an integer, got ${JSON.stringify(raw)}`);
      if (n < min || n > max) return bad(`must be between ${min} and ${max}, got ${n}`);
      return n;
    }
    case 'bool':
      if (typeof raw === 'boolean') return raw;
      if (typeof raw === 'string' && /^(1|true|yes|on)$/i.test(raw)) return true;
      if (typeof raw === 'string' && /^(0|false|no|off)$/i.test(raw)) return false;
      return bad(`must be true or false, got ${JSON.stringify(raw)}`);
    case 'hex32':
      if (typeof raw !== 'string' || (raw !== '' && !/^[0-9a-fA-F]{64}$/.test(raw))) return bad('must be 64 hex digits');
      return raw.toLowerCase();
    case 'list':
      if (Array.isArray(raw) && raw.every((x) => typeof x === 'string')) return raw;
      if (typeof raw === 'string') return raw.split(',').map((x) => x.trim()).filter(Boolean);
      return bad('must be a list of strings');
    case 'string':
      if (typeof raw !== 'string') return bad(`must be a string, got ${JSON.stringify(raw)}`);
      return raw;
  }
}

/** Sources of configuration, lowest precedence first after the defaults. */
export interface ConfigSources {
  /** Path of a JSON config file. */
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Flag values keyed by config key (already parsed by the CLI). */
  flags?: Partial<Record<keyof Config, unknown>>;
}

/** Build, validate and freeze the configuration. @throws ConfigError listing every problem. */
export function loadConfig(src: ConfigSources = {}): Readonly<Config> {
  const problems: string[] = [];
  const out: Record<string, unknown> = {};
  for (const s of SETTINGS) out[s.key] = s.def;
  if (src.file) {
    let fileObj: unknown;
    try {
      fileObj = JSON.parse(readFileSync(src.file, 'utf8'));
    } catch (e) {
      problems.push(`config file ${src.file}: ${(e as Error).message}`);
    }
    if (fileObj !== undefined) {
      if (fileObj === null || typeof fileObj !== 'object' || Array.isArray(fileObj)) problems.push(`config file ${src.file}: must hold a JSON object`);
      else {
        for (const [k, v] of Object.entries(fileObj)) {
          const s = SETTINGS.find((x) => x.key === k);
          if (!s) problems.push(`config file: unknown setting "${k}"`);
          else {
            const c = coerce(s, v, 'config file', problems);
            if (c !== undefined) out[k] = c;
          }
        }
      }
    }
  }
  const env = src.env ?? {};
  for (const s of SETTINGS) {
    const v = env[s.env];
    if (v !== undefined && v !== '') {
      const c = coerce(s, v, s.env, problems);
      if (c !== undefined) out[s.key] = c;
    }
  }
  for (const [k, v] of Object.entries(src.flags ?? {})) {
    if (v === undefined) continue;
    const s = SETTINGS.find((x) => x.key === k);
    if (!s) {
      problems.push(`unknown flag for "${k}"`);
      continue;
    }
    const c = coerce(s, v, `--${s.flag ?? k}`, problems);
    if (c !== undefined) out[k] = c;
  }
  const cfg = out as unknown as Config;
  if (isIP(cfg.bind) === 0) problems.push(`bind: "${cfg.bind}" is not an IP address`);
  if (isIP(cfg.adminBind) === 0) problems.push(`adminBind: "${cfg.adminBind}" is not an IP address`);
  if (!LEVELS.has(cfg.logLevel)) problems.push(`logLevel: must be one of ${[...LEVELS].join(', ')}`);
  if (!LOG_FORMATS.includes(cfg.logFormat)) problems.push(`logFormat: must be one of ${LOG_FORMATS.join(', ')}`);
  if (cfg.pendingRetryMax < cfg.pendingRetryInitial) problems.push('pendingRetryMax: must be at least pendingRetryInitial');
  if (cfg.dataDir === '') problems.push('dataDir: must not be empty');
  if (cfg.store !== 'sqlite' && cfg.store !== 'postgres') problems.push('store: must be sqlite or postgres');
  if (cfg.store === 'postgres' && !/^postgres(ql)?:\/\//.test(cfg.databaseUrl)) problems.push('databaseUrl: store postgres needs a postgres:// URL');
  if (cfg.coapPort !== 0 && cfg.coapPort === cfg.coapsPort) problems.push('coapsPort: must differ from coapPort');
  if ((cfg.dtlsCert === '') !== (cfg.dtlsKey === '')) problems.push('dtlsCert/dtlsKey: give both or neither');
  if ((cfg.adminCert === '') !== (cfg.adminKey === '')) problems.push('adminCert/adminKey: give both or neither');
  if (cfg.instanceName !== '') {
    const why = instanceNameProblem(cfg.instanceName);
    if (why) problems.push(`instanceName: ${why}`);
  }
  if (cfg.alertWebhook !== '' && !/^https?:\/\/[^\s]+$/.test(cfg.alertWebhook)) problems.push('alertWebhook: must be an http:// or https:// URL');
  else if (cfg.alertWebhook !== '') {
    try {
      new URL(cfg.alertWebhook);
    } catch {
      problems.push('alertWebhook: must be an http:// or https:// URL');
    }
  }
  if (problems.length) throw new ConfigError(problems);
  cfg.trustedServers = Object.freeze([...cfg.trustedServers]) as string[];
  cfg.discoveryInterfaces = Object.freeze([...cfg.discoveryInterfaces]) as string[];
  return Object.freeze(cfg);
}

/** Markdown table of the settings, for the README. */
export function settingsTable(): string {
  const rows = SETTINGS.map(
    (s) => `| \`${s.key}\` | ${s.flag ? `\`--${s.flag}\`` : s.key === 'mdns' ? '`--no-mdns`' : ''} | \`${s.env}\` | \`${JSON.stringify(s.def)}\` | ${s.doc} |`,
  );
  return ['| config file key | flag | environment | default | meaning |', '| --- | --- | --- | --- | --- |', ...rows].join('\n');
}
