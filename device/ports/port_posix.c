/*
 * POSIX clock and file storage. Storage keeps device-sim's layout so that a key made by one runs
 * the other: the key file is JSON {"seed": hex, "x25519Secret": hex} (mode 0600); the token is the raw
 * CWT in FILE.token (mode 0600, replaced atomically); this library adds FILE.token-meta (exp, ttl)
 * and FILE.server (remembered kid and fp).
 */
#define _POSIX_C_SOURCE 200809L
#include "idprov_ports.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ms(void *u) {
  struct timespec ts;
  (void)u;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
static uint64_t epoch_s(void *u) {
  (void)u;
  return (uint64_t)time(NULL);
}
static void sleep_ms(void *u, uint32_t ms) {
  struct timespec ts;
  (void)u;
  ts.tv_sec = ms / 1000u;
  ts.tv_nsec = (long)(ms % 1000u) * 1000000L;
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}
void idprov_clock_posix(idprov_clock_t *c) {
  c->user = NULL;
  c->now_ms = now_ms;
  c->epoch_s = epoch_s;
  c->sleep_ms = sleep_ms;
}

static const char *suffix(idprov_item_t item) {
  switch (item) {
  case IDPROV_ITEM_TOKEN: return ".token";
  case IDPROV_ITEM_TOKEN_META: return ".token-meta";
  case IDPROV_ITEM_SERVER: return ".server";
  default: return "";
  }
}

static int path_of(const idprov_file_storage_t *fs, idprov_item_t item, char *out, size_t cap) {
  int n = snprintf(out, cap, "%s%s", fs->key_file, suffix(item));
  return n > 0 && (size_t)n < cap ? 0 : -1;
}

static int read_all(const char *path, uint8_t *buf, size_t cap, size_t *len) {
  FILE *f = fopen(path, "rb");
  size_t n;
  if (!f) return errno == ENOENT ? IDPROV_ERR_NOT_FOUND : IDPROV_ERR_STORAGE;
  n = fread(buf, 1, cap, f);
  if (ferror(f) || (n == cap && fgetc(f) != EOF)) {
    fclose(f);
    return IDPROV_ERR_STORAGE;
  }
  fclose(f);
  *len = n;
  return IDPROV_OK;
}

static int write_private(const char *path, const uint8_t *buf, size_t len, int exclusive) {
  char tmp[4096 + 16];
  int fd;
  const char *target = path;
  if (!exclusive) {
    if (snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid()) >= (int)sizeof tmp) return IDPROV_ERR_STORAGE;
    target = tmp;
  }
  fd = open(target, O_WRONLY | O_CREAT | (exclusive ? O_EXCL : O_TRUNC), 0600);
  if (fd < 0) return IDPROV_ERR_STORAGE;
  if ((len && write(fd, buf, len) != (ssize_t)len) || fsync(fd) != 0) {
    close(fd);
    return IDPROV_ERR_STORAGE;
  }
  close(fd);
  chmod(target, 0600);
  if (!exclusive && rename(tmp, path) != 0) return IDPROV_ERR_STORAGE;
  return IDPROV_OK;
}

static int hexval(int c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}
/* Finds "name" : "<64 hex>" in a small JSON object. */
static int json_hex32(const char *js, const char *name, uint8_t out[32]) {
  char pat[32];
  const char *p;
  int i;
  snprintf(pat, sizeof pat, "\"%s\"", name);
  p = strstr(js, pat);
  if (!p) return -1;
  p += strlen(pat);
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
  if (*p++ != ':') return -1;
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
  if (*p++ != '"') return -1;
  for (i = 0; i < 32; i++) {
    int h = hexval(p[2 * i]), l = h < 0 ? -1 : hexval(p[2 * i + 1]);
    if (h < 0 || l < 0) return -1;
    out[i] = (uint8_t)(h << 4 | l);
  }
  return p[64] == '"' ? 0 : -1;
}

static int load(void *u, idprov_item_t item, uint8_t *buf, size_t cap, size_t *len) {
  const idprov_file_storage_t *fs = (const idprov_file_storage_t *)u;
  char path[4096];
  if (path_of(fs, item, path, sizeof path)) return IDPROV_ERR_STORAGE;
  if (item == IDPROV_ITEM_KEY) {
    char js[1024];
    size_t n = 0;
    int rc = read_all(path, (uint8_t *)js, sizeof js - 1, &n);
    if (rc) return rc;
    js[n] = 0;
    if (cap < 64 || json_hex32(js, "seed", buf) || json_hex32(js, "x25519Secret", buf + 32)) return IDPROV_ERR_STORAGE;
    *len = 64;
    return IDPROV_OK;
  }
  return read_all(path, buf, cap, len);
}

static int store(void *u, idprov_item_t item, const uint8_t *buf, size_t len) {
  const idprov_file_storage_t *fs = (const idprov_file_storage_t *)u;
  char path[4096];
  if (path_of(fs, item, path, sizeof path)) return IDPROV_ERR_STORAGE;
  if (item == IDPROV_ITEM_KEY) {
    static const char H[] = "0123456789abcdef";
    char js[200];
    size_t i, o;
    if (len != 64) return IDPROV_ERR_ARG;
    o = (size_t)snprintf(js, sizeof js, "{\n  \"seed\": \"");
    for (i = 0; i < 32; i++) { js[o++] = H[buf[i] >> 4]; js[o++] = H[buf[i] & 15]; }
    o += (size_t)snprintf(js + o, sizeof js - o, "\",\n  \"x25519Secret\": \"");
    for (i = 32; i < 64; i++) { js[o++] = H[buf[i] >> 4]; js[o++] = H[buf[i] & 15]; }
    o += (size_t)snprintf(js + o, sizeof js - o, "\"\n}\n");
    return write_private(path, (const uint8_t *)js, o, 1);
  }
  return write_private(path, buf, len, 0);
}

static int erase(void *u, idprov_item_t item) {
  const idprov_file_storage_t *fs = (const idprov_file_storage_t *)u;
  char path[4096];
  if (path_of(fs, item, path, sizeof path)) return IDPROV_ERR_STORAGE;
  return unlink(path) == 0 || errno == ENOENT ? IDPROV_OK : IDPROV_ERR_STORAGE;
}

void idprov_storage_files(idprov_storage_t *s, idprov_file_storage_t *fs) {
  s->user = fs;
  s->load = load;
  s->store = store;
  s->erase = erase;
}
