/**
 * Child process of the durability test in sqlite.test.ts: opens the store at argv[2] and writes
 * without pause, 8 concurrent `apply` calls at a time, printing `committed <id>` on stdout as soon
 * as each call resolves (stdout to a pipe is synchronous on Linux, so a printed line means the
 * promise had resolved). The parent SIGKILLs it mid-stream and checks every printed id survived.
 * With `often` as argv[3], the WAL is checkpointed every 5 ms and restarted from 32 frames, and the
 * child prints `restarted` each time the checkpointer has had it restarted.
 */
import { SqliteStore } from '../../src/store/sqlite/store.ts';

const path = process.argv[2];
if (!path) throw new Error('usage: durability-child.ts <db path>');

const often = process.argv[3] === 'often';
const store = await SqliteStore.open(path, often ? { checkpoint: { everyMs: 5, restartFrames: 32 } } : {});
process.stdout.write('ready\n');

let n = 0;
let restarts = 0;
async function writer(): Promise<never> {
  for (;;) {
    const id = `dur-${n++}`;
    await store.apply([
      { kind: 'allow.upsert', entry: { id, secret: `s-${id}`, type: 0, createdAt: 1_700_000_000 } },
      { kind: 'event', event: { at: 1_700_000_000, kind: 'test.durable', actor: 'system', deviceId: id } },
    ]);
    process.stdout.write(`committed ${id}\n`);
    if (often && store.stats.writerCheckpoints > restarts) {
      restarts = store.stats.writerCheckpoints;
      process.stdout.write('restarted\n');
    }
  }
}
await Promise.all(Array.from({ length: 8 }, writer));
