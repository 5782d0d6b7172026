import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parse } from 'coap-packet';
import { ERROR_TABLE } from '../../src/errors.ts';
import { encodeResponse } from '../../src/protocol/messages.ts';
import { decodeCbor } from '../../src/protocol/cbor.ts';
import { JSON_PATH, type ExchangeFile, type ExchangeStep } from '../../tools/spec/exchange-vectors.ts';

const SPEC = readFileSync(new URL('../../docs/spec/idprov-coap-v1.md', import.meta.url), 'utf8');

/** The rows of the first Markdown table after `heading`, as trimmed cells. */
function tableAfter(heading: string): string[][] {
  const at = SPEC.indexOf(`\n${heading}\n`);
  assert.ok(at >= 0, `the spec has a section "${heading}"`);
  const lines = SPEC.slice(at).split('\n');
  const start = lines.findIndex((l) => l.startsWith('|'));
  const rows: string[][] = [];
  for (const l of lines.slice(start + 2)) {
    if (!l.startsWith('|')) break;
    rows.push(l.split('|').slice(1, -1).map((c) => c.trim()));
  }
  return rows;
}

describe('the spec text agrees with the server code (docs/spec/idprov-coap-v1.md)', () => {
  it('§4.3 lists exactly the err values of the error registry, with their CoAP codes', () => {
    const spec = tableAfter('### 4.3 `err` values').map(([err, name, coap]) => [Number(err), name, coap]);
    const code = Object.entries(ERROR_TABLE)
      .filter(([, i]) => i.err !== undefined && i.coap !== '4.13' && i.coap !== '4.15')
      .map(([name, i]) => [i.err, name, i.coap])
      .sort((a, b) => (a[0] as number) - (b[0] as number));
    assert.deepEqual(spec, code);
  });

  it('§4.1 lists exactly the response keys the server can encode', () => {
    const keys = tableAfter('### 4.1 Response body').map((r) => Number(r[0]));
    const all = encodeResponse({
      status: 0,
      nonce: new Uint8Array(24),
      token: new Uint8Array(1),
      exp: 1,
      retry: 1,
      ttl: 1,
      diag: 'x',
      sealed: { epk: new Uint8Array(32), nonce: new Uint8Array(24), box: new Uint8Array(16) },
      hub: 'x',
      err: 1,
    });
    assert.deepEqual(keys, [...(decodeCbor(all) as Map<number, unknown>).keys()]);
  });

  it('§1.2 quotes the /.well-known/core document the server sends', () => {
    const quoted = /```text\n(<\/idprov\/request>[^\n]*)\n```/.exec(SPEC)?.[1];
    const file: ExchangeFile = JSON.parse(readFileSync(JSON_PATH, 'utf8'));
    const first = file.flows.find((f) => f.name === 'discovery')!.steps[0] as ExchangeStep;
    assert.equal(quoted, parse(Buffer.from(first.response, 'hex')).payload.toString('utf8'));
  });
});
