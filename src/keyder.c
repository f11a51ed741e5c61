/*
 * keyder.c: a private key's DER to an EVP_PKEY through ASN.1 templates and
 * one key manager (see keyder.h for what is accepted and why).
 *
 * The order: PKCS#8 first (the standard wrapper, and what Talos writes),
 * then the two bare formats, PKCS#1 and SEC1, told apart by their
 * templates: a PKCS#1 key is nine INTEGERs, a SEC1 key an INTEGER and an
 * OCTET STRING with two optional tagged fields. Every template must
 * consume the whole input.
 *
 * Threads: any. Owns nothing beyond each call.
 */
#include "keyder.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/asn1t.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#define ED25519_SEED_LEN 32

/*
 * The templates' structures are typedefs, against the plain-struct rule
 * elsewhere: OpenSSL's ASN1_SEQUENCE macros name the type without `struct`.
 */

/* RFC 5915 ECPrivateKey; ECParameters as a named curve only. */
typedef struct {
	int32_t            version;
	ASN1_OCTET_STRING *priv;
	ASN1_OBJECT       *curve; /* [0] EXPLICIT OPTIONAL */
	ASN1_BIT_STRING   *pub;   /* [1] EXPLICIT OPTIONAL */
} SEC1_KEY;

ASN1_SEQUENCE(SEC1_KEY) = {
	ASN1_EMBED(SEC1_KEY, version, INT32),
	ASN1_SIMPLE(SEC1_KEY, priv, ASN1_OCTET_STRING),
	ASN1_EXP_OPT(SEC1_KEY, curve, ASN1_OBJECT, 0),
	ASN1_EXP_OPT(SEC1_KEY, pub, ASN1_BIT_STRING, 1),
} static_ASN1_SEQUENCE_END(SEC1_KEY)

/* RFC 8017 RSAPrivateKey, two primes (version 0); the private numbers are cleared when freed. */
typedef struct {
	int32_t version;
	BIGNUM *n, *e, *d, *p, *q, *dp, *dq, *qinv;
} PKCS1_KEY;

ASN1_SEQUENCE(PKCS1_KEY) = {
	ASN1_EMBED(PKCS1_KEY, version, INT32),
	ASN1_SIMPLE(PKCS1_KEY, n, BIGNUM),
	ASN1_SIMPLE(PKCS1_KEY, e, BIGNUM),
	ASN1_SIMPLE(PKCS1_KEY, d, CBIGNUM),
	ASN1_SIMPLE(PKCS1_KEY, p, CBIGNUM),
	ASN1_SIMPLE(PKCS1_KEY, q, CBIGNUM),
	ASN1_SIMPLE(PKCS1_KEY, dp, CBIGNUM),
	ASN1_SIMPLE(PKCS1_KEY, dq, CBIGNUM),
	ASN1_SIMPLE(PKCS1_KEY, qinv, CBIGNUM),
} static_ASN1_SEQUENCE_END(PKCS1_KEY)

/* The PKCS#1 version that announces otherPrimeInfos. */
#define PKCS1_MULTI_PRIME 1

static void
setwhy(char *why, size_t whylen, const char *what)
{
	snprintf(why, whylen, "%s", what);
}

static void
sec1_free(void *v)
{
	SEC1_KEY *k = v;

	if (k == NULL)
		return;
	if (k->priv != NULL)
		OPENSSL_cleanse(k->priv->data, (size_t)k->priv->length);
	ASN1_item_free((ASN1_VALUE *)k, ASN1_ITEM_rptr(SEC1_KEY));
}

/*
 * Decodes `len` bytes with `it`, all of them, or returns NULL. A value with
 * bytes left over goes to `dispose` (NULL: ASN1_item_free), so that a
 * template whose free does not clear its secrets gets its own.
 */
static void *
d2i_whole(const ASN1_ITEM *it, const unsigned char *der, long len, void (*dispose)(void *))
{
	const unsigned char *p = der;
	ASN1_VALUE          *v = ASN1_item_d2i(NULL, &p, len, it);

	if (v != NULL && p != der + len) {
		if (dispose != NULL)
			dispose(v);
		else
			ASN1_item_free(v, it);
		v = NULL;
	}
	return v;
}

/* Builds a key of `type` ("EC", "RSA") from a parameter list; NULL on failure. */
static EVP_PKEY *
from_params(const char *type, OSSL_PARAM_BLD *bld)
{
	OSSL_PARAM   *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY     *key = NULL;

	if (params != NULL && (ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL)) != NULL &&
	    EVP_PKEY_fromdata_init(ctx) > 0 &&
	    EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_KEYPAIR, params) <= 0)
		key = NULL;
	EVP_PKEY_CTX_free(ctx);
	/* The private numbers (secure big numbers) sit in the block this wipes. */
	OSSL_PARAM_free(params);
	return key;
}

/*
 * An EC key from SEC1; `outer` is the curve named outside it (PKCS#8's
 * AlgorithmIdentifier) or NULL. The curve inside wins, as in OpenSSL.
 */
static EVP_PKEY *
ec_key(const SEC1_KEY *k, const ASN1_OBJECT *outer, char *why, size_t whylen)
{
	const ASN1_OBJECT *curve = k->curve != NULL ? k->curve : outer;
	OSSL_PARAM_BLD    *bld;
	BIGNUM            *priv;
	EVP_PKEY          *key = NULL;
	const char        *name;
	int                nid;

	if (curve == NULL) {
		setwhy(why, whylen, "EC key names no curve");
		return NULL;
	}
	if ((nid = OBJ_obj2nid(curve)) == NID_undef || (name = OBJ_nid2sn(nid)) == NULL) {
		setwhy(why, whylen, "EC key on an unknown curve");
		return NULL;
	}
	if ((priv = BN_secure_new()) == NULL ||
	    BN_bin2bn(k->priv->data, k->priv->length, priv) == NULL ||
	    (bld = OSSL_PARAM_BLD_new()) == NULL) {
		BN_clear_free(priv);
		setwhy(why, whylen, "out of memory");
		return NULL;
	}
	if (OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, name, 0) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, priv) &&
	    (k->pub == NULL ||
		OSSL_PARAM_BLD_push_octet_string(
		    bld, OSSL_PKEY_PARAM_PUB_KEY, k->pub->data, (size_t)k->pub->length)))
		key = from_params("EC", bld);
	OSSL_PARAM_BLD_free(bld);
	BN_clear_free(priv);
	if (key == NULL)
		setwhy(why, whylen, "invalid EC key");
	return key;
}

static EVP_PKEY *
rsa_key(const PKCS1_KEY *k, char *why, size_t whylen)
{
	OSSL_PARAM_BLD *bld;
	EVP_PKEY       *key = NULL;

	if (k->version == PKCS1_MULTI_PRIME) {
		setwhy(why, whylen, "multi-prime RSA keys are not supported");
		return NULL;
	}
	if ((bld = OSSL_PARAM_BLD_new()) == NULL) {
		setwhy(why, whylen, "out of memory");
		return NULL;
	}
	if (OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, k->n) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, k->e) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_D, k->d) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR1, k->p) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR2, k->q) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_EXPONENT1, k->dp) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_EXPONENT2, k->dq) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, k->qinv))
		key = from_params("RSA", bld);
	else
		/* OSSL_PARAM carries no sign: a negative INTEGER ends here. */
		setwhy(why, whylen, "RSA key with a negative number");
	OSSL_PARAM_BLD_free(bld);
	if (key == NULL && why[0] == '\0')
		setwhy(why, whylen, "invalid RSA key");
	return key;
}

/* RFC 8410: the private key is an OCTET STRING of the 32-byte seed; no parameters. */
static EVP_PKEY *
ed25519_key(const X509_ALGOR *alg, const unsigned char *pk, int pklen, char *why, size_t whylen)
{
	const unsigned char *p = pk;
	ASN1_OCTET_STRING   *seed;
	EVP_PKEY            *key = NULL;
	int                  ptype;

	X509_ALGOR_get0(NULL, &ptype, NULL, alg);
	if (ptype != V_ASN1_UNDEF) {
		setwhy(why, whylen, "Ed25519 key with algorithm parameters");
		return NULL;
	}
	if ((seed = d2i_ASN1_OCTET_STRING(NULL, &p, pklen)) == NULL ||
	    seed->length != ED25519_SEED_LEN)
		setwhy(why, whylen, "Ed25519 key is not a 32-byte seed");
	else if ((key = EVP_PKEY_new_raw_private_key(
		      EVP_PKEY_ED25519, NULL, seed->data, ED25519_SEED_LEN)) == NULL)
		setwhy(why, whylen, "invalid Ed25519 key");
	if (seed != NULL) {
		OPENSSL_cleanse(seed->data, (size_t)seed->length);
		ASN1_OCTET_STRING_free(seed);
	}
	return key;
}

static EVP_PKEY *
pkcs8_key(const PKCS8_PRIV_KEY_INFO *p8, char *why, size_t whylen)
{
	const ASN1_OBJECT   *alg_oid, *curve = NULL;
	const X509_ALGOR    *alg;
	const unsigned char *pk;
	const void          *pval;
	EVP_PKEY            *key = NULL;
	SEC1_KEY            *sec1;
	PKCS1_KEY           *pkcs1;
	char                 oid[64];
	int                  pklen, ptype;

	if (!PKCS8_pkey_get0(&alg_oid, &pk, &pklen, &alg, p8)) {
		setwhy(why, whylen, "unreadable PKCS#8 key");
		return NULL;
	}
	switch (OBJ_obj2nid(alg_oid)) {
	case NID_ED25519: return ed25519_key(alg, pk, pklen, why, whylen);
	case NID_X9_62_id_ecPublicKey:
		X509_ALGOR_get0(NULL, &ptype, &pval, alg);
		if (ptype == V_ASN1_SEQUENCE) {
			setwhy(why, whylen, "explicit EC curve parameters are not supported");
			return NULL;
		}
		if (ptype == V_ASN1_OBJECT)
			curve = pval;
		if ((sec1 = d2i_whole(ASN1_ITEM_rptr(SEC1_KEY), pk, pklen, sec1_free)) == NULL) {
			setwhy(why, whylen, "PKCS#8 EC key without a valid SEC1 key inside");
			return NULL;
		}
		key = ec_key(sec1, curve, why, whylen);
		sec1_free(sec1);
		return key;
	case NID_rsaEncryption:
		if ((pkcs1 = d2i_whole(ASN1_ITEM_rptr(PKCS1_KEY), pk, pklen, NULL)) == NULL) {
			setwhy(why, whylen, "PKCS#8 RSA key without a valid PKCS#1 key inside");
			return NULL;
		}
		key = rsa_key(pkcs1, why, whylen);
		ASN1_item_free((ASN1_VALUE *)pkcs1, ASN1_ITEM_rptr(PKCS1_KEY));
		return key;
	default:
		OBJ_obj2txt(oid, sizeof(oid), alg_oid, 0);
		snprintf(
		    why, whylen, "unsupported key algorithm %s (want Ed25519, ECDSA or RSA)", oid);
		return NULL;
	}
}

EVP_PKEY *
keyder_decode(const unsigned char *der, size_t len, char *why, size_t whylen)
{
	PKCS8_PRIV_KEY_INFO *p8;
	PKCS1_KEY           *pkcs1;
	SEC1_KEY            *sec1;
	EVP_PKEY            *key = NULL;

	why[0] = '\0';
	if (len == 0 || len > INT32_MAX) {
		setwhy(why, whylen, "empty or oversized key");
		return NULL;
	}
	if ((p8 = d2i_whole(ASN1_ITEM_rptr(PKCS8_PRIV_KEY_INFO), der, (long)len, NULL)) != NULL) {
		key = pkcs8_key(p8, why, whylen);
		PKCS8_PRIV_KEY_INFO_free(p8); /* clears the key octets */
	} else if ((pkcs1 = d2i_whole(ASN1_ITEM_rptr(PKCS1_KEY), der, (long)len, NULL)) != NULL) {
		key = rsa_key(pkcs1, why, whylen);
		ASN1_item_free((ASN1_VALUE *)pkcs1, ASN1_ITEM_rptr(PKCS1_KEY));
	} else if ((sec1 = d2i_whole(ASN1_ITEM_rptr(SEC1_KEY), der, (long)len, sec1_free)) !=
	    NULL) {
		key = ec_key(sec1, NULL, why, whylen);
		sec1_free(sec1);
	} else
		setwhy(why, whylen, "not a PKCS#8, PKCS#1 or SEC1 private key");
	/* The templates' failed attempts leave errors that say nothing more. */
	ERR_clear_error();
	return key;
}
