/*
 * A DTLS 1.2 handshake load generator on OpenSSL 3, for benchmark scenario 4 (tools/bench/scenarios.ts
 * `scenario4`, run through tools/bench/lib/cload.ts). The Node generator's client (tools/dtls-peers/
 * client.ts) costs about as much CPU per handshake as a server, so on one generator core it cannot
 * drive a server to the DESIGN targets; this one spends a fraction of that. Built with build-loadgen.sh.
 *
 *   openssl-loadgen --host 127.0.0.1 --port P --concurrency N --warmup-ms W --duration-ms D
 *                   (--psk IDENTITY HEXKEY | --ecdhe) [--suite 0xC0A8[,0x00A8…]] [--max-ops M]
 *                   [--mtu 1280] [--timeout-ms 5000] [--psk-identities K]
 *
 * With --psk-identities K (> 1) the handshakes cycle through K identities, IDENTITY-0 … IDENTITY-(K-1),
 * all with the same key: one identity per device, as in a fleet (one identity for every handshake
 * would flatter a server's per-identity cache).
 *
 * One thread, one epoll loop, N handshakes in flight (closed loop: each slot starts its next one as
 * soon as the last finished). Each handshake is a fresh association: a new connected, non-blocking UDP
 * socket (a new source port), a new SSL (never given a session, tickets off: always a full handshake,
 * HelloVerifyRequest cookie exchange included), SSL_connect to completion, close_notify, close. Sockets
 * are read and written through a minimal BIO (one send/recv per datagram; OpenSSL's dgram BIO adds
 * SO_RCVTIMEO syscalls to every read). Flights are retransmitted on OpenSSL's DTLS timer (1 s, doubling);
 * a handshake that fails or has not finished after --timeout-ms is an error, counted by reason.
 * PSK offers PSK-AES128-CCM8 by default; ECDHE offers ECDHE-ECDSA-AES128-CCM8 on P-256 and does not
 * verify the (self-signed) certificate, but still verifies the ServerKeyExchange signature.
 *
 * Only handshakes that complete inside the timed window (after the warm-up) count; latency is from
 * the socket's creation to SSL_connect's success. On stdout, each on its own flushed line: `WINDOW
 * START` when the warm-up ends, `WINDOW END` when the window ends (the orchestrator samples the
 * server's CPU at these two moments), then, once the handshakes in flight have finished, one JSON line:
 *   {"ops","seconds","opsPerSec","latency":{"p50","p90","p99","max","mean","samples"},"errors":{reason:
 *    count},"suites":{"0xc0a8":count},"retransmits","stoppedBy","generator":{"cpuSeconds","cpuPct",
 *    "waitPct"},"concurrency","openssl"}
 * Latencies are ms, summarised like tools/bench/lib/stats.ts `summarize` (nearest rank, 3 decimals;
 * null without samples). Exit status 0, or 1 on usage and setup errors.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "hex.h"

#define MAX_REASONS 20
#define MAX_SUITES 16

/* ---------------------------------------------------------------------------------------------- */
/* Options. */

static const char *host = "127.0.0.1";
static int port = 0, concurrency = 1, warmup_ms = 0, duration_ms = 1000, mtu = 1280, timeout_ms = 5000;
static long max_ops = 0; /* 0 = no limit */
static const char *psk_identity = NULL;
static long psk_identities = 1;
static unsigned long psk_next = 0;
static unsigned char psk_key[64];
static int psk_len = 0, ecdhe = 0;
static const char *suite_list = NULL;

static void usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s --host 127.0.0.1 --port P --concurrency N --warmup-ms W --duration-ms D\n"
            "          (--psk IDENTITY HEXKEY | --ecdhe) [--suite 0xC0A8[,0x00A8...]] [--max-ops M]\n"
            "          [--mtu 1280] [--timeout-ms 5000]\n",
            argv0);
}


/* ---------------------------------------------------------------------------------------------- */
/* Results. */

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double *lat = NULL;
static long lat_n = 0, lat_cap = 0;
static long ops = 0, retransmits = 0;
static struct { char *reason; long count; } reasons[MAX_REASONS + 1];
static int n_reasons = 0;
static struct { unsigned id; long count; } suites[MAX_SUITES];
static int n_suites = 0;

/* 0 warm-up, 1 timed window, 2 over (no new handshakes; the ones in flight finish uncounted). */
static int phase = 0;
static double t_start = 0, t_end = 0;
static const char *stopped_by = "time";
static double cpu0 = 0, cpu1 = 0, wait0 = 0, wait1 = 0;

/* Process CPU seconds (user + system) so far. */
static double self_cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* Nanoseconds this (single-threaded) process has waited for a CPU: /proc/self/schedstat, 2nd field. */
static double self_wait_ns(void) {
    FILE *f = fopen("/proc/self/schedstat", "r");
    unsigned long long run = 0, wait = 0;
    if (f == NULL) return 0;
    if (fscanf(f, "%llu %llu", &run, &wait) != 2) wait = 0;
    fclose(f);
    return (double)wait;
}

static void window_start(double now) {
    phase = 1;
    t_start = now;
    cpu0 = self_cpu();
    wait0 = self_wait_ns();
    fputs("WINDOW START\n", stdout);
    fflush(stdout);
}

static void window_end(double now, const char *why) {
    if (phase != 1) {
        phase = 2;
        return;
    }
    phase = 2;
    t_end = now;
    stopped_by = why;
    cpu1 = self_cpu();
    wait1 = self_wait_ns();
    fputs("WINDOW END\n", stdout);
    fflush(stdout);
}

/* Count an error by reason; after MAX_REASONS distinct ones, as "other" (like tools/bench/loadgen.ts). */
static void error_count(const char *reason) {
    int i;
    for (i = 0; i < n_reasons; i++)
        if (!strcmp(reasons[i].reason, reason)) break;
    if (i == n_reasons) {
        if (n_reasons == MAX_REASONS) reason = "other";
        for (i = 0; i < n_reasons; i++)
            if (!strcmp(reasons[i].reason, reason)) break;
        if (i == n_reasons) {
            reasons[i].reason = strdup(reason);
            reasons[i].count = 0;
            n_reasons++;
        }
    }
    reasons[i].count++;
}

static void suite_count(unsigned id) {
    int i;
    for (i = 0; i < n_suites; i++)
        if (suites[i].id == id) break;
    if (i == n_suites) {
        if (n_suites == MAX_SUITES) return;
        suites[i].id = id;
        suites[i].count = 0;
        n_suites++;
    }
    suites[i].count++;
}

static void lat_push(double ms) {
    if (lat_n == lat_cap) {
        lat_cap = lat_cap ? lat_cap * 2 : 65536;
        lat = realloc(lat, (size_t)lat_cap * sizeof *lat);
        if (lat == NULL) {
            perror("realloc");
            exit(1);
        }
    }
    lat[lat_n++] = ms;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of the sorted samples, as stats.ts `rank`. */
static double rank(double q) {
    long i = (long)ceil(q * (double)lat_n) - 1;
    if (i < 0) i = 0;
    if (i > lat_n - 1) i = lat_n - 1;
    return lat[i];
}

/* A number rounded to 3 decimals, or null (JSON has no NaN). */
static void put_num(const char *key, double v, int last) {
    if (isfinite(v)) printf("\"%s\":%.3f%s", key, round(v * 1000) / 1000, last ? "" : ",");
    else printf("\"%s\":null%s", key, last ? "" : ",");
}

static void put_json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

static void report(void) {
    double seconds = t_end > t_start ? (t_end - t_start) / 1000 : NAN;
    double sum = 0;
    qsort(lat, (size_t)lat_n, sizeof *lat, cmp_double);
    for (long i = 0; i < lat_n; i++) sum += lat[i];
    printf("{\"ops\":%ld,", ops);
    put_num("seconds", seconds, 0);
    put_num("opsPerSec", ops / seconds, 0);
    printf("\"latency\":{");
    put_num("p50", lat_n ? rank(0.5) : NAN, 0);
    put_num("p90", lat_n ? rank(0.9) : NAN, 0);
    put_num("p99", lat_n ? rank(0.99) : NAN, 0);
    put_num("max", lat_n ? lat[lat_n - 1] : NAN, 0);
    put_num("mean", lat_n ? sum / lat_n : NAN, 0);
    printf("\"samples\":%ld},\"errors\":{", lat_n);
    for (int i = 0; i < n_reasons; i++) {
        if (i) putchar(',');
        put_json_string(reasons[i].reason);
        printf(":%ld", reasons[i].count);
    }
    printf("},\"suites\":{");
    for (int i = 0; i < n_suites; i++) printf("%s\"0x%04x\":%ld", i ? "," : "", suites[i].id, suites[i].count);
    printf("},\"retransmits\":%ld,\"stoppedBy\":\"%s\",\"generator\":{", retransmits, stopped_by);
    put_num("cpuSeconds", cpu1 - cpu0, 0);
    put_num("cpuPct", (cpu1 - cpu0) / seconds * 100, 0);
    put_num("waitPct", (wait1 - wait0) / 1e9 / seconds * 100, 1);
    printf("},\"concurrency\":%d,\"openssl\":", concurrency);
    put_json_string(OpenSSL_version(OPENSSL_VERSION));
    printf("}\n");
    fflush(stdout);
}

/* ---------------------------------------------------------------------------------------------- */
/*
 * A minimal datagram BIO over a connected non-blocking socket (its fd is the BIO's data): one send()
 * per record flight datagram, one recv() per read, and the DTLS controls OpenSSL asks of a datagram BIO
 * answered without syscalls (the MTU is set explicitly, SSL_OP_NO_QUERY_MTU).
 */

static BIO_METHOD *sock_method = NULL;

static int sock_write(BIO *b, const char *buf, int len) {
    int fd = (int)(intptr_t)BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t n = send(fd, buf, (size_t)len, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) BIO_set_retry_write(b);
        return -1;
    }
    return (int)n;
}

static int sock_read(BIO *b, char *buf, int len) {
    int fd = (int)(intptr_t)BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t n = recv(fd, buf, (size_t)len, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) BIO_set_retry_read(b);
        return -1;
    }
    return (int)n;
}

static int sock_puts(BIO *b, const char *s) {
    return sock_write(b, s, (int)strlen(s));
}

static long sock_ctrl(BIO *b, int cmd, long num, void *ptr) {
    (void)b, (void)num, (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
    case BIO_CTRL_DGRAM_SET_NEXT_TIMEOUT:
    case BIO_CTRL_DGRAM_SET_CONNECTED:
        return 1;
    case BIO_CTRL_DGRAM_GET_MTU_OVERHEAD:
        return 28; /* IPv4 20 + UDP 8 */
    default:
        return 0; /* QUERY_MTU, MTU_EXCEEDED, PENDING, WPENDING, … : not supported / nothing pending */
    }
}

static int sock_create(BIO *b) {
    BIO_set_init(b, 1);
    return 1;
}

static BIO *sock_bio(int fd) {
    BIO *b = BIO_new(sock_method);
    if (b != NULL) BIO_set_data(b, (void *)(intptr_t)fd);
    return b;
}

/* ---------------------------------------------------------------------------------------------- */
/* Handshake slots. */

struct slot {
    int fd;
    SSL *ssl;
    double t0;
    /* When to look at this slot again without an event: the DTLS timer or the handshake deadline. */
    double wake;
    double deadline;
    /* No handshake in flight (the last one ended, or its setup failed): the next starts at `wake`. */
    int idle;
};

static SSL_CTX *ctx;
static struct sockaddr_in server;
static int ep;
static struct slot *slots;
static int active = 0;

static unsigned int psk_cb(SSL *ssl, const char *hint, char *identity, unsigned int max_identity_len,
                           unsigned char *psk, unsigned int max_psk_len) {
    (void)ssl, (void)hint;
    char name[512];
    if (psk_identities > 1) snprintf(name, sizeof name, "%s-%lu", psk_identity, psk_next++ % (unsigned long)psk_identities);
    else snprintf(name, sizeof name, "%s", psk_identity);
    size_t il = strlen(name);
    if (il + 1 > max_identity_len || (unsigned)psk_len > max_psk_len) return 0;
    memcpy(identity, name, il + 1);
    memcpy(psk, psk_key, (size_t)psk_len);
    return (unsigned)psk_len;
}

static int accept_cert(X509_STORE_CTX *store, void *arg) {
    (void)store, (void)arg;
    return 1;
}

static void slot_close(struct slot *s) {
    if (s->ssl != NULL) SSL_free(s->ssl); /* frees the BIO too */
    if (s->fd >= 0) close(s->fd);         /* and leaves the epoll set */
    s->ssl = NULL;
    s->fd = -1;
    active--;
}

static void slot_start(struct slot *s, double now);

/* The handshake of `s` ended (failed when `reason` is set): count it and close. */
static void slot_done(struct slot *s, const char *reason, double now) {
    if (reason == NULL) {
        if (phase == 1) {
            const SSL_CIPHER *c = SSL_get_current_cipher(s->ssl);
            lat_push(now - s->t0);
            ops++;
            if (c != NULL) suite_count(SSL_CIPHER_get_protocol_id(c));
            if (max_ops > 0 && ops >= max_ops) window_end(now, "count");
        }
        SSL_shutdown(s->ssl); /* sends close_notify; the server's answer is not waited for */
    } else if (phase == 1) {
        error_count(reason);
    }
    slot_close(s);
    s->idle = 1; /* the next one is started by the main loop (never recursively: a failure can be immediate) */
    s->wake = 0;
}

/* The setup of a handshake failed: count it and retry 10 ms later. */
static void slot_setup_failed(struct slot *s, const char *reason, double now) {
    if (phase == 1) error_count(reason);
    slot_close(s);
    s->idle = 1;
    s->wake = now + 10;
}

/* The reason of a failed SSL call, from OpenSSL's error queue or errno. */
static const char *failure(SSL *ssl, int ret, char *buf, size_t len) {
    int e = SSL_get_error(ssl, ret);
    unsigned long code = ERR_peek_error();
    if (e == SSL_ERROR_SSL && code != 0) {
        const char *r = ERR_reason_error_string(code);
        snprintf(buf, len, "handshake: %s", r != NULL ? r : "SSL error");
    } else if (e == SSL_ERROR_SYSCALL) {
        snprintf(buf, len, "handshake: socket: %s", errno ? strerror(errno) : "EOF");
    } else if (e == SSL_ERROR_ZERO_RETURN) {
        snprintf(buf, len, "handshake: closed by the server");
    } else {
        snprintf(buf, len, "handshake: SSL_get_error %d", e);
    }
    ERR_clear_error();
    return buf;
}

/* Advance the handshake of `s` as far as it goes without waiting. */
static void slot_drive(struct slot *s) {
    char buf[160];
    ERR_clear_error();
    errno = 0;
    int r = SSL_connect(s->ssl);
    double now = now_ms();
    if (r == 1) return slot_done(s, NULL, now);
    int e = SSL_get_error(s->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        struct timeval tv;
        s->wake = s->deadline;
        if (DTLSv1_get_timeout(s->ssl, &tv) == 1) {
            double t = now + tv.tv_sec * 1e3 + tv.tv_usec / 1e3;
            if (t < s->wake) s->wake = t;
        }
        return;
    }
    slot_done(s, failure(s->ssl, r, buf, sizeof buf), now);
}

static void slot_start(struct slot *s, double now) {
    char buf[160];
    active++;
    s->idle = 0;
    s->t0 = now;
    s->deadline = now + timeout_ms;
    s->ssl = NULL;
    s->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0 || connect(s->fd, (struct sockaddr *)&server, sizeof server) < 0) {
        snprintf(buf, sizeof buf, "socket: %s", strerror(errno));
        return slot_setup_failed(s, buf, now);
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
    BIO *bio = sock_bio(s->fd);
    s->ssl = SSL_new(ctx);
    if (epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev) < 0 || bio == NULL || s->ssl == NULL) {
        BIO_free(bio);
        return slot_setup_failed(s, "setup failed", now);
    }
    SSL_set_bio(s->ssl, bio, bio);
    DTLS_set_link_mtu(s->ssl, mtu);
    SSL_set_connect_state(s->ssl);
    slot_drive(s);
}

/* ---------------------------------------------------------------------------------------------- */

/* OpenSSL names of the comma-separated suite codes ("0xC0A8,0x00A8"), as a cipher list. */
static int cipher_list(const char *codes, char *out, size_t len) {
    SSL *tmp = SSL_new(ctx);
    char *copy = strdup(codes), *save = NULL;
    out[0] = 0;
    for (char *t = strtok_r(copy, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
        unsigned long v = strtoul(t, NULL, 0);
        unsigned char b[2] = {(unsigned char)(v >> 8), (unsigned char)v};
        const SSL_CIPHER *c = SSL_CIPHER_find(tmp, b);
        if (c == NULL) {
            fprintf(stderr, "unknown cipher suite %s\n", t);
            free(copy);
            SSL_free(tmp);
            return -1;
        }
        if (out[0]) strncat(out, ":", len - strlen(out) - 1);
        strncat(out, SSL_CIPHER_get_name(c), len - strlen(out) - 1);
    }
    free(copy);
    SSL_free(tmp);
    return 0;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--host") && more) host = argv[++i];
        else if (!strcmp(a, "--port") && more) port = atoi(argv[++i]);
        else if (!strcmp(a, "--concurrency") && more) concurrency = atoi(argv[++i]);
        else if (!strcmp(a, "--warmup-ms") && more) warmup_ms = atoi(argv[++i]);
        else if (!strcmp(a, "--duration-ms") && more) duration_ms = atoi(argv[++i]);
        else if (!strcmp(a, "--max-ops") && more) max_ops = atol(argv[++i]);
        else if (!strcmp(a, "--mtu") && more) mtu = atoi(argv[++i]);
        else if (!strcmp(a, "--timeout-ms") && more) timeout_ms = atoi(argv[++i]);
        else if (!strcmp(a, "--suite") && more) suite_list = argv[++i];
        else if (!strcmp(a, "--ecdhe")) ecdhe = 1;
        else if (!strcmp(a, "--psk-identities") && more) psk_identities = atol(argv[++i]);
        else if (!strcmp(a, "--psk") && i + 2 < argc) {
            psk_identity = argv[++i];
            psk_len = unhex(argv[++i], psk_key, sizeof psk_key);
            if (psk_len <= 0) {
                fprintf(stderr, "bad PSK hex\n");
                return 1;
            }
        } else {
            usage(argv[0]);
            return 1;
        }
    }
    if (port <= 0 || port > 65535 || concurrency < 1 || warmup_ms < 0 || duration_ms <= 0 || psk_identities < 1 || (psk_identity == NULL) == !ecdhe) {
        usage(argv[0]);
        return 1;
    }
    memset(&server, 0, sizeof server);
    server.sin_family = AF_INET;
    server.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &server.sin_addr) != 1) {
        fprintf(stderr, "--host must be an IPv4 address\n");
        return 1;
    }

    sock_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "idprov udp socket");
    BIO_meth_set_write(sock_method, sock_write);
    BIO_meth_set_read(sock_method, sock_read);
    BIO_meth_set_puts(sock_method, sock_puts);
    BIO_meth_set_ctrl(sock_method, sock_ctrl);
    BIO_meth_set_create(sock_method, sock_create);

    ctx = SSL_CTX_new(DTLS_client_method());
    if (ctx == NULL || !SSL_CTX_set_min_proto_version(ctx, DTLS1_2_VERSION) || !SSL_CTX_set_max_proto_version(ctx, DTLS1_2_VERSION)) {
        ERR_print_errors_fp(stderr);
        return 1;
    }
    /* Always a full handshake: no session is ever set, no ticket asked for, nothing cached. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_QUERY_MTU);
    /* The certificate is self-signed and not checked: skip the chain building OpenSSL would do (and
     * ignore) under SSL_VERIFY_NONE. The ServerKeyExchange signature is still verified with its key. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_cert_verify_callback(ctx, accept_cert, NULL);
    char ciphers[512];
    if (suite_list != NULL) {
        if (cipher_list(suite_list, ciphers, sizeof ciphers) < 0) return 1;
    } else {
        snprintf(ciphers, sizeof ciphers, "%s", ecdhe ? "ECDHE-ECDSA-AES128-CCM8" : "PSK-AES128-CCM8");
    }
    if (!SSL_CTX_set_cipher_list(ctx, ciphers) || !SSL_CTX_set1_groups_list(ctx, "P-256")) {
        fprintf(stderr, "cipher list %s or group P-256 not available\n", ciphers);
        ERR_print_errors_fp(stderr);
        return 1;
    }
    if (psk_identity != NULL) SSL_CTX_set_psk_client_callback(ctx, psk_cb);

    ep = epoll_create1(EPOLL_CLOEXEC);
    slots = calloc((size_t)concurrency, sizeof *slots);
    struct epoll_event *evs = calloc((size_t)concurrency, sizeof *evs);
    if (ep < 0 || slots == NULL || evs == NULL) {
        perror("setup");
        return 1;
    }
    double t_window = now_ms() + warmup_ms, t_stop = 0;
    for (int i = 0; i < concurrency; i++) {
        slots[i].fd = -1;
        slot_start(&slots[i], now_ms());
    }
    for (;;) {
        double now = now_ms();
        if (phase == 0 && now >= t_window) {
            window_start(now);
            t_stop = now + duration_ms;
        }
        if (phase == 1 && now >= t_stop) window_end(now, "time");
        if (phase == 2 && active == 0) break;
        /* Sleep until an event, the next slot timer or the next phase change. */
        double wake = phase == 0 ? t_window : phase == 1 ? t_stop : now + 60e3;
        for (int i = 0; i < concurrency; i++)
            if ((slots[i].ssl != NULL || (slots[i].idle && phase != 2)) && slots[i].wake < wake) wake = slots[i].wake;
        int wait = wake <= now ? 0 : (int)ceil(wake - now);
        int n = epoll_wait(ep, evs, concurrency, wait);
        if (n < 0 && errno != EINTR) {
            perror("epoll_wait");
            return 1;
        }
        now = now_ms();
        for (int k = 0; k < n; k++) {
            struct slot *s = evs[k].data.ptr;
            if (s->ssl != NULL) slot_drive(s);
        }
        /* Timers: retransmit a flight on OpenSSL's DTLS timer, give up past the deadline. */
        for (int i = 0; i < concurrency; i++) {
            struct slot *s = &slots[i];
            if (s->idle && phase != 2 && s->wake <= now) slot_start(s, now_ms());
            if (s->ssl == NULL || s->wake > now) continue;
            if (now >= s->deadline) {
                slot_done(s, "timeout", now);
                continue;
            }
            int r = DTLSv1_handle_timeout(s->ssl);
            if (r > 0 && phase == 1) retransmits++;
            if (r < 0) {
                char buf[160];
                slot_done(s, failure(s->ssl, r, buf, sizeof buf), now);
                continue;
            }
            slot_drive(s);
        }
    }
    if (t_end == 0) window_end(now_ms(), "time"); /* not reached: the window always ends first */
    report();
    return 0;
}
