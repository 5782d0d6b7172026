/* The ports that ship with the library (host and ESP-IDF). Each fills a port struct of idprov.h. */
#ifndef IDPROV_PORTS_H
#define IDPROV_PORTS_H
#include "idprov.h"

/** libsodium crypto (port_sodium.c). Calls sodium_init(). */
int idprov_crypto_sodium(idprov_crypto_t *c);
/** libsodium randombytes (port_sodium.c). */
void idprov_random_sodium(idprov_random_t *r);

/** A connected UDP socket (port_socket.c): BSD sockets as lwIP offers them. */
typedef struct {
  int fd;
} idprov_udp_t;
/** Resolves host (numeric IPv4/IPv6 or a name) and connects a UDP socket to host:port. */
int idprov_udp_open(idprov_udp_t *u, const char *host, uint16_t port, idprov_dgram_t *out);
void idprov_udp_close(idprov_udp_t *u);

/** Parses coap://host[:port] / coaps://host[:port] (IPv6 in brackets). secure = 1 for coaps. */
int idprov_parse_uri(const char *uri, char *host, size_t host_cap, uint16_t *port, int *secure);

/** POSIX clock (port_posix.c): CLOCK_MONOTONIC, time(), nanosleep. */
void idprov_clock_posix(idprov_clock_t *c);

/** File storage in device-sim's layout (port_posix.c): key file JSON {"seed", "x25519Secret"} (0600),
 *  FILE.token (raw CWT), FILE.token-meta, FILE.server. */
typedef struct {
  const char *key_file;
} idprov_file_storage_t;
void idprov_storage_files(idprov_storage_t *s, idprov_file_storage_t *fs);
#ifdef ESP_PLATFORM
/** ESP-IDF (port_esp.c, not built in CI): NVS storage, esp_timer clock, hardware RNG. */
void idprov_storage_nvs(idprov_storage_t *s);
void idprov_clock_esp(idprov_clock_t *c);
void idprov_random_esp(idprov_random_t *r);
#endif
#endif
