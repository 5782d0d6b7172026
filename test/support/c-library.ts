/**
 * Builds the C device library (device/) with CMake into device/build/<flavour> (gitignored) and runs
 * its test binaries. The build runs synchronously when a test file loads, because mocha needs the
 * names of the C tests (one `it` each) before it runs anything; an up-to-date build takes a second.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';

/** The repository root and the device folder. */
export const ROOT = join(import.meta.dirname, '../..');
export const DEVICE = join(ROOT, 'device');

/** A build directory, and why it could not be built (undefined when it was). */
export interface Build {
  dir: string;
  error?: string;
}

/** The C test binaries of device/CMakeLists.txt. */
export const TEST_BINARIES = ['test_codecs', 'test_crypto', 'test_coap', 'test_machine'] as const;

const built = new Map<string, Build>();

/** Configures and builds device/ into device/build/<flavour> with the given CMake options (once per process). */
export function cmakeBuild(flavour: string, options: string[] = [], targets: string[] = []): Build {
  const dir = join(DEVICE, 'build', flavour);
  const known = built.get(dir);
  if (known) return known;
  let b: Build = { dir };
  try {
    const env = { ...process.env };
    execFileSync('cmake', ['-S', DEVICE, '-B', dir, '-DCMAKE_BUILD_TYPE=RelWithDebInfo', ...options], { stdio: 'pipe', env });
    const t = targets.length ? ['--target', ...targets] : [];
    execFileSync('nice', ['-n', '10', 'cmake', '--build', dir, '-j2', ...t], { stdio: 'pipe', env });
  } catch (e) {
    const x = e as { stderr?: Buffer; stdout?: Buffer; message: string };
    b = { dir, error: `${x.message}\n${x.stdout?.toString() ?? ''}${x.stderr?.toString() ?? ''}`.slice(-4000) };
  }
  built.set(dir, b);
  return b;
}

/** The host build: library, ports, tests, CLI. */
export function hostBuild(): Build {
  return cmakeBuild('host');
}

/** Names of the tests in a tiny_test binary (`--list`). */
export function listTests(b: Build, bin: string): string[] {
  if (b.error) return [];
  return execFileSync(join(b.dir, bin), ['--list'], { encoding: 'utf8' }).split('\n').filter(Boolean);
}

/** One run of a test binary: PASS/FAIL per test name, and the whole output. */
export interface RunResult {
  status: number | null;
  output: string;
  passed: Set<string>;
  failed: Set<string>;
}

/** Runs a command (optionally under a wrapper such as valgrind) and collects the PASS/FAIL lines. */
export function runTests(cmd: string, args: string[] = [], env: NodeJS.ProcessEnv = {}, timeoutMs = 600_000): RunResult {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 64 << 20 });
  const output = `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? `\n${r.error.message}` : ''}`;
  const passed = new Set<string>();
  const failed = new Set<string>();
  for (const line of (r.stdout ?? '').split('\n')) {
    const m = /^(PASS|FAIL) (\S+)/.exec(line);
    if (m) (m[1] === 'PASS' ? passed : failed).add(m[2]!);
  }
  return { status: r.status, output, passed, failed };
}

/** A C test name as a sentence. */
export const sentence = (name: string): string => name.replace(/_/g, ' ');

/** Output lines of a run that belong to one test (its failure details come before its FAIL line). */
export function detailsOf(r: RunResult, name: string): string {
  const lines = r.output.split('\n');
  const end = lines.findIndex((l) => l.startsWith(`FAIL ${name} `) || l.startsWith(`PASS ${name} `));
  if (end < 0) return r.output.slice(-3000);
  let start = end;
  while (start > 0 && lines[start - 1]!.startsWith('  ')) start--;
  return lines.slice(start, end + 1).join('\n');
}
