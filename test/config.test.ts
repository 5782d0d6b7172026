/**
 * Configuration: defaults < config file (JSON) < environment (IDPROV_*) < flags, every
 * problem reported at once, the result frozen, and one settings table that documents everything.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './support/temp-dir.ts';
import { ConfigError, SETTINGS, loadConfig, settingsTable, type Config, type ConfigSources } from '../src/config.ts';

const SECRET_HEX = 'AB'.repeat(32);

/** The problems of a configuration that must fail. */
function problemsOf(src: ConfigSources): string[] {
  try {
    loadConfig(src);
  } catch (e) {
    assert.ok(e instanceof ConfigError, `threw ${String(e)}`);
    assert.equal(e.name, 'ConfigError');
    for (const p of e.problems) assert.ok(e.message.includes(p), 'the message lists every problem');
    return e.problems;
  }
  assert.fail('the configuration was accepted');
}
const about = (problems: string[], key: string): string[] => problems.filter((p) => p.startsWith(`${key} `) || p.startsWith(`${key}:`) || p.includes(`"${key}"`));

describe('configuration', () => {
  let dir: string;
  let cleanup: () => void;
  beforeEach(() => ({ dir, cleanup } = tempDir('idprov-config-')));
  afterEach(() => cleanup());
  const file = (content: unknown): string => {
    const path = join(dir, 'idprov.json');
    writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
    return path;
  };

  describe('defaults', () => {
    it('loads the documented defaults when nothing is given', () => {
      const c = loadConfig();
      assert.deepEqual(
        {
          coapPort: c.coapPort,
          coapsPort: c.coapsPort,
          adminPort: c.adminPort,
          adminBind: c.adminBind,
          bind: c.bind,
          provisionTokenTtl: c.provisionTokenTtl,
          tokenTtl: c.tokenTtl,
          nonceTtl: c.nonceTtl,
          pendingRetryInitial: c.pendingRetryInitial,
          pendingRetryStep: c.pendingRetryStep,
          pendingRetryMax: c.pendingRetryMax,
          rejectedRetry: c.rejectedRetry,
          minSecretLength: c.minSecretLength,
          maxPayload: c.maxPayload,
          mdns: c.mdns,
          issuer: c.issuer,
          logLevel: c.logLevel,
          trustedServers: c.trustedServers,
        },
        {
          coapPort: 5683,
          coapsPort: 5684,
          adminPort: 8445,
          adminBind: '127.0.0.1',
          bind: '::',
          provisionTokenTtl: 3600,
          tokenTtl: 30 * 86_400,
          nonceTtl: 300,
          pendingRetryInitial: 60,
          pendingRetryStep: 30,
          pendingRetryMax: 600,
          rejectedRetry: 3600,
          minSecretLength: 12,
          maxPayload: 1024,
          mdns: true,
          issuer: 'idprov',
          logLevel: 'info',
          trustedServers: [],
        },
      );
    });

    it('has exactly one setting per configuration key, each with its own environment variable and flag', () => {
      const c = loadConfig();
      assert.deepEqual(Object.keys(c).sort(), SETTINGS.map((s) => s.key).sort());
      assert.equal(new Set(SETTINGS.map((s) => s.env)).size, SETTINGS.length);
      const flags = SETTINGS.filter((s) => s.flag).map((s) => s.flag);
      assert.equal(new Set(flags).size, flags.length);
      for (const s of SETTINGS) {
        assert.match(s.env, /^IDPROV_[A-Z0-9_]+$/);
        assert.deepEqual(c[s.key], s.def, `${s.key} defaults to ${JSON.stringify(s.def)}`);
      }
    });

    it('reads no environment variables unless they are passed in', () => {
      const before = process.env['IDPROV_COAP_PORT'];
      process.env['IDPROV_COAP_PORT'] = '7777';
      try {
        assert.equal(loadConfig().coapPort, 5683);
        assert.equal(loadConfig({ env: process.env }).coapPort, 7777);
      } finally {
        if (before === undefined) delete process.env['IDPROV_COAP_PORT'];
        else process.env['IDPROV_COAP_PORT'] = before;
      }
    });
  });

  describe('precedence: file < environment < flags', () => {
    it('takes a value from the file over the default', () => {
      assert.equal(loadConfig({ file: file({ coapPort: 1000 }) }).coapPort, 1000);
    });

    it('takes the environment over the file', () => {
      const c = loadConfig({ file: file({ coapPort: 1000, nonceTtl: 60 }), env: { IDPROV_COAP_PORT: '2000' } });
      assert.equal(c.coapPort, 2000);
      assert.equal(c.nonceTtl, 60, 'what the environment does not set stays from the file');
    });

    it('takes flags over the environment and the file', () => {
      const c = loadConfig({
        file: file({ coapPort: 1000, nonceTtl: 60, issuer: 'from-file' }),
        env: { IDPROV_COAP_PORT: '2000', IDPROV_NONCE_TTL: '90' },
        flags: { coapPort: 3000 },
      });
      assert.deepEqual([c.coapPort, c.nonceTtl, c.issuer], [3000, 90, 'from-file']);
    });

    it('ignores empty environment variables and undefined flags', () => {
      const c = loadConfig({ file: file({ coapPort: 1000 }), env: { IDPROV_COAP_PORT: '' }, flags: { coapPort: undefined } });
      assert.equal(c.coapPort, 1000);
    });

    it('applies the precedence to every setting', () => {
      for (const s of SETTINGS) {
        if (s.kind === 'int' || s.kind === 'port') {
          const v = s.kind === 'port' ? [6001, 6002, 6003] : [s.min ?? 1, (s.min ?? 1) + 1, (s.min ?? 1) + 2];
          // A small pendingRetryMax needs a smaller pendingRetryInitial than the default.
          const base = s.key === 'pendingRetryMax' ? { pendingRetryInitial: 1 } : {};
          assert.equal(loadConfig({ file: file({ ...base, [s.key]: v[0] }) })[s.key], v[0], `${s.key} from the file`);
          assert.equal(loadConfig({ file: file({ ...base, [s.key]: v[0] }), env: { [s.env]: String(v[1]) } })[s.key], v[1], `${s.key} from ${s.env}`);
          assert.equal(loadConfig({ file: file({ ...base, [s.key]: v[0] }), env: { [s.env]: String(v[1]) }, flags: { [s.key]: v[2] } })[s.key], v[2], `${s.key} from the flag`);
        }
      }
    });
  });

  describe('values from the environment', () => {
    it('reads integers, booleans, lists and hex secrets from strings', () => {
      const c = loadConfig({
        env: {
          IDPROV_NONCE_TTL: ' 120 ',
          IDPROV_MDNS: 'off',
          IDPROV_TRUSTED_SERVERS: 'idprov-a, idprov-b,,idprov-c ',
          IDPROV_NONCE_SECRET: SECRET_HEX,
          IDPROV_AUDIENCE: 'hub',
        },
      });
      assert.equal(c.nonceTtl, 120);
      assert.equal(c.mdns, false);
      assert.deepEqual(c.trustedServers, ['idprov-a', 'idprov-b', 'idprov-c']);
      assert.equal(c.nonceSecret, SECRET_HEX.toLowerCase());
      assert.equal(c.audience, 'hub');
    });

    it('reads every spelling of true and false', () => {
      for (const t of ['1', 'true', 'TRUE', 'yes', 'on']) assert.equal(loadConfig({ env: { IDPROV_MDNS: t } }).mdns, true, t);
      for (const f of ['0', 'false', 'False', 'no', 'off']) assert.equal(loadConfig({ env: { IDPROV_MDNS: f } }).mdns, false, f);
    });
  });

  describe('errors', () => {
    it('reports every problem at once, from the file, the environment and the flags', () => {
      const problems = problemsOf({
        file: file({ coapPort: 'five', nonceTtl: 5, mdns: 'maybe', nonceSecret: 'abc', trustedServers: [1, 2], issuer: 7 }),
        env: { IDPROV_TOKEN_TTL: '1.5', IDPROV_MAX_PAYLOAD: '4096' },
        flags: { adminPort: 70_000, logLevel: 'loud' },
      });
      for (const key of ['coapPort', 'nonceTtl', 'mdns', 'nonceSecret', 'trustedServers', 'issuer', 'tokenTtl', 'maxPayload', 'adminPort', 'logLevel']) {
        assert.equal(about(problems, key).length >= 1, true, `a problem about ${key} in ${JSON.stringify(problems)}`);
      }
    });

    it('says where each bad value came from', () => {
      const problems = problemsOf({ file: file({ nonceTtl: 5 }), env: { IDPROV_TOKEN_TTL: 'x' }, flags: { coapPort: -1 } });
      assert.ok(problems.some((p) => p.startsWith('nonceTtl (config file)')));
      assert.ok(problems.some((p) => p.startsWith('tokenTtl (IDPROV_TOKEN_TTL)')));
      assert.ok(problems.some((p) => p.startsWith('coapPort (--coap-port)')));
    });

    it('refuses an unknown key in the file', () => {
      const problems = problemsOf({ file: file({ coapPort: 1000, coap_port: 1000, tokenTTL: 5 }) });
      assert.equal(problems.length, 2);
      assert.ok(problems.every((p) => p.startsWith('config file: unknown setting')));
    });

    it('refuses an unknown flag', () => {
      assert.equal(problemsOf({ flags: { nope: 1 } as never }).length, 1);
    });

    it('refuses a file that is missing, not JSON, or not an object', () => {
      assert.equal(problemsOf({ file: join(dir, 'missing.json') }).length, 1);
      assert.equal(problemsOf({ file: file('{ "coapPort": 1000, }') }).length, 1);
      for (const content of ['[]', 'null', '42', '"text"']) assert.equal(problemsOf({ file: file(content) }).length, 1, content);
    });

    it('checks the range of every integer setting', () => {
      for (const s of SETTINGS.filter((x) => x.kind === 'int')) {
        if (s.min !== undefined) assert.ok(about(problemsOf({ flags: { [s.key]: s.min - 1 } }), s.key).length >= 1, `${s.key} below ${s.min}`);
        if (s.max !== undefined) assert.ok(about(problemsOf({ flags: { [s.key]: s.max + 1 } }), s.key).length >= 1, `${s.key} above ${s.max}`);
      }
      for (const p of [-1, 65_536, 1.5]) assert.equal(problemsOf({ flags: { adminPort: p } }).length, 1, String(p));
      assert.equal(loadConfig({ flags: { coapPort: 0, coapsPort: 0 } }).coapPort, 0, 'port 0 means any free port');
    });

    it('checks values that depend on each other and on their format', () => {
      assert.equal(about(problemsOf({ flags: { pendingRetryInitial: 700 } }), 'pendingRetryMax').length, 1);
      assert.equal(about(problemsOf({ flags: { coapPort: 6000, coapsPort: 6000 } }), 'coapsPort').length, 1);
      assert.equal(about(problemsOf({ flags: { bind: 'localhost' } }), 'bind').length, 1);
      assert.equal(about(problemsOf({ flags: { adminBind: '10.0.0.300' } }), 'adminBind').length, 1);
      assert.equal(about(problemsOf({ flags: { dataDir: '' } }), 'dataDir').length, 1);
      assert.equal(about(problemsOf({ env: { IDPROV_NONCE_SECRET: 'zz'.repeat(32) } }), 'nonceSecret').length, 1);
      assert.equal(about(problemsOf({ env: { IDPROV_NONCE_SECRET: 'ab'.repeat(31) } }), 'nonceSecret').length, 1);
      assert.equal(loadConfig({ flags: { bind: '0.0.0.0', adminBind: '::1' } }).adminBind, '::1');
    });
  });

  describe('the result', () => {
    it('is frozen, its list too', () => {
      const c = loadConfig({ env: { IDPROV_TRUSTED_SERVERS: 'a,b' } });
      assert.ok(Object.isFrozen(c));
      assert.ok(Object.isFrozen(c.trustedServers));
      assert.throws(() => {
        (c as Config).coapPort = 1;
      }, TypeError);
      assert.throws(() => {
        c.trustedServers.push('c');
      }, TypeError);
    });

    it('does not share the default list between results, nor change the settings table', () => {
      const a = loadConfig();
      const b = loadConfig({ env: { IDPROV_TRUSTED_SERVERS: 'x' } });
      assert.deepEqual(a.trustedServers, []);
      assert.deepEqual(b.trustedServers, ['x']);
      assert.deepEqual(SETTINGS.find((s) => s.key === 'trustedServers')!.def, []);
    });
  });

  describe('settingsTable()', () => {
    it('mentions every setting with its key, flag, environment variable and default', () => {
      const table = settingsTable();
      const rows = table.split('\n');
      assert.equal(rows.length, SETTINGS.length + 2);
      for (const s of SETTINGS) {
        const row = rows.find((r) => r.startsWith(`| \`${s.key}\` |`));
        assert.ok(row, `a row for ${s.key}`);
        assert.ok(row.includes(`\`${s.env}\``), `${s.key}: environment variable`);
        if (s.flag) assert.ok(row.includes(`\`--${s.flag}\``), `${s.key}: flag`);
        assert.ok(row.includes(`\`${JSON.stringify(s.def)}\``), `${s.key}: default`);
        assert.ok(s.doc.length > 10 && row.includes(s.doc), `${s.key}: meaning`);
      }
      assert.ok(table.includes('`--no-mdns`'));
    });
  });
});
