/**
 * Structured logging (pino). Components take a {@link Logger} (a pino child) from the composition
 * root; tests pass {@link silentLogger}. Never log secrets, private keys, PSKs or OOB proofs.
 */
import { isatty } from 'node:tty';
import { pino, type DestinationStream, type Logger as PinoLogger } from 'pino';
import { prettyLine } from './log-pretty.ts';

export type Logger = PinoLogger;

/** Whether `format` gives human-readable lines on file descriptor `fd`. */
export function isPretty(format: string, fd: 1 | 2): boolean {
  return format === 'pretty' || (format === 'auto' && isatty(fd));
}

/**
 * A destination that writes each pino line as {@link prettyLine}, through pino's own file writer
 * (synchronous, as a terminal wants; it retries a full pipe instead of failing).
 */
function prettyDestination(fd: 1 | 2): DestinationStream {
  const colour = isatty(fd) && !process.env['NO_COLOR'];
  const out = pino.destination({ fd, sync: true });
  return {
    write(line: string): void {
      out.write(`${prettyLine(line, colour)}\n`);
    },
  };
}

/**
 * The root logger, level from config: on stdout (or stderr for CLI tools), JSON lines, or text for
 * people when `format` says so (`auto`: when the destination is a terminal).
 */
export function createLogger(level: string = 'info', destination: 1 | 2 = 1, format: string = 'auto'): Logger {
  const opts = { level, base: { svc: 'idprov' } };
  if (isPretty(format, destination)) return pino(opts, prettyDestination(destination));
  return pino(opts, pino.destination({ fd: destination, sync: false }));
}

/** A logger that drops everything, for tests. */
export const silentLogger: Logger = pino({ level: 'silent' });
