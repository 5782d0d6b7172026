/**
 * The HTTP side of `oob`: where the admin sidecar is, which bearer token to send, and one `request`
 * that turns every way a call can fail into an {@link OobError} with a message for humans and a
 * distinct exit code (see {@link EXIT}).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** Exit codes of `oob` (also in `oob --help`). */
export const EXIT = {
  ok: 0,
  /** The server refused the operation (not found, conflict, bad input, invalid import rows), or the user declined. */
  failed: 1,
  /** Bad command line or local setup: unknown flag, no token, unreadable file, no confirmation possible. */
  usage: 2,
  /** The admin sidecar could not be reached. */
  unreachable: 3,
  /** The server refused the token (401 / 403). */
  auth: 4,
  /** The server failed (5xx) or answered something that is not the idprov admin API. */
  server: 5,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** A failure with the message to print and the exit code to leave with. */
export class OobError extends Error {
  override readonly name = 'OobError';
  constructor(
    readonly exitCode: ExitCode,
    message: string,
    /** The server's stable error code, when the server answered with one. */
    readonly code?: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

export const DEFAULT_SERVER = 'http://127.0.0.1:8445';

/** Global options of every command. */
export interface ConnectionOptions {
  server?: string;
  token?: string;
  tokenFile?: string;
  data?: string;
}

/** Where the server URL and the token came from, for messages. */
export interface Connection {
  baseUrl: string;
  serverFrom: string;
  token: string;
  tokenFrom: string;
}

/**
 * Resolve the server URL (`--server` > `IDPROV_ADMIN_URL` > http://127.0.0.1:8445) and the token
 * (`--token` > `--token-file` > `IDPROV_ADMIN_TOKEN` > `<data>/admin.token`, data = `--data` >
 * `IDPROV_DATA` > ./data).
 */
export function resolveConnection(o: ConnectionOptions, env: NodeJS.ProcessEnv = process.env, opts: { tokenOptional?: boolean } = {}): Connection {
  const [rawUrl, serverFrom] = o.server ? [o.server, '--server'] : env['IDPROV_ADMIN_URL'] ? [env['IDPROV_ADMIN_URL'], 'IDPROV_ADMIN_URL'] : [DEFAULT_SERVER, 'the default'];
  let url: URL;
  try {
    url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(rawUrl) ? rawUrl : `http://${rawUrl}`);
  } catch {
    throw new OobError(EXIT.usage, `not a server URL: ${rawUrl} (from ${serverFrom}; expected e.g. http://127.0.0.1:8445)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new OobError(EXIT.usage, `unsupported scheme ${url.protocol} in ${rawUrl} (use http:// or https://)`);
  const baseUrl = url.origin + url.pathname.replace(/\/+$/, '');

  let token: string | undefined;
  let tokenFrom = '';
  const readTokenFile = (file: string, from: string): string => {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new OobError(EXIT.usage, `cannot read the token file ${file} (${from}): ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    const t = text.trim();
    if (!t) throw new OobError(EXIT.usage, `the token file ${file} (${from}) is empty`);
    return t;
  };
  if (o.token) [token, tokenFrom] = [o.token.trim(), '--token'];
  else if (o.tokenFile) [token, tokenFrom] = [readTokenFile(o.tokenFile, '--token-file'), `--token-file ${o.tokenFile}`];
  else if (env['IDPROV_ADMIN_TOKEN']) [token, tokenFrom] = [env['IDPROV_ADMIN_TOKEN'].trim(), 'IDPROV_ADMIN_TOKEN'];
  else {
    const dataDir = o.data ?? env['IDPROV_DATA'] ?? './data';
    const file = join(resolve(dataDir), 'admin.token');
    if (existsSync(file)) [token, tokenFrom] = [readTokenFile(file, 'the data directory'), file];
    else if (opts.tokenOptional) [token, tokenFrom] = ['', 'none'];
    else {
      throw new OobError(
        EXIT.usage,
        `no admin token: ${file} does not exist. Pass --token T or --token-file F, set IDPROV_ADMIN_TOKEN, or point --data at the server's data directory (\`idprov token create --role admin\` mints a token).`,
      );
    }
  }
  return { baseUrl, serverFrom, token, tokenFrom };
}

/** Network error codes that mean "nobody answered there". */
const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ECONNRESET', 'EADDRNOTAVAIL', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_SOCKET']);

/** The errno-style code buried in a fetch failure (`TypeError: fetch failed` → cause → code). */
export function networkCode(e: unknown): string | undefined {
  let cur: unknown = e;
  for (let depth = 0; cur && depth < 5; depth++) {
    const c = cur as { code?: unknown; errors?: unknown[]; cause?: unknown };
    if (typeof c.code === 'string' && c.code !== 'ERR_INVALID_STATE') return c.code;
    if (Array.isArray(c.errors) && c.errors.length) cur = c.errors[0];
    else cur = c.cause;
  }
  return undefined;
}

export interface RequestOptions {
  method?: string;
  /** A JSON body (sent with content-type application/json). */
  json?: unknown;
  /** A raw body with its content type. */
  body?: NonNullable<RequestInit['body']>;
  contentType?: string;
  headers?: Record<string, string>;
  /** Statuses that are not errors even though they are not 2xx (e.g. 422 for an import report). */
  accept?: number[];
  signal?: AbortSignal;
}

/**
 * The API path of record `id` in `collection`, with an optional action: `/api/v1/devices/sensor-7/revoke`.
 * The ID is percent-encoded as a path segment; `.` and `..`, which URL parsers collapse even when
 * percent-encoded, go in the query instead (`/api/v1/devices/~/revoke?id=..`, docs/admin-api.md).
 */
export function recordPath(collection: 'allowlist' | 'pending' | 'devices' | 'flags', id: string, action?: string): string {
  const tail = action ? `/${action}` : '';
  if (id === '.' || id === '..') return `/api/v1/${collection}/~${tail}?id=${encodeURIComponent(id)}`;
  return `/api/v1/${collection}/${encodeURIComponent(id)}${tail}`;
}

/** A thin client of the sidecar's `/api/v1`. */
export class AdminClient {
  constructor(readonly conn: Connection) {}

  url(path: string): string {
    return this.conn.baseUrl + path;
  }

  /** Send a request; non-2xx answers (not in `accept`) and network failures throw {@link OobError}. */
  async request(path: string, o: RequestOptions = {}): Promise<Response> {
    const headers: Record<string, string> = { accept: 'application/json', ...(this.conn.token ? { authorization: `Bearer ${this.conn.token}` } : {}), ...o.headers };
    let body: NonNullable<RequestInit['body']> | undefined = o.body;
    if (o.json !== undefined) {
      body = JSON.stringify(o.json);
      headers['content-type'] = 'application/json';
    } else if (o.contentType) headers['content-type'] = o.contentType;
    const init: RequestInit & { duplex?: 'half' } = { method: o.method ?? 'GET', headers };
    if (body !== undefined) init.body = body;
    if (body instanceof ReadableStream) init.duplex = 'half';
    if (o.signal) init.signal = o.signal;
    let res: Response;
    try {
      res = await fetch(this.url(path), init);
    } catch (e) {
      throw this.networkError(e);
    }
    if (res.ok || o.accept?.includes(res.status)) return res;
    throw await this.httpError(res);
  }

  /** `request` and parse the JSON answer. */
  async json<T>(path: string, o: RequestOptions = {}): Promise<T> {
    const res = await this.request(path, o);
    return (await readJson(res, this.url(path))) as T;
  }

  networkError(e: unknown): OobError {
    if ((e as Error)?.name === 'AbortError') return new OobError(EXIT.failed, 'interrupted');
    const code = networkCode(e);
    if (code && (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER/.test(code))) {
      return new OobError(
        EXIT.unreachable,
        `cannot reach the idprov admin sidecar at ${this.conn.baseUrl}: its TLS certificate is not trusted [${code}] — run oob with NODE_EXTRA_CA_CERTS=<the CA or certificate PEM>`,
      );
    }
    if (code && UNREACHABLE.has(code)) {
      return new OobError(EXIT.unreachable, `cannot reach the idprov admin sidecar at ${this.conn.baseUrl} — is the server running? (--server) [${code}]`);
    }
    let inner: unknown = e;
    while ((inner as { cause?: unknown })?.cause) inner = (inner as { cause: unknown }).cause;
    return new OobError(EXIT.unreachable, `cannot reach the idprov admin sidecar at ${this.conn.baseUrl}: ${code ?? (inner as Error)?.message ?? String(e)} (--server)`);
  }

  async httpError(res: Response): Promise<OobError> {
    const text = await res.text().catch(() => '');
    let code: string | undefined;
    let message: string | undefined;
    try {
      const b = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
      if (b && typeof b.error === 'object' && b.error && typeof b.error.code === 'string') {
        code = b.error.code;
        message = typeof b.error.message === 'string' ? b.error.message : '';
      }
    } catch {
      /* not JSON */
    }
    if (code === undefined) {
      const kind = res.status >= 500 ? EXIT.server : res.status === 401 || res.status === 403 ? EXIT.auth : EXIT.server;
      return new OobError(kind, `unexpected answer from ${this.conn.baseUrl} (HTTP ${res.status} ${res.statusText}) — is --server the idprov admin sidecar?`, undefined, res.status);
    }
    if (res.status === 401 || res.status === 403) {
      const hint =
        res.status === 401
          ? `check the token (from ${this.conn.tokenFrom}); \`idprov token create --role admin\` mints a new one`
          : `the token (from ${this.conn.tokenFrom}) lacks the role this needs; use an admin token`;
      return new OobError(EXIT.auth, `the server refused the token: ${res.status} ${code}: ${message} — ${hint}`, code, res.status);
    }
    if (res.status >= 500) return new OobError(EXIT.server, `server error: ${res.status} ${code}: ${message}`, code, res.status);
    return new OobError(EXIT.failed, `${code}: ${message}`, code, res.status);
  }
}

/** Parse a JSON answer; anything else means we are not talking to the sidecar. */
export async function readJson(res: Response, url: string): Promise<unknown> {
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch {
    throw new OobError(EXIT.server, `unexpected answer from ${url} (HTTP ${res.status}, not JSON) — is --server the idprov admin sidecar?`);
  }
}
