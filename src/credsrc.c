/*
 * credsrc.c: the registrations, overlaying submitted parts on the last good
 * set, validating, publishing, and reporting every credential outcome.
 *
 * DESIGN
 * Each source registers its groups once at start-up; "expected" is their
 * union, so no caller passes it. One submission or fault gives one log record
 * and at most one Event: a publication logs "credentials published" (and,
 * from generation 2, posts CredentialsRotated without a second line); a
 * refusal or a source that could not deliver is one CredentialsInvalid record;
 * "pending" and "unchanged" are one plain record each; each warning of a
 * published set is one CredentialsWarning record. The per-source reload
 * gauges and the reload counters are set here too.
 *
 * Threads: any source thread (file watcher, Kubernetes watcher) or main at
 * start-up. A mutex serialises submissions; building happens under it, which
 * is fine: submissions are rare and the store's readers never take it.
 * Registration happens on main before any source thread starts.
 * Owns: the registrations, the last good parts (scrubbed on free).
 */
#include "credsrc.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "audit.h"
#include "credstore.h"
#include "log.h"
#include "metrics.h"

#define CREDSRC_MAX_SOURCES 4 /* files, CA Secret, serving Secret: one spare */

struct credsrc_source {
	struct credsrc    *cs;
	unsigned           groups;
	char               label[160];
	enum metric_source metric;
};

struct credsrc {
	pthread_mutex_t       mtx;
	struct credstore     *store;
	struct credsrc_source src[CREDSRC_MAX_SOURCES];
	int                   nsrc;
	unsigned              expected;  /* union of the registered groups */
	int                   submitted; /* registration is closed */
	struct creds_input    good;      /* parts of the serving snapshot */
	struct creds_input    pending;   /* parts delivered before the first publish */
	unsigned              delivered;
	unsigned char         serving_digest[SHA256_DIGEST_LENGTH];
	int                   have_serving;
};

struct credsrc *
credsrc_new(struct credstore *store)
{
	struct credsrc *cs;

	if ((cs = calloc(1, sizeof(*cs))) == NULL)
		return NULL;
	pthread_mutex_init(&cs->mtx, NULL);
	cs->store = store;
	creds_input_init(&cs->good);
	creds_input_init(&cs->pending);
	return cs;
}

void
credsrc_free(struct credsrc *cs)
{
	if (cs == NULL)
		return;
	creds_input_free(&cs->good);
	creds_input_free(&cs->pending);
	pthread_mutex_destroy(&cs->mtx);
	free(cs);
}

struct credsrc_source *
credsrc_register(struct credsrc *cs, unsigned groups, const char *label, enum metric_source metric,
    char *err, size_t errlen)
{
	struct credsrc_source *s = NULL;

	pthread_mutex_lock(&cs->mtx);
	if (groups == 0 || (groups & ~(unsigned)CF_GROUP_ALL) != 0)
		snprintf(err, errlen, "%s: delivers no known credential", label);
	else if ((groups & cs->expected) != 0)
		snprintf(
		    err, errlen, "%s: another source already delivers these credentials", label);
	else if (cs->submitted)
		snprintf(err, errlen, "%s: registered after the first delivery", label);
	else if (cs->nsrc == CREDSRC_MAX_SOURCES)
		snprintf(err, errlen, "%s: too many credential sources", label);
	else {
		s = &cs->src[cs->nsrc++];
		s->cs = cs;
		s->groups = groups;
		s->metric = metric;
		snprintf(s->label, sizeof(s->label), "%s", label);
		cs->expected |= groups;
	}
	pthread_mutex_unlock(&cs->mtx);
	return s;
}

unsigned
credsrc_expected(const struct credsrc *cs)
{
	return cs->expected; /* written only before any other thread starts */
}

const char *
credsrc_result_name(enum credsrc_result r)
{
	static const char *const names[CREDSRC__MAX] = {
		[CREDSRC_PUBLISHED] = "published",
		[CREDSRC_UNCHANGED] = "unchanged",
		[CREDSRC_PENDING] = "pending",
		[CREDSRC_INVALID] = "refused",
	};

	return r < CREDSRC__MAX ? names[r] : "unknown";
}

void
credsrc_waiting(struct credsrc_source *s, const char *reason)
{
	credstore_set_waiting(s->cs->store, reason);
}

void
credsrc_invalidate(struct credsrc_source *s)
{
	pthread_mutex_lock(&s->cs->mtx);
	s->cs->have_serving = 0;
	pthread_mutex_unlock(&s->cs->mtx);
}

/*
 * Names the parts that differ between the serving set and a candidate
 * ("token, serving certificate"), so that a rotation Event says what moved.
 * Compares bytes in constant time (the token is one of them); prints none.
 */
static void
changed_parts(const struct creds_input *old, const struct creds_input *cand, char *buf, size_t len)
{
	static const char *const names[CF__MAX] = {
		[CF_CA_CERT] = "CA certificate",
		[CF_CA_KEY] = "CA key",
		[CF_TOKEN] = "token",
		[CF_ACCEPTED_CAS] = "accepted CAs",
		[CF_ACCEPTED_TOKENS] = "accepted tokens",
		[CF_TLS_CERT] = "serving certificate",
		[CF_TLS_KEY] = "serving key",
	};
	size_t o = 0;
	int    f, n;

	buf[0] = '\0';
	for (f = 0; f < CF__MAX; f++) {
		const struct creds_part *a = &old->part[f], *b = &cand->part[f];

		if (a->present == b->present &&
		    (!a->present ||
			(a->data.len == b->data.len &&
			    CRYPTO_memcmp(a->data.data, b->data.data, a->data.len) == 0)))
			continue;
		n = snprintf(
		    buf + o, len - o, "%s%s", o ? ", " : "", names[f] ? names[f] : "other");
		if (n < 0 || (size_t)n >= len - o)
			break;
		o += (size_t)n;
	}
}

static int
copy_part(struct creds_input *dst, const struct creds_input *src, int f)
{
	const struct creds_part *p = &src->part[f];

	if (!p->present) {
		sbuf_free(&dst->part[f].data);
		sbuf_init(&dst->part[f].data, CREDS_MAX_PART);
		dst->part[f].present = 0;
		snprintf(dst->part[f].origin, sizeof(dst->part[f].origin), "%s", p->origin);
		return 0;
	}
	return creds_input_set(dst, (enum creds_field)f, p->data.data, p->data.len, p->origin);
}

/* Warnings of one validation, kept until the snapshot is published. */
struct notes {
	char   text[4][512];
	size_t n;
};

static void
keep_note(void *arg, const char *msg)
{
	struct notes *ns = arg;

	if (ns->n < sizeof(ns->text) / sizeof(ns->text[0]))
		snprintf(ns->text[ns->n++], sizeof(ns->text[0]), "%s", msg);
}

/*
 * The source at fault for a refusal: the registered owner of the part whose
 * origin the error names, which is not always the source that just delivered
 * (an expired serving certificate noticed when the CA Secret arrives).
 */
static const char *
at_fault(const struct credsrc *cs, const struct creds_input *in, const char *err,
    const struct credsrc_source *delivered)
{
	const char *o;
	int         f, i;

	for (f = 0; f < CF__MAX; f++) {
		o = in->part[f].origin;
		if (*o == '\0' || strncmp(err, o, strlen(o)) != 0)
			continue;
		for (i = 0; i < cs->nsrc; i++)
			if (cs->src[i].groups & CF_MASK(f))
				return cs->src[i].label;
	}
	return delivered->label;
}

/* A refusal or a failed delivery: one CredentialsInvalid record, counted. */
static void
refused(const struct credsrc_source *s, const char *related, const char *message)
{
	struct audit_rec ar;

	metrics_inc(MC_RELOAD_FAIL);
	metrics_reload(s->metric, 0, (long long)time(NULL));
	memset(&ar, 0, sizeof(ar));
	ar.kind = AK_CREDS_INVALID;
	ar.message = message;
	ar.related = related;
	audit_emit(&ar);
}

/* Which registered sources have not delivered yet ("Secret a/b, files"). */
static void
waiting_for(const struct credsrc *cs, char *buf, size_t len)
{
	size_t o = 0;
	int    i, n;

	buf[0] = '\0';
	for (i = 0; i < cs->nsrc; i++) {
		if ((cs->delivered & cs->src[i].groups) == cs->src[i].groups)
			continue;
		n = snprintf(buf + o, len - o, "%s%s", o ? ", " : "", cs->src[i].label);
		if (n < 0 || (size_t)n >= len - o)
			break;
		o += (size_t)n;
	}
}

/* 1 if `a` and `b` hold the same bytes in every field of `groups`. */
static int
same_parts(const struct creds_input *a, const struct creds_input *b, unsigned groups)
{
	const struct creds_part *p, *q;
	int                      f;

	for (f = 0; f < CF__MAX; f++) {
		if (!(groups & CF_MASK(f)))
			continue;
		p = &a->part[f];
		q = &b->part[f];
		if (p->present != q->present)
			return 0;
		if (p->present &&
		    (p->data.len != q->data.len ||
			CRYPTO_memcmp(p->data.data, q->data.data, p->data.len) != 0))
			return 0;
	}
	return 1;
}

/*
 * Logs a result that changes nothing: one record, at debug when it is
 * routine (a rescan that found what it found last time), else at info.
 */
static void
quiet_outcome(const struct credsrc *cs, const struct credsrc_source *s, enum credsrc_result r,
    const char *version, int routine)
{
	struct log_field lf[3];
	char             wait[256];
	size_t           n = 0;

	lf[n++] = (struct log_field)LF_S("source", s->label);
	if (version != NULL)
		lf[n++] = (struct log_field)LF_S("version", version);
	if (r == CREDSRC_PENDING) {
		waiting_for(cs, wait, sizeof(wait));
		lf[n++] = (struct log_field)LF_S("waiting_for", wait);
	}
	log_record(routine ? LOG_DEBUG : LOG_INFO,
	    r == CREDSRC_PENDING ? "credentials pending" : "credentials unchanged", lf, n);
}

/* Logs and audits a publication; c is the published snapshot (still referenced). */
static void
published(const struct credsrc *cs, const struct credsrc_source *s, const struct creds *c,
    uint64_t gen, const struct creds_input *cand, const char *version, const struct notes *notes)
{
	struct audit_rec ar;
	struct log_field lf[10];
	char             changed[160], note[512];
	size_t           n = 0, i;

	changed[0] = '\0';
	if (gen > 1)
		changed_parts(&cs->good, cand, changed, sizeof(changed));
	lf[n++] = (struct log_field)LF_I("generation", gen);
	lf[n++] = (struct log_field)LF_S("source", s->label);
	if (version != NULL)
		lf[n++] = (struct log_field)LF_S("version", version);
	if (gen > 1) {
		lf[n++] = (struct log_field)LF_S("reason", audit_reason(AK_CREDS_ROTATED));
		lf[n++] = (struct log_field)LF_S("changed", changed[0] ? changed : "nothing");
	}
	lf[n++] = (struct log_field)LF_S("ca_spki_sha256", c->ca_fp);
	lf[n++] = (struct log_field)LF_S("serving_spki_sha256", c->tls_fp);
	lf[n++] = (struct log_field)LF_I("ca_not_after", c->ca_not_after);
	lf[n++] = (struct log_field)LF_I("serving_not_after", c->tls_not_after);
	log_record(LOG_INFO, "credentials published", lf, n);
	if (gen > 1) {
		/* The line above is the log record; the Event says the same. */
		memset(&ar, 0, sizeof(ar));
		ar.kind = AK_CREDS_ROTATED;
		snprintf(note, sizeof(note),
		    "credentials generation %llu in use, changed: %s "
		    "(CA SPKI sha256 %.16s, serving SPKI sha256 %.16s)",
		    (unsigned long long)gen, changed[0] ? changed : "nothing", c->ca_fp, c->tls_fp);
		ar.message = note;
		ar.related = s->label;
		audit_post(&ar);
	}
	/* Served anyway, but an operator should look: a record and an Event each, a metric. */
	if (c->odd_tokens > 0)
		metrics_inc(MC_TOKEN_FORMAT);
	for (i = 0; i < notes->n; i++) {
		memset(&ar, 0, sizeof(ar));
		ar.kind = AK_CREDS_WARNING;
		ar.message = notes->text[i];
		ar.related = at_fault(cs, cand, notes->text[i], s);
		audit_emit(&ar);
	}
}

enum credsrc_result
credsrc_submit(struct credsrc_source *s, const struct creds_input *in, const char *version,
    char *err, size_t errlen)
{
	struct credsrc           *cs = s->cs;
	struct creds_input        cand;
	struct creds             *c = NULL;
	unsigned char             digest[SHA256_DIGEST_LENGTH];
	const struct creds_input *base;
	enum credsrc_result       res;
	char                      note[640], vers[160];
	struct notes              notes;
	uint64_t                  gen;
	int                       f, again;

	err[0] = '\0';
	vers[0] = '\0';
	if (version != NULL)
		snprintf(vers, sizeof(vers), " (version %s)", version);
	creds_input_init(&cand);
	pthread_mutex_lock(&cs->mtx);
	cs->submitted = 1;
	base = cs->have_serving || credstore_generation(cs->store) > 0 ? &cs->good : &cs->pending;
	for (f = 0; f < CF__MAX; f++) {
		if (copy_part(&cand, (s->groups & CF_MASK(f)) ? in : base, f) == -1) {
			snprintf(err, errlen, "out of memory");
			res = CREDSRC_INVALID;
			goto out;
		}
	}
	/* The same parts again while waiting for the others (a rescan): routine. */
	again = (cs->delivered & s->groups) == s->groups && same_parts(&cs->pending, in, s->groups);
	cs->delivered |= s->groups;
	if (base == &cs->pending) {
		/* Before the first publish, keep what each source sent. */
		for (f = 0; f < CF__MAX; f++)
			if (s->groups & CF_MASK(f))
				copy_part(&cs->pending, in, f);
	}
	if ((cs->delivered & cs->expected) != cs->expected) {
		res = CREDSRC_PENDING;
		metrics_reload(s->metric, 1, (long long)time(NULL)); /* its part is good so far */
		quiet_outcome(cs, s, res, version, again);
		goto out;
	}
	creds_input_digest(&cand, digest);
	if (cs->have_serving && memcmp(digest, cs->serving_digest, sizeof(digest)) == 0) {
		res = CREDSRC_UNCHANGED;
		if (version != NULL)
			metrics_reload(s->metric, 1, (long long)time(NULL));
		else
			metrics_reload_unchanged(s->metric, (long long)time(NULL));
		/* A rescan that finds nothing new is routine; a new version that changes nothing is news. */
		quiet_outcome(cs, s, res, version, version == NULL);
		goto out;
	}
	memset(&notes, 0, sizeof(notes));
	if ((c = creds_validate(&cand, (long long)time(NULL), keep_note, &notes, err, errlen)) ==
	    NULL) {
		snprintf(note, sizeof(note), "new credentials refused%s, %s: %s", vers,
		    credstore_generation(cs->store) > 0 ? "still serving the last good ones"
							: "nothing to serve yet",
		    err);
		refused(s, at_fault(cs, &cand, err, s), note);
		res = CREDSRC_INVALID;
		goto out;
	}
	creds_ref(c); /* kept for the report below; the store owns the first reference */
	gen = credstore_publish(cs->store, c);
	metrics_set_creds(gen, c->ca_not_after, c->tls_not_after);
	metrics_inc(MC_RELOAD_OK);
	metrics_reload(s->metric, 1, (long long)time(NULL));
	published(cs, s, c, gen, &cand, version, &notes);
	for (f = 0; f < CF__MAX; f++)
		copy_part(&cs->good, &cand, f);
	memcpy(cs->serving_digest, digest, sizeof(digest));
	cs->have_serving = 1;
	res = CREDSRC_PUBLISHED;
out:
	pthread_mutex_unlock(&cs->mtx);
	creds_release(c);
	creds_input_free(&cand);
	return res;
}

void
credsrc_fault(
    struct credsrc_source *s, enum credsrc_fault fault, const char *version, const char *why)
{
	struct credsrc *cs = s->cs;
	char            note[640], vers[160];
	int             serving;

	vers[0] = '\0';
	if (version != NULL)
		snprintf(vers, sizeof(vers), " (version %s)", version);
	pthread_mutex_lock(&cs->mtx);
	serving = credstore_generation(cs->store) > 0;
	switch (fault) {
	case CREDSRC_UNREADABLE:
		snprintf(note, sizeof(note), "new credentials refused%s, %s: %s", vers,
		    serving ? "still serving the last good ones" : "nothing to serve yet",
		    why != NULL ? why : "unreadable");
		break;
	case CREDSRC_DELETED:
		snprintf(note, sizeof(note), "%s was deleted; %s", s->label,
		    serving ? "still serving the last good credentials" : "nothing to serve yet");
		break;
	case CREDSRC_MISSING:
	default:
		snprintf(note, sizeof(note),
		    "%s not found; waiting for it (the last good credentials, if any, keep "
		    "serving)",
		    s->label);
		break;
	}
	refused(s, s->label, note);
	pthread_mutex_unlock(&cs->mtx);
	if (fault == CREDSRC_MISSING) {
		snprintf(note, sizeof(note),
		    "waiting for %s: not found (check the name and the namespace)", s->label);
		credstore_set_waiting(cs->store, note);
	}
}
