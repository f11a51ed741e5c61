/*
 * test_pki.c: key loading under every PEM label users meet (Talos's too),
 * certificate bundles, classification (mirrors src/pki.c).
 */
#include <string.h>

#include <criterion/criterion.h>
#include <openssl/pem.h>

#include "pki.h"
#include "testutil.h"

static EVP_PKEY *
load(const char *pem, char *err, size_t len)
{
	return pki_load_key(pem, strlen(pem), err, len);
}

Test(pki, every_key_label)
{
	struct {
		enum tu_family f;
		const char    *label;
		int            traditional;
		enum key_type  t;
	} cases[] = {
		{ TU_ED25519, NULL, 0, KEY_ED25519 },
		{ TU_ED25519, "ED25519 PRIVATE KEY", 0, KEY_ED25519 }, /* Talos */
		{ TU_P256, NULL, 0, KEY_ECDSA_P256 },
		{ TU_P256, NULL, 1, KEY_ECDSA_P256 }, /* EC PRIVATE KEY */
		{ TU_P384, NULL, 1, KEY_ECDSA_P384 }, { TU_RSA2048, NULL, 0, KEY_RSA },
		{ TU_RSA2048, NULL, 1, KEY_RSA }, /* RSA PRIVATE KEY */
	};
	char   err[256];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		EVP_PKEY *k = tu_key(cases[i].f), *got;
		char     *pem = cases[i].traditional ? tu_key_pem_traditional(k)
						     : tu_key_pem(k, cases[i].label);

		if (cases[i].label != NULL)
			cr_assert(strstr(pem, cases[i].label) != NULL);
		got = load(pem, err, sizeof(err));
		cr_assert_not_null(got, "case %zu: %s", i, err);
		cr_assert_eq(EVP_PKEY_eq(got, k), 1, "case %zu: another key", i);
		cr_assert_eq(pki_key_type(got, NULL), cases[i].t, "case %zu", i);
		EVP_PKEY_free(got);
		EVP_PKEY_free(k);
		free(pem);
	}
}

Test(pki, skips_other_blocks_and_refuses_junk)
{
	EVP_PKEY   *k = tu_key(TU_P256), *got;
	char       *keypem = tu_key_pem_traditional(k), *both, err[256];
	const char *params =
	    "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n";

	both = malloc(strlen(params) + strlen(keypem) + 1);
	strcpy(both, params);
	strcat(both, keypem);
	got = load(both, err, sizeof(err));
	cr_assert_not_null(got, "%s", err);
	EVP_PKEY_free(got);
	cr_assert_null(load("", err, sizeof(err)));
	cr_assert_str_eq(err, "no PEM private key found");
	cr_assert_null(load(
	    "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", err, sizeof(err)));
	cr_assert(strstr(err, "cannot parse private key") != NULL, "%s", err);
	cr_assert_null(load(
	    "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
	    err, sizeof(err)));
	cr_assert(strstr(err, "encrypted") != NULL);
	free(both);
	free(keypem);
	EVP_PKEY_free(k);
}

Test(pki, certificate_bundles)
{
	EVP_PKEY       *k = tu_key(TU_ED25519);
	X509           *a = tu_ca(k, 10), *b = tu_ca(k, 20);
	char           *pa = tu_cert_pem(a), *pb = tu_cert_pem(b), *both, err[256];
	STACK_OF(X509) *sk;

	both = malloc(strlen(pa) + strlen(pb) + 16);
	sprintf(both, "%s\n%s", pa, pb);
	sk = pki_load_certs(both, strlen(both), err, sizeof(err));
	cr_assert_not_null(sk, "%s", err);
	cr_assert_eq(sk_X509_num(sk), 2);
	cr_assert_eq(X509_cmp(sk_X509_value(sk, 1), b), 0);
	sk_X509_pop_free(sk, X509_free);
	cr_assert_null(pki_load_certs("nothing", 7, err, sizeof(err)));
	cr_assert_str_eq(err, "no PEM certificate found");
	X509_free(a);
	X509_free(b);
	free(pa);
	free(pb);
	free(both);
	EVP_PKEY_free(k);
}

Test(pki, ip_sans_and_names)
{
	EVP_PKEY *k = tu_key(TU_P256);
	X509     *ca = tu_ca(k, 1), *leaf = tu_leaf(ca, k, k, "192.0.2.7", 0, 100), *bare;
	char      fp[65];

	cr_assert(pki_has_ip_san(leaf, "192.0.2.7"));
	cr_assert_not(pki_has_ip_san(leaf, "192.0.2.8"));
	cr_assert_not(pki_has_ip_san(leaf, "not-an-ip"));
	cr_assert(pki_has_any_ip_san(leaf));
	bare = tu_leaf(ca, k, k, NULL, 0, 100);
	cr_assert_not(pki_has_any_ip_san(bare));
	cr_assert_eq(pki_spki_fingerprint(leaf, fp), 0);
	cr_assert_eq(strlen(fp), 64);
	cr_assert_str_eq(pki_key_type_name(KEY_ECDSA_P384), "ecdsa-p384");
	cr_assert_eq(pki_key_family(KEY_ECDSA_P521), KEYFAM_ECDSA);
	cr_assert_eq(pki_key_family(KEY_OTHER), 0);
	X509_free(ca);
	X509_free(leaf);
	X509_free(bare);
	EVP_PKEY_free(k);
}

/* pki_der_to_pem() writes what PEM_write_bio() writes, for every length class. */
Test(pki, der_to_pem_matches_openssl)
{
	unsigned char  der[400];
	size_t         len, n;
	unsigned char *ours;
	BIO           *b;
	BUF_MEM       *m;

	for (len = 0; len < sizeof(der); len++)
		der[len] = (unsigned char)(len * 37 + 11);
	for (len = 1; len <= sizeof(der); len += (len < 100 ? 1 : 13)) {
		b = BIO_new(BIO_s_mem());
		cr_assert(PEM_write_bio(b, "CERTIFICATE", "", der, (long)len) > 0);
		BIO_get_mem_ptr(b, &m);
		ours = pki_der_to_pem("CERTIFICATE", der, len, &n);
		cr_assert_not_null(ours);
		cr_assert_eq(n, m->length, "length %zu: %zu vs %zu", len, n, m->length);
		cr_assert(memcmp(ours, m->data, n) == 0, "length %zu differs", len);
		cr_assert_eq(ours[n], '\0');
		free(ours);
		BIO_free(b);
	}
}
