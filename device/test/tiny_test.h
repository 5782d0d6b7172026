/*
 * A tiny test runner: TEST(name) functions, CHECK(cond), one "PASS name" / "FAIL name" line per test
 * (the mocha wrapper test/device/unit.test.ts turns each line into one `it`). Exit status = failures.
 *   binary            run all
 *   binary --list     print the test names
 *   binary NAME...    run only those
 */
#ifndef TINY_TEST_H
#define TINY_TEST_H
#include <stdio.h>
#include <string.h>

typedef struct { const char *name; void (*fn)(void); } tt_test_t;
static int tt_failed;
static long tt_checks;
#define CHECK(c) do { tt_checks++; if (!(c)) { printf("  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #c); tt_failed++; } } while (0)
#define CHECK_EQ(a, b) do { long long a_ = (long long)(a), b_ = (long long)(b); tt_checks++; if (a_ != b_) { printf("  %s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, #a, a_, #b, b_); tt_failed++; } } while (0)
#define CHECK_MEM(p, q, n) do { tt_checks++; if (memcmp((p), (q), (n)) != 0) { printf("  %s:%d: bytes %s differ from %s\n", __FILE__, __LINE__, #p, #q); tt_failed++; } } while (0)
#define T(fn) {#fn, fn}
#define TEST(name) static void name(void)

static int tt_main(int argc, char **argv, const tt_test_t *tests, size_t n) {
  size_t i;
  int j, failures = 0;
#ifdef TT_IGNORE_ARGS
  argc = 1; /* semihosting passes the kernel's command line: run everything */
#endif
  if (argc > 1 && strcmp(argv[1], "--list") == 0) {
    for (i = 0; i < n; i++) printf("%s\n", tests[i].name);
    return 0;
  }
  for (i = 0; i < n; i++) {
    int run = argc <= 1;
    for (j = 1; j < argc; j++) if (strcmp(argv[j], tests[i].name) == 0) run = 1;
    if (!run) continue;
    tt_failed = 0;
    tt_checks = 0;
    tests[i].fn();
    printf("%s %s (%ld checks)\n", tt_failed ? "FAIL" : "PASS", tests[i].name, tt_checks);
    if (tt_failed) failures++;
  }
  printf("%d failed\n", failures);
  return failures;
}
#endif
