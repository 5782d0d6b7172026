/*
 * A minimal mDNS browser: one PTR query for _idprov._udp.local to 224.0.0.251:5353, answers collected
 * from the multicast group (RFC 6762 §5.1 one-shot query from port 5353, so responders that answer by
 * multicast are heard). Records read: PTR (instance), SRV (port, target), TXT (v, kid, fp, coaps), A.
 * Bounded parsing: names are followed through at most 16 compression pointers and never past the
 * datagram.
 */
#define _DEFAULT_SOURCE
#include "mdns.h"
#include "idprov.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char SERVICE[] = "_idprov._udp.local";

static long atoi_bounded(const char *s) {
  long v = 0;
  while (*s >= '0' && *s <= '9' && v < 65536) v = v * 10 + (*s++ - '0');
  return v > 65535 ? 0 : v;
}

/* Reads a (possibly compressed) name at *off into out as dotted text; advances *off past it. */
static int read_name(const uint8_t *p, size_t n, size_t *off, char *out, size_t cap) {
  size_t o = *off, w = 0;
  int jumps = 0, jumped = 0;
  for (;;) {
    uint8_t len;
    if (o >= n) return -1;
    len = p[o];
    if ((len & 0xc0) == 0xc0) {
      size_t ptr;
      if (o + 1 >= n || ++jumps > 16) return -1;
      ptr = ((size_t)(len & 0x3f) << 8) | p[o + 1];
      if (!jumped) *off = o + 2;
      jumped = 1;
      o = ptr;
      continue;
    }
    if (len & 0xc0) return -1;
    o++;
    if (len == 0) break;
    if (o + len > n || w + len + 2 > cap) return -1;
    if (w) out[w++] = '.';
    memcpy(out + w, p + o, len);
    w += len;
    o += len;
  }
  out[w] = 0;
  if (!jumped) *off = o;
  return 0;
}

static idprov_mdns_result_t *slot(idprov_mdns_result_t *out, size_t cap, size_t *count, const char *instance) {
  size_t i;
  for (i = 0; i < *count; i++) if (strcmp(out[i].instance, instance) == 0) return &out[i];
  if (*count >= cap || strlen(instance) >= sizeof out[0].instance) return NULL;
  memset(&out[*count], 0, sizeof out[0]);
  strcpy(out[*count].instance, instance);
  return &out[(*count)++];
}

/* The instance label of "<instance>._idprov._udp.local", or NULL. */
static const char *instance_of(char *full) {
  size_t fl = strlen(full), sl = sizeof SERVICE - 1;
  if (fl <= sl + 1 || strcmp(full + fl - sl, SERVICE) != 0 || full[fl - sl - 1] != '.') return NULL;
  full[fl - sl - 1] = 0;
  return full;
}

int idprov_mdns_parse(const uint8_t *p, size_t n, const char *from, idprov_mdns_result_t *out, size_t cap, size_t *count) {
  size_t off = 12, i, total;
  char targets[8][128], addrs[8][64];
  size_t ntarget = 0, naddr = 0;
  char srv_target_of[8][128];
  size_t srv_for[8];
  size_t nsrv = 0;
  if (n < 12 || !(p[2] & 0x80)) return -1; /* a response */
  total = (size_t)((p[6] << 8) | p[7]) + (size_t)((p[8] << 8) | p[9]) + (size_t)((p[10] << 8) | p[11]);
  for (i = 0; i < (size_t)((p[4] << 8) | p[5]); i++) { /* questions */
    char q[256];
    if (read_name(p, n, &off, q, sizeof q) || off + 4 > n) return -1;
    off += 4;
  }
  for (i = 0; i < total && i < 64; i++) {
    char name[256];
    uint16_t type, rdlen;
    size_t rd;
    if (read_name(p, n, &off, name, sizeof name) || off + 10 > n) return -1;
    type = (uint16_t)((p[off] << 8) | p[off + 1]);
    rdlen = (uint16_t)((p[off + 8] << 8) | p[off + 9]);
    off += 10;
    if (off + rdlen > n) return -1;
    rd = off;
    if (type == 12) { /* PTR */
      char inst[256];
      size_t o = rd;
      if (strcmp(name, SERVICE) == 0 && read_name(p, n, &o, inst, sizeof inst) == 0) {
        const char *in = instance_of(inst);
        if (in) (void)slot(out, cap, count, in);
      }
    } else if (type == 33 && rdlen >= 7) { /* SRV: priority, weight, port, target */
      const char *in = instance_of(name);
      idprov_mdns_result_t *r = in ? slot(out, cap, count, in) : NULL;
      size_t o = rd + 6;
      if (r) {
        r->port = (uint16_t)((p[rd + 4] << 8) | p[rd + 5]);
        if (nsrv < 8 && read_name(p, n, &o, srv_target_of[nsrv], sizeof srv_target_of[0]) == 0) srv_for[nsrv++] = (size_t)(r - out);
      }
    } else if (type == 16) { /* TXT */
      const char *in = instance_of(name);
      idprov_mdns_result_t *r = in ? slot(out, cap, count, in) : NULL;
      size_t o = rd;
      while (r && o < rd + rdlen) {
        size_t l = p[o++];
        char kv[256];
        if (o + l > rd + rdlen) break;
        memcpy(kv, p + o, l);
        kv[l] = 0;
        o += l;
        if (strncmp(kv, "kid=", 4) == 0 && l - 4 < sizeof r->kid) strcpy(r->kid, kv + 4);
        else if (strncmp(kv, "fp=", 3) == 0 && l - 3 < sizeof r->fp) strcpy(r->fp, kv + 3);
        else if (strncmp(kv, "coaps=", 6) == 0) r->coaps_port = (uint16_t)atoi_bounded(kv + 6);
      }
    } else if (type == 1 && rdlen == 4 && ntarget < 8) { /* A */
      snprintf(addrs[naddr], sizeof addrs[0], "%u.%u.%u.%u", p[rd], p[rd + 1], p[rd + 2], p[rd + 3]);
      snprintf(targets[ntarget], sizeof targets[0], "%.127s", name);
      ntarget++;
      naddr++;
    }
    off += rdlen;
  }
  for (i = 0; i < nsrv; i++) {
    size_t j;
    idprov_mdns_result_t *r = &out[srv_for[i]];
    for (j = 0; j < ntarget; j++)
      if (strcmp(targets[j], srv_target_of[i]) == 0) snprintf(r->address, sizeof r->address, "%.63s", addrs[j]);
  }
  for (i = 0; i < *count; i++)
    if (!out[i].address[0] && from) snprintf(out[i].address, sizeof out[i].address, "%.63s", from);
  return 0;
}

static size_t put_name(uint8_t *b, const char *name) {
  size_t o = 0;
  while (*name) {
    const char *dot = strchr(name, '.');
    size_t l = dot ? (size_t)(dot - name) : strlen(name);
    b[o++] = (uint8_t)l;
    memcpy(b + o, name, l);
    o += l;
    name += l + (dot ? 1 : 0);
  }
  b[o++] = 0;
  return o;
}

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int idprov_mdns_kid_fp(const idprov_mdns_result_t *r, uint8_t kid[8], uint8_t fp[32], int *have_fp) {
  static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  size_t i;
  uint32_t acc = 0;
  int bits = 0, o = 0;
  if (strlen(r->kid) != 16) return -1;
  for (i = 0; i < 8; i++) {
    unsigned v;
    if (sscanf(r->kid + 2 * i, "%2x", &v) != 1) return -1;
    kid[i] = (uint8_t)v;
  }
  *have_fp = 0;
  if (strlen(r->fp) != 43) return 0;
  for (i = 0; i < 43; i++) {
    const char *c = strchr(B64, r->fp[i]);
    if (!c || !*c) return 0;
    acc = (acc << 6) | (uint32_t)(c - B64);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      if (o < 32) fp[o++] = (uint8_t)(acc >> bits);
    }
  }
  *have_fp = o == 32;
  return 0;
}

int idprov_mdns_discover(idprov_mdns_result_t *out, size_t cap, size_t *count, uint32_t timeout_ms, const char *iface_addr) {
  uint8_t q[64], buf[1500];
  struct sockaddr_in any, grp;
  struct ip_mreq mr;
  int fd, one = 1;
  size_t n;
  uint64_t deadline;
  *count = 0;
  fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) return IDPROV_ERR_TRANSPORT;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
#ifdef SO_REUSEPORT
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
#endif
  memset(&any, 0, sizeof any);
  any.sin_family = AF_INET;
  any.sin_port = htons(5353);
  any.sin_addr.s_addr = htonl(INADDR_ANY);
  memset(&grp, 0, sizeof grp);
  grp.sin_family = AF_INET;
  grp.sin_port = htons(5353);
  grp.sin_addr.s_addr = inet_addr("224.0.0.251");
  mr.imr_multiaddr = grp.sin_addr;
  mr.imr_interface.s_addr = iface_addr ? inet_addr(iface_addr) : htonl(INADDR_ANY);
  if (iface_addr) setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &mr.imr_interface, sizeof mr.imr_interface);
  if (bind(fd, (struct sockaddr *)&any, sizeof any) != 0 || setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mr, sizeof mr) != 0) {
    close(fd);
    return IDPROV_ERR_TRANSPORT;
  }
  memset(q, 0, 12);
  q[5] = 1; /* one question */
  n = 12 + put_name(q + 12, SERVICE);
  q[n++] = 0; q[n++] = 12; /* PTR */
  q[n++] = 0; q[n++] = 1;  /* IN */
  if (sendto(fd, q, n, 0, (struct sockaddr *)&grp, sizeof grp) != (ssize_t)n) {
    close(fd);
    return IDPROV_ERR_TRANSPORT;
  }
  deadline = mono_ms() + timeout_ms;
  for (;;) {
    uint64_t now = mono_ms();
    fd_set rd;
    struct timeval tv;
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    ssize_t got;
    char fs[64];
    if (now >= deadline) break;
    FD_ZERO(&rd);
    FD_SET(fd, &rd);
    tv.tv_sec = (long)((deadline - now) / 1000u);
    tv.tv_usec = (long)((deadline - now) % 1000u) * 1000L;
    if (select(fd + 1, &rd, NULL, NULL, &tv) <= 0) break;
    got = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
    if (got <= 0) continue;
    snprintf(fs, sizeof fs, "%s", inet_ntoa(from.sin_addr));
    (void)idprov_mdns_parse(buf, (size_t)got, fs, out, cap, count);
  }
  close(fd);
  return IDPROV_OK;
}
