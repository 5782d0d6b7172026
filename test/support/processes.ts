/** Child processes for the end-to-end tests of the package, the walkthrough and the operator's kit. */
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';

/** Run a command to its end (bounded by `timeoutMs`), output as text. */
export function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number; uid?: number; gid?: number; input?: string } = {}): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, {
    encoding: 'utf8',
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    timeout: opts.timeoutMs ?? 60_000,
    ...(opts.input !== undefined ? { input: opts.input } : {}),
    ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.gid ?? opts.uid } : {}),
  });
}

/** A running `idprov serve` and what its "idprov listening" JSON log line said. */
export interface Served {
  coap: number;
  coaps: number;
  /** http://127.0.0.1:PORT of the admin sidecar. */
  admin: string;
  /** All stdout so far. */
  output(): string;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
}

/**
 * Start `cmd args` (an `idprov serve` with JSON logs on a pipe) and resolve once it logs that it
 * listens; reject with its output if it exits first or takes over `timeoutMs`.
 */
export function serve(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Served> {
  const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.stderr.on('data', (d) => (err += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`no "idprov listening" within ${opts.timeoutMs ?? 60_000} ms: ${err}${out}`));
    }, opts.timeoutMs ?? 60_000);
    child.stdout.on('data', (d) => {
      out += d;
      for (const line of out.split('\n')) {
        if (!line.includes('"idprov listening"')) continue;
        clearTimeout(timer);
        const rec = JSON.parse(line) as { coap: number; coaps: number; admin: string };
        resolve({
          coap: rec.coap,
          coaps: rec.coaps,
          admin: rec.admin,
          output: () => out,
          stop: async () => {
            if (child.exitCode === null) child.kill('SIGTERM');
            return exited;
          },
        });
        return;
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited ${code} before listening: ${err}${out}`));
    });
  });
}

/**
 * Run `cmd args` in its own process group until its stdout matches `re`, then stop the group with
 * SIGINT and resolve with the output; reject with it when `re` does not show within `timeoutMs`.
 */
export function outputUntil(cmd: string, args: string[], re: RegExp, opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<string> {
  const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  const stopGroup = () => {
    try {
      process.kill(-child.pid!, 'SIGINT');
    } catch {
      /* gone already */
    }
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stopGroup();
      reject(new Error(`no ${re} within ${opts.timeoutMs ?? 60_000} ms: ${out}`));
    }, opts.timeoutMs ?? 60_000);
    child.stdout.on('data', (d) => {
      out += d;
      if (re.test(out)) {
        clearTimeout(timer);
        stopGroup();
      }
    });
    child.stderr.on('data', (d) => (out += d));
    child.once('exit', () => {
      clearTimeout(timer);
      if (re.test(out)) resolve(out);
      else reject(new Error(`exited before ${re}: ${out}`));
    });
  });
}
