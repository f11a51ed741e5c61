/*
 * test_credsrc.c: the assembler keeps the last good snapshot, skips
 * unchanged input, waits for every source (mirrors src/credsrc.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <openssl/x509.h>

#include "audit.h"
#include "creds.h"
#include "credsrc.h"
#include "credstore.h"
#include "log.h"
#include "metrics.h"
#include "testutil.h"

#define ALL (CF_GROUP_CA | CF_GROUP_TLS)

Test(credsrc, keeps_last_good_and_skips_unchanged)
{
	struct credstore  *st = credstore_new();
	struct credsrc    *cs = credsrc_new(st);
	struct tu_pki      pki;
	struct creds_input in;
	struct creds      *c;
	char               err[512];

	tu_pki_make(&pki, TU_ED25519);
	tu_pki_input(&pki, &in);
	cr_assert_eq(credsrc_submit(cs, ALL, ALL, &in, "files", err, sizeof(err)),
	    CREDSRC_PUBLISHED, "%s", err);
	cr_assert_eq(credstore_generation(st), 1);
	cr_assert_eq(
	    credsrc_submit(cs, ALL, ALL, &in, "files", err, sizeof(err)), CREDSRC_UNCHANGED);
	cr_assert_eq(credstore_generation(st), 1);
	/* A broken key: refused, generation 1 still serves. */
	creds_input_set(&in, CF_CA_KEY, "junk", 4, "CA_KEY_PATH (t)");
	cr_assert_eq(credsrc_submit(cs, ALL, ALL, &in, "files", err, sizeof(err)), CREDSRC_INVALID);
	cr_assert(strstr(err, "CA_KEY_PATH (t)") != NULL, "%s", err);
	cr_assert_eq(credstore_generation(st), 1);
	c = credstore_acquire(st);
	cr_assert_not_null(c);
	creds_release(c);
	/* A new token alone (CA group resubmitted whole) publishes generation 2. */
	creds_input_set(&in, CF_CA_KEY, pki.ca_key_pem, strlen(pki.ca_key_pem), "CA_KEY_PATH (t)");
	creds_input_set(&in, CF_TOKEN, "zzzzzz.0123456789abcdef", 23, "TOKEN_PATH (t)");
	cr_assert_eq(credsrc_submit(cs, ALL, CF_GROUP_CA, &in, "files", err, sizeof(err)),
	    CREDSRC_PUBLISHED, "%s", err);
	cr_assert_eq(credstore_generation(st), 2);
	c = credstore_acquire(st);
	cr_assert(creds_token_ok(c, "zzzzzz.0123456789abcdef", 23));
	creds_release(c);
	creds_input_free(&in);
	credsrc_free(cs);
	credstore_free(st);
	tu_pki_free(&pki);
}

Test(credsrc, waits_for_every_source)
{
	struct credstore  *st = credstore_new();
	struct credsrc    *cs = credsrc_new(st);
	struct tu_pki      pki;
	struct creds_input in, ca, tls;
	char               err[512];
	int                f;

	tu_pki_make(&pki, TU_P256);
	tu_pki_input(&pki, &in);
	creds_input_init(&ca);
	creds_input_init(&tls);
	for (f = 0; f < CF__MAX; f++) {
		if (!in.part[f].present)
			continue;
		creds_input_set((CF_MASK(f) & CF_GROUP_CA) ? &ca : &tls, (enum creds_field)f,
		    in.part[f].data.data, in.part[f].data.len, in.part[f].origin);
	}
	cr_assert_eq(credsrc_submit(cs, ALL, CF_GROUP_TLS, &tls, "Secret a/tls", err, sizeof(err)),
	    CREDSRC_PENDING);
	cr_assert_eq(credstore_generation(st), 0);
	cr_assert_eq(credsrc_submit(cs, ALL, CF_GROUP_CA, &ca, "Secret a/ca", err, sizeof(err)),
	    CREDSRC_PUBLISHED, "%s", err);
	cr_assert_eq(credstore_generation(st), 1);
	creds_input_free(&in);
	creds_input_free(&ca);
	creds_input_free(&tls);
	credsrc_free(cs);
	credstore_free(st);
	tu_pki_free(&pki);
}

struct seen_rec {
	enum audit_kind kind[8];
	char            related[8][160], message[8][600];
	int             n;
};

static void
sink(const struct audit_rec *r, void *arg)
{
	struct seen_rec *s = arg;

	if (s->n < 8) {
		s->kind[s->n] = r->kind;
		snprintf(
		    s->related[s->n], sizeof(s->related[0]), "%s", r->related ? r->related : "");
		snprintf(
		    s->message[s->n], sizeof(s->message[0]), "%s", r->message ? r->message : "");
		s->n++;
	}
}

/* An expired serving certificate noticed when the CA Secret arrives names the serving Secret. */
Test(credsrc, refusal_names_the_source_at_fault)
{
	struct credstore  *st = credstore_new();
	struct credsrc    *cs = credsrc_new(st);
	struct tu_pki      pki;
	struct creds_input in;
	struct seen_rec    seen = { .n = 0 };
	X509              *old;
	char              *oldpem, err[512];

	tu_pki_make(&pki, TU_ED25519);
	old = tu_leaf(pki.ca, pki.ca_key, X509_get0_pubkey(pki.tls), "127.0.0.1", -7200, -3600);
	oldpem = tu_cert_pem(old);
	tu_pki_input(&pki, &in);
	creds_input_set(&in, CF_TLS_CERT, oldpem, strlen(oldpem), "Secret ns/serving key tls.crt");
	audit_set_sink(sink, &seen);
	cr_assert_eq(
	    credsrc_submit(cs, ALL, CF_GROUP_TLS, &in, "Secret ns/serving", err, sizeof(err)),
	    CREDSRC_PENDING);
	cr_assert_eq(credsrc_submit(cs, ALL, CF_GROUP_CA, &in, "Secret ns/ca", err, sizeof(err)),
	    CREDSRC_INVALID);
	audit_set_sink(NULL, NULL);
	cr_assert_eq(seen.n, 1);
	cr_assert_eq(seen.kind[0], AK_CREDS_INVALID);
	cr_assert_str_eq(
	    seen.related[0], "Secret ns/serving", "not the CA Secret that just arrived");
	cr_assert(
	    strstr(seen.message[0], "Secret ns/serving key tls.crt: serving certificate: expired"),
	    "%s", seen.message[0]);
	X509_free(old);
	free(oldpem);
	creds_input_free(&in);
	credsrc_free(cs);
	credstore_free(st);
	tu_pki_free(&pki);
}

/* Served with a warning: one CredentialsWarning record per finding. */
Test(credsrc, odd_token_warned_once_published)
{
	struct credstore  *st = credstore_new();
	struct credsrc    *cs = credsrc_new(st);
	struct tu_pki      pki;
	struct creds_input in;
	struct seen_rec    seen = { .n = 0 };
	char               err[512];

	tu_pki_make(&pki, TU_ED25519);
	tu_pki_input(&pki, &in);
	creds_input_set(&in, CF_TOKEN, "tooshort", 8, "Secret ns/ca key token");
	audit_set_sink(sink, &seen);
	cr_assert_eq(credsrc_submit(cs, ALL, ALL, &in, "Secret ns/ca", err, sizeof(err)),
	    CREDSRC_PUBLISHED, "%s", err);
	cr_assert_eq(
	    credsrc_submit(cs, ALL, ALL, &in, "Secret ns/ca", err, sizeof(err)), CREDSRC_UNCHANGED);
	audit_set_sink(NULL, NULL);
	cr_assert_eq(seen.n, 1, "warned once, not on every unchanged resubmit");
	cr_assert_eq(seen.kind[0], AK_CREDS_WARNING);
	cr_assert_str_eq(seen.related[0], "Secret ns/ca");
	cr_assert(
	    strstr(seen.message[0], "does not look like a Talos token"), "%s", seen.message[0]);
	cr_assert(strstr(seen.message[0], "tooshort") == NULL, "never the token itself");
	{
		struct sbuf m;

		sbuf_init(&m, 1 << 20);
		cr_assert_eq(metrics_render(&m), 0);
		cr_assert_eq(sbuf_add(&m, "", 1), 0); /* NUL-terminate */
		cr_assert(strstr((const char *)m.data,
			      "\ntalos_csr_signer_token_format_warnings_total 1\n") != NULL,
		    "counted once");
		sbuf_free(&m);
	}
	creds_input_free(&in);
	credsrc_free(cs);
	credstore_free(st);
	tu_pki_free(&pki);
}

/* The rotation record (an Event in API mode) names what changed, and never the token. */
Test(credsrc, rotation_says_what_changed)
{
	struct credstore  *st = credstore_new();
	struct credsrc    *cs = credsrc_new(st);
	struct tu_pki      pki;
	struct creds_input in;
	char               err[512], out[4096];
	FILE              *f = tmpfile();
	int                saved = dup(STDERR_FILENO);
	size_t             n;

	cr_assert_not_null(f);
	log_init(LOG_JSON, LOG_INFO);
	tu_pki_make(&pki, TU_ED25519);
	tu_pki_input(&pki, &in);
	cr_assert_eq(credsrc_submit(cs, ALL, ALL, &in, "files", err, sizeof(err)),
	    CREDSRC_PUBLISHED, "%s", err);
	creds_input_set(&in, CF_TOKEN, "qqqqqq.0123456789abcdef", 23, "TOKEN_PATH (t)");
	fflush(stderr);
	dup2(fileno(f), STDERR_FILENO);
	cr_assert_eq(credsrc_submit(cs, ALL, CF_GROUP_CA, &in, "files", err, sizeof(err)),
	    CREDSRC_PUBLISHED, "%s", err);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(f);
	n = fread(out, 1, sizeof(out) - 1, f);
	out[n] = '\0';
	fclose(f);
	cr_assert(strstr(out, "CredentialsRotated") != NULL, "%s", out);
	cr_assert(strstr(out, "changed: token (") != NULL, "%s", out);
	cr_assert(strstr(out, "qqqqqq") == NULL, "the token leaked: %s", out);
	creds_input_free(&in);
	credsrc_free(cs);
	credstore_free(st);
	tu_pki_free(&pki);
}
