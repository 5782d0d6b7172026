import assert from 'node:assert/strict';
import type { Logger } from '../../../src/log.ts';
import { throttledErrorLog } from '../../../src/transport/coap/error-log.ts';

describe('CoAP engine error log', () => {
  it('writes 20 lines a second, then counts, and says how many it suppressed', () => {
    const lines: string[] = [];
    const log = { error: (_o: unknown, m: string) => lines.push(m), warn: (o: { suppressed: number }, m: string) => lines.push(`${m} ${o.suppressed}`) } as unknown as Logger;
    let t = 5000;
    const logError = throttledErrorLog(log, () => t);
    for (let i = 0; i < 25; i++) logError({}, 'e');
    assert.equal(lines.length, 20);
    t += 1000;
    logError({}, 'e');
    assert.deepEqual(lines.slice(20), ['coap: error lines suppressed 5', 'e']);
  });
});
