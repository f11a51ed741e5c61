/*
 * pki.c: PEM key and certificate loading, key classification.
 *
 * Threads: any. Owns nothing beyond each call.
 */
#include "pki.h"

#include <arpa/inet.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "keyder.h"
#include "log.h"

#define PKI_MAX_BLOCKS 64

static void
seterr(char *err, size_t errlen, const char *what)
{
	char ssl[256];

	log_ssl_errors(ssl, sizeof(ssl));
	if (ssl[0] != '\0')
		snprintf(err, errlen, "%s (%s)", what, ssl);
	else
		snprintf(err, errlen, "%s", what);
}

static int
is_key_label(const char *name)
{
	return strcmp(name, "PRIVATE KEY") == 0 || strcmp(name, "ED25519 PRIVATE KEY") == 0 ||
	    strcmp(name, "EC PRIVATE KEY") == 0 || strcmp(name, "RSA PRIVATE KEY") == 0;
}

EVP_PKEY *
pki_load_key(const void *pem, size_t len, char *err, size_t errlen)
{
	BIO           *bio = NULL;
	EVP_PKEY      *key = NULL;
	char          *name = NULL, *header = NULL;
	unsigned char *data = NULL;
	long           dlen = 0;
	int            i;
	char           why[128];

	err[0] = '\0';
	if (len > INT32_MAX || (bio = BIO_new_mem_buf(pem, (int)len)) == NULL) {
		seterr(err, errlen, "cannot read key");
		goto out;
	}
	for (i = 0; i < PKI_MAX_BLOCKS; i++) {
		if (!PEM_read_bio(bio, &name, &header, &data, &dlen))
			break;
		if (strcmp(name, "ENCRYPTED PRIVATE KEY") == 0 ||
		    (is_key_label(name) && header != NULL && header[0] != '\0')) {
			snprintf(err, errlen, "encrypted private keys are not supported");
			goto out;
		}
		if (is_key_label(name)) {
			/*
			 * The label does not say the format (Talos's carries
			 * PKCS#8): keyder_decode() reads what is there.
			 */
			key = keyder_decode(data, (size_t)dlen, why, sizeof(why));
			if (key == NULL)
				snprintf(err, errlen, "cannot parse private key: %s", why);
			goto out;
		}
		OPENSSL_free(name);
		OPENSSL_free(header);
		OPENSSL_clear_free(data, (size_t)dlen);
		name = header = NULL;
		data = NULL;
	}
	ERR_clear_error();
	snprintf(err, errlen, "no PEM private key found");
out:
	OPENSSL_free(name);
	OPENSSL_free(header);
	if (data != NULL)
		OPENSSL_clear_free(data, (size_t)dlen);
	BIO_free(bio);
	return key;
}

STACK_OF(X509) *
pki_load_certs(const void *pem, size_t len, char *err, size_t errlen)
{
	STACK_OF(X509)      *sk = NULL;
	BIO                 *bio = NULL;
	X509                *x = NULL;
	char                *name = NULL, *header = NULL;
	unsigned char       *data = NULL;
	const unsigned char *p;
	long                 dlen = 0;
	int                  i;

	err[0] = '\0';
	if (len > INT32_MAX || (bio = BIO_new_mem_buf(pem, (int)len)) == NULL ||
	    (sk = sk_X509_new_null()) == NULL) {
		seterr(err, errlen, "out of memory");
		goto fail;
	}
	for (i = 0; i < PKI_MAX_BLOCKS; i++) {
		if (!PEM_read_bio(bio, &name, &header, &data, &dlen))
			break;
		if (strcmp(name, "CERTIFICATE") == 0) {
			p = data;
			if ((x = d2i_X509(NULL, &p, dlen)) == NULL || p != data + dlen) {
				seterr(err, errlen, "cannot parse certificate");
				goto fail;
			}
			if (!sk_X509_push(sk, x)) {
				seterr(err, errlen, "out of memory");
				goto fail;
			}
			x = NULL;
		}
		OPENSSL_free(name);
		OPENSSL_free(header);
		OPENSSL_free(data);
		name = header = NULL;
		data = NULL;
	}
	ERR_clear_error();
	if (sk_X509_num(sk) == 0) {
		snprintf(err, errlen, "no PEM certificate found");
		goto fail;
	}
	BIO_free(bio);
	return sk;
fail:
	X509_free(x);
	OPENSSL_free(name);
	OPENSSL_free(header);
	OPENSSL_free(data);
	sk_X509_pop_free(sk, X509_free);
	BIO_free(bio);
	return NULL;
}

enum key_type
pki_key_type(const EVP_PKEY *k, int *bits)
{
	char   curve[64];
	size_t clen = 0;

	if (bits != NULL)
		*bits = k != NULL ? EVP_PKEY_get_bits(k) : 0;
	if (k == NULL)
		return KEY_OTHER;
	switch (EVP_PKEY_get_base_id(k)) {
	case EVP_PKEY_ED25519: return KEY_ED25519;
	case EVP_PKEY_RSA: return KEY_RSA;
	case EVP_PKEY_EC:
		if (!EVP_PKEY_get_utf8_string_param(
			k, OSSL_PKEY_PARAM_GROUP_NAME, curve, sizeof(curve), &clen))
			return KEY_OTHER;
		if (strcmp(curve, "prime256v1") == 0 || strcmp(curve, "P-256") == 0)
			return KEY_ECDSA_P256;
		if (strcmp(curve, "secp384r1") == 0 || strcmp(curve, "P-384") == 0)
			return KEY_ECDSA_P384;
		if (strcmp(curve, "secp521r1") == 0 || strcmp(curve, "P-521") == 0)
			return KEY_ECDSA_P521;
		return KEY_OTHER;
	default: return KEY_OTHER;
	}
}

const char *
pki_key_type_name(enum key_type t)
{
	static const char *const names[KEY__MAX] = { "ed25519", "ecdsa-p256", "ecdsa-p384",
		"ecdsa-p521", "rsa", "other" };

	return t < KEY__MAX ? names[t] : "other";
}

unsigned
pki_key_family(enum key_type t)
{
	switch (t) {
	case KEY_ED25519: return KEYFAM_ED25519;
	case KEY_ECDSA_P256:
	case KEY_ECDSA_P384:
	case KEY_ECDSA_P521: return KEYFAM_ECDSA;
	case KEY_RSA: return KEYFAM_RSA;
	default: return 0;
	}
}

static int
bio_to_sbuf(BIO *bio, struct sbuf *out)
{
	char *p;
	long  n;
	int   rc;

	n = BIO_get_mem_data(bio, &p);
	if (n < 0)
		return -1;
	rc = sbuf_add(out, p, (size_t)n);
	OPENSSL_cleanse(p, (size_t)n);
	return rc;
}

int
pki_cert_pem(X509 *x, struct sbuf *out)
{
	BIO *bio;
	int  rc = -1;

	if ((bio = BIO_new(BIO_s_mem())) == NULL)
		return -1;
	if (PEM_write_bio_X509(bio, x))
		rc = bio_to_sbuf(bio, out);
	BIO_free(bio);
	return rc;
}

unsigned char *
pki_der_to_pem(const char *label, const unsigned char *der, size_t len, size_t *outlen)
{
	static const char begin[] = "-----BEGIN ", end[] = "-----END ", dashes[] = "-----\n";
	size_t            llen = strlen(label), lines = (len + 47) / 48, cap, n, chunk, i;
	unsigned char    *out, *p;

	*outlen = 0;
	if (len > INT32_MAX / 2)
		return NULL;
	/* Each line: 64 characters at most, and a newline. */
	cap = 2 * (sizeof(begin) - 1 + llen + sizeof(dashes) - 1) + lines * 65 + 1;
	if ((out = malloc(cap)) == NULL)
		return NULL;
	p = out;
	memcpy(p, begin, sizeof(begin) - 1);
	p += sizeof(begin) - 1;
	memcpy(p, label, llen);
	p += llen;
	memcpy(p, dashes, sizeof(dashes) - 1);
	p += sizeof(dashes) - 1;
	for (i = 0; i < len; i += chunk) {
		chunk = len - i < 48 ? len - i : 48;
		n = (size_t)EVP_EncodeBlock(p, der + i, (int)chunk);
		p += n;
		*p++ = '\n';
	}
	memcpy(p, end, sizeof(end) - 1);
	p += sizeof(end) - 1;
	memcpy(p, label, llen);
	p += llen;
	memcpy(p, dashes, sizeof(dashes) - 1);
	p += sizeof(dashes) - 1;
	*p = '\0';
	*outlen = (size_t)(p - out);
	return out;
}

int
pki_key_pem(EVP_PKEY *k, struct sbuf *out)
{
	BIO *bio;
	int  rc = -1;

	if ((bio = BIO_new(BIO_s_secmem())) == NULL && (bio = BIO_new(BIO_s_mem())) == NULL)
		return -1;
	if (PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL))
		rc = bio_to_sbuf(bio, out);
	BIO_free(bio);
	return rc;
}

int
pki_spki_fingerprint(X509 *x, char out[65])
{
	unsigned char *der = NULL, md[32];
	int            n;

	out[0] = '\0';
	if ((n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der)) <= 0)
		return -1;
	SHA256(der, (size_t)n, md);
	OPENSSL_free(der);
	util_hex(md, sizeof(md), out);
	return 0;
}

static long long
asn1_time_t(const ASN1_TIME *t)
{
	struct tm tm;

	if (t == NULL || !ASN1_TIME_to_tm(t, &tm))
		return -1;
	return (long long)timegm(&tm);
}

long long
pki_not_after(const X509 *x)
{
	return asn1_time_t(X509_get0_notAfter(x));
}

long long
pki_not_before(const X509 *x)
{
	return asn1_time_t(X509_get0_notBefore(x));
}

static int
ip_san_match(X509 *x, const unsigned char *want, int wantlen)
{
	GENERAL_NAMES      *gens;
	const GENERAL_NAME *g;
	int                 i, found = 0;

	if ((gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL)) == NULL)
		return 0;
	for (i = 0; i < sk_GENERAL_NAME_num(gens) && !found; i++) {
		g = sk_GENERAL_NAME_value(gens, i);
		if (g->type != GEN_IPADD)
			continue;
		if (want == NULL ||
		    (ASN1_STRING_length(g->d.iPAddress) == wantlen &&
			memcmp(ASN1_STRING_get0_data(g->d.iPAddress), want, (size_t)wantlen) == 0))
			found = 1;
	}
	GENERAL_NAMES_free(gens);
	return found;
}

int
pki_has_ip_san(X509 *x, const char *ip)
{
	unsigned char buf[16];

	if (inet_pton(AF_INET, ip, buf) == 1)
		return ip_san_match(x, buf, 4);
	if (inet_pton(AF_INET6, ip, buf) == 1)
		return ip_san_match(x, buf, 16);
	return 0;
}

int
pki_has_any_ip_san(X509 *x)
{
	return ip_san_match(x, NULL, 0);
}
