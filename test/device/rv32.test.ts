/**
 * The C core on the ESP32-C3 instruction set: cross-compiled with riscv64-unknown-elf-gcc -march=rv32imc
 * -mabi=ilp32 -Os and picolibc (device/tools/rv32.mjs), measured against the targets of the issue
 * (core ≤ 10 KB flash, ≤ 1 KB static RAM, ≤ 2 KB stack, zero heap), and its codec tests run on an
 * emulated 32-bit RISC-V core (qemu-system-riscv32 -machine virt, semihosting).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { DEVICE } from '../support/c-library.ts';

interface Report {
  flash: { core: number; transport: number; total: number };
  ram: number;
  undefinedSymbols: string[];
  stacks: Record<string, { bytes: number; path: string }>;
  qemu: { status: number | null; passed: number; failed: number; tests: string[]; tail: string };
}

describe('device library (C) on rv32imc (ESP32-C3 class)', function () {
  this.timeout(600_000);
  let report: Report;
  let error = '';

  before(() => {
    const r = spawnSync('nice', ['-n', '10', process.execPath, join(DEVICE, 'tools/rv32.mjs'), '--json'], { encoding: 'utf8', timeout: 540_000 });
    if (r.status !== 0) error = `${r.stdout}${r.stderr}`;
    else report = JSON.parse(r.stdout.trim().split('\n').pop()!) as Report;
  });

  it('cross-compiles the core with -Wall -Wextra -Werror -pedantic into at most 10 KB of flash and no static RAM', () => {
    assert.equal(error, '', error);
    assert.ok(report.flash.core <= 10 * 1024, JSON.stringify(report.flash));
    assert.ok(report.ram <= 1024, `static RAM ${report.ram}`);
    assert.equal(report.ram, 0, 'no globals: .data and .bss are empty');
    const heap = report.undefinedSymbols.filter((s) => /^(malloc|calloc|realloc|free|_sbrk|sbrk)$/.test(s));
    assert.deepEqual(heap, [], 'zero heap: the core calls no allocator');
  });

  it('needs at most 2 KB of stack on its worst call chain (ports not counted)', () => {
    assert.equal(error, '', error);
    const worst = Object.entries(report.stacks).sort((a, b) => b[1].bytes - a[1].bytes)[0]!;
    assert.ok(worst[1].bytes <= 2048, `${worst[0]}: ${worst[1].bytes} B via ${worst[1].path}`);
  });

  it('passes its codec tests on qemu-system-riscv32 (32-bit words and alignment)', () => {
    assert.equal(error, '', error);
    assert.equal(report.qemu.status, 0, report.qemu.tail);
    assert.equal(report.qemu.failed, 0, report.qemu.tail);
    assert.ok(report.qemu.passed >= 20, report.qemu.tail);
  });
});
