/*
 * ed25519.c: Ed25519 signing and verification with libsodium (see ed25519.h).
 *
 * Threads: any. sodium_init() is called on first use (it is idempotent and
 * thread-safe); after that every function only reads its arguments.
 * Owns: each struct ed25519_key, allocated with sodium_malloc() (guard
 * pages, mlock, excluded from core dumps) and wiped by sodium_free().
 */
#include "ed25519.h"

#include <string.h>

#include <sodium.h>

#include <openssl/crypto.h>

#include "log.h"

struct ed25519_key {
	unsigned char seed[crypto_sign_SEEDBYTES];    /* what Talos stores */
	unsigned char sk[crypto_sign_SECRETKEYBYTES]; /* libsodium's: seed || pk */
	unsigned char pk[crypto_sign_PUBLICKEYBYTES];
};

/*
 * The encodings of the eight points of small order, with the sign bit of
 * the last byte cleared, including the two non-canonical encodings of 0 and
 * 1 (y = p, y = p + 1): y = 0, y = 1, the two order-8 y values, y = p - 1.
 * (The order-8 values are the roots of d*y^4 + 2*y^2 - 1 = 0, computed
 * from the curve equation.)
 */
static const unsigned char small_order[][32] = {
	{ 0 },
	{ 1 },
	{ 0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
	    0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d,
	    0x53, 0xfc, 0x05 },
	{ 0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
	    0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92,
	    0xac, 0x03, 0x7a },
};

/* 1 if the (sign-less) y of `s` is 2^255 - 19 - 1, - 19 + 0 or - 19 + 1, or >= p. */
static int
near_p(const unsigned char s[32], unsigned char lowest)
{
	int i;

	if ((s[31] & 0x7f) != 0x7f || s[0] < lowest)
		return 0;
	for (i = 1; i < 31; i++)
		if (s[i] != 0xff)
			return 0;
	return 1;
}

static int
is_small_order(const unsigned char s[32])
{
	unsigned char y[32];
	size_t        i;

	memcpy(y, s, sizeof(y));
	y[31] &= 0x7f;
	for (i = 0; i < sizeof(small_order) / sizeof(small_order[0]); i++)
		if (memcmp(y, small_order[i], sizeof(y)) == 0)
			return 1;
	/* y = p - 1 (order 2), and p, p + 1 (non-canonical 0 and 1). */
	return near_p(s, 0xec) && s[0] <= 0xee;
}

int
ed25519_is_strict(const unsigned char *pub, const unsigned char *sig, size_t siglen)
{
	if (near_p(pub, 0xed) || is_small_order(pub)) /* y >= p: non-canonical */
		return 0;
	if (siglen >= 32 && is_small_order(sig)) /* R */
		return 0;
	return 1;
}

struct ed25519_key *
ed25519_key_new(EVP_PKEY *pkey)
{
	struct ed25519_key *k = NULL;
	unsigned char       pk[crypto_sign_PUBLICKEYBYTES];
	size_t              len, plen = sizeof(pk);

	if (sodium_init() < 0) {
		log_warnx("ed25519: sodium_init failed");
		return NULL;
	}
	if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_ED25519)
		return NULL;
	if ((k = sodium_malloc(sizeof(*k))) == NULL) {
		log_warn("ed25519: sodium_malloc");
		return NULL;
	}
	len = sizeof(k->seed);
	if (EVP_PKEY_get_raw_private_key(pkey, k->seed, &len) != 1 || len != sizeof(k->seed) ||
	    EVP_PKEY_get_raw_public_key(pkey, pk, &plen) != 1 || plen != sizeof(pk) ||
	    crypto_sign_seed_keypair(k->pk, k->sk, k->seed) != 0 ||
	    CRYPTO_memcmp(pk, k->pk, sizeof(pk)) != 0) {
		log_ssl("ed25519: extracting the CA key");
		sodium_free(k);
		return NULL;
	}
	return k;
}

void
ed25519_key_free(struct ed25519_key *k)
{
	if (k != NULL)
		sodium_free(k); /* wipes before unmapping */
}

int
ed25519_sign(const struct ed25519_key *k, const unsigned char *msg, size_t len,
    unsigned char sig[ED25519_SIGNATURE_BYTES])
{
	return crypto_sign_detached(sig, NULL, msg, len, k->sk) == 0 ? 0 : -1;
}

int
ed25519_verify(const unsigned char *pub, const unsigned char *msg, size_t len,
    const unsigned char *sig, size_t siglen)
{
	if (siglen != crypto_sign_BYTES || !ed25519_is_strict(pub, sig, siglen))
		return 0;
	if (sodium_init() < 0)
		return 0;
	return crypto_sign_verify_detached(sig, msg, len, pub) == 0;
}

const char *
ed25519_sodium_version(void)
{
	return sodium_version_string();
}
