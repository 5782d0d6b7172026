/*
 * The provisioning state machine (docs/spec/idprov-coap-v1.md §3–§5, docs/device.md "State machine"):
 *
 *   START ──POST──▶ 4.01 + nonce ──▶ CHALLENGED ──POST (signed with the nonce)──▶
 *        2.01 ──▶ PROVISIONED (token opened if sealed, checked, optionally verified, stored)
 *        2.05 ──▶ PENDING   (wait `retry`, the next POST uses the nonce that came with the 2.05)
 *        4.29 ──▶ BACKOFF   (wait `retry` / Max-Age)
 *        5.03 ──▶ DISABLED  (wait `retry` / Max-Age)
 *        4.03, 4.01 bad-signature / oob-mismatch, 4.00, 4.13, 4.15 ──▶ REFUSED (terminal, last_err)
 *   PROVISIONED ──refresh at half life──▶ POST /idprov/refresh (same answers; a token the server no
 *        longer accepts is dropped and the device provisions again)
 *
 * The application drives it with idprov_step()/idprov_refresh_step() (one exchange each), or uses
 * the blocking idprov_provision()/idprov_refresh() below. Nothing here sleeps except those two.
 */
#include "internal.h"
#include "idprov_sign.h"
#include <string.h>

#define CF_COSE_SIGN1 18
#define C_201 IDPROV_COAP_CODE(2, 1)
#define C_205 IDPROV_COAP_CODE(2, 5)

static uint64_t now_ms(const idprov_ctx_t *c) { return c->clock.now_ms(c->clock.user); }
static uint64_t epoch_s(const idprov_ctx_t *c) { return c->clock.epoch_s ? c->clock.epoch_s(c->clock.user) : 0; }

static void put_be64(uint8_t *p, uint64_t v) {
  int i;
  for (i = 7; i >= 0; i--) { p[i] = (uint8_t)v; v >>= 8; }
}
static uint64_t get_be64(const uint8_t *p) {
  uint64_t v = 0;
  int i;
  for (i = 0; i < 8; i++) v = (v << 8) | p[i];
  return v;
}

int idprov_init(idprov_ctx_t *ctx, int create_key) {
  uint8_t k[64], meta[16], srv[40];
  size_t len = 0;
  int rc;
  if (!ctx || !idprov_id_valid(ctx->cfg.id) || !ctx->crypto.sign || !ctx->transport.exchange || !ctx->storage.load ||
      !ctx->clock.now_ms || !ctx->random.fill || !ctx->tx || !ctx->rx || ctx->tx_cap < 256 || ctx->rx_cap < 128)
    return IDPROV_ERR_ARG;
  ctx->state = IDPROV_ST_START;
  ctx->nonce_len = 0;
  ctx->token_len = 0;
  ctx->nkeys = 0;
  ctx->have_server = 0;
  ctx->attempts = 0;
  ctx->events = 0;
  ctx->last_err = IDPROV_OK;
  rc = ctx->storage.load(ctx->storage.user, IDPROV_ITEM_KEY, k, sizeof k, &len);
  if (rc == IDPROV_ERR_NOT_FOUND && create_key) {
    if (ctx->random.fill(ctx->random.user, k, sizeof k)) return IDPROV_ERR_CRYPTO;
    if (ctx->storage.store(ctx->storage.user, IDPROV_ITEM_KEY, k, sizeof k)) return IDPROV_ERR_STORAGE;
    len = sizeof k;
  } else if (rc) {
    return rc;
  }
  if (len != sizeof k) return IDPROV_ERR_STORAGE;
  memcpy(ctx->seed, k, 32);
  memcpy(ctx->xsk, k + 32, 32);
  memset(k, 0, sizeof k);
  if (ctx->crypto.derive(ctx->crypto.user, ctx->pk, ctx->seed, ctx->xpk, ctx->xsk)) return IDPROV_ERR_CRYPTO;
  if (ctx->storage.load(ctx->storage.user, IDPROV_ITEM_TOKEN, ctx->token, sizeof ctx->token, &len) == IDPROV_OK &&
      len > 0) {
    ctx->token_len = len;
    ctx->state = IDPROV_ST_PROVISIONED;
    ctx->token_exp = ctx->token_ttl = 0;
    if (ctx->storage.load(ctx->storage.user, IDPROV_ITEM_TOKEN_META, meta, sizeof meta, &len) == IDPROV_OK &&
        len == sizeof meta) {
      ctx->token_exp = get_be64(meta);
      ctx->token_ttl = get_be64(meta + 8);
    }
    ctx->token_got_known = 0; /* idprov_refresh_in_s() falls back to exp and the wall clock */
  }
  if (ctx->storage.load(ctx->storage.user, IDPROV_ITEM_SERVER, srv, sizeof srv, &len) == IDPROV_OK &&
      len == sizeof srv) {
    memcpy(ctx->kid, srv, IDPROV_KID_LEN);
    memcpy(ctx->fp, srv + IDPROV_KID_LEN, 32);
    ctx->have_server = 1;
  }
  return IDPROV_OK;
}

static int remember_server(idprov_ctx_t *ctx) {
  uint8_t srv[40];
  memcpy(srv, ctx->kid, IDPROV_KID_LEN);
  memcpy(srv + IDPROV_KID_LEN, ctx->fp, 32);
  ctx->have_server = 1;
  return ctx->storage.store(ctx->storage.user, IDPROV_ITEM_SERVER, srv, sizeof srv) ? IDPROV_ERR_STORAGE : IDPROV_OK;
}

int idprov_server_seen(idprov_ctx_t *ctx, const uint8_t *kid, const uint8_t *fp) {
  static const uint8_t zero[32] = {0};
  int changed = 0;
  if (kid) {
    if (ctx->have_server && memcmp(ctx->kid, kid, IDPROV_KID_LEN) != 0) ctx->events |= IDPROV_EV_KID_CHANGED;
    changed |= memcmp(ctx->kid, kid, IDPROV_KID_LEN) != 0;
    memcpy(ctx->kid, kid, IDPROV_KID_LEN);
  }
  if (fp) {
    if (ctx->have_server && memcmp(ctx->fp, zero, 32) != 0 && memcmp(ctx->fp, fp, 32) != 0)
      ctx->events |= IDPROV_EV_FP_CHANGED;
    changed |= memcmp(ctx->fp, fp, 32) != 0;
    memcpy(ctx->fp, fp, 32);
  }
  return changed || !ctx->have_server ? remember_server(ctx) : IDPROV_OK;
}

/* One confirmable exchange; the response body goes to ctx->rx. */
static int exchange(idprov_ctx_t *ctx, uint8_t method, const char *path, const uint8_t *payload, size_t len,
                    idprov_coap_resp_t *resp) {
  idprov_coap_req_t req;
  req.method = method;
  req.path = path;
  req.content_format = payload ? CF_COSE_SIGN1 : -1;
  req.payload = payload;
  req.payload_len = len;
  resp->buf = ctx->rx;
  resp->cap = ctx->rx_cap;
  resp->len = 0;
  return ctx->transport.exchange(ctx->transport.user, &req, resp);
}

int idprov_fetch_keys(idprov_ctx_t *ctx) {
  idprov_coap_resp_t resp;
  size_t count = 0;
  int rc = exchange(ctx, IDPROV_COAP_GET, "/idprov/keys", NULL, 0, &resp);
  if (rc) return rc;
  if (resp.code != C_205) return IDPROV_ERR_PROTOCOL;
  rc = idprov_keyset_parse(resp.buf, resp.len, ctx->keys, IDPROV_MAX_KEYS, &count);
  if (rc) return rc;
  ctx->nkeys = count < IDPROV_MAX_KEYS ? count : IDPROV_MAX_KEYS;
  ctx->events |= IDPROV_EV_KEYS_FETCHED;
  return IDPROV_OK;
}

static int wait_of(const idprov_response_t *r, const idprov_coap_resp_t *resp) {
  uint64_t w = (r->has & IDPROV_R_RETRY) ? r->retry : resp->max_age;
  return (int)(w > 86400u ? 86400u : w);
}

/* The token of a 2.01: opened (sealed), checked against our ID and key, optionally verified, stored. */
static int accept_token(idprov_ctx_t *ctx, const idprov_response_t *r) {
  idprov_claims_t cl;
  idprov_sign1_t s;
  uint8_t meta[16];
  int n, rc;
  if (r->has & IDPROV_R_SEALED) {
    n = idprov_token_unseal(&ctx->crypto, r, ctx->xsk, ctx->token, sizeof ctx->token);
    if (n < 0) return n;
    ctx->events |= IDPROV_EV_SEALED;
  } else if (r->has & IDPROV_R_TOKEN) {
    if (r->token.len > sizeof ctx->token) return IDPROV_ERR_BUFFER;
    memcpy(ctx->token, r->token.ptr, r->token.len);
    n = (int)r->token.len;
  } else {
    return IDPROV_ERR_PROTOCOL;
  }
  rc = idprov_token_verify(&ctx->crypto, ctx->token, (size_t)n, NULL, 0, NULL, 0, &cl);
  if (rc) return rc;
  if (cl.sub.len != strlen(ctx->cfg.id) || memcmp(cl.sub.ptr, ctx->cfg.id, cl.sub.len) != 0 ||
      memcmp(cl.cnf, ctx->pk, 32) != 0)
    return IDPROV_ERR_TOKEN_MISMATCH;
  if (ctx->cfg.verify_token) {
    rc = idprov_token_verify(&ctx->crypto, ctx->token, (size_t)n, ctx->keys, ctx->nkeys, ctx->tx, ctx->tx_cap, &cl);
    if (rc == IDPROV_ERR_NOT_FOUND) { /* a key we have not seen yet: fetch the set and try once more */
      rc = idprov_fetch_keys(ctx);
      if (rc) return rc;
      rc = idprov_token_verify(&ctx->crypto, ctx->token, (size_t)n, ctx->keys, ctx->nkeys, ctx->tx, ctx->tx_cap, &cl);
    }
    if (rc) return rc == IDPROV_ERR_NOT_FOUND ? IDPROV_ERR_CRYPTO : rc;
    ctx->events |= IDPROV_EV_VERIFIED;
  }
  ctx->token_len = (size_t)n;
  ctx->token_exp = (r->has & IDPROV_R_EXP) ? r->exp : cl.exp;
  ctx->token_ttl = (r->has & IDPROV_R_TTL) ? r->ttl : (cl.exp > cl.iat ? cl.exp - cl.iat : 0);
  ctx->token_got_ms = now_ms(ctx);
  ctx->token_got_known = 1;
  put_be64(meta, ctx->token_exp);
  put_be64(meta + 8, ctx->token_ttl);
  if (ctx->storage.store(ctx->storage.user, IDPROV_ITEM_TOKEN, ctx->token, ctx->token_len) ||
      ctx->storage.store(ctx->storage.user, IDPROV_ITEM_TOKEN_META, meta, sizeof meta))
    return IDPROV_ERR_STORAGE;
  /* remember the token key; a different one than last time is reported */
  if (idprov_sign1_parse(ctx->token, ctx->token_len, &s) == IDPROV_OK && s.kid.len == IDPROV_KID_LEN)
    return idprov_server_seen(ctx, s.kid.ptr, NULL);
  return IDPROV_OK;
}

static idprov_next_t stop(idprov_ctx_t *ctx, int err) {
  ctx->last_err = err;
  return IDPROV_NEXT_STOP;
}

/* Maps one response to the next state (shared by request and refresh). */
static idprov_next_t handle(idprov_ctx_t *ctx, const idprov_coap_resp_t *resp) {
  idprov_response_t r;
  int rc;
  ctx->last_code = resp->code;
  if (resp->len) {
    rc = idprov_response_parse(resp->buf, resp->len, &r);
    if (rc) return stop(ctx, IDPROV_ERR_PROTOCOL);
  } else {
    memset(&r, 0, sizeof r);
  }
  if (r.has & IDPROV_R_NONCE) {
    memcpy(ctx->nonce, r.nonce.ptr, r.nonce.len);
    ctx->nonce_len = r.nonce.len;
  }
  ctx->wait_s = (uint32_t)wait_of(&r, resp);
  switch (resp->code) {
  case C_201:
    /* A 2.01 may carry the nonce for the next POST (spec §3, key 4; valid until the token expires):
     * kept above for the refresh, which then takes one round trip. Without one (an older server) the
     * next POST starts without a nonce and gets a 4.01. */
    if (!(r.has & IDPROV_R_NONCE)) ctx->nonce_len = 0;
    if ((r.has & IDPROV_R_STATUS) && r.status != 0) return stop(ctx, IDPROV_ERR_PROTOCOL);
    rc = accept_token(ctx, &r);
    if (rc) return stop(ctx, rc);
    ctx->state = IDPROV_ST_PROVISIONED;
    ctx->last_err = IDPROV_OK;
    return IDPROV_NEXT_DONE;
  case C_205:
    if (!(r.has & IDPROV_R_STATUS) || r.status != 1) return stop(ctx, IDPROV_ERR_PROTOCOL);
    ctx->state = IDPROV_ST_PENDING;
    ctx->last_err = IDPROV_ERR_PENDING;
    return IDPROV_NEXT_WAIT;
  case IDPROV_COAP_CODE(4, 1):
    if ((r.has & IDPROV_R_ERR) && r.err != IDPROV_E_NONCE) {
      ctx->state = IDPROV_ST_REFUSED;
      return stop(ctx, r.err <= 12 ? (int)r.err : IDPROV_ERR_PROTOCOL);
    }
    if (!(r.has & IDPROV_R_NONCE)) return stop(ctx, IDPROV_ERR_PROTOCOL);
    ctx->state = IDPROV_ST_CHALLENGED;
    ctx->last_err = IDPROV_E_NONCE;
    return IDPROV_NEXT_AGAIN;
  case IDPROV_COAP_CODE(4, 3):
    ctx->state = IDPROV_ST_REFUSED;
    return stop(ctx, (r.has & IDPROV_R_ERR) && r.err >= 1 && r.err <= 12 ? (int)r.err : IDPROV_E_REJECTED);
  case IDPROV_COAP_CODE(4, 29):
    ctx->state = IDPROV_ST_BACKOFF;
    ctx->last_err = IDPROV_E_RATE_LIMITED;
    return IDPROV_NEXT_WAIT;
  case IDPROV_COAP_CODE(5, 3):
    ctx->state = IDPROV_ST_DISABLED;
    ctx->last_err = IDPROV_E_DISABLED;
    return IDPROV_NEXT_WAIT;
  case IDPROV_COAP_CODE(4, 0): return stop(ctx, IDPROV_E_MALFORMED);
  case IDPROV_COAP_CODE(4, 13): return stop(ctx, IDPROV_E_TOO_LARGE);
  case IDPROV_COAP_CODE(4, 15): return stop(ctx, IDPROV_E_CONTENT_FORMAT);
  default: return stop(ctx, IDPROV_ERR_PROTOCOL);
  }
}

/* Signs the body at tx[HEADROOM..+len) and POSTs it. */
static idprov_next_t post(idprov_ctx_t *ctx, const char *path, int body_len) {
  idprov_coap_resp_t resp;
  size_t start = 0;
  int n, rc;
  if (body_len < 0) return stop(ctx, body_len);
  n = idprov_sign1_wrap(&ctx->crypto, ctx->seed, ctx->pk, ctx->tx, ctx->tx_cap, (size_t)body_len, &start);
  if (n < 0) return stop(ctx, n);
  ctx->attempts++;
  rc = exchange(ctx, IDPROV_COAP_POST, path, ctx->tx + start, (size_t)n, &resp);
  if (rc) return stop(ctx, rc);
  return handle(ctx, &resp);
}

static size_t body_cap(const idprov_ctx_t *ctx) { return ctx->tx_cap - IDPROV_SIGN1_HEADROOM - 66; }

idprov_next_t idprov_step(idprov_ctx_t *ctx) {
  idprov_request_body_t b;
  uint8_t oob[32];
  ctx->events = 0;
  memset(&b, 0, sizeof b);
  b.id = ctx->cfg.id;
  b.pk = ctx->pk;
  b.mac = ctx->cfg.mac;
  b.mac_len = ctx->cfg.mac_len;
  b.type = ctx->cfg.type;
  if (ctx->cfg.seal) b.xk = ctx->xpk;
  if (ctx->nonce_len) {
    b.nonce = ctx->nonce;
    b.nonce_len = ctx->nonce_len;
    if (ctx->cfg.oob_secret && !ctx->cfg.psk_session) {
      /* key 7: HMAC-SHA256(key = secret, "idprov-oob-v1" ‖ nonce ‖ pk) */
      uint8_t msg[13 + IDPROV_NONCE_MAX + 32];
      memcpy(msg, "idprov-oob-v1", 13);
      memcpy(msg + 13, ctx->nonce, ctx->nonce_len);
      memcpy(msg + 13 + ctx->nonce_len, ctx->pk, 32);
      ctx->crypto.hmac_sha256(ctx->crypto.user, oob, ctx->cfg.oob_secret, ctx->cfg.oob_secret_len, msg,
                              13 + ctx->nonce_len + 32);
      b.oob = oob;
    }
  }
  return post(ctx, "/idprov/request",
              idprov_request_body_build(&b, ctx->tx + IDPROV_SIGN1_HEADROOM, body_cap(ctx)));
}

idprov_next_t idprov_refresh_step(idprov_ctx_t *ctx) {
  idprov_refresh_body_t b;
  idprov_next_t next;
  ctx->events = 0;
  if (!ctx->token_len) return stop(ctx, IDPROV_ERR_STATE);
  memset(&b, 0, sizeof b);
  b.id = ctx->cfg.id;
  if (ctx->nonce_len) {
    b.nonce = ctx->nonce;
    b.nonce_len = ctx->nonce_len;
  }
  if (ctx->cfg.seal) b.xk = ctx->xpk;
  b.token = ctx->token;
  b.token_len = ctx->token_len;
  next = post(ctx, "/idprov/refresh", idprov_refresh_body_build(&b, ctx->tx + IDPROV_SIGN1_HEADROOM, body_cap(ctx)));
  if (next == IDPROV_NEXT_STOP &&
      (ctx->last_err == IDPROV_E_TOKEN_EXPIRED || ctx->last_err == IDPROV_E_UNKNOWN_TOKEN_KEY ||
       ctx->last_err == IDPROV_E_KEY_MISMATCH || ctx->last_err == IDPROV_E_REVOKED)) {
    /* the server will not take this token again: drop it, the device provisions afresh */
    ctx->token_len = 0;
    if (ctx->storage.erase) (void)ctx->storage.erase(ctx->storage.user, IDPROV_ITEM_TOKEN);
    ctx->state = ctx->last_err == IDPROV_E_REVOKED ? IDPROV_ST_REFUSED : IDPROV_ST_START;
  } else if (ctx->state == IDPROV_ST_REFUSED || ctx->state == IDPROV_ST_PENDING) {
    ctx->state = ctx->token_len ? IDPROV_ST_PROVISIONED : IDPROV_ST_START;
  }
  return next;
}

uint64_t idprov_refresh_in_s(const idprov_ctx_t *ctx) {
  uint64_t half = ctx->token_ttl / 2, elapsed;
  if (!ctx->token_len) return 0;
  if (!ctx->token_got_known) { /* loaded from storage: use the wall clock when there is one */
    uint64_t now = epoch_s(ctx), due = ctx->token_exp - half;
    if (now == 0 || ctx->token_exp < half) return 0;
    return due > now ? due - now : 0;
  }
  elapsed = (now_ms(ctx) - ctx->token_got_ms) / 1000u;
  return half > elapsed ? half - elapsed : 0;
}

static void sleep_s(idprov_ctx_t *ctx, uint32_t s) {
  while (s) {
    uint32_t chunk = s > 3600u ? 3600u : s;
    ctx->clock.sleep_ms(ctx->clock.user, chunk * 1000u);
    s -= chunk;
  }
}

/* At most this many 4.01 challenges in a row before giving up (a well-behaved server needs one). */
#define MAX_CHALLENGES 3

int idprov_provision(idprov_ctx_t *ctx, uint32_t max_wait_s) {
  uint32_t waited = 0;
  unsigned challenges = 0, steps;
  ctx->attempts = 0;
  if (ctx->state == IDPROV_ST_REFUSED || ctx->state == IDPROV_ST_PROVISIONED) ctx->state = IDPROV_ST_START;
  for (steps = 0; steps < 100000u; steps++) {
    switch (idprov_step(ctx)) {
    case IDPROV_NEXT_DONE: return IDPROV_OK;
    case IDPROV_NEXT_STOP: return ctx->last_err;
    case IDPROV_NEXT_AGAIN:
      if (++challenges > MAX_CHALLENGES) return IDPROV_E_NONCE;
      break;
    case IDPROV_NEXT_WAIT:
      challenges = 0;
      if (ctx->wait_s > max_wait_s - waited || max_wait_s == 0) return ctx->last_err;
      sleep_s(ctx, ctx->wait_s ? ctx->wait_s : 1);
      waited += ctx->wait_s ? ctx->wait_s : 1;
      break;
    }
  }
  return IDPROV_ERR_STATE;
}

int idprov_refresh(idprov_ctx_t *ctx) {
  unsigned i;
  ctx->attempts = 0;
  for (i = 0; i <= MAX_CHALLENGES; i++) {
    idprov_next_t next = idprov_refresh_step(ctx);
    if (next == IDPROV_NEXT_DONE) return IDPROV_OK;
    if (next != IDPROV_NEXT_AGAIN) return ctx->last_err;
  }
  return IDPROV_E_NONCE;
}
