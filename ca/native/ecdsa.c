/*
 * ecdsa: ECDSA signature verification for the CA's hot path (proof of
 * possession of a CSR's key), with OpenSSL's own ECDSA, skipping the one step
 * node:crypto cannot skip.
 *
 * Why: importing a P-256 public key into node:crypto (JWK, SPKI or WebCrypto
 * raw) runs OpenSSL's full public-key validation, which multiplies the point
 * by the group order: about 85 us, as much as the verification itself and
 * twice a signature (README "Performance"). For a curve of cofactor 1 (P-256,
 * P-384) that multiplication cannot fail for a point on the curve, so it
 * proves nothing the on-curve check (done by EC_POINT_oct2point) has not
 * already proved (SP 800-56A rev. 3, 5.6.2.3.4, "partial" validation, is
 * complete there). This addon decodes the point with that check and verifies
 * with ECDSA_verify, which also refuses signatures that are not strict DER.
 *
 *   verify(curveBits, digestBits, point, data, signature) -> boolean
 *     curveBits: 256 (P-256) or 384 (P-384); digestBits: 256, 384 or 512 (SHA-2);
 *     point: the uncompressed point 04 || x || y; throws on a point that is not on the curve.
 *
 * The OpenSSL symbols are node's own (node exports its libcrypto to addons),
 * so the verification is exactly the one node:crypto performs.
 */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <node_api.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/sha.h>
#include <stdint.h>

static int get_bytes(napi_env env, napi_value v, const uint8_t **data, size_t *len) {
  bool is;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return -1;
  napi_typedarray_type type;
  void *p;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, v, &type, len, &p, &ab, &off) != napi_ok || type != napi_uint8_array) return -1;
  *data = p;
  return 0;
}

static napi_value verify(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  int32_t curve_bits, digest_bits;
  const uint8_t *point, *data, *sig;
  size_t point_len, data_len, sig_len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 5 ||
      napi_get_value_int32(env, argv[0], &curve_bits) != napi_ok ||
      napi_get_value_int32(env, argv[1], &digest_bits) != napi_ok ||
      get_bytes(env, argv[2], &point, &point_len) || get_bytes(env, argv[3], &data, &data_len) ||
      get_bytes(env, argv[4], &sig, &sig_len)) {
    napi_throw_type_error(env, NULL, "verify(curveBits, digestBits, point, data, signature): bad arguments");
    return NULL;
  }
  int nid = curve_bits == 256 ? NID_X9_62_prime256v1 : curve_bits == 384 ? NID_secp384r1 : 0;
  size_t coord = curve_bits / 8;
  if (!nid || point_len != 1 + 2 * coord || point[0] != 0x04) {
    napi_throw_type_error(env, NULL, "verify: unsupported curve or not an uncompressed point");
    return NULL;
  }
  unsigned char md[SHA512_DIGEST_LENGTH];
  size_t md_len;
  if (digest_bits == 256) { SHA256(data, data_len, md); md_len = SHA256_DIGEST_LENGTH; }
  else if (digest_bits == 384) { SHA384(data, data_len, md); md_len = SHA384_DIGEST_LENGTH; }
  else if (digest_bits == 512) { SHA512(data, data_len, md); md_len = SHA512_DIGEST_LENGTH; }
  else { napi_throw_type_error(env, NULL, "verify: unsupported digest"); return NULL; }

  /*
   * One EC_KEY per curve per thread, its public point replaced on each call:
   * making the group for every call (EC_KEY_new_by_curve_name) was a fifth
   * of the cost. JavaScript threads (main, workers) each have their own.
   */
  static __thread EC_KEY *keys[2];
  EC_KEY **slot = &keys[curve_bits == 256 ? 0 : 1];
  if (!*slot) *slot = EC_KEY_new_by_curve_name(nid);
  EC_KEY *key = *slot;
  if (!key) { napi_throw_error(env, NULL, "verify: out of memory"); return NULL; }
  /* EC_KEY_oct2key decodes with EC_POINT_oct2point, which refuses a point off the curve. */
  if (EC_KEY_oct2key(key, point, point_len, NULL) != 1) {
    ERR_clear_error();
    napi_throw_error(env, "ERR_INVALID_KEY", "verify: the public key is not a point on the curve");
    return NULL;
  }
  int ok = ECDSA_verify(0, md, (int)md_len, sig, (int)sig_len, key);
  /* A signature that does not verify leaves reasons on this thread's OpenSSL error queue; node:crypto must not see them later. */
  if (ok != 1) ERR_clear_error();
  napi_value result;
  napi_get_boolean(env, ok == 1, &result);
  return result;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "verify", NAPI_AUTO_LENGTH, verify, NULL, &fn);
  napi_set_named_property(env, exports, "verify", fn);
  return exports;
}
