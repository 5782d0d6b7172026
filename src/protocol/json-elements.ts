/**
 * Incremental splitter of a JSON array into the texts of its top-level elements, for allowlist
 * uploads: text is fed in pieces as it arrives, each character is looked at once, and only the element
 * in progress is held (at most `maxElementChars`), so a 50 MB upload never sits in memory. The caller
 * parses each element with JSON.parse. The structure between elements (brackets, commas, white space)
 * is checked here; an element's own syntax by JSON.parse. Pure: no I/O.
 */

/** A complete element: its JSON text and the 1-based line it starts on. */
export type JsonElementSink = (text: string, line: number) => void;

/** Why the splitter stopped: the input is not a well-formed JSON array (or an element is too big). */
export interface JsonFailure {
  line: number;
  message: string;
}

type State = 'start' | 'first' | 'next' | 'element' | 'after' | 'done';

const TAB = 9;
const LF = 10;
const CR = 13;
const SPACE = 32;
const QUOTE = 34;
const COMMA = 44;
const BACKSLASH = 92;
const OPEN_BRACKET = 91;
const CLOSE_BRACKET = 93;
const OPEN_BRACE = 123;
const CLOSE_BRACE = 125;

const isSpace = (c: number): boolean => c === SPACE || c === LF || c === CR || c === TAB;

export class JsonArraySplitter {
  /** Characters consumed so far (each exactly once). */
  scanned = 0;
  /** Most characters of one unfinished element held at once (carried from earlier pieces). */
  maxBuffered = 0;
  failure: JsonFailure | undefined;
  private line = 1;
  private state: State = 'start';
  // The element in progress.
  private carry = '';
  private elementLine = 1;
  private elementChars = 0;
  private depth = 0;
  private inString = false;
  private escape = false;
  private scalar = false;

  constructor(
    private readonly maxElementChars: number,
    private readonly maxDepth = 32,
  ) {}

  /** Feed the next piece of text; `sink` gets every element it completes. */
  feed(text: string, sink: JsonElementSink): void {
    const n = text.length;
    let start = 0; // where the element in progress starts in this piece
    for (let i = 0; i < n && !this.failure; i++) {
      const c = text.charCodeAt(i);
      this.scanned++;
      if (this.state === 'element') {
        if (++this.elementChars > this.maxElementChars) {
          this.fail(this.elementLine, `JSON: entry longer than ${this.maxElementChars} characters; nothing after it was read`);
          return;
        }
        if (this.inString) {
          if (this.escape) this.escape = false;
          else if (c === BACKSLASH) this.escape = true;
          else if (c === QUOTE) {
            this.inString = false;
            if (this.depth === 0) this.complete(text, start, i + 1, sink);
          } else if (c === LF) this.line++;
          continue;
        }
        if (this.scalar && (isSpace(c) || c === COMMA || c === CLOSE_BRACKET)) {
          // A number or literal ends at the character after it; that character belongs to the array.
          this.complete(text, start, i, sink);
          this.scanned--;
          i--;
          continue;
        }
        if (c === QUOTE) this.inString = true;
        else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
          if (++this.depth > this.maxDepth) this.fail(this.elementLine, `JSON: entry nested deeper than ${this.maxDepth} levels`);
        } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
          if (--this.depth === 0 && !this.scalar) this.complete(text, start, i + 1, sink);
        } else if (c === LF) this.line++;
        continue;
      }
      if (c === LF) this.line++;
      if (isSpace(c)) continue;
      switch (this.state) {
        case 'start':
          if (c === OPEN_BRACKET) this.state = 'first';
          else this.fail(this.line, 'JSON: must be an array of objects');
          break;
        case 'first':
        case 'next':
          if (c === CLOSE_BRACKET && this.state === 'first') this.state = 'done';
          else if (c === CLOSE_BRACKET || c === COMMA) this.fail(this.line, `JSON: an entry is missing before "${String.fromCharCode(c)}"`);
          else {
            this.begin(c);
            start = i;
          }
          break;
        case 'after':
          if (c === COMMA) this.state = 'next';
          else if (c === CLOSE_BRACKET) this.state = 'done';
          else this.fail(this.line, 'JSON: expected "," or "]" after an entry');
          break;
        case 'done':
          this.fail(this.line, 'JSON: text after the closing "]"');
          break;
      }
    }
    if (this.state === 'element' && !this.failure) {
      this.carry += text.slice(start);
      if (this.carry.length > this.maxBuffered) this.maxBuffered = this.carry.length;
    }
  }

  /** End of the input: a failure unless the array was closed. */
  finish(): JsonFailure | undefined {
    if (!this.failure && this.state !== 'done') this.fail(this.line, this.state === 'start' ? 'JSON: empty file' : 'JSON: unexpected end of the file (the array is not closed)');
    return this.failure;
  }

  private begin(c: number): void {
    this.state = 'element';
    this.elementLine = this.line;
    this.elementChars = 1;
    this.carry = '';
    this.escape = false;
    this.inString = c === QUOTE;
    this.depth = c === OPEN_BRACE || c === OPEN_BRACKET ? 1 : 0;
    this.scalar = !this.inString && this.depth === 0;
  }

  private complete(text: string, start: number, end: number, sink: JsonElementSink): void {
    const element = this.carry + text.slice(start, end);
    this.carry = '';
    this.state = 'after';
    sink(element, this.elementLine);
  }

  private fail(line: number, message: string): void {
    this.failure = { line, message };
    this.carry = '';
  }
}
