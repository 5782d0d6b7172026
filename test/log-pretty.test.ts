/** The human-readable log line (logFormat pretty, or auto on a terminal). */
import assert from 'node:assert/strict';
import { prettyLine } from '../src/log-pretty.ts';

const at = new Date(2027, 0, 31, 12, 0, 1, 234).getTime(); // local time, as the line shows it

describe('prettyLine', () => {
  it('shows time, level, component and message, then the other fields as key=value', () => {
    const line = JSON.stringify({ level: 30, time: at, pid: 1, hostname: 'h', svc: 'idprov', c: 'prov', id: 'lab-sensor-01', outcome: 'approved', code: '2.01', ms: 3, msg: 'approved' });
    assert.equal(prettyLine(line), '12:00:01.234 INFO  prov approved id=lab-sensor-01 outcome=approved code=2.01 ms=3');
  });

  it('quotes values with spaces and writes objects as JSON', () => {
    const line = JSON.stringify({ level: 40, time: at, msg: 'flag', reason: 'left the building', groups: ['a', 'b'] });
    assert.equal(prettyLine(line), '12:00:01.234 WARN  flag reason="left the building" groups=["a","b"]');
  });

  it('shows an error\'s message, and its stack on the next lines at level error', () => {
    const err = { type: 'Error', message: 'boom', stack: 'Error: boom\n    at x (y.ts:1:1)' };
    assert.equal(prettyLine(JSON.stringify({ level: 40, time: at, msg: 'retry', err })), '12:00:01.234 WARN  retry err=boom');
    assert.equal(prettyLine(JSON.stringify({ level: 50, time: at, msg: 'failed', err })), '12:00:01.234 ERROR failed err=boom\nError: boom\n    at x (y.ts:1:1)');
  });

  it('colours the level only when asked', () => {
    assert.match(prettyLine(JSON.stringify({ level: 50, time: at, msg: 'x' }), true), /\x1b\[31mERROR\x1b\[0m x$/);
  });

  it('passes a line that is not JSON through as it came', () => {
    assert.equal(prettyLine('not json\n'), 'not json');
  });
});
