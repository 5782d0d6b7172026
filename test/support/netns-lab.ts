/**
 * A two-namespace network lab for the discovery tests (docs/architecture.md "Multicast": the default namespace's
 * `lo` has no MULTICAST flag). Creates `idpv<pid>s` (server) and `idpv<pid>c` (client) joined by a
 * veth pair with 10.213.7.1/24 + fd13:213::1/64 and 10.213.7.2/24 + fd13:213::2/64 — addresses that
 * exist only inside these namespaces — and, on request, a private D-Bus and an avahi-daemon in the
 * client namespace (own mount namespace with a tmpfs on /run, so nothing of the host's is touched).
 *
 * Every process started here is tracked by its pid and stopped by {@link Lab.cleanup}, which also
 * deletes the namespaces (and with them the veth pair). A process `exit` hook does the same if the
 * test run dies (SIGINT, SIGTERM) before `after` hooks run.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

/** Why namespaces cannot be used here, or undefined when they can. */
export function netnsUnavailable(): string | undefined {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (process.getuid?.() !== 0) return 'network namespaces need root (ip netns add); run the tests as root';
  const ip = spawnSync('ip', ['-V'], { encoding: 'utf8' });
  if (ip.error || ip.status !== 0) return 'the `ip` command (iproute2) is missing; run `npm run test:setup`';
  for (const tool of ['avahi-daemon', 'avahi-browse', 'avahi-publish', 'dbus-daemon', 'unshare']) {
    const w = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' });
    if (w.status !== 0) return `${tool} is missing; run \`npm run test:setup\` (avahi-daemon, avahi-utils, dbus, util-linux)`;
  }
  return undefined;
}

function sh(argv: string[]): void {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${argv.join(' ')} failed (${r.status}): ${r.stderr || r.stdout}`);
}

/** A tracked child process with line-wise access to its output. */
export class Proc {
  readonly stdout: string[] = [];
  readonly stderr: string[] = [];
  readonly exited: Promise<number | null>;
  private readonly waiters = new Set<() => void>();
  private exitCode: number | null | undefined;

  constructor(
    readonly child: ChildProcess,
    readonly name: string,
  ) {
    for (const [stream, sink] of [
      [child.stdout, this.stdout],
      [child.stderr, this.stderr],
    ] as const) {
      if (!stream) continue;
      createInterface({ input: stream }).on('line', (l) => {
        sink.push(l);
        for (const w of [...this.waiters]) w();
      });
    }
    this.exited = new Promise((resolve) =>
      child.on('close', (code) => {
        this.exitCode = code;
        for (const w of [...this.waiters]) w();
        resolve(code);
      }),
    );
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Wait for a line on `stream` that satisfies `pred` (no timeout: mocha's test timeout bounds it). */
  waitFor(stream: 'stdout' | 'stderr', pred: (line: string) => boolean, from = 0): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const hit = this[stream].slice(from).find(pred);
        if (hit !== undefined) {
          this.waiters.delete(check);
          resolve(hit);
        } else if (this.exitCode !== undefined) {
          this.waiters.delete(check);
          reject(new Error(`${this.name} exited (${this.exitCode}) before the expected line\n--- stdout\n${this.stdout.join('\n')}\n--- stderr\n${this.stderr.join('\n')}`));
        }
      };
      this.waiters.add(check);
      check();
    });
  }

  /** JSON lines of `stream` (others skipped). */
  json(stream: 'stdout' | 'stderr'): Record<string, unknown>[] {
    return this[stream].flatMap((l) => {
      try {
        return [JSON.parse(l) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
  }

  /** Wait for a JSON line matching `pred`. */
  async waitForJson(stream: 'stdout' | 'stderr', pred: (j: Record<string, unknown>) => boolean, from = 0): Promise<Record<string, unknown>> {
    const line = await this.waitFor(stream, (l) => {
      try {
        return pred(JSON.parse(l) as Record<string, unknown>);
      } catch {
        return false;
      }
    }, from);
    return JSON.parse(line) as Record<string, unknown>;
  }

  write(line: string): void {
    this.child.stdin?.write(`${line}\n`);
  }

  /** SIGTERM and wait for the exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.exitCode !== undefined) return;
    this.child.kill(signal);
    await this.exited;
  }
}

/** The lab. */
export class Lab {
  readonly serverNs: string;
  readonly clientNs: string;
  readonly serverIf: string;
  readonly clientIf: string;
  readonly serverIp = '10.213.7.1';
  readonly clientIp = '10.213.7.2';
  readonly serverIp6 = 'fd13:213::1';
  readonly clientIp6 = 'fd13:213::2';
  readonly dir: string;
  /** Set by {@link startAvahi}. */
  dbusAddress = '';
  private readonly procs = new Set<Proc>();
  private readonly namespaces: string[] = [];
  private readonly onExit = () => this.cleanupSync();
  /** Ctrl-C / kill: clean up, then let the signal do what it would have done. */
  private readonly onSignal = (sig: NodeJS.Signals) => {
    this.cleanupSync();
    if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
  };

  private constructor() {
    const id = `${process.pid}`;
    this.serverNs = `idpv${id}s`;
    this.clientNs = `idpv${id}c`;
    this.serverIf = `iv${id}s`;
    this.clientIf = `iv${id}c`;
    this.dir = mkdtempSync(join(tmpdir(), 'idprov-netns-'));
    process.once('exit', this.onExit);
    process.once('SIGINT', this.onSignal);
    process.once('SIGTERM', this.onSignal);
  }

  /** Create the namespaces and the veth pair. Cleans up after itself when a step fails. */
  static create(): Lab {
    const lab = new Lab();
    try {
      for (const ns of [lab.serverNs, lab.clientNs]) {
        spawnSync('ip', ['netns', 'del', ns]); // a leftover of a crashed run with the same pid
        sh(['ip', 'netns', 'add', ns]);
        lab.namespaces.push(ns);
        // Addresses usable at once (no duplicate address detection), loopback with multicast.
        // (/proc/sys/net shows the namespace of the process reading it; no procps needed.)
        sh(['ip', 'netns', 'exec', ns, 'sh', '-c', 'echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad && echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad']);
        sh(['ip', '-n', ns, 'link', 'set', 'lo', 'up', 'multicast', 'on']);
      }
      sh(['ip', 'link', 'add', lab.serverIf, 'netns', lab.serverNs, 'type', 'veth', 'peer', 'name', lab.clientIf, 'netns', lab.clientNs]);
      for (const [ns, dev, v4, v6] of [
        [lab.serverNs, lab.serverIf, lab.serverIp, lab.serverIp6],
        [lab.clientNs, lab.clientIf, lab.clientIp, lab.clientIp6],
      ] as const) {
        sh(['ip', '-n', ns, 'addr', 'add', `${v4}/24`, 'dev', dev]);
        sh(['ip', '-n', ns, 'addr', 'add', `${v6}/64`, 'dev', dev, 'nodad']);
        sh(['ip', '-n', ns, 'link', 'set', dev, 'up', 'multicast', 'on']);
        sh(['ip', '-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', dev]);
      }
      return lab;
    } catch (e) {
      lab.cleanupSync();
      throw e;
    }
  }

  /** Start `argv` inside `ns` (tracked). */
  spawn(ns: string, argv: string[], o: { env?: NodeJS.ProcessEnv; name?: string } = {}): Proc {
    const child = spawn('ip', ['netns', 'exec', ns, ...argv], { env: { ...process.env, ...o.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    const p = new Proc(child, o.name ?? argv.slice(0, 3).join(' '));
    this.procs.add(p);
    void p.exited.then(() => this.procs.delete(p));
    return p;
  }

  /** Run `argv` inside `ns` to completion. */
  async run(ns: string, argv: string[], o: { env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number | null; stdout: string[]; stderr: string[] }> {
    const p = this.spawn(ns, argv, o);
    const code = await p.exited;
    return { code, stdout: p.stdout, stderr: p.stderr };
  }

  /** Environment for D-Bus clients (avahi-browse, avahi-publish) of the private bus. */
  get avahiEnv(): NodeJS.ProcessEnv {
    return { DBUS_SYSTEM_BUS_ADDRESS: this.dbusAddress };
  }

  /** A private D-Bus and avahi-daemon (host name `idpv-peer`) in the client namespace. */
  async startAvahi(): Promise<void> {
    const bus = join(this.dir, 'bus');
    writeFileSync(
      join(this.dir, 'bus.conf'),
      `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path=${bus}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/><allow own="*"/><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/>
  </policy>
</busconfig>
`,
    );
    writeFileSync(
      join(this.dir, 'avahi-daemon.conf'),
      `[server]\nhost-name=idpv-peer\nuse-ipv4=yes\nuse-ipv6=yes\nallow-interfaces=${this.clientIf}\nenable-dbus=yes\nratelimit-interval-usec=0\n` +
        `[wide-area]\nenable-wide-area=no\n[publish]\npublish-hinfo=no\npublish-workstation=no\n`,
    );
    const dbus = this.spawn(this.clientNs, ['dbus-daemon', `--config-file=${join(this.dir, 'bus.conf')}`, '--nofork', '--nopidfile', '--print-address=1'], { name: 'dbus-daemon' });
    this.dbusAddress = (await dbus.waitFor('stdout', (l) => l.startsWith('unix:'))).trim();
    const avahi = this.spawn(
      this.clientNs,
      ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', `mount -t tmpfs tmpfs /run && exec avahi-daemon --no-drop-root --no-chroot -f ${join(this.dir, 'avahi-daemon.conf')}`],
      { env: this.avahiEnv, name: 'avahi-daemon' },
    );
    await avahi.waitFor('stderr', (l) => l.includes('Server startup complete'));
  }

  /** Stop every tracked process, delete the namespaces and the temporary directory. */
  async cleanup(): Promise<void> {
    await Promise.all(
      [...this.procs].map(async (p) => {
        const t = setTimeout(() => p.child.kill('SIGKILL'), 3000);
        await p.stop();
        clearTimeout(t);
      }),
    );
    this.cleanupSync();
  }

  private cleanupSync(): void {
    for (const p of this.procs) if (p.child.exitCode === null && p.child.pid) p.child.kill('SIGKILL');
    for (const ns of this.namespaces.splice(0)) spawnSync('ip', ['netns', 'del', ns]);
    rmSync(this.dir, { recursive: true, force: true });
    process.off('exit', this.onExit);
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
  }
}
