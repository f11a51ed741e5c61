/*
 * test_creds.c: snapshot validation: every refusal names its setting; the
 * accepted-CA bundle order (mirrors src/creds.c).
 */
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>

#include "creds.h"
#include "testutil.h"

static struct creds *
build(struct creds_input *in, char *err, size_t len)
{
	return creds_build(in, (long long)time(NULL), err, len);
}

Test(creds, valid_and_bundle_order)
{
	struct tu_pki      pki, old;
	struct creds_input in;
	struct creds      *c;
	char               err[512], *bundle;

	tu_pki_make(&pki, TU_ED25519);
	tu_pki_make(&old, TU_P256);
	tu_pki_input(&pki, &in);
	/* Accepted CAs: the old CA, plus the issuing CA again (deduplicated). */
	bundle = malloc(strlen(old.ca_pem) + strlen(pki.ca_pem) + 1);
	strcpy(bundle, old.ca_pem);
	strcat(bundle, pki.ca_pem);
	creds_input_set(&in, CF_ACCEPTED_CAS, bundle, strlen(bundle), "ACCEPTED_CAS_PATH (test)");
	c = build(&in, err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(sk_X509_num(c->accepted), 2);
	cr_assert_eq(X509_cmp(sk_X509_value(c->accepted, 0), old.ca), 0);
	cr_assert_eq(X509_cmp(sk_X509_value(c->accepted, 1), pki.ca), 0, "issuing CA must be last");
	cr_assert_eq(c->ca_bundle_len, strlen(old.ca_pem) + strlen(pki.ca_pem));
	cr_assert_eq(memcmp(c->ca_bundle, old.ca_pem, strlen(old.ca_pem)), 0);
	cr_assert_eq(c->ca_bundle[c->ca_bundle_len - 1], '\n');
	cr_assert_eq(c->ca_type, KEY_ED25519);
	cr_assert_gt(c->akid_len, 0);
	cr_assert(creds_token_ok(c, TU_TOKEN, strlen(TU_TOKEN)), "token trimmed");
	cr_assert_not(creds_token_ok(c, TU_TOKEN "x", strlen(TU_TOKEN) + 1));
	cr_assert(strstr(c->tls_key_pem, "-----BEGIN PRIVATE KEY-----") != NULL);
	creds_release(c);
	creds_input_free(&in);
	free(bundle);
	tu_pki_free(&pki);
	tu_pki_free(&old);
}

static void
expect_refusal(void (*mutate)(struct tu_pki *, struct creds_input *), const char *needle)
{
	struct tu_pki      pki;
	struct creds_input in;
	char               err[512] = "";

	tu_pki_make(&pki, TU_ED25519);
	tu_pki_input(&pki, &in);
	mutate(&pki, &in);
	cr_assert_null(build(&in, err, sizeof(err)), "accepted although %s", needle);
	cr_assert(strstr(err, needle) != NULL, "error \"%s\" lacks \"%s\"", err, needle);
	creds_input_free(&in);
	tu_pki_free(&pki);
}

static void
m_ca_key_mismatch(struct tu_pki *p, struct creds_input *in)
{
	EVP_PKEY *other = tu_key(TU_ED25519);
	char     *pem = tu_key_pem(other, NULL);

	(void)p;
	creds_input_set(in, CF_CA_KEY, pem, strlen(pem), "CA_KEY_PATH (x)");
	free(pem);
	EVP_PKEY_free(other);
}

static void
m_tls_key_mismatch(struct tu_pki *p, struct creds_input *in)
{
	(void)p;
	creds_input_set(in, CF_TLS_KEY, p->ca_key_pem, strlen(p->ca_key_pem), "TLS_KEY_PATH (x)");
}

static void
m_tls_expired(struct tu_pki *p, struct creds_input *in)
{
	X509 *x = tu_leaf(p->ca, p->ca_key, p->tls_key, "127.0.0.1", -7200, -3600);
	char *pem = tu_cert_pem(x);

	creds_input_set(in, CF_TLS_CERT, pem, strlen(pem), "TLS_CERT_PATH (x)");
	free(pem);
	X509_free(x);
}

static void
m_tls_future(struct tu_pki *p, struct creds_input *in)
{
	X509 *x = tu_leaf(p->ca, p->ca_key, p->tls_key, "127.0.0.1", 3600, 7200);
	char *pem = tu_cert_pem(x);

	creds_input_set(in, CF_TLS_CERT, pem, strlen(pem), "TLS_CERT_PATH (x)");
	free(pem);
	X509_free(x);
}

static void
m_empty_token(struct tu_pki *p, struct creds_input *in)
{
	(void)p;
	creds_input_set(in, CF_TOKEN, " \n", 2, "TOKEN_PATH (x)");
}

static void
m_missing_ca(struct tu_pki *p, struct creds_input *in)
{
	(void)p;
	sbuf_free(&in->part[CF_CA_CERT].data);
	in->part[CF_CA_CERT].present = 0;
}

static void
m_garbage_ca(struct tu_pki *p, struct creds_input *in)
{
	(void)p;
	creds_input_set(in, CF_CA_CERT, "garbage", 7, "CA_CERT_PATH (x)");
}

static void
m_leaf_as_ca(struct tu_pki *p, struct creds_input *in)
{
	creds_input_set(in, CF_CA_CERT, p->tls_pem, strlen(p->tls_pem), "CA_CERT_PATH (x)");
}

static void
m_small_rsa_ca(struct tu_pki *p, struct creds_input *in)
{
	EVP_PKEY *k = tu_key(TU_RSA1024);
	X509     *ca = tu_ca(k, 10);
	char     *c = tu_cert_pem(ca), *kp = tu_key_pem(k, NULL);

	(void)p;
	creds_input_set(in, CF_CA_CERT, c, strlen(c), "CA_CERT_PATH (x)");
	creds_input_set(in, CF_CA_KEY, kp, strlen(kp), "CA_KEY_PATH (x)");
	free(c);
	free(kp);
	X509_free(ca);
	EVP_PKEY_free(k);
}

Test(creds, refusals_name_the_setting, .timeout = 60)
{
	expect_refusal(
	    m_ca_key_mismatch, "CA_KEY_PATH (x): CA key: does not match the CA certificate");
	expect_refusal(m_tls_key_mismatch, "TLS_KEY_PATH (x): serving key: does not match");
	expect_refusal(m_tls_expired, "TLS_CERT_PATH (x): serving certificate: expired");
	expect_refusal(m_tls_future, "TLS_CERT_PATH (x): serving certificate: not yet valid");
	expect_refusal(m_empty_token, "TOKEN_PATH (x): token: empty");
	expect_refusal(m_missing_ca, "CA certificate: missing or empty");
	expect_refusal(m_garbage_ca, "CA_CERT_PATH (x): CA certificate: no PEM certificate found");
	expect_refusal(m_leaf_as_ca, "not a CA certificate");
	expect_refusal(m_small_rsa_ca, "too small");
}

Test(creds, refcount_frees_at_last_release)
{
	struct creds *c = tu_creds(TU_P256, NULL);

	cr_assert_eq(atomic_load(&c->refs), 1);
	creds_ref(c);
	cr_assert_eq(atomic_load(&c->refs), 2);
	creds_release(c);
	cr_assert_eq(atomic_load(&c->refs), 1);
	creds_release(c); /* ASan would flag any later use */
	creds_release(NULL);
}

Test(creds, input_digest_tracks_changes)
{
	struct tu_pki      pki;
	struct creds_input in;
	unsigned char      a[32], b[32];

	tu_pki_make(&pki, TU_ED25519);
	tu_pki_input(&pki, &in);
	creds_input_digest(&in, a);
	creds_input_digest(&in, b);
	cr_assert_eq(memcmp(a, b, 32), 0);
	creds_input_set(&in, CF_TOKEN, "other.0123456789abcdef", 22, "TOKEN_PATH");
	creds_input_digest(&in, b);
	cr_assert_neq(memcmp(a, b, 32), 0);
	creds_input_free(&in);
	tu_pki_free(&pki);
}

struct seen {
	char   text[8][512];
	size_t n;
};

static void
collect(void *arg, const char *msg)
{
	struct seen *s = arg;

	if (s->n < 8)
		snprintf(s->text[s->n++], sizeof(s->text[0]), "%s", msg);
}

Test(creds, accepted_tokens_each_accepted)
{
	struct tu_pki      pki;
	struct creds_input in;
	struct creds      *c;
	struct seen        seen = { .n = 0 };
	char               err[512];
	const char        *more = "\n  newtok.0123456789abcdef  \n\nabc123.zzzzzzzzzzzzzzzz\n";

	tu_pki_make(&pki, TU_P256);
	tu_pki_input(&pki, &in);
	creds_input_set(&in, CF_ACCEPTED_TOKENS, more, strlen(more), "ACCEPTED_TOKENS_PATH (test)");
	c = creds_validate(&in, (long long)time(NULL), collect, &seen, err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	cr_assert_eq(c->ntokens, 3, "machine token plus two accepted (blank lines skipped)");
	cr_assert(creds_token_ok(c, TU_TOKEN, strlen(TU_TOKEN)), "the machine token");
	cr_assert(creds_token_ok(c, "newtok.0123456789abcdef", 23), "an accepted token");
	cr_assert(creds_token_ok(c, "abc123.zzzzzzzzzzzzzzzz", 23), "the last accepted token");
	cr_assert_not(creds_token_ok(c, "newtok.0123456789abcdef ", 24), "presented exactly");
	cr_assert_not(creds_token_ok(c, "other1.0123456789abcdef", 23));
	cr_assert_not(creds_token_ok(c, "", 0), "an empty token matches no unused slot");
	cr_assert_eq(c->odd_tokens, 0);
	cr_assert_eq(seen.n, 0, "no warning for Talos-shaped tokens: %s", seen.text[0]);
	creds_release(c);
	creds_input_free(&in);
	tu_pki_free(&pki);
}

Test(creds, odd_token_accepted_with_a_warning)
{
	struct tu_pki      pki;
	struct creds_input in;
	struct creds      *c;
	struct seen        seen = { .n = 0 };
	char               err[512];
	const char        *tok = "3f9a1c2b7e", *more = "short\n";

	tu_pki_make(&pki, TU_ED25519);
	tu_pki_input(&pki, &in);
	creds_input_set(&in, CF_TOKEN, tok, strlen(tok), "TOKEN_PATH (t)");
	creds_input_set(&in, CF_ACCEPTED_TOKENS, more, strlen(more), "ACCEPTED_TOKENS_PATH (a)");
	c = creds_validate(&in, (long long)time(NULL), collect, &seen, err, sizeof(err));
	cr_assert_not_null(c, "%s", err);
	cr_assert(creds_token_ok(c, tok, strlen(tok)), "accepted anyway");
	cr_assert_eq(c->odd_tokens, 2);
	cr_assert_eq(seen.n, 2);
	cr_assert(strstr(seen.text[0], "TOKEN_PATH (t)") != NULL &&
		strstr(seen.text[0], "does not look like a Talos token") != NULL,
	    "%s", seen.text[0]);
	cr_assert(strstr(seen.text[1], "ACCEPTED_TOKENS_PATH (a)") != NULL, "%s", seen.text[1]);
	cr_assert(strstr(seen.text[0], tok) == NULL, "the token itself is never in a message");
	creds_release(c);
	creds_input_free(&in);
	tu_pki_free(&pki);
}

Test(creds, too_many_accepted_tokens_refused)
{
	struct tu_pki      pki;
	struct creds_input in;
	char               err[512] = "", many[CREDS_MAX_TOKENS * 32];
	size_t             i, o = 0;

	for (i = 0; i < CREDS_MAX_TOKENS; i++)
		o += (size_t)snprintf(many + o, sizeof(many) - o, "tok%03zu.0123456789abcdef\n", i);
	tu_pki_make(&pki, TU_ED25519);
	tu_pki_input(&pki, &in);
	creds_input_set(&in, CF_ACCEPTED_TOKENS, many, o, "Secret ns/ca key accepted-tokens");
	cr_assert_null(build(&in, err, sizeof(err)));
	cr_assert(strstr(err, "Secret ns/ca key accepted-tokens") != NULL, "%s", err);
	creds_input_free(&in);
	tu_pki_free(&pki);
}

Test(creds, accepted_ca_must_be_a_ca)
{
	struct tu_pki      pki;
	struct creds_input in;
	char               err[512] = "";

	tu_pki_make(&pki, TU_ED25519);
	tu_pki_input(&pki, &in);
	/* The serving certificate is no CA: workers would put it in their root pool. */
	creds_input_set(
	    &in, CF_ACCEPTED_CAS, pki.tls_pem, strlen(pki.tls_pem), "ACCEPTED_CAS_PATH (x)");
	cr_assert_null(build(&in, err, sizeof(err)));
	cr_assert(strstr(err, "ACCEPTED_CAS_PATH (x)") != NULL && strstr(err, "not a CA") != NULL,
	    "%s", err);
	creds_input_free(&in);
	tu_pki_free(&pki);
}

Test(creds, rsa_ca_key_below_2048_refused)
{
	EVP_PKEY *small = tu_key(TU_RSA1024);
	char      why[128];

	/* The predicate both the daemon and `check` apply to a CA or serving key. */
	cr_assert_not(creds_key_usable(small, why, sizeof(why)));
	cr_assert(strstr(why, "1024") != NULL, "%s", why);
	EVP_PKEY_free(small);
}
