/**
 * The one allowlist import path — uploads through the sidecar (`POST /api/v1/allowlist`), the
 * `allowlist` file given at startup, `idprov allowlist import` and a program's own list of entries
 * ({@link AllowlistImporter.importEntries}) alike — streamed: the text is read
 * chunk by chunk and every row is validated as it completes (AllowlistReader), so a million-row CSV
 * never sits in memory. Valid rows are staged (the store's {@link Store.stageAllow}: for SQLite and
 * PostgreSQL a temporary file, mode 0600, inside the data directory, deleted afterwards: it holds
 * secrets) and then written in ONE
 * bulk transaction ({@link Store.bulkUpsertAllow}) — all or nothing by default; `mode: 'valid'`
 * imports the valid rows and reports the rest. Staging keeps a slow upload from holding the write
 * transaction (and so every device's commit) open for its whole duration.
 *
 * The device path never waits for the parser: the reader costs linear time with a bounded buffer
 * (src/protocol/allowlist.ts), the body is parsed in pieces of at most {@link PIECE} characters, and
 * the importer yields to the event loop after each piece, so CoAP and DTLS datagrams queued meanwhile
 * are served between two pieces. An upload has at most {@link MAX_UPLOAD_ROWS} rows and
 * {@link MAX_UPLOAD_BYTES} bytes (the sidecar's body limit).
 */
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { AllowEntry, EventRecord } from '../domain.ts';
import { ProvError } from '../errors.ts';
import { AllowlistReader, entryProblem, type RowProblem } from '../protocol/allowlist.ts';
import type { AllowStaging, Store } from '../store/store.ts';
import type { Actor } from './admin.ts';

export interface ImportOptions {
  format: 'json' | 'auto';
  /** 'all': nothing is imported when any row is bad; 'valid': the valid rows are. */
  mode: 'all' | 'valid';
  actor: Actor;
  /** Called with the number of rows read so far (progress). */
  onProgress?: (rows: number) => void;
  /** Rows at most (default {@link MAX_UPLOAD_ROWS}); one more is a fatal error. A file may pass `Infinity`. */
  maxRows?: number;
  /** Where the rows came from (e.g. a file path), recorded in the audit event. */
  source?: string;
}

export interface ImportResult {
  /** True when rows were written. */
  imported: boolean;
  /** Rows read (valid and invalid). */
  rows: number;
  added: number;
  updated: number;
  invalid: number;
  /** The first 1000 bad rows, with line numbers. */
  errors: RowProblem[];
  warningCount: number;
  /** The first 1000 warnings. */
  warnings: RowProblem[];
}

const MAX_LISTED = 1000;
/** Characters parsed between two yields to the event loop. */
export const PIECE = 64 * 1024;
/** Rows of one upload at most: the design target, a million entries. */
export const MAX_UPLOAD_ROWS = 1_000_000;
/** Bytes of one upload at most: a million rows of 256 bytes (id, hex key, MAC, secret, type, expiry fit in ~230). */
export const MAX_UPLOAD_BYTES = 256 * 1024 * 1024;

export class AllowlistImporter {
  constructor(
    private readonly store: Store,
    private readonly now: () => number,
    private readonly minSecretLength: number,
  ) {}

  /**
   * Read, validate and stage `source` (a request body or file stream, any async iterable of pieces,
   * or a string), then write it.
   */
  async import(source: Readable | AsyncIterable<Buffer | string> | string, opts: ImportOptions): Promise<ImportResult> {
    const now = this.now();
    const reader = new AllowlistReader({ now, minSecretLength: this.minSecretLength }, MAX_LISTED, opts.maxRows ?? MAX_UPLOAD_ROWS);
    const area = await this.store.stageAllow();
    try {
      // Pass 1: read, validate, stage.
      const stage = (entries: AllowEntry[]): Promise<void> => area.write(entries);
      const decoder = new StringDecoder('utf8');
      let first = true;
      const chunks: AsyncIterable<Buffer | string> | string[] = typeof source === 'string' ? [source] : source;
      for await (const c of chunks) {
        // After a fatal error the rest of the body is only drained, not decoded or parsed.
        if (reader.fatal) continue;
        const text = typeof c === 'string' ? c : decoder.write(c);
        if (first && text.trim()) {
          first = false;
          if (opts.format === 'json' && !text.trimStart().startsWith('[')) throw new ProvError('malformed', 'a JSON allowlist must be an array');
        }
        for (let i = 0; i < text.length && !reader.fatal; i += PIECE) {
          await stage(reader.push(text.length <= PIECE ? text : text.slice(i, i + PIECE)));
          // Let the device path (and every other request) run between two pieces.
          await nextTurn();
        }
        opts.onProgress?.(reader.rows);
      }
      if (!reader.fatal) await stage(reader.push(decoder.end()));
      await stage(reader.end());

      const result: ImportResult = {
        imported: false,
        rows: reader.rows,
        added: 0,
        updated: 0,
        invalid: reader.errorCount,
        errors: reader.errors,
        warningCount: reader.warningCount,
        warnings: reader.warnings,
      };
      // A fatal error (over-long row, broken JSON, bad header, too many rows) left the file unread past
      // it: nothing is imported whatever the mode.
      if (reader.fatal || (reader.errorCount > 0 && opts.mode === 'all') || area.count === 0) return result;

      // Pass 2: one transaction from the staging file.
      const written = await this.write(area, now, { invalid: reader.errorCount, mode: opts.mode }, opts);
      result.imported = true;
      result.added = written.added;
      result.updated = written.updated;
      return result;
    } finally {
      await area.discard();
    }
  }

  /**
   * Import entries already in the domain's form (a program's own list: tests, tools, the spec's
   * exchange vectors) through the same staging and bulk write as a file, with the same
   * `admin.allowlist.import` event — all or nothing. @throws ProvError `malformed` for an entry over
   * the bounds of an allowlist row (nothing is written then).
   */
  async importEntries(entries: readonly AllowEntry[], opts: Pick<ImportOptions, 'actor' | 'source'>): Promise<{ added: number; updated: number }> {
    for (const e of entries) {
      const problem = entryProblem(e);
      if (problem) throw new ProvError('malformed', `allowlist entry ${JSON.stringify(e.id.slice(0, 80))}: ${problem}`);
    }
    const area = await this.store.stageAllow();
    try {
      await area.write(entries);
      return await this.write(area, this.now(), { invalid: 0, mode: 'all' }, opts);
    } finally {
      await area.discard();
    }
  }

  /** Writes what `area` staged with its audit event, in one transaction. */
  private async write(
    area: AllowStaging,
    now: number,
    counts: { invalid: number; mode: ImportOptions['mode'] },
    opts: Pick<ImportOptions, 'actor' | 'source'>,
  ): Promise<{ added: number; updated: number }> {
    const event: EventRecord = {
      at: now,
      kind: 'admin.allowlist.import',
      actor: opts.actor.by,
      detail: { rows: area.count, ...counts, ...(opts.source !== undefined ? { source: opts.source } : {}) },
    };
    if (opts.actor.source) event.source = opts.actor.source;
    const written = await this.store.bulkUpsertAllow(area, [{ kind: 'event', event }]);
    return { added: written.added, updated: written.rows - written.added };
  }
}
