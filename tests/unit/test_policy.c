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
