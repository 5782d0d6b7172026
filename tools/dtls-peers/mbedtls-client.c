/*
 * A small DTLS 1.2 + CoAP client on mbedTLS 2.28 (the TLS library line ESP-IDF uses), for idprov's
 * interop tests. Built by the tests with: cc -O1 -o mbedtls-client mbedtls-client.c -lmbedtls
 * -lmbedx509 -lmbedcrypto (see build.sh).
 *
 *   mbedtls-client HOST PORT (--psk IDENTITY HEXKEY | --anon) [--suite 0xC0A8] [--mtu N]
 *
 * After the handshake it prints "suite NAME" and then reads requests from stdin, one per line:
 *   METHOD PATH CONTENT_FORMAT HEXPAYLOAD      e.g.  GET /.well-known/core - -
 * sends each as a CoAP CON (retransmitted like RFC 7252 §4.2), and prints "RESP CODE HEXPAYLOAD".
 * At end of input it sends close_notify. Exit status: 0 on success, 2 on handshake failure, 3 when a
 * request got no response, 1 on usage or setup errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>
#include <mbedtls/timing.h>

#include "hex.h"

/* Append one CoAP option (RFC 7252 §3.1) with delta encoding. */
static size_t put_option(unsigned char *p, unsigned *last, unsigned num, const unsigned char *v, size_t len) {
    size_t o = 0;
    unsigned delta = num - *last;
    unsigned char *hdr = p + o++;
    unsigned char dn, ln;
    unsigned char ext[4];
    size_t el = 0;
    if (delta < 13) dn = (unsigned char)delta;
    else if (delta < 269) { dn = 13; ext[el++] = (unsigned char)(delta - 13); }
    else { dn = 14; ext[el++] = (unsigned char)((delta - 269) >> 8); ext[el++] = (unsigned char)(delta - 269); }
    if (len < 13) ln = (unsigned char)len;
    else if (len < 269) { ln = 13; ext[el++] = (unsigned char)(len - 13); }
    else { ln = 14; ext[el++] = (unsigned char)((len - 269) >> 8); ext[el++] = (unsigned char)(len - 269); }
    *hdr = (unsigned char)(dn << 4 | ln);
    memcpy(p + o, ext, el);
    o += el;
    memcpy(p + o, v, len);
    o += len;
    *last = num;
    return o;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s HOST PORT (--psk ID HEXKEY | --anon) [--suite 0xC0A8] [--mtu N]\n", argv[0]);
        return 1;
    }
    const char *host = argv[1], *port = argv[2];
    const char *identity = NULL;
    unsigned char psk[256];
    int psk_len = 0, suites[2] = {0, 0}, mtu = 0;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--psk") && i + 2 < argc) {
            identity = argv[++i];
            psk_len = unhex(argv[++i], psk, sizeof psk);
            if (psk_len <= 0) { fprintf(stderr, "bad PSK hex\n"); return 1; }
        } else if (!strcmp(argv[i], "--anon")) {
        } else if (!strcmp(argv[i], "--suite") && i + 1 < argc) {
            suites[0] = (int)strtol(argv[++i], NULL, 0);
        } else if (!strcmp(argv[i], "--mtu") && i + 1 < argc) {
            mtu = atoi(argv[++i]);
        } else {
            fprintf(stderr, "unknown argument %s\n", argv[i]);
            return 1;
        }
    }

    mbedtls_net_context fd;
    mbedtls_ssl_context ssl;
    mbedtls_ssl_config conf;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_timing_delay_context timer;
    char err[200];
    int ret;
    mbedtls_net_init(&fd);
    mbedtls_ssl_init(&ssl);
    mbedtls_ssl_config_init(&conf);
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    if ((ret = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, (const unsigned char *)"idprov", 6)) != 0) return 1;
    if ((ret = mbedtls_net_connect(&fd, host, port, MBEDTLS_NET_PROTO_UDP)) != 0) {
        fprintf(stderr, "connect failed: -0x%x\n", -ret);
        return 1;
    }
    if ((ret = mbedtls_ssl_config_defaults(&conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_DATAGRAM, MBEDTLS_SSL_PRESET_DEFAULT)) != 0) return 1;
    mbedtls_ssl_conf_authmode(&conf, MBEDTLS_SSL_VERIFY_NONE); /* anonymous: the test pins nothing */
    mbedtls_ssl_conf_rng(&conf, mbedtls_ctr_drbg_random, &drbg);
    mbedtls_ssl_conf_handshake_timeout(&conf, 1000, 16000);
    mbedtls_ssl_conf_read_timeout(&conf, 2000);
    if (identity != NULL &&
        (ret = mbedtls_ssl_conf_psk(&conf, psk, (size_t)psk_len, (const unsigned char *)identity, strlen(identity))) != 0) return 1;
    if (suites[0] != 0) mbedtls_ssl_conf_ciphersuites(&conf, suites);
    if ((ret = mbedtls_ssl_setup(&ssl, &conf)) != 0) return 1;
    if (mtu > 0) mbedtls_ssl_set_mtu(&ssl, (uint16_t)mtu);
    mbedtls_ssl_set_bio(&ssl, &fd, mbedtls_net_send, mbedtls_net_recv, mbedtls_net_recv_timeout);
    mbedtls_ssl_set_timer_cb(&ssl, &timer, mbedtls_timing_set_delay, mbedtls_timing_get_delay);
    do ret = mbedtls_ssl_handshake(&ssl);
    while (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE);
    if (ret != 0) {
        mbedtls_strerror(ret, err, sizeof err);
        printf("handshake failed -0x%x %s\n", -ret, err);
        fflush(stdout);
        return 2;
    }
    printf("suite %s\n", mbedtls_ssl_get_ciphersuite(&ssl));
    fflush(stdout);

    static char line[8192];
    static unsigned char payload[4096], msg[4400], resp[4400];
    unsigned mid = 0x4a00;
    int status = 0;
    while (fgets(line, sizeof line, stdin) != NULL) {
        char method[16], path[512], cf[16], hexp[8192 - 560];
        if (sscanf(line, "%15s %511s %15s %7600s", method, path, cf, hexp) != 4) continue;
        int plen = strcmp(hexp, "-") ? unhex(hexp, payload, sizeof payload) : 0;
        if (plen < 0) { fprintf(stderr, "bad payload hex\n"); return 1; }
        size_t o = 0;
        unsigned last = 0;
        mid++;
        msg[o++] = 0x41; /* ver 1, CON, TKL 1 */
        msg[o++] = !strcmp(method, "POST") ? 2 : !strcmp(method, "PUT") ? 3 : !strcmp(method, "DELETE") ? 4 : 1;
        msg[o++] = (unsigned char)(mid >> 8);
        msg[o++] = (unsigned char)mid;
        msg[o++] = (unsigned char)mid; /* token */
        char *q = strchr(path, '?');
        if (q) *q++ = 0;
        for (char *seg = strtok(path, "/"); seg; seg = strtok(NULL, "/"))
            o += put_option(msg + o, &last, 11, (unsigned char *)seg, strlen(seg));
        if (strcmp(cf, "-")) {
            unsigned char v = (unsigned char)atoi(cf);
            o += put_option(msg + o, &last, 12, &v, v ? 1 : 0);
        }
        if (q) o += put_option(msg + o, &last, 15, (unsigned char *)q, strlen(q));
        if (plen > 0) {
            msg[o++] = 0xff;
            memcpy(msg + o, payload, (size_t)plen);
            o += (size_t)plen;
        }
        int got = 0;
        for (int attempt = 0; attempt < 5 && !got; attempt++) {
            do ret = mbedtls_ssl_write(&ssl, msg, o);
            while (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE);
            if (ret < 0) { mbedtls_strerror(ret, err, sizeof err); printf("write failed %s\n", err); return 3; }
            for (;;) {
                ret = mbedtls_ssl_read(&ssl, resp, sizeof resp);
                if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE) continue;
                if (ret <= 0) break; /* timeout (retransmit) or close */
                if (ret < 4 || (resp[0] & 0x0f) != 1 || resp[4] != (unsigned char)mid) continue;
                if ((resp[0] >> 4 & 3) == 2 && resp[1] == 0) continue; /* empty ACK: separate response follows */
                size_t p = 5;
                while (p < (size_t)ret && resp[p] != 0xff) {
                    unsigned d = resp[p] >> 4, l = resp[p] & 15;
                    p++;
                    if (d == 13) p += 1; else if (d == 14) p += 2;
                    if (l == 13) l = resp[p++] + 13u; else if (l == 14) { l = (resp[p] << 8 | resp[p + 1]) + 269u; p += 2; }
                    p += l;
                }
                printf("RESP %d.%02d ", resp[1] >> 5, resp[1] & 31);
                if (p < (size_t)ret) for (size_t i = p + 1; i < (size_t)ret; i++) printf("%02x", resp[i]);
                printf("\n");
                fflush(stdout);
                if ((resp[0] >> 4 & 3) == 0) { /* separate CON response: ACK it */
                    unsigned char ack[4] = {0x60, 0, resp[2], resp[3]};
                    mbedtls_ssl_write(&ssl, ack, 4);
                }
                got = 1;
                break;
            }
        }
        if (!got) { printf("no response\n"); fflush(stdout); status = 3; break; }
    }
    do ret = mbedtls_ssl_close_notify(&ssl);
    while (ret == MBEDTLS_ERR_SSL_WANT_WRITE);
    mbedtls_net_free(&fd);
    mbedtls_ssl_free(&ssl);
    mbedtls_ssl_config_free(&conf);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
    return status;
}
