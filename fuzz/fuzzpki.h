/*
 * fuzzpki.h: the fixed credential snapshot the fuzz targets run against.
 *
 * Header-only (each fuzz_*.c is its own executable). At start-up a target
 * calls fuzzpki_make() once: an Ed25519 machine CA ("O=talos", with a
 * subjectKeyIdentifier) and an ECDSA P-256 serving certificate for
 * 127.0.0.1, generated in memory. Nothing here is a fixture on disk; the
 * keys live only as long as the fuzzing process. Test-only material.
 */
#ifndef TCS_FUZZPKI_H
#define TCS_FUZZPKI_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "creds.h"
#include "log.h"
#include "pki.h"

#define FUZZPKI_TOKEN "abcdef.0123456789abcdef"

struct fuzzpki {
	char  *pem[CF__MAX]; /* valid PEM of every part (accepted CAs: none) */
	size_t len[CF__MAX];
};

static inline void
fuzzpki_die(const char *what)
{
	fprintf(stderr, "fuzzpki: %s failed\n", what);
	abort();
}

static inline char *
fuzzpki_bio_string(BIO *bio, size_t *len)
{
	char *p, *s = NULL;
	long  n = BIO_get_mem_data(bio, &p);

	if (n <= 0 || (s = malloc((size_t)n + 1)) == NULL)
		fuzzpki_die("BIO_get_mem_data");
	memcpy(s, p, (size_t)n);
	s[n] = '\0';
	*len = (size_t)n;
	return s;
}

static inline EVP_PKEY *
fuzzpki_key(const char *alg, const char *curve)
{
	EVP_PKEY_CTX *ctx;
	EVP_PKEY     *k = NULL;

	if ((ctx = EVP_PKEY_CTX_new_from_name(NULL, alg, NULL)) == NULL ||
	    EVP_PKEY_keygen_init(ctx) <= 0 ||
	    (curve != NULL && EVP_PKEY_CTX_set_group_name(ctx, curve) <= 0) ||
	    EVP_PKEY_keygen(ctx, &k) <= 0)
		fuzzpki_die("keygen");
	EVP_PKEY_CTX_free(ctx);
	return k;
}

static inline void
fuzzpki_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX      v3;
	X509_EXTENSION *e;

	X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
	if ((e = X509V3_EXT_conf_nid(NULL, &v3, nid, value)) == NULL || !X509_add_ext(x, e, -1))
		fuzzpki_die("extension");
	X509_EXTENSION_free(e);
}

static inline X509 *
fuzzpki_cert(
    EVP_PKEY *pub, const char *cn, const char *org, X509 *issuer, EVP_PKEY *signkey, int ca)
{
	X509      *x;
	X509_NAME *n;

	if ((x = X509_new()) == NULL || !X509_set_version(x, X509_VERSION_3) ||
	    !ASN1_INTEGER_set(X509_get_serialNumber(x), ca ? 1 : 2) ||
	    X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
	    X509_gmtime_adj(X509_getm_notAfter(x), 3650L * 86400) == NULL ||
	    !X509_set_pubkey(x, pub) || (n = X509_get_subject_name(x)) == NULL)
		fuzzpki_die("certificate");
	if (org != NULL &&
	    !X509_NAME_add_entry_by_txt(
		n, "O", MBSTRING_ASC, (const unsigned char *)org, -1, -1, 0))
		fuzzpki_die("O");
	if (cn != NULL &&
	    !X509_NAME_add_entry_by_txt(
		n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0))
		fuzzpki_die("CN");
	if (!X509_set_issuer_name(x, X509_get_subject_name(issuer != NULL ? issuer : x)))
		fuzzpki_die("issuer");
	if (ca) {
		fuzzpki_ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
		fuzzpki_ext(x, x, NID_key_usage, "critical,keyCertSign,digitalSignature");
		fuzzpki_ext(x, x, NID_subject_key_identifier, "hash");
	} else {
		fuzzpki_ext(x, issuer, NID_subject_alt_name, "IP:127.0.0.1");
		fuzzpki_ext(x, issuer, NID_key_usage, "critical,digitalSignature");
		fuzzpki_ext(x, issuer, NID_ext_key_usage, "serverAuth");
		fuzzpki_ext(x, issuer, NID_authority_key_identifier, "keyid");
	}
	if (X509_sign(x, signkey,
		EVP_PKEY_get_base_id(signkey) == EVP_PKEY_ED25519 ? NULL : EVP_sha256()) <= 0)
		fuzzpki_die("X509_sign");
	return x;
}

static inline char *
fuzzpki_cert_pem(X509 *x, size_t *len)
{
	BIO  *b = BIO_new(BIO_s_mem());
	char *s;

	if (b == NULL || !PEM_write_bio_X509(b, x))
		fuzzpki_die("PEM_write_bio_X509");
	s = fuzzpki_bio_string(b, len);
	BIO_free(b);
	return s;
}

static inline char *
fuzzpki_key_pem(EVP_PKEY *k, size_t *len)
{
	BIO  *b = BIO_new(BIO_s_mem());
	char *s;

	if (b == NULL || !PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL))
		fuzzpki_die("PEM_write_bio_PrivateKey");
	s = fuzzpki_bio_string(b, len);
	BIO_free(b);
	return s;
}

/* Fills `p` with a valid PKI; aborts on failure (start-up only). */
static inline void
fuzzpki_make(struct fuzzpki *p)
{
	EVP_PKEY *cak, *tlsk;
	X509     *ca, *tls;

	memset(p, 0, sizeof(*p));
	cak = fuzzpki_key("ED25519", NULL);
	tlsk = fuzzpki_key("EC", "P-256");
	ca = fuzzpki_cert(cak, NULL, "talos", NULL, cak, 1);
	tls = fuzzpki_cert(tlsk, "talos-csr-signer", NULL, ca, cak, 0);
	p->pem[CF_CA_CERT] = fuzzpki_cert_pem(ca, &p->len[CF_CA_CERT]);
	p->pem[CF_CA_KEY] = fuzzpki_key_pem(cak, &p->len[CF_CA_KEY]);
	p->pem[CF_TLS_CERT] = fuzzpki_cert_pem(tls, &p->len[CF_TLS_CERT]);
	p->pem[CF_TLS_KEY] = fuzzpki_key_pem(tlsk, &p->len[CF_TLS_KEY]);
	p->pem[CF_TOKEN] = strdup(FUZZPKI_TOKEN);
	p->len[CF_TOKEN] = strlen(FUZZPKI_TOKEN);
	if (p->pem[CF_TOKEN] == NULL)
		fuzzpki_die("strdup");
	X509_free(ca);
	X509_free(tls);
	EVP_PKEY_free(cak);
	EVP_PKEY_free(tlsk);
}

/* Frees what fuzzpki_make() allocated. */
static inline void
fuzzpki_free(struct fuzzpki *p)
{
	int f;

	for (f = 0; f < CF__MAX; f++) {
		if (p->pem[f] != NULL)
			OPENSSL_cleanse(p->pem[f], p->len[f]);
		free(p->pem[f]);
		p->pem[f] = NULL;
	}
}

/* Fills `in` (initialised here) with every part of `p` present. */
static inline void
fuzzpki_input(const struct fuzzpki *p, struct creds_input *in)
{
	int f;

	creds_input_init(in);
	for (f = 0; f < CF__MAX; f++)
		if (p->pem[f] != NULL &&
		    creds_input_set(in, (enum creds_field)f, p->pem[f], p->len[f], "fuzz") == -1)
			fuzzpki_die("creds_input_set");
}

/* Quiets the daemon's logging (fuzzing walks every warning path). */
static inline void
fuzzpki_quiet(void)
{
	log_init(LOG_JSON, LOG_ERROR);
}

/*
 * Gives `data` to both PEM loaders and the describing helpers; aborts when
 * a loader fails without a reason or returns an empty chain.
 */
static inline void
fuzzpki_load_direct(const uint8_t *data, size_t size)
{
	STACK_OF(X509) *sk;
	EVP_PKEY       *k;
	char            err[256], fp[65];
	int             i, bits;

	err[0] = 'x';
	if ((k = pki_load_key(data, size, err, sizeof(err))) != NULL) {
		(void)pki_key_type_name(pki_key_type(k, &bits));
		EVP_PKEY_free(k);
	} else if (err[0] == '\0')
		abort(); /* a failure must say why */
	err[0] = 'x';
	if ((sk = pki_load_certs(data, size, err, sizeof(err))) != NULL) {
		if (sk_X509_num(sk) < 1)
			abort();
		for (i = 0; i < sk_X509_num(sk); i++) {
			X509 *x = sk_X509_value(sk, i);

			(void)pki_spki_fingerprint(x, fp);
			(void)pki_not_after(x);
			(void)pki_not_before(x);
			(void)pki_has_ip_san(x, "127.0.0.1");
			(void)pki_has_ip_san(x, "::1");
			(void)pki_has_any_ip_san(x);
		}
		sk_X509_pop_free(sk, X509_free);
	} else if (err[0] == '\0')
		abort();
}

/* A validated snapshot of a fresh test PKI (every target's start-up); aborts naming `who` on failure. */
static inline struct creds *
fuzzpki_snapshot(const char *who)
{
	struct fuzzpki     p;
	struct creds_input in;
	struct creds      *snap;
	char               err[256];

	fuzzpki_quiet();
	fuzzpki_make(&p);
	fuzzpki_input(&p, &in);
	if ((snap = creds_build(&in, (long long)time(NULL), err, sizeof(err))) == NULL) {
		fprintf(stderr, "%s: creds_build: %s\n", who, err);
		abort();
	}
	creds_input_free(&in);
	fuzzpki_free(&p);
	return snap;
}

#endif /* TCS_FUZZPKI_H */
