/**
 * `<dataDir>/idprov.pid`: written by `idprov serve` once it listens, removed when it stops, so that
 * `idprov restore` can refuse to overwrite a database a running server holds.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const pidFile = (dataDir: string): string => join(dataDir, 'idprov.pid');

/** Record this process as the server of `dataDir`. */
export function writePidFile(dataDir: string): void {
  writeFileSync(pidFile(dataDir), `${process.pid}\n`, { mode: 0o600 });
}

/** Remove the record, if it is this process's. */
export function removePidFile(dataDir: string): void {
  if (runningServer(dataDir) === process.pid) rmSync(pidFile(dataDir), { force: true });
}

/** The pid of a live server of `dataDir`, or undefined (no file, or its process is gone). */
export function runningServer(dataDir: string): number | undefined {
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile(dataDir), 'utf8').trim());
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM' ? pid : undefined;
  }
}
