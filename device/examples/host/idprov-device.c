/*
 * idprov-device: the C library on the command line, with device-sim's verbs, flags, key file and
 * exit statuses, so that a script written for one runs the other (tools/device-sim/README.md).
 *
 *   idprov-device keygen      --key FILE [--json]
 *   idprov-device fingerprint --key FILE [--json]
 *   idprov-device provision   --server URI --id ID [--key FILE] [--wait] [--max-wait S] [--mac MAC]
 *                             [--secret S] [--psk S] [--type device|service|consumer] [--seal] [--verify]
 *                             [--timeout MS] [--ack-timeout MS] [--block-size N] [--json] [-v]
 *   idprov-device refresh     --server URI --id ID --key FILE [...same]
 *   idprov-device discover    [--interface IPV4] [--key FILE] [--timeout MS] [--json]   (mDNS _idprov._udp.local;
 *                             with --key the advertised kid/fp are remembered in FILE.server and a change reported)
 *
 * URI: coap://host[:port] or coaps://host[:port] (DTLS-PSK with --psk; identity = the device ID).
 * Exit status: 0 approved (or done), 2 pending, 3 refused, 1 error.
 */
#define _POSIX_C_SOURCE 200809L
#include "idprov.h"
#include "idprov_ports.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef IDPROV_HAVE_DTLS
#include "port_dtls.h"
#endif
#include "mdns.h"

enum { EXIT_OK = 0, EXIT_ERROR = 1, EXIT_PENDING = 2, EXIT_REFUSED = 3 };

typedef struct {
  const char *verb, *server, *id, *key, *mac, *secret, *psk, *type, *iface;
  int wait, seal, verify, json, verbose;
  long max_wait, timeout_ms, ack_timeout_ms, block_size;
} flags_t;

static int usage(const char *why) {
  fprintf(stderr, "idprov-device: %s\nusage: idprov-device keygen|fingerprint|provision|refresh|discover [flags] (see the header of idprov-device.c)\n", why);
  return EXIT_ERROR;
}

static int parse_flags(int argc, char **argv, flags_t *f) {
  int i;
  memset(f, 0, sizeof *f);
  f->server = "coap://127.0.0.1:5683";
  f->type = "device";
  f->timeout_ms = 30000;
  f->ack_timeout_ms = 2000;
  if (argc < 2) return -1;
  f->verb = argv[1];
  for (i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name, field) if (strcmp(a, name) == 0) { if (!v) return -1; f->field = v; i++; continue; }
#define NUM(name, field) if (strcmp(a, name) == 0) { char *e; if (!v) return -1; f->field = strtol(v, &e, 10); if (*e || f->field <= 0) return -1; i++; continue; }
    OPT("--server", server) OPT("--id", id) OPT("--key", key) OPT("--mac", mac) OPT("--secret", secret) OPT("--psk", psk) OPT("--interface", iface)
    OPT("--type", type) NUM("--max-wait", max_wait) NUM("--timeout", timeout_ms) NUM("--ack-timeout", ack_timeout_ms)
    NUM("--block-size", block_size)
    if (strcmp(a, "--wait") == 0) { f->wait = 1; continue; }
    if (strcmp(a, "--seal") == 0) { f->seal = 1; continue; }
    if (strcmp(a, "--verify") == 0) { f->verify = 1; continue; }
    if (strcmp(a, "--json") == 0) { f->json = 1; continue; }
    if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) { f->verbose = 1; continue; }
    fprintf(stderr, "idprov-device: unknown flag %s\n", a);
    return -1;
  }
  return 0;
}

static void hex(FILE *o, const uint8_t *p, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) fprintf(o, "%02x", p[i]);
}
static void json_str(FILE *o, const uint8_t *p, size_t n) {
  size_t i;
  fputc('"', o);
  for (i = 0; i < n; i++) {
    if (p[i] == '"' || p[i] == '\\') fprintf(o, "\\%c", p[i]);
    else if (p[i] < 0x20) fprintf(o, "\\u%04x", p[i]);
    else fputc(p[i], o);
  }
  fputc('"', o);
}

/* ---- storage in memory, for runs without --key (a throwaway key, as device-sim does) ---- */
typedef struct { uint8_t d[4][600]; size_t n[4]; int has[4]; } mem_t;
static int m_load(void *u, idprov_item_t i, uint8_t *b, size_t cap, size_t *len) {
  mem_t *m = (mem_t *)u;
  if (!m->has[i]) return IDPROV_ERR_NOT_FOUND;
  if (m->n[i] > cap) return IDPROV_ERR_BUFFER;
  memcpy(b, m->d[i], m->n[i]);
  *len = m->n[i];
  return 0;
}
static int m_store(void *u, idprov_item_t i, const uint8_t *b, size_t len) {
  mem_t *m = (mem_t *)u;
  if (len > sizeof m->d[i]) return IDPROV_ERR_STORAGE;
  memcpy(m->d[i], b, len);
  m->n[i] = len;
  m->has[i] = 1;
  return 0;
}
static int m_erase(void *u, idprov_item_t i) { ((mem_t *)u)->has[i] = 0; return 0; }

/* ---- a tracing transport wrapper (-v) ---- */
typedef struct { idprov_transport_t inner; int verbose; uint32_t round_trips; } trace_t;
static int trace_exchange(void *u, const idprov_coap_req_t *q, idprov_coap_resp_t *r) {
  trace_t *t = (trace_t *)u;
  int rc;
  if (t->verbose) fprintf(stderr, "→ %s %s %u B\n", q->method == IDPROV_COAP_GET ? "GET" : "POST", q->path, (unsigned)q->payload_len);
  rc = t->inner.exchange(t->inner.user, q, r);
  t->round_trips++;
  if (t->verbose) {
    if (rc) fprintf(stderr, "← %s\n", idprov_err_name(rc));
    else fprintf(stderr, "← %d.%02d, %u B, Max-Age %u\n", r->code >> 5, r->code & 31, (unsigned)r->len, (unsigned)r->max_age);
  }
  return rc;
}

static int mac_parse(const char *s, uint8_t *out, size_t *len) {
  size_t n = 0;
  while (*s && n < 8) {
    unsigned v;
    if (sscanf(s, "%2x", &v) != 1) return -1;
    out[n++] = (uint8_t)v;
    s += 2;
    if (*s == ':' || *s == '-') s++;
    else if (*s) return -1;
  }
  if (*s || (n != 6 && n != 8)) return -1;
  *len = n;
  return 0;
}

static int print_key(const flags_t *f, idprov_crypto_t *c, const uint8_t k[64], int created) {
  uint8_t pk[32], xpk[32];
  char fp[IDPROV_FINGERPRINT_SIZE];
  c->derive(c->user, pk, k, xpk, k + 32);
  idprov_fingerprint(c, pk, fp);
  if (f->json) {
    printf("{\"keyFile\":");
    json_str(stdout, (const uint8_t *)f->key, strlen(f->key));
    printf(",\"created\":%s,\"fingerprint\":\"%s\",\"pk\":\"", created ? "true" : "false", fp);
    hex(stdout, pk, 32);
    printf("\",\"xk\":\"");
    hex(stdout, xpk, 32);
    printf("\"}\n");
  } else {
    printf("fingerprint %s\npk          ", fp);
    hex(stdout, pk, 32);
    printf("\nxk          ");
    hex(stdout, xpk, 32);
    printf("\n");
    if (created) printf("created     %s (mode 0600)\n", f->key);
  }
  return EXIT_OK;
}

static int fail(const flags_t *f, const char *code, const char *msg) {
  if (f->json) printf("{\"error\":\"%s\",\"message\":\"%s\"}\n", code, msg);
  fprintf(stderr, "idprov-device: %s\n", msg);
  return EXIT_ERROR;
}

static int keygen_or_fingerprint(const flags_t *f, int create) {
  idprov_crypto_t c;
  idprov_random_t r;
  idprov_storage_t s;
  idprov_file_storage_t fs;
  uint8_t k[64];
  size_t len = 0;
  struct stat st;
  if (!f->key) return usage("--key FILE is required");
  if (idprov_crypto_sodium(&c)) return fail(f, "crypto", "libsodium did not initialise");
  idprov_random_sodium(&r);
  fs.key_file = f->key;
  idprov_storage_files(&s, &fs);
  if (create) {
    if (stat(f->key, &st) == 0) return fail(f, "key-file", "the key file already exists; a device keeps its key (delete the file to start over)");
    r.fill(r.user, k, 64);
    if (s.store(s.user, IDPROV_ITEM_KEY, k, 64)) return fail(f, "key-file", "cannot create the key file");
    return print_key(f, &c, k, 1);
  }
  if (s.load(s.user, IDPROV_ITEM_KEY, k, 64, &len) || len != 64) return fail(f, "key-file", "cannot read the key file (JSON with 64-hex \"seed\" and \"x25519Secret\")");
  if (stat(f->key, &st) == 0 && (st.st_mode & 077)) fprintf(stderr, "warning: %s is readable by other users; chmod 600 it\n", f->key);
  return print_key(f, &c, k, 0);
}

static void report(const flags_t *f, const char *op, idprov_ctx_t *ctx, int rc, const char *fp, uint32_t round_trips) {
  const char *status = rc == IDPROV_OK ? "approved" : rc == IDPROV_ERR_PENDING ? "pending" : "refused";
  char code[8];
  idprov_claims_t cl;
  idprov_sign1_t s;
  int have_claims = rc == IDPROV_OK && idprov_token_verify(&ctx->crypto, ctx->token, ctx->token_len, NULL, 0, NULL, 0, &cl) == 0;
  int have_kid = rc == IDPROV_OK && idprov_sign1_parse(ctx->token, ctx->token_len, &s) == 0 && s.kid.len;
  snprintf(code, sizeof code, "%d.%02d", ctx->last_code >> 5, ctx->last_code & 31);
  if (f->json) {
    printf("{\"op\":\"%s\",\"id\":", op);
    json_str(stdout, (const uint8_t *)f->id, strlen(f->id));
    printf(",\"fingerprint\":\"%s\",\"status\":\"%s\",\"code\":\"%s\",\"attempts\":%u,\"roundTrips\":%u", fp, status, code,
           (unsigned)ctx->attempts, (unsigned)round_trips);
    if (rc == IDPROV_OK) {
      printf(",\"tokenBytes\":%u,\"token\":\"", (unsigned)ctx->token_len);
      hex(stdout, ctx->token, ctx->token_len);
      printf("\",\"sealed\":%s,\"verified\":%s", (ctx->events & IDPROV_EV_SEALED) ? "true" : "false",
             (ctx->events & IDPROV_EV_VERIFIED) ? "true" : "false");
      if (have_kid) { printf(",\"kid\":\""); hex(stdout, s.kid.ptr, s.kid.len); printf("\""); }
      if (have_claims) {
        printf(",\"claims\":{\"iss\":");
        json_str(stdout, cl.iss.ptr, cl.iss.len);
        printf(",\"sub\":");
        json_str(stdout, cl.sub.ptr, cl.sub.len);
        printf(",\"exp\":%llu,\"iat\":%llu,\"cti\":\"", (unsigned long long)cl.exp, (unsigned long long)cl.iat);
        hex(stdout, cl.cti.ptr, cl.cti.len);
        printf("\",\"cnf\":\"");
        hex(stdout, cl.cnf, 32);
        printf("\"");
        if (cl.has_role) { printf(",\"role\":"); json_str(stdout, cl.role.ptr, cl.role.len); }
        printf("}");
      }
      printf(",\"exp\":%llu,\"ttl\":%llu", (unsigned long long)ctx->token_exp, (unsigned long long)ctx->token_ttl);
      if (f->key) printf(",\"tokenFile\":\"%s.token\"", f->key);
    } else {
      if (rc != IDPROV_ERR_PENDING) printf(",\"err\":%d,\"errName\":\"%s\"", rc, idprov_err_name(rc));
      printf(",\"retry\":%u", (unsigned)ctx->wait_s);
    }
    if (ctx->events & IDPROV_EV_KID_CHANGED) printf(",\"kidChanged\":true");
    printf("}\n");
    return;
  }
  if (rc == IDPROV_OK) {
    printf("%s  approved (%s) after %u request%s\n", op, code, (unsigned)ctx->attempts, ctx->attempts == 1 ? "" : "s");
    printf("token   %u bytes%s%s\n", (unsigned)ctx->token_len, (ctx->events & IDPROV_EV_SEALED) ? ", came sealed" : "",
           (ctx->events & IDPROV_EV_VERIFIED) ? ", signature verified against /idprov/keys" : "");
    printf("expires %llu (refresh after %llu s)\n", (unsigned long long)ctx->token_exp, (unsigned long long)(ctx->token_ttl / 2));
    if (f->key) printf("saved   %s.token\n", f->key);
  } else if (rc == IDPROV_ERR_PENDING) {
    printf("%s  pending (%s) after %u requests; retry in %u s\n", op, code, (unsigned)ctx->attempts, (unsigned)ctx->wait_s);
    printf("        an admin must approve %s with key %s\n", f->id, fp);
  } else {
    printf("%s  refused (%s %s) after %u requests; retry in %u s\n", op, code, idprov_err_name(rc), (unsigned)ctx->attempts,
           (unsigned)ctx->wait_s);
  }
  if (ctx->events & IDPROV_EV_KID_CHANGED) printf("warning: the server's token key changed since the last run\n");
}

static int device_verb(const flags_t *f, int refresh) {
  static idprov_ctx_t ctx;
  static uint8_t tx[1200], rx[1100], io[2600];
  static mem_t mem;
  idprov_file_storage_t fs;
  idprov_coap_client_t coap;
  idprov_udp_t udp;
  idprov_dgram_t dg;
  trace_t trace;
  char host[256], fp[IDPROV_FINGERPRINT_SIZE];
  uint8_t mac[8];
  uint16_t port;
  int secure, rc, n;
  uint64_t t0;
#ifdef IDPROV_HAVE_DTLS
  static idprov_dtls_t dtls;
#endif
  if (!f->id) return usage("--id ID is required");
  if (refresh && !f->key) return fail(f, "usage", "refresh needs --key FILE (the key and the token of an earlier provision)");
  if (idprov_parse_uri(f->server, host, sizeof host, &port, &secure)) return fail(f, "usage", "--server must be coap://host[:port] or coaps://host[:port]");
  memset(&ctx, 0, sizeof ctx);
  ctx.cfg.id = f->id;
  if (!idprov_id_valid(f->id)) return fail(f, "usage", "--id must be 1..64 of [A-Za-z0-9._:-]");
  if (f->mac) {
    size_t ml;
    if (mac_parse(f->mac, mac, &ml)) return fail(f, "usage", "--mac must be 6 or 8 hex bytes (aa:bb:cc:dd:ee:ff)");
    ctx.cfg.mac = mac;
    ctx.cfg.mac_len = ml;
  }
  {
    const char *secret = f->secret ? f->secret : getenv("IDPROV_OOB_SECRET");
    if (secret && *secret) {
      ctx.cfg.oob_secret = (const uint8_t *)secret;
      ctx.cfg.oob_secret_len = strlen(secret);
    }
  }
  ctx.cfg.type = strcmp(f->type, "service") == 0 ? 1 : strcmp(f->type, "consumer") == 0 ? 2 : 0;
  if (!ctx.cfg.type && strcmp(f->type, "device") != 0) return fail(f, "usage", "--type must be device, service or consumer");
  ctx.cfg.seal = f->seal;
  ctx.cfg.verify_token = f->verify;
  if (idprov_crypto_sodium(&ctx.crypto)) return fail(f, "crypto", "libsodium did not initialise");
  idprov_random_sodium(&ctx.random);
  idprov_clock_posix(&ctx.clock);
  if (f->key) {
    fs.key_file = f->key;
    idprov_storage_files(&ctx.storage, &fs);
  } else {
    memset(&mem, 0, sizeof mem);
    ctx.storage.user = &mem;
    ctx.storage.load = m_load;
    ctx.storage.store = m_store;
    ctx.storage.erase = m_erase;
  }
  if (secure) {
#ifdef IDPROV_HAVE_DTLS
    if (!f->psk) return fail(f, "usage", "coaps:// needs --psk SECRET (DTLS-PSK, identity = the device ID)");
    rc = idprov_dtls_open(&dtls, host, port, f->id, (const uint8_t *)f->psk, strlen(f->psk), (uint32_t)f->timeout_ms, &dg);
    if (rc) return fail(f, "transport", "the DTLS handshake failed (wrong PSK, unknown ID, or no server)");
    ctx.cfg.psk_session = 1;
#else
    return fail(f, "usage", "this build has no DTLS (mbedTLS not found)");
#endif
  } else {
    if (f->psk) return fail(f, "usage", "--psk needs a coaps:// server");
    if (idprov_udp_open(&udp, host, port, &dg)) return fail(f, "transport", "cannot open a UDP socket to the server");
  }
  idprov_coap_client_init(&coap, &dg, &ctx.random, &ctx.clock, io, sizeof io);
  coap.params.ack_timeout_ms = (uint32_t)f->ack_timeout_ms;
  /* --timeout: as many retransmissions as fit (RFC 7252 §4.2 doubling), at most MAX_RETRANSMIT 4 */
  for (n = 0; n < 4 && (long)f->ack_timeout_ms * ((2L << (n + 1)) - 1) / 2 < f->timeout_ms; n++) {
  }
  coap.params.max_retransmit = (uint8_t)n;
  if (f->block_size) {
    unsigned szx = 0;
    while (szx < 6 && (16L << szx) < f->block_size) szx++;
    coap.params.block2_szx = (uint8_t)szx;
  }
  trace.inner.user = &coap;
  trace.inner.exchange = idprov_coap_exchange;
  trace.verbose = f->verbose;
  trace.round_trips = 0;
  ctx.transport.user = &trace;
  ctx.transport.exchange = trace_exchange;
  ctx.tx = tx;
  ctx.tx_cap = sizeof tx;
  ctx.rx = rx;
  ctx.rx_cap = sizeof rx;
  t0 = ctx.clock.now_ms(NULL);
  rc = idprov_init(&ctx, 1);
  if (rc) return fail(f, "key-file", rc == IDPROV_ERR_STORAGE ? "cannot read or create the key file" : idprov_err_name(rc));
  idprov_fingerprint(&ctx.crypto, ctx.pk, fp);
  if (!f->json) printf("device  %s\nkey     %s  (%s)\nserver  %s\n", f->id, fp, f->key ? f->key : "throwaway key (use --key FILE to keep it)", f->server);
  if (refresh) {
    if (!ctx.token_len) return fail(f, "no-token", "no token next to the key file: provision first");
    rc = idprov_refresh(&ctx);
  } else {
    rc = idprov_provision(&ctx, f->wait ? (f->max_wait ? (uint32_t)f->max_wait : 0xffffffffu) : 0);
  }
  if (rc < 0 && rc != IDPROV_ERR_PENDING) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s failed: %s", refresh ? "refresh" : "provision", idprov_err_name(rc));
    if (f->json) printf("{\"error\":\"%s\",\"message\":\"%s\",\"attempts\":%u}\n", idprov_err_name(rc), msg, (unsigned)ctx.attempts);
    fprintf(stderr, "idprov-device: %s\n", msg);
    return EXIT_ERROR;
  }
  report(f, refresh ? "refresh" : "provision", &ctx, rc, fp, trace.round_trips);
  if (f->verbose)
    fprintf(stderr, "coap: %u datagrams out (%u B), %u in (%u B), %u retransmissions, %llu ms\n", (unsigned)coap.datagrams_out,
            (unsigned)coap.bytes_out, (unsigned)coap.datagrams_in, (unsigned)coap.bytes_in, (unsigned)coap.retransmissions,
            (unsigned long long)(ctx.clock.now_ms(NULL) - t0));
#ifdef IDPROV_HAVE_DTLS
  if (secure && f->verbose)
    fprintf(stderr, "dtls: %u datagrams out (%u B), %u in (%u B), handshake included\n", (unsigned)dtls.datagrams_out,
            (unsigned)dtls.bytes_out, (unsigned)dtls.datagrams_in, (unsigned)dtls.bytes_in);
  if (secure) idprov_dtls_close(&dtls);
  else
#endif
    idprov_udp_close(&udp);
  return rc == IDPROV_OK ? EXIT_OK : rc == IDPROV_ERR_PENDING ? EXIT_PENDING : EXIT_REFUSED;
}

/* Remembers the advertised kid/fp next to the key file; reports a change (idprov_server_seen). */
static uint32_t remember(const flags_t *f, const idprov_mdns_result_t *r) {
  static idprov_ctx_t ctx;
  idprov_file_storage_t fs;
  uint8_t kid[8], fp[32], srv[40];
  size_t len = 0;
  int have_fp = 0;
  if (!f->key || idprov_mdns_kid_fp(r, kid, fp, &have_fp)) return 0;
  memset(&ctx, 0, sizeof ctx);
  fs.key_file = f->key;
  idprov_storage_files(&ctx.storage, &fs);
  if (ctx.storage.load(ctx.storage.user, IDPROV_ITEM_SERVER, srv, sizeof srv, &len) == 0 && len == sizeof srv) {
    memcpy(ctx.kid, srv, 8);
    memcpy(ctx.fp, srv + 8, 32);
    ctx.have_server = 1;
  }
  if (idprov_server_seen(&ctx, kid, have_fp ? fp : NULL)) fprintf(stderr, "warning: cannot write %s.server\n", f->key);
  return ctx.events;
}

static int discover(const flags_t *f) {
  idprov_mdns_result_t res[8];
  size_t n = 0, i;
  int rc = idprov_mdns_discover(res, 8, &n, (uint32_t)(f->timeout_ms == 30000 ? 3000 : f->timeout_ms), f->iface);
  if (rc) return fail(f, "transport", "mDNS query failed (no multicast route?)");
  for (i = 0; i < n; i++) {
    uint32_t ev = i == 0 ? remember(f, &res[i]) : 0; /* the first answer is the server this device uses */
    if (f->json) {
      printf("{\"instance\":");
      json_str(stdout, (const uint8_t *)res[i].instance, strlen(res[i].instance));
      printf(",\"host\":\"%s\",\"port\":%u,\"coaps\":%u,\"kid\":\"%s\",\"fp\":\"%s\",\"uri\":\"coap://%s:%u\",\"kidChanged\":%s,\"fpChanged\":%s}\n",
             res[i].address, res[i].port, res[i].coaps_port, res[i].kid, res[i].fp, res[i].address, res[i].port,
             (ev & IDPROV_EV_KID_CHANGED) ? "true" : "false", (ev & IDPROV_EV_FP_CHANGED) ? "true" : "false");
    } else {
      printf("%s  coap://%s:%u  coaps %u  kid %s  fp %s\n", res[i].instance, res[i].address, res[i].port, res[i].coaps_port,
             res[i].kid, res[i].fp);
      if (ev & IDPROV_EV_KID_CHANGED) printf("warning: the server's token key (kid) changed since the last discovery\n");
      if (ev & IDPROV_EV_FP_CHANGED) printf("warning: the server's DTLS certificate (fp) changed since the last discovery\n");
    }
  }
  if (!n && !f->json) printf("no idprov server answered\n");
  return n ? EXIT_OK : EXIT_ERROR;
}

int main(int argc, char **argv) {
  flags_t f;
  if (parse_flags(argc, argv, &f)) return usage("bad arguments");
  if (strcmp(f.verb, "keygen") == 0) return keygen_or_fingerprint(&f, 1);
  if (strcmp(f.verb, "fingerprint") == 0) return keygen_or_fingerprint(&f, 0);
  if (strcmp(f.verb, "provision") == 0) return device_verb(&f, 0);
  if (strcmp(f.verb, "refresh") == 0) return device_verb(&f, 1);
  if (strcmp(f.verb, "discover") == 0) return discover(&f);
  return usage("unknown verb");
}
