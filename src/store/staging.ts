/**
 * The SQL stores' {@link AllowStaging}: a temporary file `<dir>/.import-XXXX/rows.ndjson` (the
 * directory mode 0700, the file 0600: the entries hold out-of-band secrets) with one {@link AllowRow}
 * per line, deleted by `discard`. `dir` is the data directory, so the file is as private as the
 * database. The store reads it back as JSON batches — the lines joined, no per-row work in JavaScript
 * — for its bulk statement (SQLite `jsonb_each`, PostgreSQL `json_array_elements`).
 */
import { once } from 'node:events';
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { AllowEntry } from '../domain.ts';
import { ProvError } from '../errors.ts';
import { allowRow, type AllowRow } from './rows.ts';
import type { AllowStaging } from './store.ts';

/** Rows per JSON batch a bulk import sends as one statement. */
export const BULK_BATCH = 5000;

export class FileStaging implements AllowStaging {
  count = 0;
  private out: WriteStream | undefined;
  private readonly file: string;

  private constructor(private readonly dir: string) {
    this.file = join(dir, 'rows.ndjson');
  }

  /** A new, empty staging file under `dir`. */
  static async create(dir: string): Promise<FileStaging> {
    return new FileStaging(await mkdtemp(join(dir, '.import-')));
  }

  /** `staged` as a FileStaging, or `internal` when another store made it. */
  static of(staged: AllowStaging): FileStaging {
    if (!(staged instanceof FileStaging)) throw new ProvError('internal', 'bulk import: the staging area was made by another store');
    return staged;
  }

  async write(entries: readonly AllowEntry[]): Promise<void> {
    if (entries.length === 0) return;
    this.out ??= createWriteStream(this.file, { mode: 0o600 });
    let text = '';
    for (const e of entries) text += `${JSON.stringify(allowRow(e))}\n`;
    this.count += entries.length;
    if (!this.out.write(text)) await once(this.out, 'drain');
  }

  private async close(): Promise<void> {
    const out = this.out;
    if (!out || out.closed) return;
    out.end();
    await once(out, 'close');
  }

  /** Every row staged, in order, as the JSON text of arrays of at most `size` {@link AllowRow}s. */
  async *jsonBatches(size = BULK_BATCH): AsyncGenerator<string> {
    await this.close();
    if (!this.out) return;
    let batch: string[] = [];
    for await (const line of createInterface({ input: createReadStream(this.file), crlfDelay: Infinity })) {
      if (!line) continue;
      batch.push(line);
      if (batch.length >= size) {
        yield `[${batch.join(',')}]`;
        batch = [];
      }
    }
    if (batch.length) yield `[${batch.join(',')}]`;
  }

  async discard(): Promise<void> {
    await this.close().catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true });
  }
}

