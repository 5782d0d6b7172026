/**
 * WAL checkpoints off the commit path (issue 17; docs/architecture.md "WAL checkpoints").
 *
 * SQLite's automatic checkpoint runs inside the COMMIT that takes the WAL past 1,000 pages: that one
 * commit copies every page back into the database file and fsyncs it (`synchronous=FULL`), and every
 * call queued behind it waits — the tail-latency spikes of the half-load benchmarks. So the writer
 * connection runs with `wal_autocheckpoint=0` and this checkpointer, on a connection of its own, runs
 * `PRAGMA wal_checkpoint(PASSIVE)` on a timer: the copy and the fsync of the database file happen on
 * the thread pool while the writer keeps committing.
 *
 * A PASSIVE checkpoint alone does not keep the WAL bounded under steady writes: SQLite restarts the
 * WAL from its beginning only when a write transaction starts while every frame is already copied
 * back, and commits keep landing while the checkpoint runs. So once the WAL holds `restartFrames`
 * frames, the checkpointer asks the writer for one more PASSIVE checkpoint *between* two groups
 * (`SqliteWriter.solo`), where no commit can land: it copies only the frames committed during the
 * checkpoint just done, and the next group restarts the WAL. A reader that still uses old frames at
 * that moment delays the restart to a later round; the WAL grows meanwhile, as it would with the
 * automatic checkpoint.
 *
 * Durability is unchanged: a commit is durable once its WAL frames are fsynced (every COMMIT, FULL);
 * a checkpoint only copies committed pages, and an interrupted one is redone from the WAL on open.
 */
import type { Database } from 'sqlite3';
import type { Logger } from '../../log.ts';
import { queryRow } from './db.ts';

/** When the checkpointer runs. */
export interface CheckpointPolicy {
  /** How often it looks for new commits and checkpoints them (ms). */
  everyMs: number;
  /** WAL size (frames, i.e. pages) from which it has the WAL restarted (see the module comment). */
  restartFrames: number;
}

/**
 * Every 100 ms, restart from 1,000 frames (SQLite's own autocheckpoint size; ~4 MiB at 4 KiB pages).
 * Small and frequent measured better than 500 ms / 4,000 frames, whose larger checkpoints made the
 * commits running beside them slower (the database fsync competes with the WAL's): docs/architecture.md
 * "WAL checkpoints off the commit path".
 */
export const DEFAULT_CHECKPOINT_POLICY: CheckpointPolicy = { everyMs: 100, restartFrames: 1000 };

/** Counters of the checkpointer (part of the store's stats). */
export interface CheckpointStats {
  /** PASSIVE checkpoints run on the checkpointer's connection. */
  checkpoints: number;
  /** Of the checkpoints run between two groups on the writer connection, to have the WAL restart. */
  writerCheckpoints: number;
  /** Frames in the WAL at the last checkpoint. */
  walFrames: number;
}

/** The part of the writer the checkpointer uses: running `fn` alone, between two groups. */
export interface SoloRunner {
  solo(fn: () => Promise<void>): Promise<void>;
}

interface CheckpointResult {
  busy: number;
  log: number;
  checkpointed: number;
}

async function passiveCheckpoint(db: Database): Promise<CheckpointResult> {
  const r = await queryRow(db, 'PRAGMA wal_checkpoint(PASSIVE)');
  return { busy: Number(r['busy']), log: Number(r['log']), checkpointed: Number(r['checkpointed']) };
}

export class WalCheckpointer {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  /** The writer's commit count when the last checkpoint started. */
  private checkpointedAt = -1;

  constructor(
    private readonly db: Database,
    private readonly writerDb: Database,
    private readonly writer: SoloRunner,
    private readonly commits: () => number,
    private readonly stats: CheckpointStats,
    private readonly policy: CheckpointPolicy,
    private readonly log: Logger | undefined,
  ) {}

  start(): void {
    this.timer ??= setInterval(() => void this.run(), this.policy.everyMs);
    // A timer must not keep the process alive; close() stops it.
    this.timer.unref();
  }

  /**
   * One round: a PASSIVE checkpoint when there were commits since the last one, then one between
   * two groups when the WAL has reached `restartFrames`. Resolves when done; a round already
   * running is waited for instead. Never rejects (a failure is logged and retried next round).
   */
  run(): Promise<void> {
    this.running ??= this.round().finally(() => (this.running = undefined));
    return this.running;
  }

  private async round(): Promise<void> {
    const commits = this.commits();
    if (commits === this.checkpointedAt) return;
    try {
      const r = await passiveCheckpoint(this.db);
      this.stats.checkpoints++;
      this.stats.walFrames = r.log;
      if (r.log >= this.policy.restartFrames) {
        await this.writer.solo(async () => {
          const w = await passiveCheckpoint(this.writerDb);
          this.stats.writerCheckpoints++;
          this.stats.walFrames = w.log;
        });
      }
      this.checkpointedAt = commits;
    } catch (e) {
      this.log?.warn({ err: (e as Error).message }, 'store: WAL checkpoint failed (retried on the next round)');
    }
  }

  /** Stops the timer and waits for a round in flight. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }
}
