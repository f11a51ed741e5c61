/*
 * test_keyder.c: keyder_decode() against OpenSSL's own d2i_AutoPrivateKey(),
 * key by key (mirrors src/keyder.c).
 *
 * The differential test feeds both the same DER: every family and format
 * the daemon accepts, then thousands of damaged copies of each (every
 * truncation, flipped bits at every position, a byte appended). The rule:
 * whatever keyder_decode() accepts, OpenSSL accepts too and builds the
 * same key; whatever OpenSSL accepts and keyder_decode() refuses must be
 * one of the refusals keyder.h documents. Undamaged keys are accepted by
 * both.
 */
#include <string.h>

#include <criterion/criterion.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/encoder.h>
#include <openssl/x509.h>

#include "keyder.h"
#include "testutil.h"

/*
 * Under AddressSanitizer (the ASan pass of make test unwinds the stack on
 * every allocation, and OpenSSL's decoder makes thousands per key) only
 * every DAMAGE_STRIDE-th damaged copy is compared; the plain unit pass
 * compares them all.
 */
#if defined(__SANITIZE_ADDRESS__)
#define DAMAGE_STRIDE 30
#else
#define DAMAGE_STRIDE 1
#endif

struct der {
	unsigned char *p;
	size_t         len;
};

static struct der
encode(EVP_PKEY *k, const char *structure)
{
	OSSL_ENCODER_CTX *e =
	    OSSL_ENCODER_CTX_new_for_pkey(k, EVP_PKEY_KEYPAIR, "DER", structure, NULL);
	struct der d = { NULL, 0 };

	cr_assert_not_null(e);
	cr_assert(OSSL_ENCODER_to_data(e, &d.p, &d.len), "encoding %s", structure);
	OSSL_ENCODER_CTX_free(e);
	return d;
}

/* SEC1 with the curve but no public key (RFC 5915 makes it optional): P-256 only. */
static struct der
sec1_without_public(EVP_PKEY *k)
{
	static const unsigned char head[] = { 0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x20 };
	static const unsigned char curve[] = { 0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d,
		0x03, 0x01, 0x07 };
	struct der                 d = { OPENSSL_malloc(51), 51 };
	BIGNUM                    *priv = NULL;

	cr_assert(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_PRIV_KEY, &priv));
	memcpy(d.p, head, sizeof(head));
	cr_assert_eq(BN_bn2binpad(priv, d.p + sizeof(head), 32), 32);
	memcpy(d.p + sizeof(head) + 32, curve, sizeof(curve));
	BN_clear_free(priv);
	return d;
}

/* What the daemon did before keyder: the whole input must be consumed. */
static EVP_PKEY *
openssl_decode(const unsigned char *der, size_t len)
{
	const unsigned char *p = der;
	EVP_PKEY            *k = d2i_AutoPrivateKey(NULL, &p, (long)len);

	if (k != NULL && p != der + len) {
		EVP_PKEY_free(k);
		k = NULL;
	}
	return k;
}

static int
documented_refusal(const char *why)
{
	static const char *const known[] = { "unsupported key algorithm",
		"explicit EC curve parameters", "multi-prime RSA", "negative number" };
	size_t                   i;

	for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strstr(why, known[i]) != NULL)
			return 1;
	return 0;
}

struct tally {
	int both, neither, documented;
};

static void
compare(const unsigned char *der, size_t len, struct tally *t, const char *what, size_t at)
{
	char      why[128];
	EVP_PKEY *ours = keyder_decode(der, len, why, sizeof(why));
	EVP_PKEY *ref = openssl_decode(der, len);

	if (ours != NULL) {
		cr_assert_not_null(ref, "%s (%zu): keyder accepts what OpenSSL refuses", what, at);
		cr_assert_eq(EVP_PKEY_eq(ours, ref), 1, "%s (%zu): another key", what, at);
		t->both++;
	} else if (ref != NULL) {
		cr_assert(documented_refusal(why), "%s (%zu): keyder refuses (%s), OpenSSL accepts",
		    what, at, why);
		t->documented++;
	} else {
		cr_assert_neq(why[0], '\0', "%s (%zu): a refusal must say why", what, at);
		t->neither++;
	}
	EVP_PKEY_free(ours);
	EVP_PKEY_free(ref);
}

/* The undamaged key, then its damaged copies; `step` thins the positions of big keys. */
static void
differential(struct der d, const char *what, size_t step, struct tally *t)
{
	unsigned char             *m = OPENSSL_malloc(d.len + 1);
	static const unsigned char flips[] = { 0x01, 0x80, 0xff };
	size_t                     i, f;
	int                        both = t->both;

	step *= DAMAGE_STRIDE;
	compare(d.p, d.len, t, what, 0);
	cr_assert_eq(t->both, both + 1, "%s: both accept the undamaged key", what);
	for (i = 0; i < d.len; i += step)
		compare(d.p, i, t, what, i); /* truncated */
	for (i = 0; i < d.len; i += step)
		for (f = 0; f < sizeof(flips); f++) {
			memcpy(m, d.p, d.len);
			m[i] ^= flips[f];
			compare(m, d.len, t, what, i);
		}
	memcpy(m, d.p, d.len);
	m[d.len] = 0;
	compare(m, d.len + 1, t, what, d.len); /* a trailing byte */
	OPENSSL_clear_free(m, d.len + 1);
	OPENSSL_clear_free(d.p, d.len);
}

Test(keyder, same_as_openssl_for_every_family_and_damage, .timeout = 120)
{
	EVP_PKEY    *ed = tu_key(TU_ED25519), *p256 = tu_key(TU_P256), *p384 = tu_key(TU_P384);
	EVP_PKEY    *rsa = tu_key(TU_RSA2048);
	struct tally t = { 0, 0, 0 };

	differential(encode(ed, "PrivateKeyInfo"), "Ed25519 PKCS#8", 1, &t);
	differential(encode(p256, "PrivateKeyInfo"), "P-256 PKCS#8", 1, &t);
	differential(encode(p256, "type-specific"), "P-256 SEC1", 1, &t);
	differential(sec1_without_public(p256), "P-256 SEC1 without public key", 1, &t);
	differential(encode(p384, "type-specific"), "P-384 SEC1", 2, &t);
	differential(encode(rsa, "PrivateKeyInfo"), "RSA PKCS#8", 7, &t);
	differential(encode(rsa, "type-specific"), "RSA PKCS#1", 7, &t);
	/* Damage must reach both outcomes, or the comparison proves little. */
	cr_assert_gt(t.both, 7 + 100 / DAMAGE_STRIDE, "damaged keys still accepted: %d", t.both);
	cr_assert_gt(
	    t.neither, 1000 / DAMAGE_STRIDE, "damaged keys refused by both: %d", t.neither);
	EVP_PKEY_free(ed);
	EVP_PKEY_free(p256);
	EVP_PKEY_free(p384);
	EVP_PKEY_free(rsa);
}

/* The keys OpenSSL loads and the daemon could never use are refused at once, saying why. */
Test(keyder, refuses_other_algorithms_with_a_reason)
{
	static const char *const algs[] = { "ED448", "X25519" };
	char                     why[128];
	size_t                   i;

	for (i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
		EVP_PKEY  *k = EVP_PKEY_Q_keygen(NULL, NULL, algs[i]);
		struct der d = encode(k, "PrivateKeyInfo");
		EVP_PKEY  *ref = openssl_decode(d.p, d.len);

		cr_assert_not_null(ref, "OpenSSL loads %s", algs[i]);
		cr_assert_null(keyder_decode(d.p, d.len, why, sizeof(why)));
		cr_assert(strstr(why, "unsupported key algorithm") != NULL, "%s: %s", algs[i], why);
		cr_assert(strstr(why, "want Ed25519, ECDSA or RSA") != NULL, "%s", why);
		EVP_PKEY_free(ref);
		EVP_PKEY_free(k);
		OPENSSL_clear_free(d.p, d.len);
	}
	cr_assert_null(keyder_decode((const unsigned char *)"", 0, why, sizeof(why)));
	cr_assert_neq(why[0], '\0');
	cr_assert_null(
	    keyder_decode((const unsigned char *)"\x30\x03\x02\x01\x00", 5, why, sizeof(why)));
	cr_assert(strstr(why, "not a PKCS#8, PKCS#1 or SEC1") != NULL, "%s", why);
}
