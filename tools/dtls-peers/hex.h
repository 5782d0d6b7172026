/*
 * Hex decoding shared by the C test peers (mbedtls-client.c, openssl-loadgen.c); header-only so each
 * stays one `cc` command.
 */
#ifndef IDPROV_PEERS_HEX_H
#define IDPROV_PEERS_HEX_H

#include <string.h>

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decode hex string `s` into `out` (at most `max` bytes). Returns the byte count (0 for ""), or -1
 * for an odd length, a non-hex digit, or more than `max` bytes. */
static int unhex(const char *s, unsigned char *out, size_t max) {
    size_t n = strlen(s);
    if (n % 2 || n / 2 > max) return -1;
    for (size_t i = 0; i < n / 2; i++) {
        int h = hexval(s[2 * i]), l = hexval(s[2 * i + 1]);
        if (h < 0 || l < 0) return -1;
        out[i] = (unsigned char)(h << 4 | l);
    }
    return (int)(n / 2);
}

#endif
