#!/usr/bin/env node
/*
 * The core on an ESP32-C3-class target: cross-compiles device/src with riscv64-unknown-elf-gcc
 * -march=rv32imc -mabi=ilp32 -Os and picolibc, reports per-file .text/.rodata/.data/.bss (size -A),
 * the worst stack chain from -fstack-usage / -fcallgraph-info, then builds the portable codec tests
 * (test_codecs.c) and runs them on qemu-system-riscv32 -machine virt with semihosting.
 *
 *   node device/tools/rv32.mjs [--json] [--no-qemu]      (output in device/build/rv32)
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';

const DEVICE = join(import.meta.dirname, '..');
const ROOT = join(DEVICE, '..');
const OUT = join(DEVICE, 'build', 'rv32');
const CORE = ['cbor', 'decode_util', 'cose', 'messages', 'token', 'errors', 'coap', 'machine'];
const CC = 'riscv64-unknown-elf-gcc';
const ARCH = ['--specs=picolibc.specs', '-march=rv32imc', '-mabi=ilp32', '-Os'];
const json = process.argv.includes('--json');
const MAX_DEPTH = 8; // IDPROV_CBOR_MAX_DEPTH: frames of the recursive idprov_cbor_skip = MAX_DEPTH + 1

mkdirSync(OUT, { recursive: true });
const sh = (cmd, args, o = {}) => execFileSync(cmd, args, { encoding: 'utf8', ...o });

// 1. compile the core, one object per file
for (const f of CORE) {
  sh(CC, [...ARCH, '-std=c99', '-Wall', '-Wextra', '-Werror', '-pedantic', '-ffunction-sections', '-fdata-sections', '-fstack-usage',
    '-fcallgraph-info=su', `-I${join(DEVICE, 'include')}`, '-c', join(DEVICE, 'src', `${f}.c`), '-o', join(OUT, `${f}.o`)], { cwd: OUT });
}

// 2. sections per file
const files = CORE.map((f) => {
  const row = { file: `src/${f}.c`, text: 0, rodata: 0, data: 0, bss: 0 };
  for (const line of sh('riscv64-unknown-elf-size', ['-A', join(OUT, `${f}.o`)]).split('\n')) {
    const m = /^(\.\S+)\s+(\d+)/.exec(line);
    if (!m) continue;
    const [, sec, n] = m;
    const size = Number(n);
    if (/^\.text/.test(sec)) row.text += size;
    else if (/^\.s?rodata/.test(sec)) row.rodata += size;
    else if (/^\.s?data/.test(sec)) row.data += size;
    else if (/^\.s?bss/.test(sec)) row.bss += size;
  }
  return row;
});
// the CoAP client is the transport port (RFC 7252 over idprov_dgram_t); everything else is the core
const TRANSPORT = ['src/coap.c'];
const sum = (rows) => rows.reduce((a, r) => ({ text: a.text + r.text, rodata: a.rodata + r.rodata, data: a.data + r.data, bss: a.bss + r.bss }), { text: 0, rodata: 0, data: 0, bss: 0 });
const total = sum(files);
const core = sum(files.filter((r) => !TRANSPORT.includes(r.file)));
const transport = sum(files.filter((r) => TRANSPORT.includes(r.file)));
const flashOf = (t) => t.text + t.rodata + t.data;

// caller-owned RAM: the context and the CoAP client structs on this ABI
writeFileSync(join(OUT, 'sizes.c'), '#include "idprov.h"\nconst unsigned ctx_size = sizeof(idprov_ctx_t);\nconst unsigned coap_size = sizeof(idprov_coap_client_t);\n');
const asm = sh(CC, [...ARCH, `-I${join(DEVICE, 'include')}`, '-S', '-o', '-', join(OUT, 'sizes.c')]);
const structs = { ctx: Number(/ctx_size:\s*\.word\s+(\d+)/.exec(asm)[1]), coapClient: Number(/coap_size:\s*\.word\s+(\d+)/.exec(asm)[1]) };

// undefined symbols the core needs from libc/libgcc (no heap: malloc/free must not appear)
const undefinedSymbols = [...new Set(CORE.flatMap((f) => sh('riscv64-unknown-elf-nm', ['-u', join(OUT, `${f}.o`)]).split('\n').map((l) => l.trim().replace(/^U /, '')).filter(Boolean)))]
  .filter((s) => !s.startsWith('idprov_')).sort();

// 3. stack: call graph from the .ci files, frames from their labels
const frame = new Map();
const edges = new Map();
for (const f of CORE) {
  const ci = readFileSync(join(OUT, `${f}.ci`), 'utf8');
  for (const m of ci.matchAll(/node: \{ title: "([^"]+)" label: "([^"]*)"/g)) {
    const bytes = /\\n(\d+) bytes/.exec(m[2]);
    if (bytes) frame.set(m[1], Number(bytes[1]));
  }
  for (const m of ci.matchAll(/edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"/g)) {
    if (!edges.has(m[1])) edges.set(m[1], new Set());
    edges.get(m[1]).add(m[2]);
  }
}
// indirect calls the graph cannot see: the machine's transport is the CoAP client (ports not counted)
// (post and idprov_fetch_keys call transport.exchange through a pointer)
for (const [src, set] of edges) if (set.has('__indirect_call') && ['post', 'exchange', 'idprov_fetch_keys'].includes(name(src))) set.add('idprov_coap_exchange');
function name(t) {
  return t.replace(/^.*:/, '');
}
const memo = new Map();
function worst(node, stack = new Set()) {
  if (memo.has(node)) return memo.get(node);
  const own = frame.get(node) ?? 0; // libc/libgcc leaves (memcpy, __udivdi3) are not in the graph: counted 0
  const self = edges.get(node)?.has(node);
  const mine = self ? own * (MAX_DEPTH + 1) : own; // bounded recursion (depth limit)
  stack.add(node);
  let best = { bytes: mine, path: [self ? `${name(node)}×${MAX_DEPTH + 1}` : name(node)] };
  for (const t of edges.get(node) ?? []) {
    if (t === node || stack.has(t)) continue;
    const w = worst(t, stack);
    if (mine + w.bytes > best.bytes) best = { bytes: mine + w.bytes, path: [best.path[0], ...w.path] };
  }
  stack.delete(node);
  memo.set(node, best);
  return best;
}
const entries = ['idprov_provision', 'idprov_refresh', 'idprov_fetch_keys', 'idprov_response_parse', 'idprov_token_verify', 'idprov_coap_exchange'];
const stacks = Object.fromEntries(entries.map((e) => [e, worst(e)]));
const worstEntry = entries.reduce((a, e) => (stacks[e].bytes > stacks[a].bytes ? e : a));
const biggestFrame = [...frame.entries()].sort((a, b) => b[1] - a[1])[0];

// 4. the codec tests on qemu-system-riscv32 (semihosting)
let qemu = { skipped: true };
if (!process.argv.includes('--no-qemu')) {
  const gen = join(OUT, 'gen');
  mkdirSync(gen, { recursive: true });
  sh(process.execPath, [join(DEVICE, 'test', 'gen-fixtures.mjs'), ROOT, join(gen, 'fixtures.h')]);
  const elf = join(OUT, 'test_codecs.elf');
  sh(CC, [...ARCH, '--oslib=semihost', '--crt0=semihost', '-std=c99', '-DIDPROV_TEST_QUICK', '-DTT_IGNORE_ARGS', `-I${join(DEVICE, 'include')}`, `-I${gen}`, `-I${join(DEVICE, 'src')}`,
    join(DEVICE, 'test', 'test_codecs.c'), ...CORE.map((f) => join(DEVICE, 'src', `${f}.c`)), '-Wl,--defsym=__flash=0x80000000', '-Wl,--defsym=__flash_size=0x200000',
    '-Wl,--defsym=__ram=0x80200000', '-Wl,--defsym=__ram_size=0x200000', '-o', elf]);
  const t0 = Date.now();
  const r = spawnSync('qemu-system-riscv32', ['-machine', 'virt', '-nographic', '-bios', 'none', '-kernel', elf, '-semihosting-config', 'enable=on,target=native'], { encoding: 'utf8', timeout: 600_000 });
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`; // semihosting output arrives on QEMU's stderr
  qemu = {
    status: r.status,
    ms: Date.now() - t0,
    passed: (out.match(/^PASS /gm) ?? []).length,
    failed: (out.match(/^FAIL /gm) ?? []).length,
    tests: out.split('\n').filter((l) => /^(PASS|FAIL) /.test(l)),
    tail: out.slice(-3000),
  };
}

const report = { target: 'rv32imc ilp32 -Os, picolibc (riscv64-unknown-elf-gcc 12)', files, total, core, transport,
  undefinedSymbols, structs, flash: { core: flashOf(core), transport: flashOf(transport), total: flashOf(total) }, ram: total.data + total.bss,
  stacks: Object.fromEntries(Object.entries(stacks).map(([k, v]) => [k, { bytes: v.bytes, path: v.path.join(' → ') }])), worstEntry, biggestFrame: { fn: name(biggestFrame[0]), bytes: biggestFrame[1] }, qemu };
writeFileSync(join(OUT, 'report.json'), JSON.stringify(report, null, 2));
if (json) {
  process.stdout.write(`${JSON.stringify(report)}\n`);
} else {
  console.log(`| file | .text | .rodata | .data | .bss |\n| --- | ---: | ---: | ---: | ---: |`);
  for (const r of files) console.log(`| ${r.file} | ${r.text} | ${r.rodata} | ${r.data} | ${r.bss} |`);
  console.log(`| **total** | **${total.text}** | **${total.rodata}** | **${total.data}** | **${total.bss}** |`);
  console.log(`\nflash: core ${report.flash.core} B + CoAP transport ${report.flash.transport} B = ${report.flash.total} B; static RAM ${report.ram} B; heap 0`);
  for (const [k, v] of Object.entries(report.stacks)) console.log(`stack ${k}: ${v.bytes} B  (${v.path})`);
  console.log(`sizeof(idprov_ctx_t) ${structs.ctx} B, sizeof(idprov_coap_client_t) ${structs.coapClient} B (caller-owned)`);
  console.log(`libc/libgcc symbols used: ${undefinedSymbols.join(', ')}`);
  console.log(`largest frame: ${report.biggestFrame.fn} ${report.biggestFrame.bytes} B`);
  if (!qemu.skipped) console.log(`qemu-system-riscv32: exit ${qemu.status}, ${qemu.passed} passed, ${qemu.failed} failed, ${qemu.ms} ms`);
}
void basename;
