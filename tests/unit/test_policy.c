/*
 * test_policy.c: each signer policy rule through signer_issue(): the default
 * policy accepts every real Talos worker CSR, and each rule refuses with
 * SIGNER_DENIED (PERMISSION_DENIED on the wire), a clear message, no
 * certificate, and enough of the CSR described for the audit record.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "creds.h"
#include "pki.h"
#include "signer.h"
#include "testutil.h"

static struct creds *ca;

static void
setup(void)
{
	ca = tu_creds(TU_ED25519, NULL);
}

static void
teardown(void)
{
	creds_release(ca);
}

/* Issues `csr` under `p`; returns the status and leaves the result in r. */
static enum signer_status
issue(const char *csr, const struct signer_params *p, struct signer_result *r)
{
	return signer_issue(ca, (const unsigned char *)csr, strlen(csr), p, r);
}

static void
assert_denied(const struct signer_result *r, const char *why)
{
	cr_assert_eq(r->status, SIGNER_DENIED, "status %d, message %s", r->status, r->message);
	cr_assert_str_eq(signer_status_name(r->status), "policy_denied");
	cr_assert_eq(strncmp(r->message, "CSR refused by policy: ", 23), 0, "%s", r->message);
	cr_assert(strstr(r->message, why) != NULL, "\"%s\" not in \"%s\"", why, r->message);
	cr_assert_null(r->crt_pem, "a refusal carries no certificate");
	cr_assert_eq(r->serial[0], '\0', "no serial is consumed by a refusal");
}

Test(policy, defaults_are_generous)
{
	struct signer_policy p;

	signer_policy_defaults(&p);
	cr_assert_geq(p.max_csr_bytes, 4096);
	cr_assert_geq(p.max_sans, 64);
	cr_assert_eq(p.allowed_families, KEYFAM_ALL);
	cr_assert_leq(p.min_rsa_bits, 2048);
	cr_assert_eq(p.require_peer_ip_san, 0, "off by default: NAT and proxies");
}

/* What Talos workers send: Ed25519 (1.5-1.10), P-256 or RSA-4096 (1.11+ by CA family). */
Test(policy, default_policy_accepts_every_worker_family, .init = setup, .fini = teardown,
    .timeout = 120)
{
	static const enum tu_family fams[] = { TU_ED25519, TU_P256, TU_RSA4096 };
	const char *const           dns[] = { "worker-1", "worker-1.example.org", NULL };
	const char *const           ips[] = { "10.0.0.5", "fd00::5", NULL };
	struct signer_params        p = tu_signer_params();
	struct signer_result        r;
	size_t                      i;

	for (i = 0; i < sizeof(fams) / sizeof(fams[0]); i++) {
		EVP_PKEY *k = tu_key(fams[i]);
		char     *csr = tu_csr_pem(k, "worker-1.example.org", NULL, dns, ips, 0);

		cr_assert_eq(issue(csr, &p, &r), SIGNER_OK, "family %zu: %s", i, r.message);
		cr_assert_not_null(r.crt_pem);
		signer_result_free(&r);
		free(csr);
		EVP_PKEY_free(k);
	}
}

Test(policy, max_csr_bytes, .init = setup, .fini = teardown)
{
	EVP_PKEY            *k = tu_key(TU_ED25519);
	char                *csr = tu_csr_pem(k, "w", NULL, NULL, NULL, 0);
	struct signer_params p = tu_signer_params();
	struct signer_result r;
	size_t               len = strlen(csr);

	p.policy.max_csr_bytes = len;
	cr_assert_eq(issue(csr, &p, &r), SIGNER_OK, "exactly at the limit is fine");
	signer_result_free(&r);
	p.policy.max_csr_bytes = len - 1;
	issue(csr, &p, &r);
	assert_denied(&r, "CSR too large");
	signer_result_free(&r);
	p.policy.max_csr_bytes = 0;
	cr_assert_eq(issue(csr, &p, &r), SIGNER_OK, "0 means no limit");
	signer_result_free(&r);
	free(csr);
	EVP_PKEY_free(k);
}

Test(policy, max_sans_counts_dns_and_ip, .init = setup, .fini = teardown)
{
	EVP_PKEY            *k = tu_key(TU_ED25519);
	const char *const    dns[] = { "a.example", "b.example", NULL };
	const char *const    ips[] = { "10.0.0.5", NULL };
	char                *csr = tu_csr_pem(k, "w", NULL, dns, ips, 1); /* + an e-mail SAN */
	struct signer_params p = tu_signer_params();
	struct signer_result r;

	p.policy.max_sans = 3;
	cr_assert_eq(
	    issue(csr, &p, &r), SIGNER_OK, "the e-mail SAN is dropped, not counted: %s", r.message);
	cr_assert_eq(r.nsans_total, 3);
	signer_result_free(&r);
	p.policy.max_sans = 2;
	issue(csr, &p, &r);
	assert_denied(&r, "3 SANs exceed the limit of 2");
	/* The audit record still describes the CSR. */
	cr_assert_str_eq(r.cn, "w");
	cr_assert_str_eq(r.key_type, "ed25519");
	cr_assert_eq(r.nsans, 3);
	signer_result_free(&r);
	free(csr);
	EVP_PKEY_free(k);
}

Test(policy, allowed_key_families, .init = setup, .fini = teardown, .timeout = 60)
{
	static const struct {
		enum tu_family fam;
		unsigned       bit;
		const char    *name;
	} cases[] = {
		{ TU_ED25519, KEYFAM_ED25519, "ed25519" },
		{ TU_P256, KEYFAM_ECDSA, "ecdsa-p256" },
		{ TU_P384, KEYFAM_ECDSA, "ecdsa-p384" },
		{ TU_RSA2048, KEYFAM_RSA, "rsa" },
	};
	struct signer_params p = tu_signer_params();
	struct signer_result r;
	char                 why[64];
	size_t               i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		EVP_PKEY *k = tu_key(cases[i].fam);
		char     *csr = tu_csr_pem(k, "w", NULL, NULL, NULL, 0);

		p.policy.allowed_families = cases[i].bit;
		cr_assert_eq(issue(csr, &p, &r), SIGNER_OK, "%s alone allowed: %s", cases[i].name,
		    r.message);
		signer_result_free(&r);
		p.policy.allowed_families = KEYFAM_ALL & ~cases[i].bit;
		issue(csr, &p, &r);
		snprintf(why, sizeof(why), "key type %s not allowed", cases[i].name);
		assert_denied(&r, why);
		cr_assert_str_eq(r.key_type, cases[i].name);
		signer_result_free(&r);
		free(csr);
		EVP_PKEY_free(k);
	}
}

Test(policy, min_rsa_bits, .init = setup, .fini = teardown, .timeout = 60)
{
	EVP_PKEY            *k2048 = tu_key(TU_RSA2048), *k1024 = tu_key(TU_RSA1024);
	EVP_PKEY            *ed = tu_key(TU_ED25519);
	char                *c2048 = tu_csr_pem(k2048, "w", NULL, NULL, NULL, 0);
	char                *c1024 = tu_csr_pem(k1024, "w", NULL, NULL, NULL, 0);
	char                *ced = tu_csr_pem(ed, "w", NULL, NULL, NULL, 0);
	struct signer_params p = tu_signer_params();
	struct signer_result r;

	issue(c1024, &p, &r);
	assert_denied(&r, "RSA key of 1024 bits is below 2048");
	signer_result_free(&r);
	cr_assert_eq(issue(c2048, &p, &r), SIGNER_OK);
	signer_result_free(&r);
	p.policy.min_rsa_bits = 3072;
	issue(c2048, &p, &r);
	assert_denied(&r, "RSA key of 2048 bits is below 3072");
	signer_result_free(&r);
	cr_assert_eq(issue(ced, &p, &r), SIGNER_OK, "the RSA minimum does not touch Ed25519");
	signer_result_free(&r);
	free(c2048);
	free(c1024);
	free(ced);
	EVP_PKEY_free(k2048);
	EVP_PKEY_free(k1024);
	EVP_PKEY_free(ed);
}

Test(policy, require_peer_ip_san, .init = setup, .fini = teardown)
{
	EVP_PKEY            *k = tu_key(TU_ED25519);
	const char *const    ips[] = { "10.0.0.5", "fd00::5", NULL };
	const char *const    dns[] = { "10.0.0.9", NULL }; /* an IP spelled as a DNS SAN */
	char                *csr = tu_csr_pem(k, "w", NULL, dns, ips, 0);
	struct signer_params p = tu_signer_params();
	struct signer_result r;

	p.peer_ip = "10.0.0.9";
	cr_assert_eq(issue(csr, &p, &r), SIGNER_OK, "off by default");
	signer_result_free(&r);
	p.policy.require_peer_ip_san = 1;
	issue(csr, &p, &r);
	assert_denied(&r, "caller address is not among the CSR's IP SANs");
	signer_result_free(&r);
	p.peer_ip = "10.0.0.5";
	cr_assert_eq(issue(csr, &p, &r), SIGNER_OK, "%s", r.message);
	signer_result_free(&r);
	p.peer_ip = "fd00::5";
	cr_assert_eq(issue(csr, &p, &r), SIGNER_OK, "IPv6 peers match too: %s", r.message);
	signer_result_free(&r);
	p.peer_ip = "fd00:0:0:0:0:0:0:5";
	cr_assert_eq(issue(csr, &p, &r), SIGNER_OK, "compared as addresses, not text");
	signer_result_free(&r);
	p.peer_ip = NULL;
	issue(csr, &p, &r);
	assert_denied(&r, "caller address");
	signer_result_free(&r);
	p.peer_ip = "unknown";
	issue(csr, &p, &r);
	assert_denied(&r, "caller address");
	signer_result_free(&r);
	free(csr);
	EVP_PKEY_free(k);
}

Test(policy, a_bad_csr_is_invalid_not_denied, .init = setup, .fini = teardown)
{
	struct signer_params p = tu_signer_params();
	struct signer_result r;

	/* Policy judges real CSRs only: garbage stays INVALID_ARGUMENT. */
	p.policy.allowed_families = KEYFAM_RSA;
	p.policy.require_peer_ip_san = 1;
	cr_assert_eq(issue("not a csr", &p, &r), SIGNER_BAD_DECODE);
	signer_result_free(&r);
}

Test(policy, size_rule_applies_before_parsing, .init = setup, .fini = teardown)
{
	struct signer_params p = tu_signer_params();
	struct signer_result r;
	char                *big = malloc(70000);

	memset(big, 'A', 69999);
	big[69999] = '\0';
	issue(big, &p, &r);
	assert_denied(&r, "CSR too large");
	signer_result_free(&r);
	free(big);
}

/* A fresh RSA key of `bits` with public exponent `e` (decimal). */
static EVP_PKEY *
rsa_with_e(int bits, const char *e)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_RSA, NULL);
	EVP_PKEY     *k = NULL;
	BIGNUM       *bn = NULL;

	cr_assert_not_null(ctx);
	cr_assert(BN_dec2bn(&bn, e) > 0);
	cr_assert_eq(EVP_PKEY_keygen_init(ctx), 1);
	cr_assert_eq(EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, bits), 1);
	cr_assert_eq(EVP_PKEY_CTX_set1_rsa_keygen_pubexp(ctx, bn), 1);
	cr_assert_eq(EVP_PKEY_keygen(ctx, &k), 1, "keygen with e=%s", e);
	BN_free(bn);
	EVP_PKEY_CTX_free(ctx);
	return k;
}

/* Go's crypto/rsa accepts 2^31-1 and refuses 2^31+1: so do we. */
Test(policy, rsa_exponent_bound_is_gos, .init = setup, .fini = teardown, .timeout = 120)
{
	EVP_PKEY *ok = rsa_with_e(2048, "2147483647"), *big = rsa_with_e(2048, "2147483649");
	char     *cok = tu_csr_pem(ok, "w", NULL, NULL, NULL, 0);
	char     *cbig = tu_csr_pem(big, "w", NULL, NULL, NULL, 0);
	struct signer_params p = tu_signer_params();
	struct signer_result r;

	cr_assert_eq(issue(cok, &p, &r), SIGNER_OK, "e = 2^31-1: %s", r.message);
	signer_result_free(&r);
	issue(cbig, &p, &r);
	assert_denied(&r, "RSA public exponent outside [2, 2^31-1]");
	cr_assert_str_eq(r.key_type, "rsa", "the refusal still describes the key");
	signer_result_free(&r);
	free(cok);
	free(cbig);
	EVP_PKEY_free(ok);
	EVP_PKEY_free(big);
}

/*
 * A CSR whose key has a 3,000-bit exponent and whose signature does not even
 * verify under it: refused by policy, which proves the key is judged before
 * the (expensive) signature check.
 */
Test(policy, key_policy_runs_before_the_signature, .init = setup, .fini = teardown, .timeout = 60)
{
	EVP_PKEY            *signer = tu_key(TU_RSA2048), *pub = NULL;
	EVP_PKEY_CTX        *ctx = NULL;
	OSSL_PARAM_BLD      *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM          *params = NULL;
	BIGNUM              *n = NULL, *e = BN_new();
	X509_REQ            *req = X509_REQ_new();
	X509_NAME           *name = X509_NAME_new();
	BIO                 *bio = BIO_new(BIO_s_mem());
	BUF_MEM             *mem;
	char                *pem;
	struct signer_params p = tu_signer_params();
	struct signer_result r;

	cr_assert_eq(EVP_PKEY_get_bn_param(signer, OSSL_PKEY_PARAM_RSA_N, &n), 1);
	cr_assert_eq(BN_set_bit(e, 3000), 1);
	cr_assert_eq(BN_set_bit(e, 0), 1); /* odd, 3,001 bits */
	cr_assert_eq(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n), 1);
	cr_assert_eq(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e), 1);
	cr_assert_not_null(params = OSSL_PARAM_BLD_to_param(bld));
	cr_assert_not_null(ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL));
	cr_assert_eq(EVP_PKEY_fromdata_init(ctx), 1);
	cr_assert_eq(EVP_PKEY_fromdata(ctx, &pub, EVP_PKEY_PUBLIC_KEY, params), 1);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"w", -1, -1, 0);
	cr_assert_eq(X509_REQ_set_subject_name(req, name), 1);
	cr_assert_eq(X509_REQ_set_pubkey(req, pub), 1);
	cr_assert_gt(X509_REQ_sign(req, signer, EVP_sha256()), 0); /* not by `pub`'s key */
	cr_assert_eq(PEM_write_bio_X509_REQ(bio, req), 1);
	BIO_get_mem_ptr(bio, &mem);
	pem = strndup(mem->data, mem->length);

	issue(pem, &p, &r);
	assert_denied(&r, "RSA public exponent outside [2, 2^31-1]");
	signer_result_free(&r);

	free(pem);
	BIO_free(bio);
	X509_NAME_free(name);
	X509_REQ_free(req);
	BN_free(n);
	BN_free(e);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pub);
	EVP_PKEY_free(signer);
}
