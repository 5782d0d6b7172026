/**
 * The real server (test/support/server-child.ts) in a child process, driven over stdin and killable
 * with SIGKILL: shared by the crash-restart tests and the C device library's end-to-end tests.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createInterface, type Interface } from 'node:readline';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CHILD = fileURLToPath(new URL('./server-child.ts', import.meta.url));

/** The real server in a child process, driven over stdin, killable with SIGKILL. */
export class ServerChild {
  private lines: Interface;
  private queue: Array<(l: Record<string, unknown>) => void> = [];
  private constructor(readonly proc: ChildProcessWithoutNullStreams) {
    this.lines = createInterface({ input: proc.stdout });
    this.lines.on('line', (l) => this.queue.shift()?.(JSON.parse(l)));
  }
  port = 0;

  /** Every child started, so that a failing test leaves no server behind. */
  static readonly all = new Set<ServerChild>();

  static async start(flags: Record<string, unknown>): Promise<ServerChild> {
    const proc = spawn(process.execPath, ['--import', 'tsx', CHILD, JSON.stringify(flags)], { stdio: ['pipe', 'pipe', 'pipe'], cwd: ROOT });
    let stderr = '';
    proc.stderr.on('data', (d) => (stderr += d));
    const c = new ServerChild(proc);
    ServerChild.all.add(c);
    proc.once('exit', () => ServerChild.all.delete(c));
    const ready = await Promise.race([
      c.next(),
      new Promise<never>((_, rej) => proc.once('exit', (code) => rej(new Error(`server exited ${code}: ${stderr}`)))),
    ]);
    c.port = ready['port'] as number;
    return c;
  }

  private next(): Promise<Record<string, unknown>> {
    return new Promise((res) => this.queue.push(res));
  }

  /** Run an admin operation; resolves once the child reports it committed. */
  async admin(op: string, ...args: unknown[]): Promise<Record<string, unknown>> {
    const p = this.next();
    this.proc.stdin.write(`${JSON.stringify({ op, args })}\n`);
    const r = await p;
    if (r['error']) throw new Error(String(r['error']));
    return r;
  }

  kill9(): Promise<void> {
    return new Promise((res) => {
      this.proc.once('exit', () => res());
      this.proc.kill('SIGKILL');
    });
  }
}

