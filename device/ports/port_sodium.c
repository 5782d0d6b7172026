/* Crypto port on libsodium (host, and ESP-IDF's libsodium component). */
#include "idprov_ports.h"
#include <sodium.h>

static int sign(void *u, uint8_t sig[64], const uint8_t *msg, size_t len, const uint8_t seed[32], const uint8_t pk[32]) {
  uint8_t sk[crypto_sign_SECRETKEYBYTES], pk2[32];
  int rc;
  (void)u;
  (void)pk;
  if (crypto_sign_seed_keypair(pk2, sk, seed) != 0) return -1;
  rc = crypto_sign_detached(sig, NULL, msg, len, sk);
  sodium_memzero(sk, sizeof sk);
  return rc;
}
static int verify(void *u, const uint8_t sig[64], const uint8_t *msg, size_t len, const uint8_t pk[32]) {
  (void)u;
  return crypto_sign_verify_detached(sig, msg, len, pk);
}
static int box_open(void *u, uint8_t *out, const uint8_t *box, size_t box_len, const uint8_t nonce[24],
                    const uint8_t epk[32], const uint8_t sk[32]) {
  (void)u;
  return crypto_box_open_easy(out, box, box_len, nonce, epk, sk);
}
static void sha256(void *u, uint8_t out[32], const uint8_t *msg, size_t len) {
  (void)u;
  crypto_hash_sha256(out, msg, len);
}
static void hmac(void *u, uint8_t out[32], const uint8_t *key, size_t key_len, const uint8_t *msg, size_t len) {
  crypto_auth_hmacsha256_state st;
  (void)u;
  crypto_auth_hmacsha256_init(&st, key, key_len);
  crypto_auth_hmacsha256_update(&st, msg, len);
  crypto_auth_hmacsha256_final(&st, out);
  sodium_memzero(&st, sizeof st);
}
static int derive(void *u, uint8_t ed_pk[32], const uint8_t seed[32], uint8_t x_pk[32], const uint8_t x_sk[32]) {
  uint8_t sk[crypto_sign_SECRETKEYBYTES];
  (void)u;
  if (crypto_sign_seed_keypair(ed_pk, sk, seed) != 0) return -1;
  sodium_memzero(sk, sizeof sk);
  return crypto_scalarmult_base(x_pk, x_sk);
}

int idprov_crypto_sodium(idprov_crypto_t *c) {
  if (sodium_init() < 0) return IDPROV_ERR_CRYPTO;
  c->user = NULL;
  c->sign = sign;
  c->verify = verify;
  c->box_open = box_open;
  c->sha256 = sha256;
  c->hmac_sha256 = hmac;
  c->derive = derive;
  return IDPROV_OK;
}

static int fill(void *u, uint8_t *buf, size_t len) {
  (void)u;
  randombytes_buf(buf, len);
  return 0;
}
void idprov_random_sodium(idprov_random_t *r) {
  r->user = NULL;
  r->fill = fill;
}
