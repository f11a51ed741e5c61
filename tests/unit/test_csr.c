/*
 * test_csr.c: reading and judging a CSR without cryptography (src/csr.c):
 * how each key family is read, the SANs and CN, what makes a request
 * unreadable, the order of the outcomes, and the two policy halves.
 */
#include <string.h>

#include <criterion/criterion.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "csr.h"
#include "pki.h"
#include "signer.h"
#include "testutil.h"

static const char *const dns[] = { "worker-1", "w1.example.org", NULL };
static const char *const ips[] = { "10.0.0.5", "fd00::5", NULL };

static enum signer_status
read_pem(const char *pem, struct csr *csr, struct signer_result *r)
{
	return csr_read((const unsigned char *)pem, strlen(pem), csr, r);
}

/* The DER of a PEM CSR (malloc'd). */
static unsigned char *
pem_der(const char *pem, long *len)
{
	BIO           *b = BIO_new_mem_buf(pem, -1);
	char          *name = NULL, *hdr = NULL;
	unsigned char *der = NULL;

	cr_assert(PEM_read_bio(b, &name, &hdr, &der, len) == 1);
	OPENSSL_free(name);
	OPENSSL_free(hdr);
	BIO_free(b);
	return der;
}

Test(csr, reads_every_family, .timeout = 60)
{
	static const struct {
		enum tu_family fam;
		enum key_type  kt;
		int            bits, evp, as_received;
	} cases[] = {
		{ TU_ED25519, KEY_ED25519, 253, 0, 1 },
		{ TU_P256, KEY_ECDSA_P256, 256, 1, 1 },
		{ TU_P384, KEY_ECDSA_P384, 384, 1, 1 },
		{ TU_RSA2048, KEY_RSA, 2048, 1, 0 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		EVP_PKEY            *k = tu_key(cases[i].fam);
		char                *pem = tu_csr_pem(k, "worker-1", "os:admin", dns, ips, 1);
		struct csr           csr;
		struct signer_result r;
		unsigned char        raw[32];
		size_t               n = sizeof(raw);

		cr_assert_eq(read_pem(pem, &csr, &r), SIGNER_OK, "family %zu: %s", i, r.message);
		cr_assert_eq(csr.kt, cases[i].kt, "family %zu", i);
		cr_assert_eq(csr.bits, cases[i].bits, "family %zu", i);
		cr_assert_eq(csr.pub != NULL, cases[i].evp, "family %zu: EVP_PKEY", i);
		cr_assert_eq(csr.spki_as_received, cases[i].as_received, "family %zu", i);
		cr_assert_str_eq(r.key_type, pki_key_type_name(cases[i].kt));
		cr_assert_str_eq(r.cn, "worker-1");
		if (cases[i].kt == KEY_ED25519) {
			/* Read raw: the bytes are the key's own. */
			cr_assert_eq(EVP_PKEY_get_raw_public_key(k, raw, &n), 1);
			cr_assert(memcmp(raw, csr.ed25519, 32) == 0);
		}
		cr_assert_null(r.crt_pem, "reading never issues");
		csr_free(&csr);
		signer_result_free(&r);
		free(pem);
		EVP_PKEY_free(k);
	}
}

Test(csr, keeps_dns_and_ip_sans_in_order)
{
	EVP_PKEY            *k = tu_key(TU_ED25519);
	char                *pem = tu_csr_pem(k, "w", NULL, dns, ips, 1);
	struct csr           csr;
	struct signer_result r;

	cr_assert_eq(read_pem(pem, &csr, &r), SIGNER_OK, "%s", r.message);
	/* The e-mail SAN is dropped, not counted. */
	cr_assert_eq(r.nsans_total, 4);
	cr_assert_eq(sk_GENERAL_NAME_num(csr.sans), 4);
	cr_assert_eq(r.nsans, 4);
	cr_assert_str_eq(r.sans[0], "worker-1");
	cr_assert_str_eq(r.sans[1], "w1.example.org");
	cr_assert_str_eq(r.sans[2], "10.0.0.5");
	cr_assert_str_eq(r.sans[3], "fd00::5");
	csr_free(&csr);
	signer_result_free(&r);
	free(pem);
	EVP_PKEY_free(k);
}

Test(csr, pem_and_der_read_the_same)
{
	EVP_PKEY            *k = tu_key(TU_P256);
	char                *pem = tu_csr_pem(k, "w", NULL, dns, ips, 0);
	unsigned char       *der;
	long                 len;
	struct csr           a, b;
	struct signer_result ra, rb;
	size_t               i;

	der = pem_der(pem, &len);
	cr_assert_eq(read_pem(pem, &a, &ra), SIGNER_OK);
	cr_assert_eq(csr_read_der(der, (size_t)len, &b, &rb), SIGNER_OK, "%s", rb.message);
	cr_assert_eq(a.kt, b.kt);
	cr_assert_eq(a.bits, b.bits);
	cr_assert_eq(ra.nsans_total, rb.nsans_total);
	for (i = 0; i < ra.nsans; i++)
		cr_assert_str_eq(ra.sans[i], rb.sans[i]);
	cr_assert_str_eq(ra.cn, rb.cn);
	csr_free(&a);
	csr_free(&b);
	signer_result_free(&ra);
	signer_result_free(&rb);
	OPENSSL_free(der);
	free(pem);
	EVP_PKEY_free(k);
}

static void
assert_bad_parse(enum signer_status st, const struct signer_result *r, const char *why)
{
	cr_assert_eq(st, SIGNER_BAD_PARSE, "status %d: %s", st, r->message);
	cr_assert_eq(strncmp(r->message, "failed to parse CSR: ", 21), 0, "%s", r->message);
	cr_assert(strstr(r->message, why) != NULL, "\"%s\" not in \"%s\"", why, r->message);
}

Test(csr, unreadable_requests)
{
	EVP_PKEY            *k = tu_key(TU_P256);
	char                *pem = tu_csr_pem(k, "w", NULL, NULL, ips, 0);
	unsigned char       *der, *more;
	long                 len, i;
	struct csr           csr;
	struct signer_result r;

	cr_assert_eq(csr_read((const unsigned char *)"", 0, &csr, &r), SIGNER_BAD_DECODE);
	cr_assert_str_eq(r.message, "failed to decode CSR");
	csr_free(&csr);
	signer_result_free(&r);

	der = pem_der(pem, &len);
	/* One byte after the request. */
	more = malloc((size_t)len + 1);
	memcpy(more, der, (size_t)len);
	more[len] = 0;
	assert_bad_parse(
	    csr_read_der(more, (size_t)len + 1, &csr, &r), &r, "not a well-formed PKCS#10 request");
	csr_free(&csr);
	signer_result_free(&r);
	/* Truncated. */
	assert_bad_parse(csr_read_der(der, (size_t)len - 1, &csr, &r), &r, "not a well-formed");
	csr_free(&csr);
	signer_result_free(&r);
	/* A P-256 point off the curve: OpenSSL cannot read the key. */
	for (i = 0; i + 4 < len; i++)
		if (der[i] == 0x03 && der[i + 1] == 0x42 && der[i + 2] == 0x00 &&
		    der[i + 3] == 0x04)
			break;
	cr_assert_lt(i + 4, len, "no uncompressed P-256 point in the CSR");
	memcpy(more, der, (size_t)len);
	more[i + 4 + 63] ^= 0x01; /* the last byte of y */
	assert_bad_parse(csr_read_der(more, (size_t)len, &csr, &r), &r, "unreadable public key");
	cr_assert_str_eq(r.key_type, "", "an unreadable key is not described");
	csr_free(&csr);
	signer_result_free(&r);
	free(more);
	OPENSSL_free(der);
	free(pem);
	EVP_PKEY_free(k);
}

/* A CSR by `k` whose subjectAltName extension holds bytes that do not decode. */
static char *
csr_bad_san(EVP_PKEY *k)
{
	X509_REQ                 *req = X509_REQ_new();
	STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
	ASN1_OCTET_STRING        *junk = ASN1_OCTET_STRING_new();
	X509_EXTENSION           *e;
	BIO                      *b = BIO_new(BIO_s_mem());
	BUF_MEM                  *m;
	char                     *out;

	cr_assert(ASN1_OCTET_STRING_set(junk, (const unsigned char *)"\x30\x03\x87\x09", 4));
	cr_assert_not_null(e = X509_EXTENSION_create_by_NID(NULL, NID_subject_alt_name, 0, junk));
	cr_assert(sk_X509_EXTENSION_push(exts, e));
	cr_assert(X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_ASC,
	    (const unsigned char *)"w", -1, -1, 0));
	cr_assert(X509_REQ_add_extensions(req, exts));
	cr_assert(X509_REQ_set_pubkey(req, k));
	cr_assert_gt(X509_REQ_sign(req, k, NULL), 0);
	cr_assert(PEM_write_bio_X509_REQ(b, req));
	BIO_get_mem_ptr(b, &m);
	out = strndup(m->data, m->length);
	BIO_free(b);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	ASN1_OCTET_STRING_free(junk);
	X509_REQ_free(req);
	return out;
}

/*
 * A request is read completely before any policy: a malformed
 * subjectAltName is INVALID_ARGUMENT even when the key family is refused,
 * with either engine.
 */
Test(csr, malformed_san_is_invalid_before_policy, .timeout = 60)
{
	EVP_PKEY            *k = tu_key(TU_ED25519);
	char                *pem = csr_bad_san(k);
	struct tu_pki        pki;
	struct creds        *c = tu_creds(TU_ED25519, &pki);
	struct signer_params p = tu_signer_params();
	struct signer_result r;
	struct csr           csr;
	enum signer_engine   e;

	assert_bad_parse(read_pem(pem, &csr, &r), &r, "malformed subjectAltName");
	cr_assert_str_eq(r.cn, "w", "the audit fields are filled before the SANs");
	cr_assert_str_eq(r.key_type, "ed25519");
	csr_free(&csr);
	signer_result_free(&r);
	p.policy.allowed_families = KEYFAM_RSA;
	for (e = SIGNER_ENGINE_FAST; e < SIGNER_ENGINE__MAX; e++) {
		p.engine = e;
		assert_bad_parse(signer_issue(c, (const unsigned char *)pem, strlen(pem), &p, &r),
		    &r, "malformed subjectAltName");
		signer_result_free(&r);
	}
	creds_release(c);
	tu_pki_free(&pki);
	free(pem);
	EVP_PKEY_free(k);
}

Test(csr, judge_key, .timeout = 60)
{
	EVP_PKEY            *ed = tu_key(TU_ED25519), *rsa = tu_key(TU_RSA2048);
	char                *ped = tu_csr_pem(ed, "w", NULL, NULL, NULL, 0);
	char                *prsa = tu_csr_pem(rsa, "w", NULL, NULL, NULL, 0);
	struct signer_policy pol;
	struct signer_result r;
	struct csr           a, b;

	signer_policy_defaults(&pol);
	cr_assert_eq(read_pem(ped, &a, &r), SIGNER_OK);
	cr_assert_eq(csr_judge_key(&a, &pol, &r), SIGNER_OK);
	pol.allowed_families = KEYFAM_ECDSA | KEYFAM_RSA;
	cr_assert_eq(csr_judge_key(&a, &pol, &r), SIGNER_DENIED);
	cr_assert_str_eq(r.message, "CSR refused by policy: key type ed25519 not allowed");
	signer_result_free(&r);

	signer_policy_defaults(&pol);
	cr_assert_eq(read_pem(prsa, &b, &r), SIGNER_OK);
	cr_assert_eq(csr_judge_key(&b, &pol, &r), SIGNER_OK);
	pol.min_rsa_bits = 3072;
	cr_assert_eq(csr_judge_key(&b, &pol, &r), SIGNER_DENIED);
	cr_assert_str_eq(r.message, "CSR refused by policy: RSA key of 2048 bits is below 3072");
	signer_result_free(&r);
	csr_free(&a);
	csr_free(&b);
	free(ped);
	free(prsa);
	EVP_PKEY_free(ed);
	EVP_PKEY_free(rsa);
}

Test(csr, judge_request)
{
	EVP_PKEY            *k = tu_key(TU_P256);
	char                *pem = tu_csr_pem(k, "w", NULL, dns, ips, 0);
	struct signer_policy pol;
	struct signer_result r;
	struct csr           csr;

	signer_policy_defaults(&pol);
	cr_assert_eq(read_pem(pem, &csr, &r), SIGNER_OK);
	cr_assert_eq(csr_judge_request(&csr, &pol, NULL, &r), SIGNER_OK);
	pol.max_sans = 4;
	cr_assert_eq(csr_judge_request(&csr, &pol, NULL, &r), SIGNER_OK, "at the limit");
	pol.max_sans = 3;
	cr_assert_eq(csr_judge_request(&csr, &pol, NULL, &r), SIGNER_DENIED);
	cr_assert_str_eq(r.message, "CSR refused by policy: 4 SANs exceed the limit of 3");
	pol.max_sans = 0;
	pol.require_peer_ip_san = 1;
	cr_assert_eq(csr_judge_request(&csr, &pol, "10.0.0.5", &r), SIGNER_OK);
	cr_assert_eq(csr_judge_request(&csr, &pol, "fd00:0::5", &r), SIGNER_OK, "as addresses");
	cr_assert_eq(csr_judge_request(&csr, &pol, "10.0.0.6", &r), SIGNER_DENIED);
	cr_assert_eq(csr_judge_request(&csr, &pol, NULL, &r), SIGNER_DENIED);
	cr_assert_eq(csr_judge_request(&csr, &pol, "worker-1", &r), SIGNER_DENIED,
	    "a DNS SAN is not an address");
	signer_result_free(&r);
	csr_free(&csr);
	free(pem);
	EVP_PKEY_free(k);
}
