/*
 * credsrc.c: overlaying submitted parts on the last good set, validating,
 * publishing.
 *
 * Threads: any source thread (file watcher, Kubernetes watcher) or main at
 * start-up. A mutex serialises submissions; building happens under it, which
 * is fine: submissions are rare and the store's readers never take it.
 * Owns: the last good parts (scrubbed on free).
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

struct credsrc {
	pthread_mutex_t    mtx;
	struct credstore  *store;
	struct creds_input good;    /* parts of the serving snapshot */
	struct creds_input pending; /* parts delivered before the first publish */
	unsigned           delivered;
	unsigned char      serving_digest[SHA256_DIGEST_LENGTH];
	int                have_serving;
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

void
credsrc_set_waiting(struct credsrc *cs, const char *reason)
{
	credstore_set_waiting(cs->store, reason);
}

void
credsrc_invalidate(struct credsrc *cs)
{
	pthread_mutex_lock(&cs->mtx);
	cs->have_serving = 0;
	pthread_mutex_unlock(&cs->mtx);
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
 * The source at fault for a refusal: the Secret (or setting) whose part the
 * error names, which is not always the one that was just delivered (an
 * expired serving certificate noticed when the CA Secret arrives).
 */
static const char *
at_fault(
    const struct creds_input *in, const char *err, const char *delivered, char *buf, size_t len)
{
	const char *o, *k;
	int         f;

	for (f = 0; f < CF__MAX; f++) {
		o = in->part[f].origin;
		if (*o == '\0' || strncmp(err, o, strlen(o)) != 0)
			continue;
		if (strncmp(o, "Secret ", 7) == 0 && (k = strstr(o, " key ")) != NULL)
			snprintf(buf, len, "%.*s", (int)(k - o), o);
		else
			snprintf(buf, len, "%s", o);
		return buf;
	}
	return delivered;
}

enum credsrc_result
credsrc_submit(struct credsrc *cs, unsigned expect, unsigned mask, const struct creds_input *in,
    const char *related, char *err, size_t errlen)
{
	struct creds_input        cand;
	struct creds             *c = NULL;
	struct audit_rec          ar;
	unsigned char             digest[SHA256_DIGEST_LENGTH];
	const struct creds_input *base;
	enum credsrc_result       res;
	char                      note[512], fault[160], changed[160];
	struct notes              notes;
	size_t                    i;
	uint64_t                  gen;
	int                       f;

	err[0] = '\0';
	creds_input_init(&cand);
	pthread_mutex_lock(&cs->mtx);
	base = cs->have_serving || credstore_generation(cs->store) > 0 ? &cs->good : &cs->pending;
	for (f = 0; f < CF__MAX; f++) {
		if (copy_part(&cand, (mask & CF_MASK(f)) ? in : base, f) == -1) {
			snprintf(err, errlen, "out of memory");
			res = CREDSRC_INVALID;
			goto out;
		}
	}
	cs->delivered |= mask;
	if (base == &cs->pending) {
		/* Before the first publish, keep what each source sent. */
		for (f = 0; f < CF__MAX; f++)
			if (mask & CF_MASK(f))
				copy_part(&cs->pending, in, f);
	}
	if ((cs->delivered & expect) != expect) {
		res = CREDSRC_PENDING;
		goto out;
	}
	creds_input_digest(&cand, digest);
	if (cs->have_serving && memcmp(digest, cs->serving_digest, sizeof(digest)) == 0) {
		res = CREDSRC_UNCHANGED;
		goto out;
	}
	memset(&notes, 0, sizeof(notes));
	if ((c = creds_validate(&cand, (long long)time(NULL), keep_note, &notes, err, errlen)) ==
	    NULL) {
		metrics_inc(MC_RELOAD_FAIL);
		memset(&ar, 0, sizeof(ar));
		ar.kind = AK_CREDS_INVALID;
		snprintf(note, sizeof(note), "new credentials refused, %s: %s",
		    credstore_generation(cs->store) > 0 ? "still serving the last good ones"
							: "nothing to serve yet",
		    err);
		ar.message = note;
		ar.related = at_fault(&cand, err, related, fault, sizeof(fault));
		audit_emit(&ar);
		res = CREDSRC_INVALID;
		goto out;
	}
	{
		long long ca_na = c->ca_not_after, tls_na = c->tls_not_after;
		int       odd_tokens = c->odd_tokens;
		char      ca_fp[65], tls_fp[65];

		memcpy(ca_fp, c->ca_fp, sizeof(ca_fp));
		memcpy(tls_fp, c->tls_fp, sizeof(tls_fp));
		gen = credstore_publish(cs->store, c); /* the store owns c now */
		c = NULL;
		metrics_set_creds(gen, ca_na, tls_na);
		metrics_inc(MC_RELOAD_OK);
		{
			struct log_field lf[] = {
				LF_I("generation", gen),
				LF_S("source", related),
				LF_S("ca_spki_sha256", ca_fp),
				LF_S("serving_spki_sha256", tls_fp),
				LF_I("ca_not_after", ca_na),
				LF_I("serving_not_after", tls_na),
			};
			log_record(
			    LOG_INFO, "credentials published", lf, sizeof(lf) / sizeof(lf[0]));
		}
		if (gen > 1) {
			changed_parts(&cs->good, &cand, changed, sizeof(changed));
			memset(&ar, 0, sizeof(ar));
			ar.kind = AK_CREDS_ROTATED;
			snprintf(note, sizeof(note),
			    "credentials generation %llu in use, changed: %s "
			    "(CA SPKI sha256 %.16s, serving SPKI sha256 %.16s)",
			    (unsigned long long)gen, changed[0] ? changed : "nothing", ca_fp,
			    tls_fp);
			ar.message = note;
			ar.related = related;
			audit_emit(&ar);
		}
		/* Served anyway, but an operator should look: log line, Event, metric. */
		if (odd_tokens > 0)
			metrics_inc(MC_TOKEN_FORMAT);
		for (i = 0; i < notes.n; i++) {
			memset(&ar, 0, sizeof(ar));
			ar.kind = AK_CREDS_WARNING;
			ar.message = notes.text[i];
			ar.related = at_fault(&cand, notes.text[i], related, fault, sizeof(fault));
			audit_emit(&ar);
		}
	}
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
