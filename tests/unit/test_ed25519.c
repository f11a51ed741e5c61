/*
 * test_ed25519.c: the libsodium Ed25519 path (src/ed25519.c) against
 * OpenSSL's. The differential test runs signer_issue() twice on every CSR of
 * a corpus of hundreds (valid, signature and body bit flips, wrong keys,
 * truncations, small-order keys and R values, other key families), once
 * with SIGNER_ENGINE_FAST (libsodium verifies and signs) and once with
 * SIGNER_ENGINE_OPENSSL, with the serial and the clock fixed, and requires
 * the same status, message, audit fields and certificate bytes: Ed25519 is
 * deterministic, so the same TBSCertificate gives the same signature.
 */
#include <string.h>

#include <criterion/criterion.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "creds.h"
#include "ed25519.h"
#include "pki.h"
#include "signer.h"
#include "testutil.h"

/* The DER of a PEM CSR (first block). */
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

static char *
der_pem(const unsigned char *der, size_t len)
{
	size_t n;
	char  *p = (char *)pki_der_to_pem("CERTIFICATE REQUEST", der, len, &n);

	cr_assert_not_null(p);
	return p;
}

/* A CSR whose subjectPublicKeyInfo holds `pub` but that `signer` signed. */
static char *
csr_wrong_key(EVP_PKEY *pub, EVP_PKEY *signer, const char *cn)
{
	X509_REQ  *r = X509_REQ_new();
	X509_NAME *n = X509_REQ_get_subject_name(r);
	BIO       *b = BIO_new(BIO_s_mem());
	BUF_MEM   *m;
	char      *out;

	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	cr_assert(X509_REQ_set_pubkey(r, signer));
	cr_assert(X509_REQ_sign(r, signer,
		      EVP_PKEY_get_base_id(signer) == EVP_PKEY_ED25519 ? NULL : EVP_sha256()) > 0);
	/* Swap the key after signing: the signature no longer matches it. */
	cr_assert(X509_REQ_set_pubkey(r, pub));
	PEM_write_bio_X509_REQ(b, r);
	BIO_get_mem_ptr(b, &m);
	out = strndup(m->data, m->length);
	BIO_free(b);
	X509_REQ_free(r);
	return out;
}

struct tally {
	int issued, refused, calls;
};

/* Issues `csr` with both engines, requires identical outcomes; returns the status. */
static enum signer_status
same(struct creds *c, const char *csr, size_t len, struct tally *t, const char *what)
{
	static const unsigned char serial[16] = { 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 1,
		2, 3, 4, 5, 6, 7, 8 };
	struct signer_params       p = tu_signer_params();
	struct signer_result       a, b;
	enum signer_status         sa, sb;
	size_t                     i;

	p.now = 1790000000; /* fixed: the certificates must match byte for byte */
	p.serial = serial;
	p.engine = SIGNER_ENGINE_FAST;
	sa = signer_issue(c, (const unsigned char *)csr, len, &p, &a);
	p.engine = SIGNER_ENGINE_OPENSSL;
	sb = signer_issue(c, (const unsigned char *)csr, len, &p, &b);
	cr_assert_eq(sa, sb, "%s: status %s (libsodium) vs %s (OpenSSL): %s / %s", what,
	    signer_status_name(sa), signer_status_name(sb), a.message, b.message);
	cr_assert_str_eq(a.message, b.message, "%s", what);
	cr_assert_str_eq(a.cn, b.cn, "%s", what);
	cr_assert_str_eq(a.key_type, b.key_type, "%s", what);
	cr_assert_str_eq(a.serial, b.serial, "%s", what);
	cr_assert_eq(a.org_removed, b.org_removed, "%s", what);
	cr_assert_eq(a.nsans, b.nsans, "%s", what);
	for (i = 0; i < a.nsans; i++)
		cr_assert_str_eq(a.sans[i], b.sans[i], "%s", what);
	cr_assert_eq(a.crt_len, b.crt_len, "%s: certificate lengths differ", what);
	if (a.crt_len > 0)
		cr_assert(memcmp(a.crt_pem, b.crt_pem, a.crt_len) == 0,
		    "%s: certificates differ:\n%s\n%s", what, a.crt_pem, b.crt_pem);
	t->calls++;
	if (sa == SIGNER_OK)
		t->issued++;
	else
		t->refused++;
	signer_result_free(&a);
	signer_result_free(&b);
	return sa;
}

static enum signer_status
same_der(struct creds *c, const unsigned char *der, size_t len, struct tally *t, const char *what)
{
	char              *pem = der_pem(der, len);
	enum signer_status st = same(c, pem, strlen(pem), t, what);

	free(pem);
	return st;
}

/* Offset of the 32-byte key in an Ed25519 CSR's DER (after 06 03 2b 65 70 03 21 00). */
static long
ed25519_key_offset(const unsigned char *der, long len)
{
	static const unsigned char pfx[] = { 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00 };
	long                       i;

	for (i = 0; i + (long)sizeof(pfx) + 32 <= len; i++)
		if (memcmp(der + i, pfx, sizeof(pfx)) == 0)
			return i + (long)sizeof(pfx);
	cr_assert_fail("no Ed25519 key in the CSR");
	return -1;
}

#define DIFF_KEYS 120

Test(ed25519, libsodium_and_openssl_agree_on_every_csr, .timeout = 300)
{
	static const unsigned char identity[32] = { 1 };
	struct tu_pki              pki;
	struct creds              *c = tu_creds(TU_ED25519, &pki);
	struct tally               t = { 0, 0, 0 };
	const char *const          dns[] = { "worker-1", "w1.example.org", NULL };
	const char *const          ips[] = { "10.0.0.5", "fd00::5", NULL };
	enum tu_family             other[] = { TU_P256, TU_P384, TU_RSA2048 };
	char                       cn[64], *pem, *wrong;
	unsigned char             *der, *mut;
	EVP_PKEY                  *k, *k2;
	long                       len, off, cut;
	int                        i, j;

	cr_assert_not_null(c->ca_ed25519, "the Ed25519 CA has no libsodium key");
	for (i = 0; i < DIFF_KEYS; i++) {
		k = tu_key_fresh(TU_ED25519);
		snprintf(cn, sizeof(cn), "worker-%d", i);
		pem = tu_csr_pem(k, cn, i % 2 ? "os:admin" : NULL, i % 3 ? dns : NULL,
		    i % 5 ? ips : NULL, i % 7 == 0);
		cr_assert_eq(same(c, pem, strlen(pem), &t, "valid"), SIGNER_OK);
		der = pem_der(pem, &len);
		mut = malloc((size_t)len);
		/* A flipped bit in the signature, then in the signed body. */
		memcpy(mut, der, (size_t)len);
		mut[len - 1 - (i % 64)] ^= (unsigned char)(1u << (i % 8));
		same_der(c, mut, (size_t)len, &t, "signature bit flip");
		memcpy(mut, der, (size_t)len);
		mut[len - 80 - (i % 40)] ^= (unsigned char)(1u << (i % 8));
		same_der(c, mut, (size_t)len, &t, "body bit flip");
		/* A flipped bit in the public key. */
		off = ed25519_key_offset(der, len);
		memcpy(mut, der, (size_t)len);
		mut[off + (i % 32)] ^= (unsigned char)(1u << (i % 8));
		same_der(c, mut, (size_t)len, &t, "key bit flip");
		/* Truncated DER, and a truncated PEM text. */
		cut = 1 + (long)((unsigned)i * 7919u % (unsigned)(len - 1));
		same_der(c, der, (size_t)cut, &t, "truncated DER");
		same(c, pem, strlen(pem) / 2 + (size_t)i % 10, &t, "truncated PEM");
		/* Small-order key with a matching "signature" (R = identity, S = 0). */
		if (i % 10 == 0) {
			memcpy(mut, der, (size_t)len);
			memcpy(mut + off, identity, 32);
			memset(mut + len - 64, 0, 64);
			mut[len - 64] = 1;
			cr_assert_eq(
			    same_der(c, mut, (size_t)len, &t, "small-order key"), SIGNER_BAD_PARSE);
		}
		/* Key A in the CSR, signed by key B. */
		k2 = tu_key_fresh(TU_ED25519);
		wrong = csr_wrong_key(k, k2, cn);
		cr_assert_eq(same(c, wrong, strlen(wrong), &t, "wrong key"), SIGNER_BAD_PARSE);
		free(wrong);
		free(mut);
		OPENSSL_free(der);
		free(pem);
		EVP_PKEY_free(k);
		EVP_PKEY_free(k2);
	}
	/* Other CSR families under the Ed25519 CA: libsodium signs, OpenSSL verifies. */
	for (j = 0; j < (int)(sizeof(other) / sizeof(other[0])); j++) {
		k = tu_key(other[j]);
		pem = tu_csr_pem(k, "worker-x", "os:admin", dns, ips, 0);
		same(c, pem, strlen(pem), &t, "other family");
		free(pem);
		EVP_PKEY_free(k);
	}
	cr_log_info(
	    "differential: %d CSRs, %d issued, %d refused by both", t.calls, t.issued, t.refused);
	cr_assert_geq(t.calls, 800);
	cr_assert_geq(t.issued, DIFF_KEYS);
	cr_assert_geq(t.refused, 5 * DIFF_KEYS);
	creds_release(c);
	tu_pki_free(&pki);
}

/* An ECDSA CA: Ed25519 CSRs are verified by libsodium, the rest is OpenSSL's. */
Test(ed25519, ecdsa_ca_with_ed25519_csrs_agrees, .timeout = 120)
{
	struct tu_pki  pki;
	struct creds  *c = tu_creds(TU_P256, &pki);
	struct tally   t = { 0, 0, 0 };
	char          *pem;
	unsigned char *der;
	EVP_PKEY      *k;
	long           len;
	int            i;

	cr_assert_null(c->ca_ed25519);
	for (i = 0; i < 40; i++) {
		struct signer_params p = tu_signer_params();
		struct signer_result a, b;

		k = tu_key_fresh(TU_ED25519);
		pem = tu_csr_pem(k, "worker-1", NULL, NULL, NULL, 0);
		der = pem_der(pem, &len);
		der[len - 1 - i % 64] ^= (unsigned char)(i % 2); /* every other one corrupted */
		free(pem);
		pem = der_pem(der, (size_t)len);
		p.engine = SIGNER_ENGINE_FAST;
		signer_issue(c, (const unsigned char *)pem, strlen(pem), &p, &a);
		p.engine = SIGNER_ENGINE_OPENSSL;
		signer_issue(c, (const unsigned char *)pem, strlen(pem), &p, &b);
		cr_assert_eq(a.status, b.status);
		cr_assert_str_eq(a.message, b.message);
		cr_assert_eq(a.status, i % 2 ? SIGNER_BAD_PARSE : SIGNER_OK);
		t.calls++;
		signer_result_free(&a);
		signer_result_free(&b);
		OPENSSL_free(der);
		free(pem);
		EVP_PKEY_free(k);
	}
	cr_assert_eq(t.calls, 40);
	creds_release(c);
	tu_pki_free(&pki);
}

Test(ed25519, sign_and_verify_raw)
{
	EVP_PKEY           *k = tu_key_fresh(TU_ED25519);
	struct ed25519_key *sk = ed25519_key_new(k);
	unsigned char       pub[32], sig[64], osig[64], msg[300];
	size_t              plen = sizeof(pub), slen = sizeof(osig);
	EVP_MD_CTX         *ctx = EVP_MD_CTX_new();

	cr_assert_not_null(sk);
	RAND_bytes(msg, sizeof(msg));
	cr_assert_eq(EVP_PKEY_get_raw_public_key(k, pub, &plen), 1);
	cr_assert_eq(ed25519_sign(sk, msg, sizeof(msg), sig), 0);
	/* The same signature as OpenSSL's (deterministic). */
	cr_assert_eq(EVP_DigestSignInit(ctx, NULL, NULL, NULL, k), 1);
	cr_assert_eq(EVP_DigestSign(ctx, osig, &slen, msg, sizeof(msg)), 1);
	cr_assert_eq(slen, 64);
	cr_assert(memcmp(sig, osig, 64) == 0);
	cr_assert_eq(ed25519_verify(pub, msg, sizeof(msg), sig, 64), 1);
	cr_assert_eq(ed25519_verify(pub, msg, sizeof(msg) - 1, sig, 64), 0);
	cr_assert_eq(ed25519_verify(pub, msg, sizeof(msg), sig, 63), 0);
	sig[10] ^= 1;
	cr_assert_eq(ed25519_verify(pub, msg, sizeof(msg), sig, 64), 0);
	EVP_MD_CTX_free(ctx);
	ed25519_key_free(sk);
	EVP_PKEY_free(k);
}

Test(ed25519, not_an_ed25519_key)
{
	EVP_PKEY *k = tu_key_fresh(TU_P256);

	cr_assert_null(ed25519_key_new(k));
	EVP_PKEY_free(k);
}

Test(ed25519, strictness)
{
	unsigned char pk[32], r[64];
	EVP_PKEY     *k = tu_key_fresh(TU_ED25519);
	size_t        n = sizeof(pk);

	cr_assert_eq(EVP_PKEY_get_raw_public_key(k, pk, &n), 1);
	memset(r, 0x42, sizeof(r));
	cr_assert_eq(ed25519_is_strict(pk, r, sizeof(r)), 1);
	/* y = 1 (identity), also with the sign bit, and y = 0. */
	memset(pk, 0, sizeof(pk));
	pk[0] = 1;
	cr_assert_eq(ed25519_is_strict(pk, r, sizeof(r)), 0);
	pk[31] = 0x80;
	cr_assert_eq(ed25519_is_strict(pk, r, sizeof(r)), 0);
	pk[0] = 0;
	pk[31] = 0;
	cr_assert_eq(ed25519_is_strict(pk, r, sizeof(r)), 0);
	/* y = p - 1 (order 2), y = p, y = 2^255 - 1 (non-canonical). */
	memset(pk, 0xff, sizeof(pk));
	pk[31] = 0x7f;
	pk[0] = 0xec;
	cr_assert_eq(ed25519_is_strict(pk, r, sizeof(r)), 0);
	pk[0] = 0xed;
	cr_assert_eq(ed25519_is_strict(pk, r, sizeof(r)), 0);
	pk[0] = 0xff;
	cr_assert_eq(ed25519_is_strict(pk, r, sizeof(r)), 0);
	/* y = p - 2 is canonical and not of small order (whatever the point). */
	pk[0] = 0xeb;
	cr_assert_eq(ed25519_is_strict(pk, r, sizeof(r)), 1);
	/* A small-order R. */
	memset(r, 0, 32);
	r[0] = 1;
	cr_assert_eq(ed25519_is_strict(pk, r, sizeof(r)), 0);
	EVP_PKEY_free(k);
}
