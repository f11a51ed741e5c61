/*
 * test_signer.c: the issued certificate's profile, field by field, for every
 * CA family x CSR family, and the refusals (mirrors src/signer.c).
 */
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "creds.h"
#include "pki.h"
#include "signer.h"
#include "testutil.h"

static X509 *
parse_crt(const struct signer_result *r)
{
	BIO  *b = BIO_new_mem_buf(r->crt_pem, (int)r->crt_len);
	X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);

	BIO_free(b);
	cr_assert_not_null(x, "crt does not parse");
	return x;
}

static int
verifies(X509 *leaf, X509 *ca)
{
	X509_STORE     *st = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	int             ok;

	X509_STORE_add_cert(st, ca);
	X509_STORE_CTX_init(ctx, st, leaf, NULL);
	X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
	ok = X509_verify_cert(ctx) == 1;
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(st);
	return ok;
}

struct pair {
	enum tu_family ca, csr;
	int            csr_md;  /* the CSR's digest (NID; 0 for SHA-256, or none for Ed25519) */
	int            sig_nid; /* expected certificate signature algorithm */
};

/*
 * trustd's choice: the CSR's signature algorithm whenever it fits the CA key
 * (Talos 1.11+ RSA workers sign SHA512-RSA); the CA key's own choice only for
 * the cross-family pairs trustd refuses.
 */
ParameterizedTestParameters(signer, every_family)
{
	static struct pair pairs[] = {
		{ TU_ED25519, TU_ED25519, 0, NID_ED25519 },
		{ TU_ED25519, TU_P256, 0, NID_ED25519 },
		{ TU_ED25519, TU_RSA4096, NID_sha512, NID_ED25519 },
		{ TU_P256, TU_ED25519, 0, NID_ecdsa_with_SHA256 },
		{ TU_P256, TU_P256, 0, NID_ecdsa_with_SHA256 },
		{ TU_P256, TU_P256, NID_sha384, NID_ecdsa_with_SHA384 },
		{ TU_P256, TU_P384, NID_sha512, NID_ecdsa_with_SHA512 },
		{ TU_P256, TU_RSA4096, NID_sha512, NID_ecdsa_with_SHA256 },
		{ TU_P384, TU_P256, 0, NID_ecdsa_with_SHA256 },
		{ TU_P384, TU_P384, NID_sha384, NID_ecdsa_with_SHA384 },
		{ TU_P384, TU_ED25519, 0, NID_ecdsa_with_SHA384 },
		{ TU_P384, TU_RSA2048, NID_sha256, NID_ecdsa_with_SHA384 },
		{ TU_RSA2048, TU_ED25519, 0, NID_sha256WithRSAEncryption },
		{ TU_RSA2048, TU_P256, NID_sha512, NID_sha256WithRSAEncryption },
		{ TU_RSA2048, TU_RSA4096, 0, NID_sha256WithRSAEncryption },
		{ TU_RSA2048, TU_RSA4096, NID_sha384, NID_sha384WithRSAEncryption },
		{ TU_RSA2048, TU_RSA4096, NID_sha512, NID_sha512WithRSAEncryption },
	};

	return cr_make_param_array(struct pair, pairs, sizeof(pairs) / sizeof(pairs[0]));
}

ParameterizedTest(struct pair *pp, signer, every_family, .timeout = 60)
{
	struct tu_pki        pki;
	struct creds        *c = tu_creds(pp->ca, &pki);
	EVP_PKEY            *wk = tu_key(pp->csr);
	const char *const    dns[] = { "worker-1", "worker-1.example.org", NULL };
	const char *const    ips[] = { "10.0.0.5", "fd00::5", NULL };
	const EVP_MD        *md = EVP_PKEY_get_base_id(wk) == EVP_PKEY_ED25519 ? NULL
		   : pp->csr_md != 0 ? EVP_get_digestbynid(pp->csr_md)
				     : EVP_sha256();
	char                *csr = tu_csr_pem_md(wk, md, "worker-1", NULL, dns, ips, 0);
	struct signer_params p = tu_signer_params();
	struct signer_result r;
	X509                *x;

	cr_assert_eq(
	    signer_issue(c, (unsigned char *)csr, strlen(csr), &p, &r), SIGNER_OK, "%s", r.message);
	x = parse_crt(&r);
	cr_assert_eq(X509_get_signature_nid(x), pp->sig_nid, "signed %s, want %s",
	    OBJ_nid2sn(X509_get_signature_nid(x)), OBJ_nid2sn(pp->sig_nid));
	cr_assert(verifies(x, pki.ca), "issued certificate does not chain to the CA");
	cr_assert_eq(EVP_PKEY_eq(X509_get0_pubkey(x), wk), 1, "public key not the CSR's");
	X509_free(x);
	signer_result_free(&r);
	free(csr);
	EVP_PKEY_free(wk);
	creds_release(c);
	tu_pki_free(&pki);
}

Test(signer, profile_field_by_field)
{
	struct tu_pki            pki;
	struct creds            *c = tu_creds(TU_ED25519, &pki);
	EVP_PKEY                *wk = tu_key(TU_ED25519);
	const char *const        dns[] = { "worker-1", NULL };
	const char *const        ips[] = { "10.0.0.5", NULL };
	char                    *csr = tu_csr_pem(wk, "worker-1", "os:admin", dns, ips, 1);
	struct signer_params     p = tu_signer_params();
	struct signer_result     r;
	X509                    *x;
	X509_NAME               *subj;
	ASN1_BIT_STRING         *ku;
	EXTENDED_KEY_USAGE      *eku;
	GENERAL_NAMES           *sans;
	AUTHORITY_KEYID         *akid;
	const ASN1_OCTET_STRING *skid;
	BIGNUM                  *serial;
	int                      crit, i;

	cr_assert_eq(signer_issue(c, (unsigned char *)csr, strlen(csr), &p, &r), SIGNER_OK);
	/* crt: exactly one PEM block with a trailing newline. */
	cr_assert_eq(strncmp((char *)r.crt_pem, "-----BEGIN CERTIFICATE-----\n", 28), 0);
	cr_assert_eq(r.crt_pem[r.crt_len - 1], '\n');
	cr_assert_null(strstr((char *)r.crt_pem + 1, "-----BEGIN"), "more than one PEM block");
	x = parse_crt(&r);

	cr_assert_eq(X509_get_version(x), X509_VERSION_3);
	/* Subject: CN kept, every O gone. */
	subj = X509_get_subject_name(x);
	cr_assert_eq(X509_NAME_get_index_by_NID(subj, NID_organizationName, -1), -1);
	cr_assert_geq(X509_NAME_get_index_by_NID(subj, NID_commonName, -1), 0);
	cr_assert(r.org_removed);
	cr_assert_str_eq(r.cn, "worker-1");
	/* Issuer: the CA's subject. */
	cr_assert_eq(X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(pki.ca)), 0);
	/* KeyUsage: digitalSignature only, critical. */
	ku = X509_get_ext_d2i(x, NID_key_usage, &crit, NULL);
	cr_assert_not_null(ku);
	cr_assert_eq(crit, 1);
	cr_assert(ASN1_BIT_STRING_get_bit(ku, 0));
	for (i = 1; i < 9; i++)
		cr_assert_not(ASN1_BIT_STRING_get_bit(ku, i), "extra key usage bit %d", i);
	ASN1_BIT_STRING_free(ku);
	/* ExtKeyUsage: serverAuth only. */
	eku = X509_get_ext_d2i(x, NID_ext_key_usage, &crit, NULL);
	cr_assert_not_null(eku);
	cr_assert_eq(sk_ASN1_OBJECT_num(eku), 1);
	cr_assert_eq(OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, 0)), NID_server_auth);
	sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
	/* No basicConstraints, no SKID needed. */
	cr_assert_lt(X509_get_ext_by_NID(x, NID_basic_constraints, -1), 0);
	/* SANs: the DNS name and the IP, not the e-mail. */
	sans = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
	cr_assert_not_null(sans);
	cr_assert_eq(crit, 0, "SAN critical although the subject is not empty");
	cr_assert_eq(sk_GENERAL_NAME_num(sans), 2);
	cr_assert_eq(sk_GENERAL_NAME_value(sans, 0)->type, GEN_DNS);
	cr_assert_eq(sk_GENERAL_NAME_value(sans, 1)->type, GEN_IPADD);
	GENERAL_NAMES_free(sans);
	cr_assert(pki_has_ip_san(x, "10.0.0.5"));
	/* AKID = CA's SKID. */
	akid = X509_get_ext_d2i(x, NID_authority_key_identifier, NULL, NULL);
	skid = X509_get0_subject_key_id(pki.ca);
	cr_assert_not_null(akid);
	cr_assert_not_null(skid);
	cr_assert_eq(ASN1_STRING_cmp(akid->keyid, skid), 0);
	AUTHORITY_KEYID_free(akid);
	/* Serial: positive, at most 128 bits, at least 64 bits of entropy in practice. */
	serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	cr_assert_not(BN_is_negative(serial));
	cr_assert_leq(BN_num_bits(serial), 128);
	cr_assert_geq(BN_num_bits(serial), 100);
	BN_free(serial);
	cr_assert_eq(strlen(r.serial), 32);
	/* Validity: now - backdate .. now + ttl. */
	cr_assert_eq(pki_not_before(x), p.now - 60);
	cr_assert_eq(pki_not_after(x), p.now + 24 * 3600);
	cr_assert_str_eq(r.key_type, "ed25519");
	cr_assert_eq(r.nsans, 2);
	X509_free(x);
	signer_result_free(&r);
	free(csr);
	EVP_PKEY_free(wk);
	creds_release(c);
	tu_pki_free(&pki);
}

Test(signer, ttl_and_backdate_configurable)
{
	struct creds        *c = tu_creds(TU_P256, NULL);
	EVP_PKEY            *wk = tu_key(TU_P256);
	char                *csr = tu_csr_pem(wk, "w", NULL, NULL, NULL, 0);
	struct signer_params p = tu_signer_params();
	struct signer_result r;
	X509                *x;

	p.ttl_ms = 3600 * 1000;
	p.backdate_ms = 0;
	cr_assert_eq(signer_issue(c, (unsigned char *)csr, strlen(csr), &p, &r), SIGNER_OK);
	x = parse_crt(&r);
	cr_assert_eq(pki_not_before(x), p.now);
	cr_assert_eq(pki_not_after(x), p.now + 3600);
	/* No SAN in the CSR: no SAN extension at all. */
	cr_assert_lt(X509_get_ext_by_NID(x, NID_subject_alt_name, -1), 0);
	X509_free(x);
	signer_result_free(&r);
	free(csr);
	EVP_PKEY_free(wk);
	creds_release(c);
}

Test(signer, serials_differ)
{
	struct creds        *c = tu_creds(TU_ED25519, NULL);
	EVP_PKEY            *wk = tu_key(TU_ED25519);
	char                *csr = tu_csr_pem(wk, "w", NULL, NULL, NULL, 0);
	struct signer_params p = tu_signer_params();
	struct signer_result a, b;

	cr_assert_eq(signer_issue(c, (unsigned char *)csr, strlen(csr), &p, &a), SIGNER_OK);
	cr_assert_eq(signer_issue(c, (unsigned char *)csr, strlen(csr), &p, &b), SIGNER_OK);
	cr_assert_str_neq(a.serial, b.serial);
	signer_result_free(&a);
	signer_result_free(&b);
	free(csr);
	EVP_PKEY_free(wk);
	creds_release(c);
}

Test(signer, empty_subject_makes_san_critical)
{
	struct creds        *c = tu_creds(TU_ED25519, NULL);
	EVP_PKEY            *wk = tu_key(TU_ED25519);
	const char *const    ips[] = { "10.1.2.3", NULL };
	char                *csr = tu_csr_pem(wk, NULL, "os:admin", NULL, ips, 0);
	struct signer_params p = tu_signer_params();
	struct signer_result r;
	X509                *x;
	int                  crit = -1;
	GENERAL_NAMES       *g;

	cr_assert_eq(signer_issue(c, (unsigned char *)csr, strlen(csr), &p, &r), SIGNER_OK);
	x = parse_crt(&r);
	cr_assert_eq(X509_NAME_entry_count(X509_get_subject_name(x)), 0);
	g = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
	cr_assert_eq(crit, 1);
	GENERAL_NAMES_free(g);
	X509_free(x);
	signer_result_free(&r);
	free(csr);
	EVP_PKEY_free(wk);
	creds_release(c);
}

static enum signer_status
issue_bytes(struct creds *c, const char *in, size_t len, struct signer_result *r)
{
	struct signer_params p = tu_signer_params();

	return signer_issue(c, (const unsigned char *)in, len, &p, r);
}

Test(signer, refusals)
{
	struct tu_pki        pki;
	struct creds        *c = tu_creds(TU_ED25519, &pki);
	EVP_PKEY            *wk = tu_key(TU_ED25519);
	char                *csr = tu_csr_pem(wk, "w", NULL, NULL, NULL, 0);
	struct signer_result r;
	char                *bad, *p;

	cr_assert_eq(issue_bytes(c, "", 0, &r), SIGNER_BAD_DECODE);
	cr_assert_str_eq(r.message, "failed to decode CSR");
	cr_assert_eq(issue_bytes(c, "garbage", 7, &r), SIGNER_BAD_DECODE);
	/* A certificate instead of a CSR: decodes, does not parse. */
	cr_assert_eq(issue_bytes(c, pki.ca_pem, strlen(pki.ca_pem), &r), SIGNER_BAD_PARSE);
	cr_assert_eq(strncmp(r.message, "failed to parse CSR: ", 21), 0, "%s", r.message);
	/* Truncated PEM. */
	cr_assert_eq(issue_bytes(c, csr, strlen(csr) / 2, &r), SIGNER_BAD_DECODE);
	/* Corrupted signature: flip a base64 character near the end of the body. */
	bad = strdup(csr);
	p = strstr(bad, "-----END") - 6;
	*p = (*p == 'A') ? 'B' : 'A';
	cr_assert_eq(issue_bytes(c, bad, strlen(bad), &r), SIGNER_BAD_PARSE, "%s", r.message);
	cr_assert(strstr(r.message, "failed to parse CSR") != NULL);
	free(bad);
	/* Leading junk is skipped (Go pem.Decode semantics). */
	bad = malloc(strlen(csr) + 32);
	sprintf(bad, "junk before\n%s", csr);
	cr_assert_eq(issue_bytes(c, bad, strlen(bad), &r), SIGNER_OK);
	signer_result_free(&r);
	free(bad);
	free(csr);
	EVP_PKEY_free(wk);
	creds_release(c);
	tu_pki_free(&pki);
}

Test(signer, thousands_of_sans_are_bounded_by_policy)
{
	struct creds        *c = tu_creds(TU_ED25519, NULL);
	EVP_PKEY            *wk = tu_key(TU_ED25519);
	const char          *dns[600];
	char                 names[600][16];
	char                *csr;
	struct signer_params p = tu_signer_params();
	struct signer_result r;
	int                  i;

	for (i = 0; i < 599; i++) {
		snprintf(names[i], sizeof(names[i]), "n%d.x", i);
		dns[i] = names[i];
	}
	dns[599] = NULL;
	csr = tu_csr_pem(wk, "w", NULL, dns, NULL, 0);
	p.policy.max_csr_bytes = 0;
	cr_assert_eq(signer_issue(c, (unsigned char *)csr, strlen(csr), &p, &r), SIGNER_DENIED);
	cr_assert(strstr(r.message, "SANs") != NULL, "%s", r.message);
	cr_assert_eq(r.nsans_total, 599);
	cr_assert_leq(r.nsans, SIGNER_MAX_AUDIT_SANS);
	signer_result_free(&r);
	/* Allowed when the policy allows it; the audit list stays bounded. */
	p.policy.max_sans = 0;
	cr_assert_eq(signer_issue(c, (unsigned char *)csr, strlen(csr), &p, &r), SIGNER_OK);
	cr_assert_eq(r.nsans, SIGNER_MAX_AUDIT_SANS);
	signer_result_free(&r);
	free(csr);
	EVP_PKEY_free(wk);
	creds_release(c);
}

Test(signer, status_names)
{
	cr_assert_str_eq(signer_status_name(SIGNER_OK), "issued");
	cr_assert_str_eq(signer_status_name(SIGNER_BAD_PARSE), "invalid_csr");
	cr_assert_str_eq(signer_status_name(SIGNER__MAX), "unknown");
}

/*
 * ASN1_item_verify() does not read the parameters of an Ed25519 signature
 * algorithm; the libsodium verifier must not either, so that both engines
 * decide the same on a CSR that carries some.
 */
Test(signer, engines_agree_on_ed25519_sigalg_parameters)
{
	struct tu_pki        pki;
	struct creds        *c = tu_creds(TU_ED25519, &pki);
	EVP_PKEY            *k = tu_key(TU_ED25519);
	char                *pem = tu_csr_pem(k, "w", NULL, NULL, NULL, 0), *out;
	BIO                 *in = BIO_new_mem_buf(pem, -1), *b = BIO_new(BIO_s_mem());
	X509_REQ            *req = PEM_read_bio_X509_REQ(in, NULL, NULL, NULL);
	const X509_ALGOR    *alg;
	BUF_MEM             *m;
	struct signer_params p = tu_signer_params();
	struct signer_result r;
	enum signer_status   want;
	enum signer_engine   e;

	cr_assert_not_null(req);
	X509_REQ_get0_signature(req, NULL, &alg);
	/* The signed info keeps its encoding: only the outer algorithm changes. */
	cr_assert(X509_ALGOR_set0((X509_ALGOR *)alg, OBJ_nid2obj(NID_ED25519), V_ASN1_NULL, NULL));
	cr_assert(PEM_write_bio_X509_REQ(b, req));
	BIO_get_mem_ptr(b, &m);
	out = strndup(m->data, m->length);
	cr_assert_not_null(strstr(out, "CERTIFICATE REQUEST"));
	want = X509_REQ_verify(req, k) == 1 ? SIGNER_OK : SIGNER_BAD_PARSE;
	cr_log_info("OpenSSL %s the parameters", want == SIGNER_OK ? "ignores" : "refuses");
	for (e = SIGNER_ENGINE_FAST; e < SIGNER_ENGINE__MAX; e++) {
		p.engine = e;
		cr_assert_eq(signer_issue(c, (const unsigned char *)out, strlen(out), &p, &r), want,
		    "engine %d: %s", e, r.message);
		signer_result_free(&r);
	}
	ERR_clear_error();
	free(out);
	BIO_free(b);
	BIO_free(in);
	X509_REQ_free(req);
	free(pem);
	EVP_PKEY_free(k);
	creds_release(c);
	tu_pki_free(&pki);
}
