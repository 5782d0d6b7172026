/**
 * Allowlist files (issue #2, README "Allowlist files"): a JSON array of objects or CSV with a header
 * row, fields `id`, `pk` (hex, or PEM SPKI), `mac` (`aa:bb:cc:dd:ee:ff`, EUI-64 too), `secret`, `type`
 * (0/1/2 or device/service/consumer), `expires` (ISO 8601 or epoch seconds). Pure: text in, entries or
 * per-row errors (with line numbers) out. The caller imports nothing when any row is bad.
 */
import { createPublicKey } from 'node:crypto';
import type { AllowEntry, ClientType } from '../domain.ts';
import { CsvRowSplitter } from './csv-rows.ts';
import { JsonArraySplitter } from './json-elements.ts';
import { DEVICE_ID_RULE, isValidDeviceId } from './messages.ts';

export interface RowProblem {
  /** 1-based line number in the file where the row starts. */
  line: number;
  id?: string;
  message: string;
}

export interface AllowlistParse {
  entries: AllowEntry[];
  errors: RowProblem[];
  warnings: RowProblem[];
}

export interface AllowlistOptions {
  /** `createdAt` of the entries. */
  now: number;
  /** Shortest accepted OOB secret (docs/spec/idprov-coap-v1.md §5 rule 4; default 12). */
  minSecretLength?: number;
  /** Secrets shorter than this get a warning (default 16). */
  warnSecretLength?: number;
}

const TYPES: Record<string, ClientType> = { '0': 0, '1': 1, '2': 2, device: 0, service: 1, consumer: 2 };
const FIELDS = new Set(['id', 'pk', 'mac', 'secret', 'type', 'expires']);

/** Parse a hex or PEM (SPKI) Ed25519 public key to its 32 raw bytes. */
export function parsePublicKey(text: string): Uint8Array {
  if (text.length > ALLOWLIST_LIMITS.pkChars) throw new Error(`pk: longer than ${ALLOWLIST_LIMITS.pkChars} characters; must be 64 hex digits (32 bytes) or a PEM public key`);
  const t = text.trim();
  if (t.startsWith('-----BEGIN')) {
    // createPublicKey would also take a PRIVATE KEY block and derive its public key; the format is SPKI.
    if (!t.startsWith('-----BEGIN PUBLIC KEY-----')) throw new Error('pk: a PEM key must be a PUBLIC KEY (SPKI) block');
    let k: ReturnType<typeof createPublicKey>;
    try {
      k = createPublicKey(t);
    } catch {
      throw new Error('pk: not a valid PEM public key');
    }
    if (k.asymmetricKeyType !== 'ed25519') throw new Error(`pk: PEM key is ${k.asymmetricKeyType}, not Ed25519`);
    return k.export({ format: 'der', type: 'spki' }).subarray(12);
  }
  const h = t.replace(/^0x/i, '');
  if (!/^[0-9a-fA-F]{64}$/.test(h)) throw new Error('pk: must be 64 hex digits (32 bytes) or a PEM public key');
  return Buffer.from(h, 'hex');
}

/** Parse `aa:bb:cc:dd:ee:ff` (or `-` / no separators; 6 or 8 bytes). */
export function parseMac(text: string): Uint8Array {
  const t = text.trim();
  if (t.length > ALLOWLIST_LIMITS.macChars) throw new Error(`mac: longer than ${ALLOWLIST_LIMITS.macChars} characters; must be 6 or 8 bytes like aa:bb:cc:dd:ee:ff`);
  const h = t.replace(/[:-]/g, '');
  if (!/^([0-9a-fA-F]{12}|[0-9a-fA-F]{16})$/.test(h)) throw new Error('mac: must be 6 or 8 bytes like aa:bb:cc:dd:ee:ff');
  return Buffer.from(h, 'hex');
}

/** Format a MAC as `aa:bb:cc:dd:ee:ff`. */
export function formatMac(mac: Uint8Array): string {
  return Buffer.from(mac).toString('hex').replace(/(..)(?!$)/g, '$1:');
}

/** `2030-01-01` (UTC midnight) or `2030-01-01T12:00[:00[.000]]` with `Z` or `±hh:mm`. */
const ISO_8601 = /^(\d{4})-(\d{2})-(\d{2})(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2}))?$/;

function parseExpires(v: unknown): number {
  if (typeof v === 'number' && Number.isInteger(v) && v > 0) return v;
  if (typeof v === 'string') {
    const s = v.trim();
    if (s.length > ALLOWLIST_LIMITS.expiresChars) throw new Error(`expires: longer than ${ALLOWLIST_LIMITS.expiresChars} characters`);
    if (/^\d+$/.test(s)) return Number(s);
    // Only ISO 8601 with a zone: Date.parse alone would read "2030-01-01T00:00" and "Jan 1 2030" in the
    // server's local time zone and roll "2030-02-31" over into March.
    const m = ISO_8601.exec(s);
    if (m) {
      const [month, date] = [Number(m[2]), Number(m[3])];
      const day = new Date(Date.UTC(Number(m[1]), month - 1, date));
      const ms = Date.parse(s);
      if (!Number.isNaN(ms) && day.getUTCMonth() === month - 1 && day.getUTCDate() === date) return Math.floor(ms / 1000);
    } else if (/^\d{4}-\d{2}-\d{2}T[\d:.]+$/.test(s)) {
      throw new Error('expires: give the time zone (Z or ±hh:mm) of a date and time');
    }
  }
  throw new Error('expires: must be an ISO 8601 date (2030-01-01, 2030-01-01T12:00:00Z) or epoch seconds');
}

/**
 * What is wrong with an entry made elsewhere than from a file (an API caller, an old database), or
 * undefined: the bounds a parsed row obeys.
 */
export function entryProblem(e: AllowEntry): string | undefined {
  if (!isValidDeviceId(e.id)) return `id: ${DEVICE_ID_RULE}`;
  if (e.pk !== undefined && e.pk.length !== 32) return 'pk: must be 32 bytes';
  if (e.mac !== undefined && e.mac.length !== 6 && e.mac.length !== 8) return 'mac: must be 6 or 8 bytes';
  if (e.secret !== undefined && Buffer.byteLength(e.secret, 'utf8') > ALLOWLIST_LIMITS.secretBytes) return `secret: longer than ${ALLOWLIST_LIMITS.secretBytes} bytes (UTF-8)`;
  return undefined;
}

/** The DTLS pre-shared key of an entry's secret, or undefined when it has none or one over the bound. */
export function pskOf(secret: string | undefined): Buffer | undefined {
  if (secret === undefined || secret === '') return undefined;
  const psk = Buffer.from(secret, 'utf8');
  return psk.length <= ALLOWLIST_LIMITS.secretBytes ? psk : undefined;
}

/** Validate one row (fields as strings or JSON values) into an entry. Throws with a message. */
function toEntry(row: Record<string, unknown>, opts: Required<AllowlistOptions>, warn: (m: string) => void): AllowEntry {
  const str = (k: string): string | undefined => {
    const v = row[k];
    if (v === undefined || v === null || v === '') return undefined;
    if (typeof v === 'number' && (k === 'type' || k === 'expires')) return String(v);
    if (typeof v !== 'string') throw new Error(`${k}: must be a string`);
    return v;
  };
  const id = str('id')?.trim();
  if (!id) throw new Error('id: missing');
  if (!isValidDeviceId(id)) throw new Error(`id: ${DEVICE_ID_RULE}`);
  const e: AllowEntry = { id, type: 0, createdAt: opts.now };
  const pk = str('pk');
  if (pk) e.pk = parsePublicKey(pk);
  const mac = str('mac');
  if (mac) e.mac = parseMac(mac);
  const secret = str('secret');
  if (secret !== undefined) {
    const bytes = Buffer.byteLength(secret, 'utf8');
    if (bytes > ALLOWLIST_LIMITS.secretBytes) throw new Error(`secret: longer than ${ALLOWLIST_LIMITS.secretBytes} bytes (UTF-8), the longest DTLS pre-shared key`);
    const n = [...secret].length;
    if (n < opts.minSecretLength) throw new Error(`secret: shorter than ${opts.minSecretLength} characters`);
    if (n < opts.warnSecretLength) warn(`secret: shorter than ${opts.warnSecretLength} characters is guessable offline from a captured proof; give the entry an expiry`);
    e.secret = secret;
  }
  const type = str('type');
  if (type !== undefined) {
    if (type.length > ALLOWLIST_LIMITS.typeChars) throw new Error('type: must be 0/1/2 or device/service/consumer');
    const t = TYPES[type.trim().toLowerCase()];
    if (t === undefined) throw new Error('type: must be 0/1/2 or device/service/consumer');
    e.type = t;
  }
  const expires = row['expires'];
  if (expires !== undefined && expires !== null && expires !== '') e.expires = parseExpires(expires);
  if (!e.pk && !e.mac && e.secret === undefined) throw new Error('row needs at least one of pk, mac, secret');
  for (const k of Object.keys(row)) if (!FIELDS.has(k)) warn(`unknown field "${k}" ignored`);
  return e;
}

/**
 * Validate one allowlist row given on its own (an API caller's JSON object, `PUT /api/v1/allowlist/{id}`)
 * with the rules of a file's row: the same fields, bounds and messages. Returns the entry and its
 * warnings. @throws Error with the row's first problem.
 */
export function parseAllowRow(row: Record<string, unknown>, options: AllowlistOptions): { entry: AllowEntry; warnings: string[] } {
  const warnings: string[] = [];
  const entry = toEntry(row, { minSecretLength: 12, warnSecretLength: 16, ...options }, (m) => warnings.push(m));
  return { entry, warnings };
}

/** Upper bounds of allowlist files and fields (README "Allowlist files"). */
export const ALLOWLIST_LIMITS = {
  /** Characters of one CSV row (all its lines) or one JSON array element. */
  rowChars: 16_384,
  /** Characters of `pk`: 64 hex digits, or a PEM SPKI block (113 characters) with some slack. */
  pkChars: 256,
  /** Characters of `mac`: 8 bytes with separators. */
  macChars: 23,
  /** UTF-8 bytes of `secret`: the longest DTLS PSK every stack must take (RFC 4279 §5.3). */
  secretBytes: 64,
  /** Characters of `type` and of `expires`. */
  typeChars: 16,
  expiresChars: 40,
} as const;

/**
 * Incremental allowlist reader: feed text with {@link AllowlistReader.push} as it arrives, then call
 * {@link AllowlistReader.end}. CSV rows and JSON array elements are validated and returned as soon as
 * they are complete; each character is looked at a bounded number of times whatever the chunking, and
 * only the row in progress is held (at most {@link ALLOWLIST_LIMITS}.rowChars), so neither a
 * million-row upload nor a 10 MB line sits in memory or costs more than linear time. Errors and
 * warnings carry the 1-based line where the row starts; only the first `maxListed` are kept, all are
 * counted. A structural error (an over-long row, broken JSON, a bad CSV header, too many rows) stops
 * the reading: {@link AllowlistReader.fatal} is set and nothing of the file may be imported.
 */
export class AllowlistReader {
  readonly errors: RowProblem[] = [];
  readonly warnings: RowProblem[] = [];
  errorCount = 0;
  warningCount = 0;
  /** Rows read so far (valid and invalid). */
  rows = 0;
  /** True once a structural error stopped the reading: import nothing. */
  fatal = false;
  private readonly opts: Required<AllowlistOptions>;
  private readonly seen = new Map<string, number>();
  private format: 'csv' | 'json' | undefined;
  private csv: CsvRowSplitter | undefined;
  private json: JsonArraySplitter | undefined;
  private header: string[] | undefined;
  private started = false;
  private out: AllowEntry[] = [];

  constructor(
    options: AllowlistOptions,
    private readonly maxListed = Number.POSITIVE_INFINITY,
    /** Rows (valid and invalid) at most; one more is a fatal error. */
    private readonly maxRows = Number.POSITIVE_INFINITY,
  ) {
    this.opts = { minSecretLength: 12, warnSecretLength: 16, ...options };
    this.csv = new CsvRowSplitter(ALLOWLIST_LIMITS.rowChars);
    this.json = new JsonArraySplitter(ALLOWLIST_LIMITS.rowChars);
  }

  /** Characters consumed so far (each character of the input once, until a fatal error). */
  get scanned(): number {
    return Math.max(this.csv?.scanned ?? 0, this.json?.scanned ?? 0);
  }

  /** Most characters of one unfinished row held between two pieces of input. */
  get maxBuffered(): number {
    return Math.max(this.csv?.maxBuffered ?? 0, this.json?.maxBuffered ?? 0);
  }

  private problem(list: 'errors' | 'warnings', p: RowProblem): void {
    if (list === 'errors') this.errorCount++;
    else this.warningCount++;
    if (this[list].length < this.maxListed) this[list].push(p);
  }

  /** The first structural error stops the reading; nothing after it is reported, however the text was split. */
  private stop(p: RowProblem): void {
    if (this.fatal) return;
    this.problem('errors', p);
    this.fatal = true;
  }

  private add(line: number, row: Record<string, unknown>): void {
    if (++this.rows > this.maxRows) {
      this.stop({ line, message: `more than ${this.maxRows} rows; split the file (imports are upserts)` });
      return;
    }
    const id = typeof row['id'] === 'string' ? row['id'].trim().slice(0, 80) : undefined;
    try {
      const e = toEntry(row, this.opts, (message) => this.problem('warnings', { line, ...(id ? { id } : {}), message }));
      const prev = this.seen.get(e.id);
      if (prev !== undefined) throw new Error(`id: duplicate of line ${prev}`);
      // A fresh copy of the id: a substring would keep its whole upload chunk alive (V8 sliced strings).
      this.seen.set(Buffer.from(e.id, 'utf8').toString('utf8'), line);
      this.out.push(e);
    } catch (err) {
      this.problem('errors', { line, ...(id ? { id } : {}), message: (err as Error).message });
    }
  }

  private readonly csvRow = (cells: string[] | undefined, line: number): void => {
    if (this.fatal || !cells || cells.every((c) => c === '')) return; // comment, blank line, or an empty spreadsheet row (",,,,,")
    if (!this.header) {
      const header = cells.map((c) => c.trim().toLowerCase());
      if (!header.includes('id')) this.stop({ line, message: 'CSV header must name the columns (id, pk, mac, secret, type, expires)' });
      else this.header = header;
      return;
    }
    if (cells.length > this.header.length) {
      if (++this.rows > this.maxRows) this.stop({ line, message: `more than ${this.maxRows} rows; split the file (imports are upserts)` });
      else this.problem('errors', { line, message: `row has ${cells.length} fields, header has ${this.header.length}` });
      return;
    }
    const row: Record<string, unknown> = {};
    this.header.forEach((h, k) => {
      if (cells[k] !== undefined && cells[k] !== '') row[h] = cells[k];
    });
    this.add(line, row);
  };

  private readonly jsonElement = (text: string, line: number): void => {
    if (this.fatal) return;
    let row: unknown;
    try {
      row = JSON.parse(text);
    } catch (e) {
      this.stop({ line, message: `JSON: ${(e as Error).message}` });
      return;
    }
    if (row === null || typeof row !== 'object' || Array.isArray(row)) {
      if (++this.rows > this.maxRows) this.stop({ line, message: `more than ${this.maxRows} rows; split the file (imports are upserts)` });
      else this.problem('errors', { line, message: 'entry must be an object' });
    } else this.add(line, row as Record<string, unknown>);
  };

  private take(): AllowEntry[] {
    const out = this.out;
    this.out = [];
    return out;
  }

  /** Feed the next piece of the file; returns the entries completed by it. */
  push(chunk: string): AllowEntry[] {
    if (this.fatal) return [];
    if (!this.started) {
      chunk = chunk.replace(/^\uFEFF/, '');
      this.started = chunk.length > 0;
    }
    if (this.format === undefined) {
      // Until the first character that is not white space, feed both splitters (white space costs
      // them nothing); then keep the one that fits.
      const first = /\S/.exec(chunk);
      if (first) {
        this.format = first[0] === '[' ? 'json' : 'csv';
        if (this.format === 'json') this.csv = undefined;
        else this.json = undefined;
      } else this.json!.feed(chunk, this.jsonElement);
    }
    if (this.format !== 'json') {
      this.csv!.feed(chunk, this.csvRow);
      if (this.csv!.failure) this.stop(this.csv!.failure);
    } else {
      this.json!.feed(chunk, this.jsonElement);
      if (this.json!.failure) this.stop(this.json!.failure);
    }
    return this.take();
  }

  /** End of the file; returns the last entries. */
  end(): AllowEntry[] {
    if (this.fatal) return this.take();
    if (this.format === 'json') {
      const f = this.json!.finish();
      if (f) this.stop(f);
    } else {
      const f = this.csv!.finish(this.csvRow);
      if (f) this.problem('errors', f);
      if (!this.header && !this.fatal) this.problem('errors', { line: 1, message: 'empty file' });
    }
    return this.take();
  }
}

/** Parse a whole allowlist file (JSON array or CSV), detecting the format from its first character. */
export function parseAllowlist(text: string, options: AllowlistOptions): AllowlistParse {
  const r = new AllowlistReader(options);
  const entries = r.push(text);
  entries.push(...r.end());
  // A structural error leaves the file unread past it: nothing of it counts.
  return { entries: r.fatal ? [] : entries, errors: r.errors, warnings: r.warnings };
}
