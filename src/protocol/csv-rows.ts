/**
 * Incremental RFC 4180 CSV row splitter for allowlist uploads. Text is fed in pieces as it arrives;
 * each character is consumed once, whatever the chunking (a row left unfinished at the end of a piece
 * is carried as parser state, never re-scanned), and no row may be longer than `maxRowChars`, so
 * memory and CPU stay linear in the input and bounded per row. Pure: no I/O.
 *
 * Quoted fields may hold commas, doubled quotes and line breaks (CRLF, LF or CR). A line whose first
 * non-blank character is `#` is a comment (quotes in it open nothing). Unquoted cells are trimmed,
 * quoted ones kept as written.
 */

/** A complete row: its cells (undefined for a comment line) and the 1-based line it starts on. */
export type CsvRowSink = (cells: string[] | undefined, line: number) => void;

/** Why the splitter stopped: the rest of the input cannot be split into rows. */
export interface CsvFailure {
  line: number;
  message: string;
}

const LF = 10;
const CR = 13;
const QUOTE = 34;
const HASH = 35;
const COMMA = 44;

export class CsvRowSplitter {
  /** Characters consumed so far (each input character is consumed exactly once). */
  scanned = 0;
  /** Most characters of one unfinished row held at once. */
  maxBuffered = 0;
  /** Set when a row is longer than the limit; nothing after it is read. */
  failure: CsvFailure | undefined;
  /** Line of the next character. */
  private line = 1;
  private skipLF = false;
  // The row in progress (the slow path).
  private inRow = false;
  private rowLine = 1;
  private rowChars = 0;
  private cells: string[] = [];
  private cell = '';
  private quoted = false;
  private inQuotes = false;
  private quotePending = false;
  private comment = false;

  constructor(private readonly maxRowChars: number) {}

  /** Feed the next piece of text; `sink` gets every row it completes. */
  feed(text: string, sink: CsvRowSink): void {
    const n = text.length;
    let i = 0;
    // Per piece: the next LF at or after i (-1: none), and the end of a line that holds quotes or CRs
    // (the slow path takes it whole, so its text is looked at once).
    let nextLf = -2;
    let slowUntil = -1;
    while (i < n && !this.failure) {
      if (this.skipLF) {
        this.skipLF = false;
        if (text.charCodeAt(i) === LF) {
          i++;
          this.scanned++;
          continue;
        }
      }
      if (!this.inRow && i > slowUntil) {
        // Fast path: a whole line in this piece, no quote, no CR, not a comment: split it directly.
        if (nextLf !== -1 && nextLf < i) nextLf = text.indexOf('\n', i);
        if (nextLf >= 0 && nextLf - i < this.maxRowChars && text.charCodeAt(i) !== HASH) {
          const end = nextLf > i && text.charCodeAt(nextLf - 1) === CR ? nextLf - 1 : nextLf;
          const raw = text.slice(i, end);
          if (!raw.includes('"') && !raw.includes('\r')) {
            const cells = raw.split(',');
            for (let k = 0; k < cells.length; k++) cells[k] = cells[k]!.trim();
            const line = this.line++;
            this.scanned += nextLf + 1 - i;
            i = nextLf + 1;
            sink(cells[0]!.startsWith('#') ? undefined : cells, line);
            continue;
          }
          slowUntil = nextLf;
        }
      }
      i = this.slow(text, i, sink);
    }
  }

  /** End of the input: the last row, or the failure of an unterminated quoted field. */
  finish(sink: CsvRowSink): CsvFailure | undefined {
    if (this.failure || !this.inRow) return this.failure;
    if (this.comment) sink(undefined, this.rowLine);
    else if (this.inQuotes && !this.quotePending) return { line: this.rowLine, message: 'unterminated quoted field' };
    else {
      this.cells.push(this.quoted ? this.cell : this.cell.trim());
      sink(this.cells, this.rowLine);
    }
    this.inRow = false;
    return undefined;
  }

  /** One character at a time from `i` until the row in progress ends or the piece does. */
  private slow(text: string, i: number, sink: CsvRowSink): number {
    const n = text.length;
    if (!this.inRow) {
      this.inRow = true;
      this.rowLine = this.line;
      this.rowChars = 0;
      this.cells = [];
      this.cell = '';
      this.quoted = this.inQuotes = this.quotePending = this.comment = false;
    }
    for (; i < n; i++) {
      this.scanned++;
      if (++this.rowChars > this.maxRowChars) {
        this.failure = { line: this.rowLine, message: `row longer than ${this.maxRowChars} characters (is a line break or a closing quote missing?); nothing after it was read` };
        this.release();
        return n;
      }
      if (this.rowChars > this.maxBuffered) this.maxBuffered = this.rowChars;
      const c = text.charCodeAt(i);
      if (this.comment) {
        if (c === LF || c === CR) return this.endRow(undefined, c, i, sink);
        continue;
      }
      if (this.inQuotes) {
        if (this.quotePending) {
          this.quotePending = false;
          if (c === QUOTE) {
            this.cell += '"';
            continue;
          }
          this.inQuotes = false; // the quote closed the field; c is read unquoted below
        } else if (c === QUOTE) {
          this.quotePending = true;
          continue;
        } else {
          if (c === LF) this.line++;
          this.cell += text[i];
          continue;
        }
      }
      if (c === QUOTE && this.cell === '' && !this.quoted) this.inQuotes = this.quoted = true;
      else if (c === COMMA) {
        this.cells.push(this.quoted ? this.cell : this.cell.trim());
        this.cell = '';
        this.quoted = false;
      } else if (c === LF || c === CR) {
        this.cells.push(this.quoted ? this.cell : this.cell.trim());
        const cells = this.cells;
        return this.endRow(cells[0]!.startsWith('#') ? undefined : cells, c, i, sink);
      } else if (c === HASH && this.cells.length === 0 && !this.quoted && /^[ \t]*$/.test(this.cell)) this.comment = true;
      else this.cell += text[i];
    }
    return n;
  }

  private endRow(cells: string[] | undefined, c: number, i: number, sink: CsvRowSink): number {
    this.line++;
    if (c === CR) this.skipLF = true;
    const line = this.rowLine;
    this.release();
    sink(cells, line);
    return i + 1;
  }

  private release(): void {
    this.inRow = false;
    this.cells = [];
    this.cell = '';
  }
}
