/*
 * CoAP (RFC 7252) for the device: the message codec and a confirmable-request client with
 * retransmission (§4.2, §4.8: ACK_TIMEOUT, ACK_RANDOM_FACTOR, MAX_RETRANSMIT), piggybacked and
 * separate responses (§5.2), and Block2 reassembly (RFC 7959) into the caller's buffer. It runs over
 * any connected datagram channel (idprov_dgram_t): a BSD/lwIP UDP socket or a DTLS session.
 * Message IDs start at a random value and tokens are random (§4.4, §5.3.1), from the random port.
 */
#include "idprov.h"
#include <string.h>

enum { CON = 0, NON = 1, ACK = 2, RST = 3 };
enum { OPT_URI_PATH = 11, OPT_CONTENT_FORMAT = 12, OPT_MAX_AGE = 14, OPT_BLOCK2 = 23, OPT_BLOCK1 = 27 };

static size_t put_opt(uint8_t *b, size_t cap, size_t at, unsigned delta, const uint8_t *v, size_t vlen) {
  uint8_t h[5];
  size_t n = 1;
  unsigned d = delta, l = (unsigned)vlen;
  if (at == (size_t)-1) return at;
  h[0] = 0;
  if (d < 13) h[0] = (uint8_t)(d << 4);
  else if (d < 269) { h[0] = 13 << 4; h[n++] = (uint8_t)(d - 13); }
  else { h[0] = 14 << 4; h[n++] = (uint8_t)((d - 269) >> 8); h[n++] = (uint8_t)(d - 269); }
  if (l < 13) h[0] |= (uint8_t)l;
  else if (l < 269) { h[0] |= 13; h[n++] = (uint8_t)(l - 13); }
  else { h[0] |= 14; h[n++] = (uint8_t)((l - 269) >> 8); h[n++] = (uint8_t)(l - 269); }
  if (cap - at < n + vlen) return (size_t)-1;
  memcpy(b + at, h, n);
  if (vlen) memcpy(b + at + n, v, vlen);
  return at + n + vlen;
}

static size_t uint_bytes(uint32_t v, uint8_t out[4]) {
  size_t n = 0;
  uint8_t t[4];
  while (v) { t[n++] = (uint8_t)v; v >>= 8; }
  for (size_t i = 0; i < n; i++) out[i] = t[n - 1 - i];
  return n;
}

int idprov_coap_build(uint8_t *buf, size_t cap, uint8_t type, uint8_t code, uint16_t mid, const uint8_t *token,
                      uint8_t tkl, const char *path, int content_format, int64_t block2, const uint8_t *payload,
                      size_t payload_len) {
  size_t at;
  unsigned last = 0;
  uint8_t v[4];
  if (tkl > 8 || cap < 4u + tkl) return IDPROV_ERR_BUFFER;
  buf[0] = (uint8_t)(0x40 | (type << 4) | tkl);
  buf[1] = code;
  buf[2] = (uint8_t)(mid >> 8);
  buf[3] = (uint8_t)mid;
  if (tkl) memcpy(buf + 4, token, tkl);
  at = 4u + tkl;
  while (path && *path) {
    const char *seg, *slash;
    while (*path == '/') path++;
    if (!*path) break;
    seg = path;
    slash = strchr(seg, '/');
    path = slash ? slash : seg + strlen(seg);
    at = put_opt(buf, cap, at, OPT_URI_PATH - last, (const uint8_t *)seg, (size_t)(path - seg));
    last = OPT_URI_PATH;
  }
  if (content_format >= 0) {
    at = put_opt(buf, cap, at, OPT_CONTENT_FORMAT - last, v, uint_bytes((uint32_t)content_format, v));
    last = OPT_CONTENT_FORMAT;
  }
  if (block2 >= 0) {
    at = put_opt(buf, cap, at, OPT_BLOCK2 - last, v, uint_bytes((uint32_t)block2, v));
    last = OPT_BLOCK2;
  }
  if (at == (size_t)-1) return IDPROV_ERR_BUFFER;
  if (payload_len) {
    if (cap - at < 1 + payload_len) return IDPROV_ERR_BUFFER;
    buf[at++] = 0xff;
    memcpy(buf + at, payload, payload_len);
    at += payload_len;
  }
  return (int)at;
}

static int ext(const uint8_t **p, const uint8_t *end, unsigned nib, unsigned *out) {
  if (nib < 13) { *out = nib; return 0; }
  if (nib == 13) {
    if (end - *p < 1) return -1;
    *out = 13u + **p;
    *p += 1;
    return 0;
  }
  if (nib == 14) {
    if (end - *p < 2) return -1;
    *out = 269u + (((unsigned)(*p)[0] << 8) | (*p)[1]);
    *p += 2;
    return 0;
  }
  return -1;
}

static int opt_uint(const uint8_t *v, unsigned len, unsigned max_len, uint32_t *out) {
  uint32_t x = 0;
  unsigned i;
  if (len > max_len) return -1;
  for (i = 0; i < len; i++) x = (x << 8) | v[i];
  *out = x;
  return 0;
}

int idprov_coap_parse(const uint8_t *p, size_t n, idprov_coap_msg_t *m) {
  const uint8_t *end;
  unsigned num = 0;
  if (p == NULL || n < 4 || (p[0] >> 6) != 1) return IDPROV_ERR_DECODE;
  end = p + n;
  memset(m, 0, sizeof *m);
  m->type = (uint8_t)((p[0] >> 4) & 3);
  m->tkl = (uint8_t)(p[0] & 15);
  m->code = p[1];
  m->mid = (uint16_t)((p[2] << 8) | p[3]);
  m->content_format = -1;
  m->max_age = 60;
  if (m->tkl > 8 || n < 4u + m->tkl) return IDPROV_ERR_DECODE;
  memcpy(m->token, p + 4, m->tkl);
  p += 4 + m->tkl;
  while (p < end) {
    unsigned delta, len;
    uint32_t u;
    uint8_t b = *p++;
    if (b == 0xff) {
      if (p == end) return IDPROV_ERR_DECODE; /* marker without payload: §3 format error */
      m->payload = p;
      m->payload_len = (size_t)(end - p);
      return IDPROV_OK;
    }
    if (ext(&p, end, b >> 4, &delta) || ext(&p, end, b & 15, &len) || (size_t)(end - p) < len)
      return IDPROV_ERR_DECODE;
    num += delta;
    switch (num) {
    case OPT_CONTENT_FORMAT:
      if (opt_uint(p, len, 2, &u)) return IDPROV_ERR_DECODE;
      m->content_format = (int)u;
      break;
    case OPT_MAX_AGE:
      if (opt_uint(p, len, 4, &m->max_age)) return IDPROV_ERR_DECODE;
      break;
    case OPT_BLOCK2:
      if (opt_uint(p, len, 3, &m->block2) || (m->block2 & 7) == 7) return IDPROV_ERR_DECODE;
      m->has_block2 = 1;
      break;
    case OPT_BLOCK1:
    case OPT_URI_PATH:
    case 15: /* Uri-Query: in requests only; read (and ignored) so the tests can parse what we build */
      break;
    default:
      if (num & 1) return IDPROV_ERR_DECODE; /* an unrecognised critical option (§5.4.1) */
    }
    p += len;
  }
  m->payload = p;
  return IDPROV_OK;
}

void idprov_coap_params_default(idprov_coap_params_t *p) {
  p->ack_timeout_ms = 2000;
  p->ack_random_factor_x1000 = 1500;
  p->max_retransmit = 4;
  p->block2_szx = 7;
}

int idprov_coap_client_init(idprov_coap_client_t *c, const idprov_dgram_t *dgram, const idprov_random_t *rnd,
                            const idprov_clock_t *clk, uint8_t *io, size_t io_cap) {
  uint8_t r[2];
  memset(c, 0, sizeof *c);
  if (!dgram || !rnd || !clk || !io || io_cap < 64) return IDPROV_ERR_ARG;
  c->dgram = *dgram;
  c->random = *rnd;
  c->clock = *clk;
  c->io = io;
  c->io_cap = io_cap;
  idprov_coap_params_default(&c->params);
  if (rnd->fill(rnd->user, r, 2)) return IDPROV_ERR_CRYPTO;
  c->next_mid = (uint16_t)((r[0] << 8) | r[1]);
  return IDPROV_OK;
}

/* Sends the request and waits for its response (piggybacked or separate), retransmitting the CON. */
static int transact(idprov_coap_client_t *c, const uint8_t *msg, size_t len, uint16_t mid, const uint8_t tok[4],
                    idprov_coap_msg_t *resp) {
  uint8_t r[2];
  uint32_t timeout, jitter;
  unsigned attempt;
  int acked = 0;
  if (c->random.fill(c->random.user, r, 2)) return IDPROV_ERR_CRYPTO;
  /* initial timeout: random in [ACK_TIMEOUT, ACK_TIMEOUT * ACK_RANDOM_FACTOR] (§4.2) */
  jitter = (uint32_t)(((uint64_t)c->params.ack_timeout_ms * (c->params.ack_random_factor_x1000 - 1000u) / 1000u) *
                      (uint32_t)((r[0] << 8) | r[1]) / 65535u);
  timeout = c->params.ack_timeout_ms + jitter;
  for (attempt = 0; attempt <= c->params.max_retransmit; attempt++) {
    uint64_t deadline;
    if (!acked) {
      if (attempt) c->retransmissions++;
      if (c->dgram.send(c->dgram.user, msg, len) != 0) return IDPROV_ERR_TRANSPORT;
      c->datagrams_out++;
      c->bytes_out += (uint32_t)len;
    }
    deadline = c->clock.now_ms(c->clock.user) + timeout;
    for (;;) {
      uint64_t now = c->clock.now_ms(c->clock.user);
      int n;
      if (now >= deadline) break;
      n = c->dgram.recv(c->dgram.user, c->io, c->io_cap, (uint32_t)(deadline - now));
      if (n == IDPROV_ERR_TIMEOUT) continue; /* also an ICMP error while the server is down: wait on */
      if (n < 0) return n;
      c->datagrams_in++;
      c->bytes_in += (uint32_t)n;
      if (idprov_coap_parse(c->io, (size_t)n, resp) != IDPROV_OK) continue; /* not CoAP: ignore */
      if ((resp->type == ACK || resp->type == RST) && resp->mid == mid) {
        if (resp->type == RST) return IDPROV_ERR_PROTOCOL;
        if (resp->code == 0) { /* empty ACK: a separate response follows (§5.2.2) */
          acked = 1;
          continue;
        }
        if (resp->tkl == 4 && memcmp(resp->token, tok, 4) == 0) return IDPROV_OK;
        continue;
      }
      if ((resp->type == CON || resp->type == NON) && resp->code != 0 && resp->tkl == 4 &&
          memcmp(resp->token, tok, 4) == 0) {
        if (resp->type == CON) { /* acknowledge the separate response */
          uint8_t ack[4];
          ack[0] = 0x60;
          ack[1] = 0;
          ack[2] = (uint8_t)(resp->mid >> 8);
          ack[3] = (uint8_t)resp->mid;
          (void)c->dgram.send(c->dgram.user, ack, 4);
          c->datagrams_out++;
          c->bytes_out += 4;
        }
        return IDPROV_OK;
      }
    }
    timeout *= 2;
  }
  return IDPROV_ERR_TIMEOUT;
}

int idprov_coap_exchange(void *client, const idprov_coap_req_t *req, idprov_coap_resp_t *out) {
  idprov_coap_client_t *c = (idprov_coap_client_t *)client;
  uint32_t num = 0;
  unsigned szx = c->params.block2_szx;
  out->len = 0;
  out->content_format = -1;
  out->max_age = 60;
  for (;;) {
    uint8_t tok[4];
    uint16_t mid = c->next_mid++;
    idprov_coap_msg_t m;
    /* a block size is asked for on GET only (key sets); POST answers are small and never cached */
    int64_t b2 = (num == 0 && (szx == 7 || req->method != IDPROV_COAP_GET)) ? -1 : (int64_t)((num << 4) | (szx & 7));
    /* the payload goes with the first block only; later blocks come from the server's cache */
    int n, rc;
    if (c->random.fill(c->random.user, tok, 4)) return IDPROV_ERR_CRYPTO;
    n = idprov_coap_build(c->io, c->io_cap, CON, req->method, mid, tok, 4, req->path, num ? -1 : req->content_format,
                          b2, num ? NULL : req->payload, num ? 0 : req->payload_len);
    if (n < 0) return n;
    /* keep the request apart from the receive area: send from the top of io */
    if ((size_t)n * 2 > c->io_cap) return IDPROV_ERR_BUFFER;
    memmove(c->io + c->io_cap - (size_t)n, c->io, (size_t)n);
    {
      uint8_t *msg = c->io + c->io_cap - (size_t)n;
      size_t keep = c->io_cap;
      c->io_cap -= (size_t)n; /* receive below the request */
      rc = transact(c, msg, (size_t)n, mid, tok, &m);
      c->io_cap = keep;
    }
    if (rc) return rc;
    out->code = m.code;
    out->content_format = m.content_format;
    out->max_age = m.max_age;
    if (m.has_block2) {
      uint32_t bnum = m.block2 >> 4, bszx = m.block2 & 7, size = 16u << bszx;
      if (bnum != num && !(num == 0 && bnum == 0)) return IDPROV_ERR_PROTOCOL;
      if ((uint64_t)bnum * size != out->len || m.payload_len > size) return IDPROV_ERR_PROTOCOL;
      if (m.payload_len > out->cap - out->len) return IDPROV_ERR_BUFFER;
      memcpy(out->buf + out->len, m.payload, m.payload_len);
      out->len += m.payload_len;
      if (!(m.block2 & 8)) return IDPROV_OK;
      if (m.payload_len != size || bnum >= 0xfffffu) return IDPROV_ERR_PROTOCOL;
      szx = bszx;
      num = bnum + 1;
      continue;
    }
    if (num != 0) return IDPROV_ERR_PROTOCOL; /* a later block without Block2 */
    if (m.payload_len > out->cap) return IDPROV_ERR_BUFFER;
    memcpy(out->buf, m.payload, m.payload_len);
    out->len = m.payload_len;
    return IDPROV_OK;
  }
}
