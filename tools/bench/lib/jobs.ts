/**
 * The messages between the benchmark orchestrator (tools/bench/index.ts) and its load generator
 * (tools/bench/loadgen.ts), a separate process pinned to its own core and driven over Node IPC.
 */
import type { Latency } from './stats.ts';

/** What one operation is. */
export type OpKind =
  /** One CON GET (scenario 1). */
  | 'get'
  /** Full provisioning: request without nonce → 4.01 → signed request with the nonce → 2.01 (scenario 2). */
  | 'prov'
  /** Refresh: refresh without nonce → 4.01 → signed refresh with the nonce → 2.01 (scenario 3). */
  | 'refresh'
  /** One signed poll of a pending device with a valid nonce → 2.05 pending (scenario 6). */
  | 'poll'
  /** One full DTLS handshake, then close_notify (scenario 4). */
  | 'dtls';

export interface Target {
  host: string;
  port: number;
  /** DTLS: PSK identity and key (hex); absent = ECDHE_ECDSA. */
  /** `identities` > 1: the handshakes cycle through `<identity>-0` … `<identity>-(identities-1)`, one key. */
  psk?: { identity: string; keyHex: string; identities?: number };
  /** DTLS: the cipher suites to offer, in order. */
  suites?: number[];
}

export interface LoadCommon {
  op: OpKind;
  target: Target;
  warmupMs: number;
  durationMs: number;
  /** Stop after this many completed operations in the timed window. */
  maxOps: number;
  /** Server process whose CPU time and RSS are read at the window's edges. */
  serverPid?: number;
}

export type Job =
  | ({ kind: 'closed'; concurrency: number } & LoadCommon)
  | ({ kind: 'open'; rate: number; slots: number; sampleMs?: number } & LoadCommon)
  /**
   * Make sure `count` unused devices are ready (keys and nonce-less signed requests), making the
   * missing ones; answers with the ids and public keys of the new ones. `reset` first forgets every
   * device (for a new server).
   */
  | { kind: 'mint'; count: number; idPrefix: string; reset?: boolean }
  /** Pre-sign each provisioned device's nonce-less refresh (outside any timed window). */
  | { kind: 'prepare-refresh' }
  /**
   * Make `count` pending-device keys and one signed poll each, with a nonce computed from the
   * server's nonce secret (as a device holds from its last pending answer).
   */
  | { kind: 'prepare-polls'; count: number; idPrefix: string; nonceSecretHex: string; nonceTtlS: number }
  /** Scenario 5: benchImport(rows) with the server pinned to `serverCpu`. */
  | { kind: 'import'; rows: number; serverCpu?: string }
  | { kind: 'exit' };

export interface ServerSample {
  cpuSeconds: number;
  /** The kernel's share of cpuSeconds (stime: syscalls, fsync, UDP). */
  systemSeconds: number;
  /** The main (JavaScript) thread's share of cpuSeconds; NaN when /proc has no per-thread figures. */
  mainThreadSeconds: number;
  /** Server CPU per completed operation (µs). */
  cpuPerOpUs: number;
  /** Server CPU use during the window, % of one core. */
  cpuPct: number;
  rssMb: number;
  hwmMb: number;
  /** % of the window the server's main thread was runnable but waiting for a CPU (others had it). */
  waitPct: number;
}

export interface ServerLoop {
  /**
   * Event-loop delay over the window beyond the 10 ms sampling timer (perf_hooks
   * monitorEventLoopDelay through prom-client): how long a ready callback — a datagram, a finished
   * SQLite statement — could wait for the main thread. p99 and max, ms.
   */
  delayP99Ms: number;
  delayMaxMs: number;
  /** Garbage-collection pauses of the main thread: count, total ms, and ms per second of window. */
  gcCount: number;
  gcMs: number;
  gcMsPerSec: number;
}

export interface SoakSample {
  /** Seconds since the timed window started. */
  t: number;
  rssMb: number;
  p99: number;
  p50: number;
  opsPerSec: number;
  errors: number;
}

export interface Sizes {
  /** Datagram and COSE bytes of the nonce-less request, the 4.01, the signed request and the 2.01. */
  req0Coap: number;
  req0Cose: number;
  resp401Coap: number;
  req1Coap: number;
  req1Cose: number;
  resp201Coap: number;
  resp201Body: number;
  token: number;
  /** One token, hex, for scenario 7's JWT comparison. */
  tokenHex: string;
  /** The response body of the 2.01, hex. */
  resp201BodyHex: string;
}

export interface LoadResult {
  op: OpKind;
  mode: 'closed' | 'open';
  concurrency?: number;
  rate?: number;
  ops: number;
  seconds: number;
  opsPerSec: number;
  latency: Latency;
  errors: Record<string, number>;
  retransmits: number;
  /** Open loop: operations that found no free slot (counted as missed, not sent). */
  missed?: number;
  /** Open loop: operations started more than 5 ms after their scheduled time. */
  late?: number;
  stoppedBy: 'time' | 'count' | 'pool';
  /** Load generator CPU during the window, % of one core (near 100 = the generator was the limit). */
  generatorCpuPct: number;
  /** % of the window the generator's main thread waited for a CPU. */
  generatorWaitPct: number;
  server?: ServerSample;
  /** Event-loop delay and GC of an idprov server over the window (its /metrics), when read. */
  serverLoop?: ServerLoop;
  samples?: SoakSample[];
  sizes?: Sizes;
  /** DTLS: the cipher suites negotiated (hex code → count). */
  suites?: Record<string, number>;
  /** Response datagram bytes of the first successful GET (scenario 1 fairness check). */
  responseBytes?: number;
}

export type Reply =
  | { ok: true; kind: 'load'; result: LoadResult }
  | { ok: true; kind: 'mint'; ids: string[]; pks: string[]; ms: number }
  | { ok: true; kind: 'done'; ms: number; detail?: unknown }
  | { ok: false; error: string };
