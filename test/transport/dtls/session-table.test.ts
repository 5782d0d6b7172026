import assert from 'node:assert/strict';
import { NO_PREALLOCATION_BYTES, retainedGrowth } from '../../support/heap-growth.ts';
import { startDtls } from '../../support/dtls-server.ts';

describe('DTLS session table', () => {
  it('allocates nothing up front for a large maxSessions', async () => {
    await (await startDtls()).close(); // the first bind's one-time allocations, out of the measurement
    const { bytes, made } = await retainedGrowth(() => startDtls({ maxSessions: 1_000_000 }));
    try {
      assert.ok(bytes < NO_PREALLOCATION_BYTES, `grew by ${bytes} bytes`);
    } finally {
      await made.close();
    }
  });
});
