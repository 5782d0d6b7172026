/* The libsodium crypto port against the shared vectors: keys, signature, OOB proof, sealed token, kid,
   fingerprint, token verification. */
#include "idprov.h"
#include "idprov_ports.h"
#include "fixtures.h"
#include "tiny_test.h"

static idprov_crypto_t C;

TEST(keys_derive_from_the_vector_seeds) {
  uint8_t pk[32], xpk[32];
  CHECK_EQ(C.derive(NULL, pk, VEC_SEED, xpk, VEC_XSK), 0);
  CHECK_MEM(pk, VEC_PK, 32);
  CHECK_MEM(xpk, VEC_XPK, 32);
}
TEST(the_request_signature_is_the_vectors) {
  uint8_t sig[64];
  CHECK_EQ(C.sign(NULL, sig, VEC_REQ_SIG_STRUCTURE, VEC_REQ_SIG_STRUCTURE_LEN, VEC_SEED, VEC_PK), 0);
  CHECK_MEM(sig, VEC_REQ_SIGNATURE, 64);
  CHECK_EQ(C.verify(NULL, sig, VEC_REQ_SIG_STRUCTURE, VEC_REQ_SIG_STRUCTURE_LEN, VEC_PK), 0);
  sig[0] ^= 1;
  CHECK(C.verify(NULL, sig, VEC_REQ_SIG_STRUCTURE, VEC_REQ_SIG_STRUCTURE_LEN, VEC_PK) != 0);
}
TEST(the_oob_proof_is_the_vectors) {
  uint8_t mac[32];
  C.hmac_sha256(NULL, mac, (const uint8_t *)VEC_OOB_SECRET, strlen(VEC_OOB_SECRET), VEC_OOB_MSG, VEC_OOB_MSG_LEN);
  CHECK_MEM(mac, VEC_OOB_HMAC, 32);
}
TEST(kid_and_fingerprint_follow_the_rules) {
  uint8_t kid[8];
  char fp[IDPROV_FINGERPRINT_SIZE];
  idprov_kid_of(&C, VEC_SERVER_PK, kid);
  CHECK_MEM(kid, VEC_KID, 8);
  CHECK_EQ(idprov_fingerprint(&C, VEC_PK, fp), 0);
  CHECK(strcmp(fp, VEC_FINGERPRINT) == 0);
  CHECK_EQ(strlen(fp), IDPROV_FINGERPRINT_SIZE - 1);
}
TEST(the_sealed_vector_response_opens_to_the_vector_token) {
  idprov_response_t r;
  uint8_t tok[512], bad[32];
  int n;
  CHECK_EQ(idprov_response_parse(VEC_SEALED_RESPONSE, VEC_SEALED_RESPONSE_LEN, &r), 0);
  n = idprov_token_unseal(&C, &r, VEC_XSK, tok, sizeof tok);
  CHECK_EQ(n, VEC_TOKEN_LEN);
  CHECK_MEM(tok, VEC_TOKEN, VEC_TOKEN_LEN);
  CHECK_EQ(idprov_token_unseal(&C, &r, VEC_XSK, tok, 100), IDPROV_ERR_BUFFER);
  memcpy(bad, VEC_XSK, 32);
  bad[5] ^= 0x40;
  CHECK_EQ(idprov_token_unseal(&C, &r, bad, tok, sizeof tok), IDPROV_ERR_CRYPTO);
}
TEST(the_vector_token_verifies_against_the_vector_keyset) {
  idprov_key_t keys[2];
  size_t count = 0;
  idprov_claims_t cl;
  uint8_t scratch[400], tok[VEC_TOKEN_LEN];
  CHECK_EQ(idprov_keyset_parse(VEC_KEYSET, VEC_KEYSET_LEN, keys, 2, &count), 0);
  CHECK_EQ(idprov_token_verify(&C, VEC_TOKEN, VEC_TOKEN_LEN, keys, count, scratch, sizeof scratch, &cl), 0);
  CHECK_EQ(cl.exp, 1767229200u);
  CHECK_MEM(cl.cnf, VEC_PK, 32);
  memcpy(tok, VEC_TOKEN, VEC_TOKEN_LEN);
  tok[VEC_TOKEN_LEN - 1] ^= 1; /* the signature's last byte */
  CHECK_EQ(idprov_token_verify(&C, tok, VEC_TOKEN_LEN, keys, count, scratch, sizeof scratch, &cl), IDPROV_ERR_CRYPTO);
  memcpy(tok, VEC_TOKEN, VEC_TOKEN_LEN);
  tok[30] ^= 1; /* a claim byte inside the payload (sub) */
  CHECK_EQ(idprov_token_verify(&C, tok, VEC_TOKEN_LEN, keys, count, scratch, sizeof scratch, &cl), IDPROV_ERR_CRYPTO);
  keys[0].kid[0] ^= 1;
  CHECK_EQ(idprov_token_verify(&C, VEC_TOKEN, VEC_TOKEN_LEN, keys, count, scratch, sizeof scratch, &cl), IDPROV_ERR_NOT_FOUND);
  CHECK_EQ(idprov_token_verify(&C, VEC_TOKEN, VEC_TOKEN_LEN, keys, count, scratch, 50, &cl), IDPROV_ERR_NOT_FOUND);
  keys[0].kid[0] ^= 1;
  CHECK_EQ(idprov_token_verify(&C, VEC_TOKEN, VEC_TOKEN_LEN, keys, count, scratch, 50, &cl), IDPROV_ERR_BUFFER);
}

static const tt_test_t TESTS[] = {
  T(keys_derive_from_the_vector_seeds), T(the_request_signature_is_the_vectors), T(the_oob_proof_is_the_vectors),
  T(kid_and_fingerprint_follow_the_rules), T(the_sealed_vector_response_opens_to_the_vector_token),
  T(the_vector_token_verifies_against_the_vector_keyset),
};
int main(int argc, char **argv) {
  if (idprov_crypto_sodium(&C)) return 99;
  return tt_main(argc, argv, TESTS, sizeof TESTS / sizeof TESTS[0]);
}
