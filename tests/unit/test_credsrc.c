/*
 * test_credsrc.c: sources register once and the assembler expects what they
 * registered; it keeps the last good snapshot, skips unchanged input, waits
 * for every source, and reports each outcome with one log line and at most
 * one audit record (mirrors src/credsrc.c).
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

#define ALL CF_GROUP_ALL

static struct credsrc_source *
reg(struct credsrc *cs, unsigned groups, const char *label, enum metric_source ms)
{
	struct credsrc_source *s;
	char                   err[256];

	s = credsrc_register(cs, groups, label, ms, err, sizeof(err));
	cr_assert_not_null(s, "%s", err);
	return s;
}

/* Splits a full input into its CA and serving halves. */
static void
split(const struct creds_input *in, struct creds_input *ca, struct creds_input *tls)
{
	int f;

	creds_input_init(ca);
	creds_input_init(tls);
	for (f = 0; f < CF__MAX; f++) {
		if (!in->part[f].present)
			continue;
		creds_input_set((CF_MASK(f) & CF_GROUP_CA) ? ca : tls, (enum creds_field)f,
		    in->part[f].data.data, in->part[f].data.len, in->part[f].origin);
	}
}

/* Captures what the log writes to stderr between cap_begin() and cap_end(). */
struct capture {
	FILE *f;
	int   saved;
	char  text[16384];
	int   lines;
};

static void
cap_begin(struct capture *c, enum log_level level)
{
	memset(c, 0, sizeof(*c));
	log_init(LOG_JSON, level);
	c->f = tmpfile();
	cr_assert_not_null(c->f);
	fflush(stderr);
	c->saved = dup(STDERR_FILENO);
	dup2(fileno(c->f), STDERR_FILENO);
}

static void
cap_end(struct capture *c)
{
	size_t n;
	char  *p;

	fflush(stderr);
	dup2(c->saved, STDERR_FILENO);
	close(c->saved);
	rewind(c->f);
	n = fread(c->text, 1, sizeof(c->text) - 1, c->f);
	c->text[n] = '\0';
	fclose(c->f);
	for (p = c->text; (p = strchr(p, '\n')) != NULL; p++)
		c->lines++;
}

Test(credsrc, registration_defines_what_is_expected)
{
	struct credstore      *st = credstore_new();
	struct credsrc        *cs = credsrc_new(st);
	struct credsrc_source *ca, *tls;
	char                   err[256];

	cr_assert_eq(credsrc_expected(cs), 0);
	cr_assert_null(credsrc_register(cs, 0, "nothing", MS_FILES, err, sizeof(err)));
	cr_assert(strstr(err, "nothing") != NULL, "%s", err);
	ca = reg(cs, CF_GROUP_CA, "Secret ns/ca", MS_CA_SECRET);
	cr_assert_eq(credsrc_expected(cs), CF_GROUP_CA);
	cr_assert_null(credsrc_register(cs, CF_GROUP_CA, "files", MS_FILES, err, sizeof(err)),
	    "two sources cannot own the same fields");
	cr_assert(strstr(err, "another source") != NULL, "%s", err);
	tls = reg(cs, CF_GROUP_TLS, "files", MS_FILES);
	cr_assert_eq(credsrc_expected(cs), ALL);
	cr_assert_neq(ca, tls);
	credsrc_free(cs);
	credstore_free(st);
}

Test(credsrc, no_registration_after_the_first_delivery)
{
	struct credstore      *st = credstore_new();
	struct credsrc        *cs = credsrc_new(st);
	struct credsrc_source *ca;
	struct tu_pki          pki;
	struct creds_input     in, cap, tlsp;
	char                   err[512];

	tu_pki_make(&pki, TU_ED25519);
	tu_pki_input(&pki, &in);
	split(&in, &cap, &tlsp);
	ca = reg(cs, CF_GROUP_CA, "Secret ns/ca", MS_CA_SECRET);
	/* Only the CA group is registered: the CA alone is everything expected. */
	cr_assert_eq(credsrc_submit(ca, &cap, "1", err, sizeof(err)), CREDSRC_INVALID,
	    "a CA without a serving pair cannot validate");
	cr_assert_null(credsrc_register(cs, CF_GROUP_TLS, "files", MS_FILES, err, sizeof(err)));
	cr_assert(strstr(err, "after the first delivery") != NULL, "%s", err);
	creds_input_free(&in);
	creds_input_free(&cap);
	creds_input_free(&tlsp);
	credsrc_free(cs);
	credstore_free(st);
	tu_pki_free(&pki);
}

Test(credsrc, keeps_last_good_and_skips_unchanged)
{
	struct credstore      *st = credstore_new();
	struct credsrc        *cs = credsrc_new(st);
	struct credsrc_source *files = reg(cs, ALL, "files", MS_FILES);
	struct tu_pki          pki;
	struct creds_input     in;
	struct creds          *c;
	char                   err[512];

	tu_pki_make(&pki, TU_ED25519);
	tu_pki_input(&pki, &in);
	cr_assert_eq(
	    credsrc_submit(files, &in, NULL, err, sizeof(err)), CREDSRC_PUBLISHED, "%s", err);
	cr_assert_eq(credstore_generation(st), 1);
	cr_assert_eq(credsrc_submit(files, &in, NULL, err, sizeof(err)), CREDSRC_UNCHANGED);
	cr_assert_eq(credstore_generation(st), 1);
	/* A broken key: refused, generation 1 still serves. */
	creds_input_set(&in, CF_CA_KEY, "junk", 4, "CA_KEY_PATH (t)");
	cr_assert_eq(credsrc_submit(files, &in, NULL, err, sizeof(err)), CREDSRC_INVALID);
	cr_assert(strstr(err, "CA_KEY_PATH (t)") != NULL, "%s", err);
	cr_assert_eq(credstore_generation(st), 1);
	c = credstore_acquire(st);
	cr_assert_not_null(c);
	creds_release(c);
	/* A new token: generation 2. */
	creds_input_set(&in, CF_CA_KEY, pki.ca_key_pem, strlen(pki.ca_key_pem), "CA_KEY_PATH (t)");
	creds_input_set(&in, CF_TOKEN, "zzzzzz.0123456789abcdef", 23, "TOKEN_PATH (t)");
	cr_assert_eq(
	    credsrc_submit(files, &in, NULL, err, sizeof(err)), CREDSRC_PUBLISHED, "%s", err);
	cr_assert_eq(credstore_generation(st), 2);
	c = credstore_acquire(st);
	cr_assert(creds_token_ok(c, "zzzzzz.0123456789abcdef", 23));
	creds_release(c);
	/* SIGHUP: the same bytes are built and published again. */
	credsrc_invalidate(files);
	cr_assert_eq(
	    credsrc_submit(files, &in, NULL, err, sizeof(err)), CREDSRC_PUBLISHED, "%s", err);
	cr_assert_eq(credstore_generation(st), 3);
	creds_input_free(&in);
	credsrc_free(cs);
	credstore_free(st);
	tu_pki_free(&pki);
}

Test(credsrc, waits_for_every_source)
{
	struct credstore      *st = credstore_new();
	struct credsrc        *cs = credsrc_new(st);
	struct credsrc_source *sca = reg(cs, CF_GROUP_CA, "Secret a/ca", MS_CA_SECRET);
	struct credsrc_source *stls = reg(cs, CF_GROUP_TLS, "Secret a/tls", MS_TLS_SECRET);
	struct tu_pki          pki;
	struct creds_input     in, ca, tls;
	struct capture         cap;
	char                   err[512];

	tu_pki_make(&pki, TU_P256);
	tu_pki_input(&pki, &in);
	split(&in, &ca, &tls);
	cap_begin(&cap, LOG_INFO);
	cr_assert_eq(credsrc_submit(stls, &tls, "7", err, sizeof(err)), CREDSRC_PENDING);
	cap_end(&cap);
	cr_assert_eq(cap.lines, 1, "one line: %s", cap.text);
	cr_assert(strstr(cap.text, "\"msg\":\"credentials pending\"") != NULL, "%s", cap.text);
	cr_assert(strstr(cap.text, "\"waiting_for\":\"Secret a/ca\"") != NULL, "%s", cap.text);
	/* The same parts again (a rescan) while still waiting: debug only, not every 30 s at info. */
	cap_begin(&cap, LOG_INFO);
	cr_assert_eq(credsrc_submit(stls, &tls, NULL, err, sizeof(err)), CREDSRC_PENDING);
	cap_end(&cap);
	cr_assert_eq(cap.lines, 0, "%s", cap.text);
	cap_begin(&cap, LOG_DEBUG);
	cr_assert_eq(credsrc_submit(stls, &tls, NULL, err, sizeof(err)), CREDSRC_PENDING);
	cap_end(&cap);
	cr_assert_eq(cap.lines, 1, "%s", cap.text);
	cr_assert_eq(credstore_generation(st), 0);
	cr_assert_eq(credsrc_submit(sca, &ca, "8", err, sizeof(err)), CREDSRC_PUBLISHED, "%s", err);
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
	struct credstore      *st = credstore_new();
	struct credsrc        *cs = credsrc_new(st);
	struct credsrc_source *sca = reg(cs, CF_GROUP_CA, "Secret ns/ca", MS_CA_SECRET);
	struct credsrc_source *stls = reg(cs, CF_GROUP_TLS, "Secret ns/serving", MS_TLS_SECRET);
	struct tu_pki          pki;
	struct creds_input     in;
	struct seen_rec        seen = { .n = 0 };
	X509                  *old;
	char                  *oldpem, err[512];

	tu_pki_make(&pki, TU_ED25519);
	old = tu_leaf(pki.ca, pki.ca_key, X509_get0_pubkey(pki.tls), "127.0.0.1", -7200, -3600);
	oldpem = tu_cert_pem(old);
	tu_pki_input(&pki, &in);
	creds_input_set(&in, CF_TLS_CERT, oldpem, strlen(oldpem), "Secret ns/serving key tls.crt");
	audit_set_sink(sink, &seen);
	cr_assert_eq(credsrc_submit(stls, &in, "3", err, sizeof(err)), CREDSRC_PENDING);
	cr_assert_eq(credsrc_submit(sca, &in, "4", err, sizeof(err)), CREDSRC_INVALID);
	audit_set_sink(NULL, NULL);
	cr_assert_eq(seen.n, 1);
	cr_assert_eq(seen.kind[0], AK_CREDS_INVALID);
	cr_assert_str_eq(
	    seen.related[0], "Secret ns/serving", "not the CA Secret that just arrived");
	cr_assert(
	    strstr(seen.message[0], "Secret ns/serving key tls.crt: serving certificate: expired"),
	    "%s", seen.message[0]);
	cr_assert(strstr(seen.message[0], "(version 4)") != NULL, "%s", seen.message[0]);
	cr_assert(strstr(seen.message[0], "nothing to serve yet") != NULL, "%s", seen.message[0]);
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
	struct credstore      *st = credstore_new();
	struct credsrc        *cs = credsrc_new(st);
	struct credsrc_source *src = reg(cs, ALL, "Secret ns/ca", MS_CA_SECRET);
	struct tu_pki          pki;
	struct creds_input     in;
	struct seen_rec        seen = { .n = 0 };
	char                   err[512];

	tu_pki_make(&pki, TU_ED25519);
	tu_pki_input(&pki, &in);
	creds_input_set(&in, CF_TOKEN, "tooshort", 8, "Secret ns/ca key token");
	audit_set_sink(sink, &seen);
	cr_assert_eq(credsrc_submit(src, &in, "1", err, sizeof(err)), CREDSRC_PUBLISHED, "%s", err);
	cr_assert_eq(credsrc_submit(src, &in, "2", err, sizeof(err)), CREDSRC_UNCHANGED);
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

/*
 * A rotation is one log line ("credentials published", saying what changed)
 * and one CredentialsRotated record for the Event sink, never the token.
 */
Test(credsrc, rotation_is_one_line_and_one_event)
{
	struct credstore      *st = credstore_new();
	struct credsrc        *cs = credsrc_new(st);
	struct credsrc_source *files = reg(cs, ALL, "files", MS_FILES);
	struct tu_pki          pki;
	struct creds_input     in;
	struct seen_rec        seen = { .n = 0 };
	struct capture         cap;
	char                   err[512];

	tu_pki_make(&pki, TU_ED25519);
	tu_pki_input(&pki, &in);
	cr_assert_eq(
	    credsrc_submit(files, &in, NULL, err, sizeof(err)), CREDSRC_PUBLISHED, "%s", err);
	creds_input_set(&in, CF_TOKEN, "qqqqqq.0123456789abcdef", 23, "TOKEN_PATH (t)");
	audit_set_sink(sink, &seen);
	cap_begin(&cap, LOG_INFO);
	cr_assert_eq(
	    credsrc_submit(files, &in, NULL, err, sizeof(err)), CREDSRC_PUBLISHED, "%s", err);
	cap_end(&cap);
	audit_set_sink(NULL, NULL);
	cr_assert_eq(cap.lines, 1, "one line per rotation: %s", cap.text);
	cr_assert(strstr(cap.text, "\"msg\":\"credentials published\",\"generation\":2,") != NULL,
	    "%s", cap.text);
	cr_assert(
	    strstr(cap.text, "\"reason\":\"CredentialsRotated\",\"changed\":\"token\"") != NULL,
	    "%s", cap.text);
	cr_assert(strstr(cap.text, "qqqqqq") == NULL, "the token leaked: %s", cap.text);
	cr_assert_eq(seen.n, 1, "one Event per rotation");
	cr_assert_eq(seen.kind[0], AK_CREDS_ROTATED);
	cr_assert_str_eq(seen.related[0], "files");
	cr_assert(strstr(seen.message[0], "changed: token (") != NULL, "%s", seen.message[0]);
	cr_assert(strstr(seen.message[0], "qqqqqq") == NULL, "%s", seen.message[0]);
	creds_input_free(&in);
	credsrc_free(cs);
	credstore_free(st);
	tu_pki_free(&pki);
}

/* A refusal is one WARN line and one CredentialsInvalid record; nothing else logs it. */
Test(credsrc, refusal_is_one_line_and_one_event)
{
	struct credstore      *st = credstore_new();
	struct credsrc        *cs = credsrc_new(st);
	struct credsrc_source *src = reg(cs, ALL, "Secret ns/ca", MS_CA_SECRET);
	struct tu_pki          pki;
	struct creds_input     in;
	struct seen_rec        seen = { .n = 0 };
	struct capture         cap;
	char                   err[512];

	tu_pki_make(&pki, TU_ED25519);
	tu_pki_input(&pki, &in);
	cr_assert_eq(
	    credsrc_submit(src, &in, "10", err, sizeof(err)), CREDSRC_PUBLISHED, "%s", err);
	creds_input_set(&in, CF_CA_KEY, "garbage", 7, "Secret ns/ca key tls.key");
	audit_set_sink(sink, &seen);
	cap_begin(&cap, LOG_DEBUG);
	cr_assert_eq(credsrc_submit(src, &in, "11", err, sizeof(err)), CREDSRC_INVALID);
	cap_end(&cap);
	audit_set_sink(NULL, NULL);
	cr_assert_eq(cap.lines, 1, "one line per refusal: %s", cap.text);
	cr_assert(
	    strstr(cap.text,
		"\"level\":\"warn\",\"msg\":\"credentials\",\"reason\":\"CredentialsInvalid\"") !=
		NULL,
	    "%s", cap.text);
	cr_assert(strstr(cap.text, "still serving the last good ones") != NULL, "%s", cap.text);
	cr_assert(strstr(cap.text, "(version 11)") != NULL, "%s", cap.text);
	cr_assert(strstr(cap.text, "garbage") == NULL, "%s", cap.text);
	cr_assert_eq(seen.n, 1);
	cr_assert_eq(seen.kind[0], AK_CREDS_INVALID);
	cr_assert_str_eq(seen.related[0], "Secret ns/ca");
	cr_assert_eq(credstore_generation(st), 1);
	/* An unchanged new version: one info line; a rescan without a version: debug only. */
	creds_input_set(
	    &in, CF_CA_KEY, pki.ca_key_pem, strlen(pki.ca_key_pem), "Secret ns/ca key tls.key");
	cap_begin(&cap, LOG_INFO);
	cr_assert_eq(credsrc_submit(src, &in, "12", err, sizeof(err)), CREDSRC_UNCHANGED);
	cr_assert_eq(credsrc_submit(src, &in, NULL, err, sizeof(err)), CREDSRC_UNCHANGED);
	cap_end(&cap);
	cr_assert_eq(cap.lines, 1, "%s", cap.text);
	cr_assert(strstr(cap.text,
		      "\"msg\":\"credentials unchanged\",\"source\":\"Secret ns/ca\","
		      "\"version\":\"12\"") != NULL,
	    "%s", cap.text);
	creds_input_free(&in);
	credsrc_free(cs);
	credstore_free(st);
	tu_pki_free(&pki);
}

static int
gauge(const char *source, int want)
{
	struct sbuf m;
	char        line[200];
	int         found;

	snprintf(line, sizeof(line),
	    "\ntalos_csr_signer_credential_last_reload_success{source=\"%s\"} %d\n", source, want);
	sbuf_init(&m, 1 << 20);
	cr_assert_eq(metrics_render(&m), 0);
	cr_assert_eq(sbuf_add(&m, "", 1), 0);
	found = strstr((const char *)m.data, line) != NULL;
	sbuf_free(&m);
	return found;
}

/* A source that cannot deliver (undecodable, deleted, missing) is reported by the assembler. */
Test(credsrc, faults_are_reported_once_each)
{
	struct credstore      *st = credstore_new();
	struct credsrc        *cs = credsrc_new(st);
	struct credsrc_source *sca = reg(cs, CF_GROUP_CA, "Secret ns/ca", MS_CA_SECRET);
	struct credsrc_source *stls = reg(cs, CF_GROUP_TLS, "Secret ns/tls", MS_TLS_SECRET);
	struct tu_pki          pki;
	struct creds_input     in, ca, tls;
	struct seen_rec        seen = { .n = 0 };
	struct capture         cap;
	char                   err[512], waiting[CREDSTORE_WAITING_MAX];

	tu_pki_make(&pki, TU_P256);
	tu_pki_input(&pki, &in);
	split(&in, &ca, &tls);
	audit_set_sink(sink, &seen);
	/* Before anything serves: the serving Secret is missing. */
	cap_begin(&cap, LOG_INFO);
	credsrc_fault(stls, CREDSRC_MISSING, NULL, NULL);
	cap_end(&cap);
	cr_assert_eq(cap.lines, 1, "%s", cap.text);
	cr_assert_eq(seen.n, 1);
	cr_assert_eq(seen.kind[0], AK_CREDS_INVALID);
	cr_assert_str_eq(seen.related[0], "Secret ns/tls");
	cr_assert(strstr(seen.message[0], "Secret ns/tls not found; waiting for it") != NULL, "%s",
	    seen.message[0]);
	credstore_waiting(st, waiting, sizeof(waiting));
	cr_assert(strstr(waiting, "waiting for Secret ns/tls: not found") != NULL, "%s", waiting);
	cr_assert(gauge("tls_secret", 0));
	/* It appears; both deliver; generation 1 serves. */
	cr_assert_eq(credsrc_submit(stls, &tls, "5", err, sizeof(err)), CREDSRC_PENDING);
	cr_assert_eq(credsrc_submit(sca, &ca, "6", err, sizeof(err)), CREDSRC_PUBLISHED, "%s", err);
	cr_assert(gauge("tls_secret", 1) && gauge("ca_secret", 1));
	/* The CA Secret cannot be decoded: one record naming the version, still serving. */
	cap_begin(&cap, LOG_INFO);
	credsrc_fault(sca, CREDSRC_UNREADABLE, "9", "Secret ns/ca: key token is missing or empty");
	cap_end(&cap);
	cr_assert_eq(cap.lines, 1, "%s", cap.text);
	cr_assert_eq(seen.n, 2);
	cr_assert(strstr(seen.message[1],
		      "new credentials refused (version 9), still serving the last good ones: "
		      "Secret ns/ca: key token is missing or empty") != NULL,
	    "%s", seen.message[1]);
	cr_assert(gauge("ca_secret", 0));
	/* Then deleted. */
	credsrc_fault(sca, CREDSRC_DELETED, "10", NULL);
	cr_assert_eq(seen.n, 3);
	cr_assert_str_eq(seen.related[2], "Secret ns/ca");
	cr_assert(strstr(seen.message[2],
		      "Secret ns/ca was deleted; still serving the last good credentials") != NULL,
	    "%s", seen.message[2]);
	cr_assert_eq(credstore_generation(st), 1, "nothing replaced the last good snapshot");
	audit_set_sink(NULL, NULL);
	creds_input_free(&in);
	creds_input_free(&ca);
	creds_input_free(&tls);
	credsrc_free(cs);
	credstore_free(st);
	tu_pki_free(&pki);
}
