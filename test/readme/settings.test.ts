import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { settingsTable } from '../../src/config.ts';

describe('the README', () => {
  it('documents every setting exactly as the config table says (npx idprov config --update-readme)', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const m = /<!-- settings:start[^>]*-->\n([\s\S]*?)\n<!-- settings:end -->/.exec(readme);
    assert.ok(m, 'README.md has the settings markers');
    assert.equal(m[1], settingsTable());
  });
});

describe('docs/protocol.md', () => {
  it('lists every wire error code with its CoAP code and err number', async () => {
    const { ERROR_TABLE } = await import('../../src/errors.ts');
    const doc = readFileSync(new URL('../../docs/protocol.md', import.meta.url), 'utf8');
    for (const [code, info] of Object.entries(ERROR_TABLE)) {
      if (info.err === undefined && !['too-large', 'unsupported-content-format'].includes(code)) continue;
      const row = new RegExp(`\\| \`${code}\` \\| ${info.coap.replace('.', '\\.')} \\| ${info.err ?? '—'} \\|`);
      assert.match(doc, row, `docs/protocol.md documents ${code}`);
    }
  });
});
