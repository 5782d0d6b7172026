/**
 * Allowlist files (issue #2, README "Allowlist files"): a JSON array of objects or CSV with a header
 * row, fields `id`, `pk` (hex, or PEM SPKI), `mac` (`aa:bb:cc:dd:ee:ff`, EUI-64 too), `secret`, `type`
 * (0/1/2 or device/service/consumer), `expires` (ISO 8601 or epoch seconds). Pure: text in, entries or
 * per-row errors (with line numbers) out. The caller imports nothing when any row is bad.
 */
import { createPublicKey } from 'node:crypto';
import type { AllowEntry, ClientType } from '../domain.ts';
import { isValidDeviceId } from './messages.ts';

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
  /** Shortest accepted OOB secret (PROTOCOL.md §5 rule 4; default 12). */
  minSecretLength?: number;
  /** Secrets shorter than this get a warning (default 16). */
  warnSecretLength?: number;
}

const TYPES: Record<string, ClientType> = { '0': 0, '1': 1, '2': 2, device: 0, service: 1, consumer: 2 };
const FIELDS = new Set(['id', 'pk', 'mac', 'secret', 'type', 'expires']);

/** Parse a hex or PEM (SPKI) Ed25519 public key to its 32 raw bytes. */
export function parsePublicKey(text: string): Uint8Array {
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
  const h = text.trim().replace(/[:-]/g, '');
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
  if (!isValidDeviceId(id)) throw new Error('id: must be 1..64 characters of [A-Za-z0-9._:-]');
  const e: AllowEntry = { id, type: 0, createdAt: opts.now };
  const pk = str('pk');
  if (pk) e.pk = parsePublicKey(pk);
  const mac = str('mac');
  if (mac) e.mac = parseMac(mac);
  const secret = str('secret');
  if (secret !== undefined) {
    const n = [...secret].length;
    if (n < opts.minSecretLength) throw new Error(`secret: shorter than ${opts.minSecretLength} characters`);
    if (n < opts.warnSecretLength) warn(`secret: shorter than ${opts.warnSecretLength} characters is guessable offline from a captured proof; give the entry an expiry`);
    e.secret = secret;
  }
  const type = str('type');
  if (type !== undefined) {
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

type RowScan = { cells: string[] | undefined; next: number; lines: number } | 'incomplete' | { error: string; lines: number };

/**
 * RFC 4180 CSV: scan one row of `text` from offset `i`. Quoted fields may hold commas, quotes ("")
 * and newlines. Returns the row's cells (undefined for a comment line), the offset after it and the
 * number of line breaks it spans; 'incomplete' when the row may continue past the end of `text` and
 * more input may follow (`final` false).
 */
function scanCsvRow(text: string, i: number, final: boolean): RowScan {
  const n = text.length;
  // Fast path: a row with no quote and no comment ends at the next line break; split it directly.
  const nl = text.indexOf('\n', i);
  if (nl >= 0 && text.charCodeAt(i) !== 35 /* # */) {
    const end = nl > i && text.charCodeAt(nl - 1) === 13 /* \r */ ? nl - 1 : nl;
    const raw = text.slice(i, end);
    if (!raw.includes('"') && !raw.includes('\r')) {
      {
        const cells = raw.split(',');
        for (let k = 0; k < cells.length; k++) cells[k] = cells[k]!.trim();
        if (cells[0]!.trimStart().startsWith('#')) return { cells: undefined, next: nl + 1, lines: 1 };
        return { cells, next: nl + 1, lines: 1 };
      }
    }
  }
  // A comment line is skipped before quotes are looked at, so a `"` in a comment opens no field.
  let j = i;
  while (text[j] === ' ' || text[j] === '\t') j++;
  if (text[j] === '#') {
    while (j < n && text[j] !== '\n' && text[j] !== '\r') j++;
    if (j >= n && !final) return 'incomplete';
    if (text[j] === '\r' && j + 1 >= n && !final) return 'incomplete';
    return { cells: undefined, next: text[j] === '\r' && text[j + 1] === '\n' ? j + 2 : j + 1, lines: 1 };
  }
  const cells: string[] = [];
  let cell = '';
  let quoted = false;
  let inQuotes = false;
  let lines = 0;
  for (; i < n; i++) {
    const c = text[i]!;
    if (inQuotes) {
      if (c === '"') {
        if (i + 1 >= n && !final) return 'incomplete';
        if (text[i + 1] === '"') {
          cell += '"';
          i++;
        } else inQuotes = false;
      } else {
        if (c === '\n') lines++;
        cell += c;
      }
    } else if (c === '"' && cell === '' && !quoted) {
      inQuotes = quoted = true;
    } else if (c === ',') {
      cells.push(quoted ? cell : cell.trim());
      cell = '';
      quoted = false;
    } else if (c === '\n' || c === '\r') {
      if (c === '\r') {
        if (i + 1 >= n && !final) return 'incomplete';
        if (text[i + 1] === '\n') i++;
      }
      cells.push(quoted ? cell : cell.trim());
      return { cells, next: i + 1, lines: lines + 1 };
    } else cell += c;
  }
  if (!final) return 'incomplete';
  if (inQuotes) return { error: 'unterminated quoted field', lines };
  cells.push(quoted ? cell : cell.trim());
  return { cells, next: n, lines };
}

/** Start lines of the top-level elements of a JSON array (for error messages). */
function jsonElementLines(text: string): number[] {
  const lines: number[] = [];
  let depth = 0;
  let line = 1;
  let inStr = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '\n') line++;
    if (inStr) {
      if (c === '\\') i++;
      else if (c === '"') inStr = false;
      continue;
    }
    if (c === '"') {
      if (depth === 1) lines.push(line);
      inStr = true;
    } else if (c === '{' || c === '[') {
      if (depth === 1) lines.push(line);
      depth++;
    } else if (c === '}' || c === ']') depth--;
    else if (depth === 1 && /[-0-9tfn]/.test(c!)) {
      lines.push(line);
      while (i + 1 < text.length && /[^,\]\s]/.test(text[i + 1]!)) i++;
    }
  }
  return lines;
}

/**
 * Incremental allowlist reader: feed text with {@link AllowlistReader.push} as it arrives (CSV rows
 * are validated and returned as soon as they are complete, so a million-row upload never sits in
 * memory), then call {@link AllowlistReader.end}. JSON arrays are buffered and parsed at the end.
 * Errors and warnings carry the 1-based line where the row starts; only the first `maxListed` are
 * kept, all are counted.
 */
export class AllowlistReader {
  readonly errors: RowProblem[] = [];
  readonly warnings: RowProblem[] = [];
  errorCount = 0;
  warningCount = 0;
  /** Rows read so far (valid and invalid). */
  rows = 0;
  private readonly opts: Required<AllowlistOptions>;
  private readonly seen = new Map<string, number>();
  private format: 'csv' | 'json' | undefined;
  private buf = '';
  private line = 1;
  private header: string[] | undefined;
  private headerBad = false;
  private started = false;

  constructor(
    options: AllowlistOptions,
    private readonly maxListed = Number.POSITIVE_INFINITY,
  ) {
    this.opts = { minSecretLength: 12, warnSecretLength: 16, ...options };
  }

  private problem(list: 'errors' | 'warnings', p: RowProblem): void {
    if (list === 'errors') this.errorCount++;
    else this.warningCount++;
    if (this[list].length < this.maxListed) this[list].push(p);
  }

  private add(line: number, row: Record<string, unknown>, out: AllowEntry[]): void {
    this.rows++;
    const id = typeof row['id'] === 'string' ? row['id'].trim() : undefined;
    try {
      const e = toEntry(row, this.opts, (message) => this.problem('warnings', { line, ...(id ? { id } : {}), message }));
      const prev = this.seen.get(e.id);
      if (prev !== undefined) throw new Error(`id: duplicate of line ${prev}`);
      // A fresh copy of the id: a substring would keep its whole upload chunk alive (V8 sliced strings).
      this.seen.set(Buffer.from(e.id, 'utf8').toString('utf8'), line);
      out.push(e);
    } catch (err) {
      this.problem('errors', { line, ...(id ? { id } : {}), message: (err as Error).message });
    }
  }

  /** Feed the next piece of the file; returns the entries completed by it. */
  push(chunk: string): AllowEntry[] {
    if (!this.started) {
      chunk = chunk.replace(/^\uFEFF/, '');
      this.started = chunk.length > 0;
    }
    this.buf += chunk;
    if (this.format === undefined) {
      const first = /\S/.exec(this.buf);
      if (!first) return [];
      this.format = first[0] === '[' ? 'json' : 'csv';
    }
    return this.format === 'csv' ? this.scan(false) : [];
  }

  /** End of the file; returns the last entries. */
  end(): AllowEntry[] {
    const out: AllowEntry[] = [];
    if (this.format === 'json') this.parseJson(out);
    else {
      out.push(...this.scan(true));
      if (!this.header && !this.headerBad) this.problem('errors', { line: 1, message: 'empty file' });
    }
    this.buf = '';
    return out;
  }

  private scan(final: boolean): AllowEntry[] {
    const out: AllowEntry[] = [];
    const text = this.buf;
    let i = 0;
    while (i < text.length && !this.headerBad) {
      const r = scanCsvRow(text, i, final);
      if (r === 'incomplete') break;
      const line = this.line;
      this.line += r.lines;
      if ('error' in r) {
        this.problem('errors', { line, message: r.error });
        i = text.length;
        break;
      }
      i = r.next;
      const cells = r.cells;
      if (!cells || cells.every((c) => c === '')) continue; // comment, blank line, or an empty spreadsheet row (",,,,,")
      if (cells[0]!.startsWith('#')) continue; // comment line
      if (!this.header) {
        const header = cells.map((c) => c.trim().toLowerCase());
        if (!header.includes('id')) {
          this.problem('errors', { line, message: 'CSV header must name the columns (id, pk, mac, secret, type, expires)' });
          this.headerBad = true;
          break;
        }
        this.header = header;
        continue;
      }
      if (cells.length > this.header.length) {
        this.rows++;
        this.problem('errors', { line, message: `row has ${cells.length} fields, header has ${this.header.length}` });
        continue;
      }
      const row: Record<string, unknown> = {};
      this.header.forEach((h, k) => {
        if (cells[k] !== undefined && cells[k] !== '') row[h] = cells[k];
      });
      this.add(line, row, out);
    }
    this.buf = this.headerBad ? '' : text.slice(i);
    return out;
  }

  private parseJson(out: AllowEntry[]): void {
    const body = this.buf;
    let arr: unknown;
    try {
      arr = JSON.parse(body);
    } catch (e) {
      this.problem('errors', { line: 1, message: `JSON: ${(e as Error).message}` });
      return;
    }
    if (!Array.isArray(arr)) {
      this.problem('errors', { line: 1, message: 'JSON: must be an array of objects' });
      return;
    }
    const lines = jsonElementLines(body);
    arr.forEach((row: unknown, k) => {
      const line = lines[k] ?? 1;
      if (row === null || typeof row !== 'object' || Array.isArray(row)) {
        this.rows++;
        this.problem('errors', { line, message: 'entry must be an object' });
      } else this.add(line, row as Record<string, unknown>, out);
    });
  }
}

/** Parse a whole allowlist file (JSON array or CSV), detecting the format from its first character. */
export function parseAllowlist(text: string, options: AllowlistOptions): AllowlistParse {
  const r = new AllowlistReader(options);
  const entries = r.push(text);
  entries.push(...r.end());
  return { entries, errors: r.errors, warnings: r.warnings };
}
