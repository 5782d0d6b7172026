/**
 * The benchmark's load generator: a separate process (pinned to its own core by the orchestrator,
 * tools/bench/index.ts) driven over Node IPC with the jobs of ./lib/jobs.ts.
 *
 * CoAP load is raw `node:dgram` plus the project's codec (src/transport/coap/codec.ts `MessageWriter`
 * to build requests): one connected socket, hence one source port, per outstanding-request slot; each slot
 * keeps exactly one CON in flight, retransmits it with the same Message ID after 1 s (doubling, at
 * most 4 times, as RFC 7252 §4.2 does with a shorter first timeout), and matches the piggybacked ACK
 * by Message ID (a separate response by token, which it ACKs).
 *
 * Closed loop (`closed`): N slots, each starts its next operation as soon as the last one finished.
 * Throughput counts operations completed inside the timed window (after a warm-up). Open loop
 * (`open`): operations are started at a fixed rate on free slots; one without a free slot is counted
 * as missed. Every loop is bounded by its duration and a count; only 127.0.0.1 is ever targeted.
 *
 * Device keys are Ed25519 node:crypto KeyObjects. Requests are built with the project's codecs the
 * way test/support/device.ts's TestDevice builds them (TestDevice itself is not used because its
 * constructor also makes a tweetnacl box key pair, ~ms each, too slow for tens of thousands).
 */
import { generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { MessageWriter, OPT, TYPE_ACK, TYPE_CON, TYPE_RST, emptyMessage } from '../../src/transport/coap/codec.ts';
import { formatCode } from '../../src/protocol/coap-codes.ts';
import { encodeSign1, protectedHeader, sigStructure } from '../../src/protocol/cose.ts';
import { encodeRefreshBody, encodeRequestBody, parseResponse } from '../../src/protocol/messages.ts';
import { makeNonce } from '../../src/protocol/nonce.ts';
import { rawPublicKey } from '../../src/tokens/ed25519.ts';
import { benchImport } from './import.ts';
import type { Job, LoadCommon, LoadResult, Reply, ServerSample, Sizes, SoakSample } from './lib/jobs.ts';
import { summarize } from './lib/stats.ts';
import { NO_CPU, cpuAt, memMb, runqueueWaitNs, serverStats } from './lib/sys.ts';

const GET = 1;
const POST = 2;
const C_2_01 = (2 << 5) | 1;
const C_2_05 = (2 << 5) | 5;
const C_4_01 = (4 << 5) | 1;
const CF_COSE_SIGN1 = 18;
const EMPTY = Buffer.alloc(0);
const PATH_REQUEST = [Buffer.from('idprov'), Buffer.from('request')];
const PATH_REFRESH = [Buffer.from('idprov'), Buffer.from('refresh')];
const FIRST_RTO_MS = 1000;
const MAX_RETRANSMIT = 4;

const writer = new MessageWriter(4096);
let retransmits = 0;

/** The payload of a CoAP message (after 0xFF), walking the options (RFC 7252 §3.1). */
export function payloadOf(m: Buffer): Buffer {
  let i = 4 + (m[0]! & 15);
  while (i < m.length) {
    const h = m[i++]!;
    if (h === 0xff) return m.subarray(i);
    const d = h >> 4;
    let l = h & 15;
    if (d === 13) i += 1;
    else if (d === 14) i += 2;
    if (l === 13) l = m[i++]! + 13;
    else if (l === 14) {
      l = ((m[i]! << 8) | m[i + 1]!) + 269;
      i += 2;
    }
    i += l;
  }
  return EMPTY;
}

/** One outstanding-request slot: its own socket (source port) and at most one CON in flight. */
class Slot {
  private mid = Math.floor(Math.random() * 0x10000);
  private tokenVal = 0;
  private readonly token = Buffer.alloc(4);
  busy = false;
  private separate = false;
  firstSent = 0;
  private lastSent = 0;
  private rto = FIRST_RTO_MS;
  private tries = 0;
  private msg: Buffer = EMPTY;
  private cb: ((r: Buffer | undefined) => void) | undefined;

  private constructor(private readonly sock: dgram.Socket) {
    sock.on('message', (m: Buffer) => this.onMessage(m));
    sock.on('error', () => undefined);
  }

  /**
   * A socket bound to an ephemeral port and connected to the server: sends skip the per-datagram
   * address lookup, and the kernel delivers only the server's datagrams.
   */
  static open(host: string, port: number): Promise<Slot> {
    const sock = dgram.createSocket('udp4');
    return new Promise((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(0, '127.0.0.1', () => {
        sock.connect(port, host, () => {
          sock.off('error', reject);
          resolve(new Slot(sock));
        });
      });
    });
  }

  /** Bytes of the last request sent. */
  get lastRequestBytes(): number {
    return this.msg.length;
  }

  request(code: number, path: readonly Buffer[], contentFormat: number, payload: Buffer | undefined, cb: (r: Buffer | undefined) => void): void {
    this.mid = (this.mid + 1) & 0xffff;
    this.tokenVal = (this.tokenVal + 1) >>> 0;
    this.token.writeUInt32BE(this.tokenVal);
    const w = writer.begin(TYPE_CON, code, this.mid, this.token);
    for (const p of path) w.option(OPT.URI_PATH, p);
    if (contentFormat >= 0) w.optionUint(OPT.CONTENT_FORMAT, contentFormat);
    if (payload !== undefined) w.payload(payload);
    this.msg = w.finish();
    this.cb = cb;
    this.busy = true;
    this.separate = false;
    this.tries = 0;
    this.rto = FIRST_RTO_MS;
    this.firstSent = this.lastSent = performance.now();
    this.sock.send(this.msg);
  }

  private onMessage(m: Buffer): void {
    if (!this.busy || m.length < 4) return;
    const type = (m[0]! >> 4) & 3;
    const mid = (m[2]! << 8) | m[3]!;
    if (type === TYPE_ACK || type === TYPE_RST) {
      if (mid !== this.mid) return;
      if (type === TYPE_RST) return this.finish(undefined);
      if (m[1] === 0) {
        this.separate = true; // Empty ACK: the response follows as a separate message (§5.2.2)
        return;
      }
      return this.finish(m);
    }
    // A separate response (CON or NON), matched by token.
    if ((m[0]! & 15) !== 4 || m.length < 8 || m.readUInt32BE(4) !== this.tokenVal) return;
    if (type === TYPE_CON) this.sock.send(emptyMessage(TYPE_ACK, mid));
    this.finish(m);
  }

  private finish(r: Buffer | undefined): void {
    this.busy = false;
    const cb = this.cb;
    this.cb = undefined;
    cb?.(r);
  }

  /** Called every 50 ms: retransmit an overdue CON, give up after MAX_RETRANSMIT. */
  tick(now: number): void {
    if (!this.busy) return;
    if (this.separate) {
      if (now - this.firstSent > 30_000) this.finish(undefined);
      return;
    }
    if (now - this.lastSent < this.rto) return;
    if (this.tries >= MAX_RETRANSMIT) return this.finish(undefined);
    this.tries++;
    retransmits++;
    this.rto *= 2;
    this.lastSent = now;
    this.sock.send(this.msg);
  }

  close(): void {
    this.busy = false;
    this.cb = undefined;
    try {
      this.sock.close();
    } catch {
      /* already closed */
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Simulated devices.

interface Device {
  id: string;
  key: KeyObject;
  pk: Buffer;
  /** Signed request without a nonce (the first message of a provisioning). */
  req0: Buffer;
  token?: Buffer;
  /** Signed refresh without a nonce. */
  ref0?: Buffer;
}

const PROT = protectedHeader();
function signed(key: KeyObject, payload: Buffer): Buffer {
  return encodeSign1(PROT, payload, sign(null, sigStructure(PROT, payload), key));
}

/** Devices not yet provisioned (a queue) and provisioned ones (with a token). */
const fresh: Device[] = [];
let freshCursor = 0;
const provisioned: Device[] = [];
let refreshCursor = 0;
/** Pre-signed polls of pending devices. */
let polls: Buffer[] = [];
let pollCursor = 0;
let sizes: Sizes | undefined;

function newDevice(id: string): Device {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pk = rawPublicKey(publicKey);
  return { id, key: privateKey, pk, req0: signed(privateKey, encodeRequestBody({ id, pk, type: 0 })) };
}

let minted = 0;
function mint(count: number, idPrefix: string, reset: boolean): { ids: string[]; pks: string[] } {
  const ids: string[] = [];
  const pks: string[] = [];
  if (reset) {
    fresh.length = 0;
    provisioned.length = 0;
    refreshCursor = 0;
  }
  // Forget the devices already used, so the pool stays small.
  fresh.splice(0, freshCursor);
  freshCursor = 0;
  for (let i = fresh.length; i < count; i++) {
    const d = newDevice(`${idPrefix}${String(minted++).padStart(7, '0')}`);
    fresh.push(d);
    ids.push(d.id);
    pks.push(d.pk.toString('hex'));
  }
  return { ids, pks };
}

// ------------------------------------------------------------------------------------------------
// Operations. Each takes a slot index and calls `done` once, with an error label or nothing.

type Done = (err?: string) => void;
type Op = (i: number, done: Done) => void;

function errLabel(step: string, r: Buffer): string {
  let diag = '';
  try {
    diag = parseResponse(payloadOf(r)).diag ?? '';
  } catch {
    /* not a CBOR body */
  }
  return `${step}: ${formatCode(r[1]!)}${diag ? ` ${diag.slice(0, 60)}` : ''}`;
}

function getOp(slots: Slot[], onFirst: (bytes: number) => void): Op {
  let first = true;
  return (i, done) => {
    slots[i]!.request(GET, [], -1, undefined, (r) => {
      if (r === undefined) return done('timeout');
      if (r[1] !== C_2_05) return done(`GET: ${formatCode(r[1]!)}`);
      if (first) {
        first = false;
        onFirst(r.length);
      }
      done();
    });
  };
}

function provOp(slots: Slot[]): Op {
  return (i, done) => {
    const d = fresh[freshCursor];
    if (d === undefined) return done('exhausted');
    freshCursor++;
    const s = slots[i]!;
    s.request(POST, PATH_REQUEST, CF_COSE_SIGN1, d.req0, (r1) => {
      if (r1 === undefined) return done('timeout');
      if (r1[1] !== C_4_01) return done(errLabel('request (no nonce)', r1));
      const req0Coap = s.lastRequestBytes;
      let nonce: Uint8Array | undefined;
      try {
        nonce = parseResponse(payloadOf(r1)).nonce;
      } catch {
        return done('4.01 body unreadable');
      }
      if (nonce === undefined) return done('4.01 without a nonce');
      const req1 = signed(d.key, encodeRequestBody({ id: d.id, pk: d.pk, nonce, type: 0 }));
      s.request(POST, PATH_REQUEST, CF_COSE_SIGN1, req1, (r2) => {
        if (r2 === undefined) return done('timeout');
        if (r2[1] !== C_2_01) return done(errLabel('signed request', r2));
        const body = payloadOf(r2);
        const token = parseResponse(body).token;
        if (token === undefined) return done('2.01 without a token');
        d.token = Buffer.from(token);
        provisioned.push(d);
        sizes ??= {
          req0Coap,
          req0Cose: d.req0.length,
          resp401Coap: r1.length,
          req1Coap: s.lastRequestBytes,
          req1Cose: req1.length,
          resp201Coap: r2.length,
          resp201Body: body.length,
          token: token.length,
          tokenHex: Buffer.from(token).toString('hex'),
          resp201BodyHex: body.toString('hex'),
        };
        done();
      });
    });
  };
}

function refreshOp(slots: Slot[]): Op {
  return (i, done) => {
    if (provisioned.length === 0) return done('exhausted');
    const d = provisioned[refreshCursor++ % provisioned.length]!;
    const s = slots[i]!;
    d.ref0 ??= signed(d.key, encodeRefreshBody({ id: d.id, token: d.token! }));
    s.request(POST, PATH_REFRESH, CF_COSE_SIGN1, d.ref0, (r1) => {
      if (r1 === undefined) return done('timeout');
      if (r1[1] !== C_4_01) return done(errLabel('refresh (no nonce)', r1));
      let nonce: Uint8Array | undefined;
      try {
        nonce = parseResponse(payloadOf(r1)).nonce;
      } catch {
        return done('4.01 body unreadable');
      }
      if (nonce === undefined) return done('4.01 without a nonce');
      const ref1 = signed(d.key, encodeRefreshBody({ id: d.id, token: d.token!, nonce }));
      s.request(POST, PATH_REFRESH, CF_COSE_SIGN1, ref1, (r2) => {
        if (r2 === undefined) return done('timeout');
        if (r2[1] !== C_2_01) return done(errLabel('signed refresh', r2));
        done();
      });
    });
  };
}

function pollOp(slots: Slot[]): Op {
  return (i, done) => {
    const p = polls[pollCursor];
    if (p === undefined) return done('exhausted');
    pollCursor++;
    slots[i]!.request(POST, PATH_REQUEST, CF_COSE_SIGN1, p, (r) => {
      if (r === undefined) return done('timeout');
      if (r[1] !== C_2_05) return done(errLabel('poll', r));
      done();
    });
  };
}

async function dtlsOp(job: LoadCommon, suites: Record<string, number>): Promise<Op> {
  // Loaded here so that a DTLS module in mid-edit cannot break the other scenarios.
  const { DtlsClient } = await import('../dtls-peers/client.ts');
  const t = job.target;
  let next = 0;
  const identities = t.psk?.identities ?? 1;
  return (_i, done) => {
    DtlsClient.connect({
      host: t.host,
      port: t.port,
      ...(t.psk ? { psk: { identity: identities > 1 ? `${t.psk.identity}-${next++ % identities}` : t.psk.identity, key: Buffer.from(t.psk.keyHex, 'hex') } } : {}),
      ...(t.suites ? { suites: t.suites } : {}),
      skipVerify: true,
      retransmitMs: 1000,
      timeoutMs: 10_000,
    }).then(
      (c) => {
        const k = `0x${c.suite.toString(16).padStart(4, '0')}`;
        suites[k] = (suites[k] ?? 0) + 1;
        c.close();
        done();
      },
      (e: unknown) => done(`handshake: ${String((e as Error).message ?? e).slice(0, 80)}`),
    );
  };
}

// ------------------------------------------------------------------------------------------------
// Runners.

async function openSlots(n: number, host: string, port: number): Promise<Slot[]> {
  const slots: Slot[] = [];
  for (let i = 0; i < n; i++) slots.push(await Slot.open(host, port));
  return slots;
}

interface Prepared {
  op: Op;
  slots: Slot[];
  extra: Partial<LoadResult>;
  /** Called when the run ends, to fill in `extra`. */
  after?: () => void;
}

async function prepare(job: LoadCommon, nSlots: number): Promise<Prepared> {
  const { host, port } = job.target;
  if (host !== '127.0.0.1') throw new Error('the load generator only targets 127.0.0.1');
  if (job.op === 'dtls') {
    const suites: Record<string, number> = {};
    const extra: Partial<LoadResult> = { suites };
    return { op: await dtlsOp(job, suites), slots: [], extra };
  }
  const slots = await openSlots(nSlots, host, port);
  const extra: Partial<LoadResult> = {};
  switch (job.op) {
    case 'get':
      return {
        op: getOp(slots, (b) => {
          extra.responseBytes = b;
        }),
        slots,
        extra,
      };
    case 'prov':
      return {
        op: provOp(slots),
        slots,
        extra,
        after: () => {
          if (sizes) extra.sizes = sizes;
        },
      };
    case 'refresh':
      return { op: refreshOp(slots), slots, extra };
    case 'poll':
      return { op: pollOp(slots), slots, extra };
  }
}

function label(errors: Record<string, number>, e: string): void {
  const k = Object.keys(errors).length < 20 || e in errors ? e : 'other';
  errors[k] = (errors[k] ?? 0) + 1;
}

/** Closed loop: `concurrency` slots, each back-to-back. */
async function runClosed(job: Extract<Job, { kind: 'closed' }>): Promise<LoadResult> {
  const n = job.concurrency;
  const p = await prepare(job, n);
  const lat = new Float64Array(Math.max(1, job.maxOps));
  const errors: Record<string, number> = {};
  let count = 0;
  let phase: 0 | 1 | 2 = 0;
  let tStart = 0;
  let tEnd = 0;
  let cpu0 = NO_CPU;
  let wait0 = 0;
  let genWait0 = 0;
  let genWaitPct = 0;
  let gen0 = process.cpuUsage();
  let stoppedBy: LoadResult['stoppedBy'] = 'time';
  let server: ServerSample | undefined;
  let genPct = 0;
  let retx0 = 0;
  let retx = 0;
  let active = n;
  let resolveAll!: () => void;
  const allDone = new Promise<void>((r) => (resolveAll = r));
  const ticker = setInterval(() => {
    const now = performance.now();
    for (const s of p.slots) s.tick(now);
  }, 50);

  const stop = (why: LoadResult['stoppedBy']): void => {
    if (phase !== 1) {
      phase = 2;
      return;
    }
    phase = 2;
    tEnd = performance.now();
    stoppedBy = why;
    const secs = (tEnd - tStart) / 1000;
    server = serverStats(job.serverPid, cpu0, wait0, secs, count);
    genWaitPct = ((runqueueWaitNs(process.pid) - genWait0) / 1e9 / secs) * 100;
    const g = process.cpuUsage(gen0);
    genPct = ((g.user + g.system) / 1e6 / secs) * 100;
    retx = retransmits - retx0;
  };
  const startWindow = (): void => {
    if (phase !== 0) return;
    phase = 1;
    tStart = performance.now();
    cpu0 = cpuAt(job.serverPid);
    wait0 = job.serverPid !== undefined ? runqueueWaitNs(job.serverPid) : 0;
    genWait0 = runqueueWaitNs(process.pid);
    gen0 = process.cpuUsage();
    retx0 = retransmits;
    setTimeout(() => stop('time'), job.durationMs);
  };
  const warm = setTimeout(startWindow, job.warmupMs);

  const loop = (i: number): void => {
    if (phase === 2) {
      if (--active === 0) resolveAll();
      return;
    }
    const t0 = performance.now();
    p.op(i, (err) => {
      if (err === 'exhausted') {
        stop('pool');
        if (--active === 0) resolveAll();
        return;
      }
      if (phase === 1) {
        if (err !== undefined) label(errors, err);
        else {
          lat[count++] = performance.now() - t0;
          if (count >= job.maxOps) stop('count');
        }
      }
      loop(i);
    });
  };
  for (let i = 0; i < n; i++) loop(i);
  // Bounded: the window ends by time at the latest; stragglers time out within MAX_RETRANSMIT.
  await Promise.race([allDone, new Promise((r) => setTimeout(r, job.warmupMs + job.durationMs + 20_000))]);
  clearTimeout(warm);
  clearInterval(ticker);
  if ((phase as number) !== 2) stop('time');
  for (const s of p.slots) s.close();
  p.after?.();
  const seconds = tEnd > tStart ? (tEnd - tStart) / 1000 : NaN;
  return {
    op: job.op,
    mode: 'closed',
    concurrency: n,
    ops: count,
    seconds,
    opsPerSec: count / seconds,
    latency: summarize(lat, count),
    errors,
    retransmits: retx,
    stoppedBy,
    generatorCpuPct: genPct,
    generatorWaitPct: genWaitPct,
    ...(server ? { server } : {}),
    ...p.extra,
  };
}

/** Open loop: operations started at `rate` per second on free slots; optional periodic samples. */
async function runOpen(job: Extract<Job, { kind: 'open' }>): Promise<LoadResult> {
  const p = await prepare(job, job.slots);
  // Latencies kept: all up to 4M, then a uniform reservoir sample of 4M (long soaks).
  const cap = Math.max(1, Math.min(job.maxOps, 4_000_000));
  const lat = new Float64Array(cap);
  const errors: Record<string, number> = {};
  const free: number[] = [];
  for (let i = job.slots - 1; i >= 0; i--) free.push(i);
  let count = 0;
  let missed = 0;
  let late = 0;
  let phase: 0 | 1 | 2 = 0;
  let stoppedBy: LoadResult['stoppedBy'] = 'time';
  let server: ServerSample | undefined;
  let genPct = 0;
  let retx0 = 0;
  let retx = 0;
  let cpu0 = NO_CPU;
  let wait0 = 0;
  let genWait0 = 0;
  let genWaitPct = 0;
  let gen0 = process.cpuUsage();
  const t0 = performance.now();
  const tStart = t0 + job.warmupMs;
  let tEnd = tStart + job.durationMs;
  let issued = 0;
  // Soak samples: latencies since the last sample.
  const samples: SoakSample[] = [];
  let iLat = new Float64Array(1024);
  let iCount = 0;
  let iErrors = 0;
  let lastSample = tStart;

  const stop = (why: LoadResult['stoppedBy']): void => {
    if (phase === 2) return;
    const was = phase;
    phase = 2;
    if (was !== 1) return;
    tEnd = performance.now();
    stoppedBy = why;
    if (job.sampleMs !== undefined && tEnd - lastSample >= job.sampleMs / 2) sample(tEnd);
    const secs = (tEnd - tStart) / 1000;
    server = serverStats(job.serverPid, cpu0, wait0, secs, count);
    genWaitPct = ((runqueueWaitNs(process.pid) - genWait0) / 1e9 / secs) * 100;
    const g = process.cpuUsage(gen0);
    genPct = ((g.user + g.system) / 1e6 / secs) * 100;
    retx = retransmits - retx0;
  };
  const sample = (now: number): void => {
    if (job.sampleMs === undefined || job.serverPid === undefined) return;
    const s = summarize(iLat, iCount);
    let rss = NaN;
    try {
      rss = memMb(job.serverPid, 'VmRSS');
    } catch {
      /* the server is gone */
    }
    samples.push({ t: Math.round((now - tStart) / 100) / 10, rssMb: rss, p99: s.p99, p50: s.p50, opsPerSec: iCount / ((now - lastSample) / 1000), errors: iErrors });
    iCount = 0;
    iErrors = 0;
    lastSample = now;
  };

  let resolveAll!: () => void;
  const allDone = new Promise<void>((r) => (resolveAll = r));
  const inflight = { n: 0 };
  const ticker = setInterval(() => {
    const now = performance.now();
    for (const s of p.slots) s.tick(now);
  }, 50);
  const sched = setInterval(() => {
    const now = performance.now();
    if (phase === 0 && now >= tStart) {
      phase = 1;
      cpu0 = cpuAt(job.serverPid);
    wait0 = job.serverPid !== undefined ? runqueueWaitNs(job.serverPid) : 0;
    genWait0 = runqueueWaitNs(process.pid);
      gen0 = process.cpuUsage();
      retx0 = retransmits;
    }
    if (phase === 1 && job.sampleMs !== undefined && now - lastSample >= job.sampleMs) sample(now);
    if (phase === 1 && now >= tEnd) stop('time');
    if (phase === 2) {
      clearInterval(sched);
      if (inflight.n === 0) resolveAll();
      return;
    }
    const due = Math.floor(((now - t0) * job.rate) / 1000);
    while (issued < due && (phase as number) !== 2) {
      const intended = t0 + (issued * 1000) / job.rate;
      issued++;
      const i = free.pop();
      if (i === undefined) {
        if (phase === 1) missed++;
        continue;
      }
      const start = performance.now();
      if (phase === 1 && start - intended > 5) late++;
      inflight.n++;
      p.op(i, (err) => {
        inflight.n--;
        free.push(i);
        if (err === 'exhausted') stop('pool');
        else if (phase === 1) {
          if (err !== undefined) {
            label(errors, err);
            iErrors++;
          } else {
            const ms = performance.now() - start;
            if (count < cap) lat[count] = ms;
            else {
              const k = Math.floor(Math.random() * (count + 1));
              if (k < cap) lat[k] = ms;
            }
            count++;
            if (job.sampleMs !== undefined) {
              if (iCount === iLat.length) {
                const bigger = new Float64Array(iLat.length * 2);
                bigger.set(iLat);
                iLat = bigger;
              }
              iLat[iCount++] = ms;
            }
            if (count >= job.maxOps) stop('count');
          }
        }
        if (phase === 2 && inflight.n === 0) resolveAll();
      });
    }
  }, 1);
  await Promise.race([allDone, new Promise((r) => setTimeout(r, job.warmupMs + job.durationMs + 20_000))]);
  clearInterval(sched);
  clearInterval(ticker);
  if ((phase as number) !== 2) stop('time');
  for (const s of p.slots) s.close();
  p.after?.();
  const seconds = (tEnd - tStart) / 1000;
  return {
    op: job.op,
    mode: 'open',
    rate: job.rate,
    ops: count,
    seconds,
    opsPerSec: count / seconds,
    latency: summarize(lat, Math.min(count, cap)),
    errors,
    retransmits: retx,
    missed,
    late,
    stoppedBy,
    generatorCpuPct: genPct,
    generatorWaitPct: genWaitPct,
    ...(server ? { server } : {}),
    ...(job.sampleMs !== undefined ? { samples } : {}),
    ...p.extra,
  };
}

// ------------------------------------------------------------------------------------------------

async function handle(job: Job): Promise<Reply> {
  const t0 = performance.now();
  switch (job.kind) {
    case 'closed':
      return { ok: true, kind: 'load', result: await runClosed(job) };
    case 'open':
      return { ok: true, kind: 'load', result: await runOpen(job) };
    case 'mint': {
      const r = mint(job.count, job.idPrefix, job.reset === true);
      return { ok: true, kind: 'mint', ...r, ms: performance.now() - t0 };
    }
    case 'prepare-refresh':
      for (const d of provisioned) d.ref0 ??= signed(d.key, encodeRefreshBody({ id: d.id, token: d.token! }));
      return { ok: true, kind: 'done', ms: performance.now() - t0, detail: { devices: provisioned.length } };
    case 'prepare-polls': {
      const secret = Buffer.from(job.nonceSecretHex, 'hex');
      const exp = Math.floor(Date.now() / 1000) + job.nonceTtlS;
      const ids: string[] = [];
      const pks: string[] = [];
      polls = [];
      pollCursor = 0;
      for (let i = 0; i < job.count; i++) {
        const id = `${job.idPrefix}${String(i).padStart(7, '0')}`;
        const { privateKey, publicKey } = generateKeyPairSync('ed25519');
        const pk = rawPublicKey(publicKey);
        // Nonces are bound to the address they were sent to (docs/security.md): the polls come from loopback.
        const nonce = makeNonce(secret, id, exp, randomBytes(8), '127.0.0.1');
        polls.push(signed(privateKey, encodeRequestBody({ id, pk, nonce, type: 0 })));
        ids.push(id);
        pks.push(pk.toString('hex'));
      }
      return { ok: true, kind: 'mint', ids, pks, ms: performance.now() - t0 };
    }
    case 'import': {
      const r = await benchImport(job.rows, job.serverCpu !== undefined ? { serverCpu: job.serverCpu } : {});
      return { ok: true, kind: 'done', ms: performance.now() - t0, detail: r };
    }
    case 'exit':
      setImmediate(() => process.exit(0));
      return { ok: true, kind: 'done', ms: 0 };
  }
}

if (process.send === undefined) {
  console.error('tools/bench/loadgen.ts is started by tools/bench/index.ts (it needs an IPC channel)');
  process.exit(2);
}
let queue = Promise.resolve();
process.on('message', (job: Job) => {
  queue = queue.then(async () => {
    let reply: Reply;
    try {
      reply = await handle(job);
    } catch (e) {
      reply = { ok: false, error: (e as Error).stack ?? String(e) };
    }
    process.send!(reply);
  });
});
process.on('disconnect', () => process.exit(0));
process.send({ ok: true, kind: 'done', ms: 0, detail: 'ready' } satisfies Reply);
