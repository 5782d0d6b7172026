/**
 * Named statements on PostgreSQL (src/store/postgres/db.ts `prepared`): only the fixed texts of
 * statements.ts get names, since each pooled connection keeps every statement it prepared.
 */
import assert from 'node:assert/strict';
import { isNamedStatement, prepared } from '../../../src/store/postgres/db.ts';
import { SQL } from '../../../src/store/postgres/statements.ts';

describe('PostgreSQL named statements', () => {
  it('names every fixed statement, each with its own name', () => {
    const names = Object.values(SQL).map((text) => prepared(text).name);
    assert.ok(names.every((n) => typeof n === 'string'));
    assert.equal(new Set(names).size, new Set(Object.values(SQL)).size);
  });

  it('sends a text made at run time unnamed, however many there are', () => {
    for (let i = 0; i < 1000; i++) {
      const text = `SELECT ${i} AS v`;
      const q = prepared(text, []);
      assert.equal(q.name, undefined);
      assert.equal(q.text, text);
      assert.equal(isNamedStatement(text), false);
    }
  });
});
