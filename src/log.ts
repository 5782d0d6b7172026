/**
 * Structured logging (pino). Components take a {@link Logger} (a pino child) from the composition
 * root; tests pass {@link silentLogger}. Never log secrets, private keys, PSKs or OOB proofs.
 */
import { pino, type Logger as PinoLogger } from 'pino';

export type Logger = PinoLogger;

/** The root logger: JSON lines on stdout (or stderr for CLI tools), level from config. */
export function createLogger(level: string = 'info', destination: 1 | 2 = 1): Logger {
  return pino({ level, base: { svc: 'idprov' } }, pino.destination({ fd: destination, sync: false }));
}

/** A logger that drops everything, for tests. */
export const silentLogger: Logger = pino({ level: 'silent' });
