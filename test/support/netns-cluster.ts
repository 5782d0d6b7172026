/**
 * A network lab for several idprov instances on one PostgreSQL (issue 16, docs/scale-out.md): every
 * instance in a network namespace of its own with two links, one to the database network and one to
 * the device network, the devices in another namespace, PostgreSQL in a hub namespace that holds the
 * two bridges. Addresses exist only inside these namespaces; nothing of the host's network is touched.
 *
 *   hub  (idpv<pid>h): brdb 10.213.8.1/24 (PostgreSQL listens here), brdev (no address, no snooping)
 *   instance k (idpv<pid>i<k>): idb 10.213.8.(11+k)/24 → brdb, idev 10.213.9.(11+k)/24 → brdev
 *   devices (idpv<pid>d): dv0 10.213.9.2/24 → brdev
 *
 * Taking an instance's `idb` down cuts it off from the database and from nothing else. Processes are
 * started with {@link ClusterLab.spawn} (tracked; see test/support/netns-lab.ts `Proc`) and stopped by
 * {@link ClusterLab.cleanup}, which also deletes the namespaces (and with them the veths and bridges);
 * an exit hook does the same when a run dies first.
 */
import { spawn, spawnSync } from 'node:child_process';
import { Proc } from './netns-lab.ts';

export { Proc };

/** Why the lab cannot be made here, or undefined when it can. */
export function clusterLabUnavailable(): string | undefined {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (process.getuid?.() !== 0) return 'network namespaces need root (ip netns add); run the tests as root';
  const ip = spawnSync('ip', ['-V'], { encoding: 'utf8' });
  if (ip.error || ip.status !== 0) return 'the `ip` command (iproute2) is missing; run `npm run test:setup`';
  if (spawnSync('sh', ['-c', 'command -v unshare']).status !== 0) return 'unshare (util-linux) is missing; run `npm run test:setup`';
  // Bridges (the kernel's bridge module), tried in a throwaway namespace.
  const probe = `idpv${process.pid}p`;
  spawnSync('ip', ['netns', 'del', probe]);
  if (spawnSync('ip', ['netns', 'add', probe]).status !== 0) return '`ip netns add` failed (no network namespaces here)';
  const br = spawnSync('ip', ['-n', probe, 'link', 'add', 'brp', 'type', 'bridge'], { encoding: 'utf8' });
  spawnSync('ip', ['netns', 'del', probe]);
  if (br.status !== 0) return `cannot create a bridge in a namespace (${br.stderr.trim()}); the kernel's bridge module is needed`;
  return undefined;
}

function sh(...argv: string[]): void {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${argv.join(' ')} failed (${r.status}): ${r.stderr || r.stdout}`);
}

export class ClusterLab {
  readonly hubNs: string;
  readonly deviceNs: string;
  readonly instanceNs: string[];
  readonly dbIp = '10.213.8.1';
  readonly deviceIp = '10.213.9.2';
  /** Inside every instance namespace: the link to the database network, and to the devices. */
  readonly dbIf = 'idb';
  readonly devIf = 'idev';
  private readonly procs = new Set<Proc>();
  private readonly namespaces: string[] = [];
  private readonly onExit = () => this.cleanupSync();

  private constructor(readonly instances: number) {
    const id = `${process.pid}`;
    this.hubNs = `idpv${id}h`;
    this.deviceNs = `idpv${id}d`;
    this.instanceNs = Array.from({ length: instances }, (_, k) => `idpv${id}i${k}`);
    process.once('exit', this.onExit);
  }

  instanceDbIp(k: number): string {
    return `10.213.8.${11 + k}`;
  }

  instanceIp(k: number): string {
    return `10.213.9.${11 + k}`;
  }

  /** Namespaces, bridges and veths for `instances` instances. Cleans up after itself when a step fails. */
  static create(instances: number): ClusterLab {
    const lab = new ClusterLab(instances);
    try {
      for (const ns of [lab.hubNs, lab.deviceNs, ...lab.instanceNs]) {
        spawnSync('ip', ['netns', 'del', ns]); // a leftover of a crashed run with the same pid
        sh('ip', 'netns', 'add', ns);
        lab.namespaces.push(ns);
        sh('ip', '-n', ns, 'link', 'set', 'lo', 'up');
      }
      const hub = lab.hubNs;
      sh('ip', '-n', hub, 'link', 'add', 'brdb', 'type', 'bridge');
      sh('ip', '-n', hub, 'addr', 'add', `${lab.dbIp}/24`, 'dev', 'brdb');
      sh('ip', '-n', hub, 'link', 'set', 'brdb', 'up');
      // No multicast snooping: mDNS and CoAP multicast reach every port of the device network.
      sh('ip', '-n', hub, 'link', 'add', 'brdev', 'type', 'bridge', 'mcast_snooping', '0');
      sh('ip', '-n', hub, 'link', 'set', 'brdev', 'up');
      const attach = (ns: string, inner: string, outer: string, bridge: string, cidr: string, multicast: boolean) => {
        sh('ip', 'link', 'add', inner, 'netns', ns, 'type', 'veth', 'peer', 'name', outer, 'netns', hub);
        sh('ip', '-n', hub, 'link', 'set', outer, 'master', bridge, 'up');
        sh('ip', '-n', ns, 'addr', 'add', cidr, 'dev', inner);
        sh('ip', '-n', ns, 'link', 'set', inner, 'up', ...(multicast ? ['multicast', 'on'] : []));
        if (multicast) sh('ip', '-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', inner);
      };
      lab.instanceNs.forEach((ns, k) => {
        attach(ns, lab.dbIf, `hd${k}`, 'brdb', `${lab.instanceDbIp(k)}/24`, false);
        attach(ns, lab.devIf, `he${k}`, 'brdev', `${lab.instanceIp(k)}/24`, true);
      });
      attach(lab.deviceNs, 'dv0', 'hx', 'brdev', `${lab.deviceIp}/24`, true);
      return lab;
    } catch (e) {
      lab.cleanupSync();
      throw e;
    }
  }

  /** Takes instance `k`'s link to the database network down (`up = false`) or up again. */
  setDbLink(k: number, up: boolean): void {
    sh('ip', '-n', this.instanceNs[k]!, 'link', 'set', this.dbIf, up ? 'up' : 'down');
  }

  /** Start `argv` inside `ns` (tracked). */
  spawn(ns: string, argv: string[], o: { env?: NodeJS.ProcessEnv; name?: string } = {}): Proc {
    const child = spawn('ip', ['netns', 'exec', ns, ...argv], { env: { ...process.env, ...o.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    const p = new Proc(child, o.name ?? argv.slice(0, 3).join(' '));
    this.procs.add(p);
    void p.exited.then(() => this.procs.delete(p));
    return p;
  }

  /** Stop every tracked process (SIGKILL after 3 s) and delete the namespaces. Call after stopping PostgreSQL. */
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
    process.off('exit', this.onExit);
  }
}
