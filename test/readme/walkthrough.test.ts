/**
 * README "Provision a device in five minutes", run as written: the commands are taken from the
 * section's `sh` code blocks, in order, and run against a real server (temp folder, ephemeral ports:
 * the only changes made to them), and every `backticked` phrase in a command's trailing comment must
 * appear in what that command prints. So the test fails when the README and the tools part ways:
 * a renamed flag, a different output, a value it tells you to paste that does not work.
 *
 * Commands that keep running (`idprov serve`, `oob watch`, `provision --wait`) run in the background,
 * as in their own terminals. `oob approve` runs on a pseudo-terminal (util-linux `script`) and is
 * answered `y`, as a person would. The server's first pending retry hint is 2 s instead of 60 s
 * and each repeat adds 1 s (IDPROV_PENDING_RETRY_INITIAL, _STEP), so the test checks the README's `60` against the setting's default.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SETTINGS_DEFAULTS } from '../support/settings-defaults.ts';
import { tempDir } from '../support/temp-dir.ts';
import { run, serve, type Served } from '../support/processes.ts';

const ROOT = new URL('../..', import.meta.url).pathname;
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const RETRY_S = 2;

/** The README section's code blocks, in order: `{ lang, text }`. */
function sectionBlocks(): { lang: string; text: string }[] {
  const start = README.indexOf('## Provision a device in five minutes');
  assert.ok(start >= 0, 'README has the five-minute section');
  const end = README.indexOf('\n## ', start + 3);
  const section = README.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/```(\w+)\n([\s\S]*?)```/g)].map((m) => ({ lang: m[1]!, text: m[2]! }));
}

/** A command line of the README: what to run, and the phrases its comment promises. */
interface Step {
  line: string;
  argv: string[];
  expect: string[];
}

/** Split a shell line into words (double quotes only, as the README uses). */
function words(cmd: string): string[] {
  return [...cmd.matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2]!);
}

function step(line: string): Step {
  const hash = line.indexOf('  #');
  const cmd = (hash < 0 ? line : line.slice(0, hash)).trim();
  const comment = hash < 0 ? '' : line.slice(hash);
  return { line, argv: words(cmd), expect: [...comment.matchAll(/`([^`]+)`/g)].map((m) => m[1]!) };
}

describe('the README five-minute walkthrough, run as written', function () {
  this.timeout(300_000);
  const t = tempDir('idprov-readme-');
  const cwd = t.dir;
  const background: ChildProcess[] = [];
  let server: Served | undefined;
  after(async () => {
    for (const c of background) if (c.exitCode === null) c.kill('SIGINT');
    await server?.stop();
    t.cleanup();
  });

  it('runs every command of the section in order and each prints what its comment says', async () => {
    const blocks = sectionBlocks();
    cpSync(join(ROOT, 'fixtures/allowlists'), join(cwd, 'fixtures/allowlists'), { recursive: true });
    const env: NodeJS.ProcessEnv = { ...process.env, IDPROV_PENDING_RETRY_INITIAL: String(RETRY_S), IDPROV_PENDING_RETRY_STEP: '1', IDPROV_LOG_FORMAT: 'json' };
    delete env['IDPROV_ADMIN_URL'];
    delete env['IDPROV_ADMIN_TOKEN'];
    let adminEnv = env;
    let coapPort = 0;
    const outputs = new Map<string, string>();
    let lastKeygen = '';
    const waits: { step: Step; done: Promise<{ code: number | null; out: string }>; out: () => string }[] = [];
    let watch: { out: () => string } | undefined;
    let ran = 0;

    /** The README's command as it runs here: the bins of this checkout, temp paths, the real ports. */
    const argvOf = (s: Step): string[] => {
      assert.equal(s.argv[0], 'npx', `${s.line}: a command of the walkthrough starts with npx`);
      const [bin, ...rest] = s.argv.slice(1);
      assert.ok(['idprov', 'oob', 'device-sim'].includes(bin!), `${s.line}: one of the three bins`);
      const args = rest.map((a) => a.replace(/^\/tmp\//, `${cwd}/`).replace('coap://127.0.0.1:5683', `coap://127.0.0.1:${coapPort}`));
      return [join(ROOT, 'bin', `${bin}.js`), ...args];
    };
    const expectIn = (s: Step, out: string): void => {
      for (const phrase of s.expect) {
        let want = phrase;
        if (/retry in \d+ s/.test(phrase)) {
          assert.match(phrase, new RegExp(`retry in ${SETTINGS_DEFAULTS.pendingRetryInitial} s`), 'the README quotes the default first retry hint');
          want = phrase.replace(/retry in \d+ s/, `retry in ${RETRY_S} s`);
        }
        assert.ok(out.includes(want), `\`${s.line.trim()}\` prints \`${want}\`; it printed:\n${out}`);
      }
    };

    for (const block of blocks) {
      if (block.lang === 'csv') {
        // The allowlist the reader writes: the placeholder names the keygen value to paste.
        const m = /<the (\w+) value printed above>/.exec(block.text);
        assert.ok(m, 'the csv says which printed value to paste');
        const value = new RegExp(`^${m[1]}\\s+([0-9a-f]{64})\\b`, 'm').exec(lastKeygen);
        assert.ok(value, `keygen printed a \`${m[1]}\` line: ${lastKeygen}`);
        writeFileSync(join(cwd, 'mine.csv'), block.text.replace(m[0], value[1]!));
        continue;
      }
      if (block.lang !== 'sh') continue;
      for (const line of block.text.split('\n').filter((l) => l.startsWith('npx '))) {
        const s = step(line);
        const argv = argvOf(s);
        ran++;
        if (argv[1] === 'serve') {
          server = await serve(process.execPath, [...argv, '--coap-port', '0', '--coaps-port', '0', '--admin-port', '0', '--bind', '127.0.0.1', '--no-mdns'], { cwd, env });
          coapPort = server.coap;
          adminEnv = { ...env, IDPROV_ADMIN_URL: server.admin };
          continue;
        }
        assert.ok(server, 'the server was started first');
        if (argv[1] === 'watch' || argv.includes('--wait')) {
          const child = spawn(process.execPath, argv, { cwd, env: adminEnv, stdio: ['ignore', 'pipe', 'pipe'] });
          background.push(child);
          let out = '';
          child.stdout.on('data', (d) => (out += d));
          child.stderr.on('data', (d) => (out += d));
          const done = new Promise<{ code: number | null; out: string }>((resolve) => child.once('exit', (code) => resolve({ code, out })));
          // It keeps running: wait (bounded) until it has printed what the README says it prints first.
          for (let i = 0; i < 600 && !s.expect.every((p) => out.includes(p.replace(/retry in \d+ s/, `retry in ${RETRY_S} s`))) && child.exitCode === null; i++) {
            await new Promise((r) => setTimeout(r, 100));
          }
          expectIn(s, out);
          if (argv[1] === 'watch') watch = { out: () => out };
          else waits.push({ step: s, done, out: () => out });
          continue;
        }
        let r;
        if (argv[1] === 'approve') {
          // Asks on the terminal: answer yes, as a person would.
          const shell = [process.execPath, ...argv].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
          r = run('script', ['-qec', shell, '/dev/null'], { cwd, env: adminEnv, input: 'y\n' });
        } else r = run(process.execPath, argv, { cwd, env: adminEnv });
        const out = r.stdout + r.stderr;
        assert.equal(r.status, 0, `\`${s.line.trim()}\` exits 0:\n${out}`);
        expectIn(s, out);
        outputs.set(s.line, out);
        if (argv[1] === 'keygen') lastKeygen = r.stdout;
        if (argv[1] === 'list' && argv[2] === 'pending') {
          const fp = /key\s+(\S+)/.exec(waits[0]?.out() ?? '')?.[1];
          assert.ok(fp && out.includes(fp), 'oob list pending shows the fingerprint the waiting device printed');
        }
      }
    }
    assert.ok(ran >= 9, `the section has the walkthrough's commands (${ran} ran)`);
    // "At its next poll the waiting device prints `approved` and exits."
    assert.ok(waits.length > 0, 'a device waited');
    for (const w of waits) {
      const { code, out } = await w.done;
      assert.equal(code, 0, out);
      assert.match(out, /provision {2}approved/);
    }
    // "terminal 2 showed each decision as it happened"
    assert.ok(watch, 'oob watch ran');
    for (let i = 0; i < 100 && !watch.out().includes('admin.revoke'); i++) await new Promise((r) => setTimeout(r, 100));
    for (const kind of ['provision.approved', 'admin.approve', 'admin.revoke']) assert.match(watch.out(), new RegExp(kind.replace('.', '\\.')), `oob watch showed ${kind}`);
  });
});
