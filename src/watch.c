/*
 * watch.c: the Secret watcher thread and the watch-stream parser.
 *
 * DESIGN
 * One thread (started by watch_start(), stopped by watch_free()) drives one
 * kube_multi with one kube_call per watched Secret, so that both Secrets are
 * followed at once without a thread each. Each target cycles through
 * WATCH_LIST (a LIST with a metadata.name field selector is in flight),
 * WATCH_STREAM (a WATCH is in flight, its bytes fed to the target's parser)
 * and WATCH_BACKOFF (waiting until `due`, then starting `next`). This is
 * client-go's Reflector reduced to one object:
 *   - LIST gives the collection resourceVersion to watch from and the object;
 *   - WATCH carries allowWatchBookmarks and timeoutSeconds random in
 *     [300, 600); every event and bookmark advances the resume point;
 *   - a clean end of stream re-watches at once from the last resourceVersion,
 *     unless the watch lasted under a second with no event (then back off
 *     and relist);
 *   - 410 Gone, as an ERROR event or an HTTP status, relists;
 *   - a transport error or 429 backs off and re-watches; other HTTP errors
 *     back off and relist; a 401 retries once at once (kube.c has marked the
 *     token stale, so the retry re-reads it).
 * Decoding, validation and publishing happen on this thread (secret.c, then
 * credsrc_submit()); a broken Secret never replaces the last good snapshot.
 * Failures are logged once per change of state, not once per retry.
 *
 * Owns: the thread, the multi driver, the calls, the parsers (their line
 * buffers hold base64 secret data and are wiped). Shared with other threads:
 * only the stop and resync flags.
 */
#include "watch.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "audit.h"
#include "config.h"
#include "credsrc.h"
#include "credstore.h"
#include "kube.h"
#include "log.h"
#include "metrics.h"
#include "secret.h"
#include "util.h"

#define WATCH_BACKOFF_MIN_MS   800
#define WATCH_BACKOFF_MAX_MS   30000
#define WATCH_BACKOFF_RESET_MS (2 * 60 * 1000)
#define WATCH_TIMEOUT_MIN_S    300 /* timeoutSeconds in [300, 600) like client-go */
#define WATCH_IDLE_S           200 /* bookmarks come about every minute */
#define WATCH_SHORT_MS         1000
#define WATCH_MAX_TARGETS      2

/* ------------------------------------------------------------------ parser */

struct watch_parser {
	struct sbuf    line;
	watch_event_fn cb;
	void          *arg;
	size_t         events;
};

static const char *const evnames[WATCH_EV__MAX] = {
	[WATCH_ADDED] = "ADDED",
	[WATCH_MODIFIED] = "MODIFIED",
	[WATCH_DELETED] = "DELETED",
	[WATCH_BOOKMARK] = "BOOKMARK",
	[WATCH_ERROR] = "ERROR",
};

const char *
watch_evtype_name(enum watch_evtype t)
{
	return t < WATCH_EV__MAX ? evnames[t] : "UNKNOWN";
}

struct watch_parser *
watch_parser_new(watch_event_fn cb, void *arg)
{
	struct watch_parser *p;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	sbuf_init(&p->line, WATCH_MAX_EVENT);
	p->cb = cb;
	p->arg = arg;
	return p;
}

void
watch_parser_reset(struct watch_parser *p)
{
	sbuf_reset(&p->line);
	p->events = 0;
}

size_t
watch_parser_events(const struct watch_parser *p)
{
	return p->events;
}

void
watch_parser_free(struct watch_parser *p)
{
	if (p == NULL)
		return;
	sbuf_free(&p->line);
	free(p);
}

/* Parses one complete line; 0 or -1. */
static int
parse_line(struct watch_parser *p, const char *s, size_t len)
{
	cJSON       *doc = NULL;
	const cJSON *type, *obj;
	int          t, rc = -1;

	while (len > 0 && (s[len - 1] == '\r' || s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	if (len == 0)
		return 0;
	if ((doc = cJSON_ParseWithLength(s, len)) == NULL) {
		log_warnx("watch: stream carries a line that is not JSON (%zu bytes)", len);
		goto out;
	}
	type = cJSON_GetObjectItemCaseSensitive(doc, "type");
	obj = cJSON_GetObjectItemCaseSensitive(doc, "object");
	if (!cJSON_IsString(type) || !cJSON_IsObject(obj)) {
		log_warnx("watch: event without type or object");
		goto out;
	}
	for (t = 0; t < WATCH_EV__MAX; t++)
		if (strcmp(type->valuestring, evnames[t]) == 0)
			break;
	if (t == WATCH_EV__MAX) {
		log_warnx("watch: unknown event type");
		goto out;
	}
	p->events++;
	if (p->cb((enum watch_evtype)t, obj, p->arg) == -1)
		goto out;
	rc = 0;
out:
	secret_json_free(doc);
	return rc;
}

int
watch_feed(struct watch_parser *p, const void *buf, size_t len)
{
	const char *s = buf, *nl;
	size_t      n;

	while (len > 0) {
		if ((nl = memchr(s, '\n', len)) == NULL) {
			if (sbuf_add(&p->line, s, len) == -1) {
				log_warnx("watch: event larger than %d bytes", WATCH_MAX_EVENT);
				sbuf_reset(&p->line);
				return -1;
			}
			return 0;
		}
		n = (size_t)(nl - s);
		if (p->line.len == 0) {
			/* The whole line is in this piece: parse it in place. */
			if (parse_line(p, s, n) == -1)
				return -1;
		} else {
			if (sbuf_add(&p->line, s, n) == -1) {
				log_warnx("watch: event larger than %d bytes", WATCH_MAX_EVENT);
				sbuf_reset(&p->line);
				return -1;
			}
			if (parse_line(p, (const char *)p->line.data, p->line.len) == -1) {
				sbuf_reset(&p->line);
				return -1;
			}
			sbuf_reset(&p->line);
		}
		s += n + 1;
		len -= n + 1;
	}
	return 0;
}

/* ----------------------------------------------------------------- watcher */

enum watch_phase { WATCH_LIST, WATCH_STREAM, WATCH_BACKOFF, WATCH__MAX };

struct target {
	struct watch        *w;
	enum secret_kind     kind;
	char                 ns[KUBE_NS_MAX], name[KUBE_NAME_MAX];
	char                 label[KUBE_NS_MAX + KUBE_NAME_MAX + 8]; /* "Secret ns/name" */
	struct kube_call    *call;
	struct watch_parser *parser;

	enum watch_phase phase;
	enum watch_phase next; /* after WATCH_BACKOFF: LIST or STREAM */
	int64_t          due;
	char             rv[128]; /* resume point, opaque */
	int64_t          listed_at, watch_started;
	int              backoff_ms;
	int64_t          last_fail;
	int              retried_401;
	int              watches; /* streams started, for the restart metric */

	/* Set by the event callback during a stream. */
	int gone, stream_err;

	/* What was applied, to skip repeats after a relist. */
	char applied_uid[64], applied_rv[128];
	int  missing;       /* reported as absent */
	char last_err[256]; /* logged failure, to log changes only */
};

struct watch {
	struct kube       *k;
	struct credsrc    *cs;
	unsigned           expect, groups;
	struct target      t[WATCH_MAX_TARGETS];
	int                nt;
	char               desc[2 * (KUBE_NS_MAX + KUBE_NAME_MAX + 10)];
	struct kube_multi *multi;
	pthread_t          thr;
	int                running;
	atomic_int         stop, resync;
	uint64_t           rng;
};

static uint64_t
rnd(struct watch *w)
{
	/* xorshift64*: jitter only, no security use. */
	w->rng ^= w->rng >> 12;
	w->rng ^= w->rng << 25;
	w->rng ^= w->rng >> 27;
	return w->rng * 2685821657736338717ULL;
}

/*
 * Logs a failure only when it differs from the last one of this target, and
 * tells /readyz what the source is waiting for. 1 when it is a new failure.
 */
static int fail_note(struct target *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
fail_note(struct target *t, const char *fmt, ...)
{
	char    msg[256], waiting[CREDSTORE_WAITING_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (strcmp(msg, t->last_err) == 0) {
		log_debug("watch %s: %s", t->label, msg);
		return 0;
	}
	log_warnx("watch %s: %s", t->label, msg);
	snprintf(t->last_err, sizeof(t->last_err), "%s", msg);
	snprintf(waiting, sizeof(waiting), "waiting for %s: %s", t->label, msg);
	credsrc_set_waiting(t->w->cs, waiting);
	return 1;
}

/*
 * A 403 or 404 from the API server: a missing RBAC verb, a wrong namespace
 * or a Secret name typo. Posts a Warning Event naming the Secret and the
 * verb the ServiceAccount needs (once per change; retries back off).
 */
static void
access_failed(struct target *t, const char *verb, long status, const char *why)
{
	struct audit_rec ar;
	char             note[640];

	if (!fail_note(t, "%s: %s", verb, why))
		return;
	if (status == 403)
		snprintf(note, sizeof(note),
		    "cannot %s %s (%s): the ServiceAccount needs the \"%s\" verb on secrets "
		    "in namespace %s; retrying with backoff",
		    verb, t->label, why, verb, t->ns);
	else
		snprintf(note, sizeof(note),
		    "cannot %s %s (%s): check the namespace and the Secret name; retrying with "
		    "backoff",
		    verb, t->label, why);
	memset(&ar, 0, sizeof(ar));
	ar.kind = AK_SECRET_ACCESS;
	ar.message = note;
	ar.related = t->label;
	audit_emit(&ar);
}

static void
healthy(struct target *t)
{
	if (t->last_err[0] != '\0') {
		log_info("watch %s: recovered", t->label);
		t->last_err[0] = '\0';
		credsrc_set_waiting(t->w->cs, "");
	}
	t->retried_401 = 0;
}

/* Schedules `next` after a jittered exponential delay (at least min_ms). */
static void
backoff(struct target *t, enum watch_phase next, long min_ms)
{
	int64_t now = util_mono_ms();
	int     d;

	if (t->backoff_ms == 0 || now - t->last_fail >= WATCH_BACKOFF_RESET_MS)
		t->backoff_ms = WATCH_BACKOFF_MIN_MS;
	else if ((t->backoff_ms *= 2) > WATCH_BACKOFF_MAX_MS)
		t->backoff_ms = WATCH_BACKOFF_MAX_MS;
	t->last_fail = now;
	/* Jitter downwards: [0.75, 1] x the step, so 30 s stays the ceiling. */
	d = t->backoff_ms - (int)(rnd(t->w) % (uint64_t)(t->backoff_ms / 4 + 1));
	if (d < min_ms)
		d = (int)min_ms;
	t->phase = WATCH_BACKOFF;
	t->next = next;
	t->due = now + d;
	log_debug("watch %s: retrying in %d ms", t->label, d);
}

static void
soon(struct target *t, enum watch_phase next)
{
	t->phase = WATCH_BACKOFF;
	t->next = next;
	t->due = util_mono_ms();
}

/* The per-source reload gauge of this target's Secret. */
static void
record(const struct target *t, int ok)
{
	metrics_reload(
	    t->kind == SECRET_CA ? MS_CA_SECRET : MS_TLS_SECRET, ok, (long long)time(NULL));
}

static void
report_invalid(struct target *t, const char *why)
{
	struct audit_rec ar;

	memset(&ar, 0, sizeof(ar));
	ar.kind = AK_CREDS_INVALID;
	ar.message = why;
	ar.related = t->label;
	audit_emit(&ar);
}

/* Decodes and submits one Secret object. */
static void
apply(struct target *t, const cJSON *obj)
{
	struct creds_input  in;
	enum credsrc_result r;
	const char         *rv, *uid;
	char                err[512], note[640];

	secret_meta(obj, NULL, NULL, &rv, &uid);
	if (*rv != '\0' && strcmp(rv, t->applied_rv) == 0 && strcmp(uid, t->applied_uid) == 0)
		return; /* the same object again (a relist) */
	snprintf(t->applied_rv, sizeof(t->applied_rv), "%s", rv);
	snprintf(t->applied_uid, sizeof(t->applied_uid), "%s", uid);
	if (t->missing) {
		log_info("watch %s: the Secret exists again", t->label);
		t->missing = 0;
	}
	creds_input_init(&in);
	if (secret_decode(obj, t->kind, t->label + 7, &in, err, sizeof(err)) == -1) {
		metrics_inc(MC_RELOAD_FAIL);
		record(t, 0);
		snprintf(note, sizeof(note),
		    "new credentials refused (resourceVersion %s), "
		    "still serving the last good ones: %s",
		    rv, err);
		report_invalid(t, note);
		goto out;
	}
	r = credsrc_submit(
	    t->w->cs, t->w->expect, secret_groups(t->kind), &in, t->label, err, sizeof(err));
	record(t, r != CREDSRC_INVALID);
	{
		struct log_field f[] = {
			LF_S("secret", t->label + 7),
			LF_S("resource_version", rv),
			LF_S("result",
			    r == CREDSRC_PUBLISHED       ? "published"
				: r == CREDSRC_UNCHANGED ? "unchanged"
				: r == CREDSRC_PENDING   ? "pending"
							 : "refused"),
		};
		log_record(r == CREDSRC_INVALID ? LOG_WARN : LOG_INFO, "secret applied", f,
		    sizeof(f) / sizeof(f[0]));
	}
out:
	creds_input_free(&in);
}

static void
deleted(struct target *t)
{
	char note[640];

	t->applied_rv[0] = t->applied_uid[0] = '\0';
	if (t->missing)
		return;
	t->missing = 1;
	metrics_inc(MC_RELOAD_FAIL);
	record(t, 0);
	snprintf(note, sizeof(note), "%s was deleted; still serving the last good credentials",
	    t->label);
	report_invalid(t, note);
}

static void
absent(struct target *t)
{
	char note[640];

	t->applied_rv[0] = t->applied_uid[0] = '\0';
	if (t->missing)
		return;
	t->missing = 1;
	metrics_inc(MC_RELOAD_FAIL);
	record(t, 0);
	snprintf(note, sizeof(note),
	    "%s not found; waiting for it (the last good credentials, "
	    "if any, keep serving)",
	    t->label);
	report_invalid(t, note);
	snprintf(note, sizeof(note), "waiting for %s: not found (check the name and the namespace)",
	    t->label);
	credsrc_set_waiting(t->w->cs, note);
}

static void
set_rv(struct target *t, const cJSON *obj)
{
	const char *rv;

	secret_meta(obj, NULL, NULL, &rv, NULL);
	if (*rv != '\0')
		snprintf(t->rv, sizeof(t->rv), "%s", rv);
}

static int
on_event(enum watch_evtype type, const cJSON *obj, void *arg)
{
	struct target *t = arg;
	const cJSON   *code, *msg;

	switch (type) {
	case WATCH_ADDED:
	case WATCH_MODIFIED:
		set_rv(t, obj);
		apply(t, obj);
		break;
	case WATCH_DELETED:
		set_rv(t, obj);
		deleted(t);
		break;
	case WATCH_BOOKMARK:
		set_rv(t, obj);
		log_debug("watch %s: bookmark at resourceVersion %s", t->label, t->rv);
		break;
	case WATCH_ERROR:
		code = cJSON_GetObjectItemCaseSensitive(obj, "code");
		msg = cJSON_GetObjectItemCaseSensitive(obj, "message");
		if (cJSON_IsNumber(code) && code->valueint == 410) {
			t->gone = 1;
		} else {
			t->stream_err = 1;
			fail_note(t, "watch ERROR event: code %d: %.120s",
			    cJSON_IsNumber(code) ? code->valueint : 0,
			    cJSON_IsString(msg) ? msg->valuestring : "");
		}
		return -1; /* the server ends the stream after an ERROR anyway */
	default: return -1;
	}
	healthy(t);
	return 0;
}

static int
on_data(const void *buf, size_t len, void *arg)
{
	struct target *t = arg;

	if (watch_feed(t->parser, buf, len) == -1) {
		if (!t->gone && !t->stream_err) {
			t->stream_err = 1;
			fail_note(t, "watch stream could not be parsed");
		}
		return -1;
	}
	return 0;
}

static int
start(struct target *t)
{
	struct watch *w = t->w;
	char          path[2048], sel[512], rv[400];
	long          tmo;
	int           rc;

	kube_escape(t->name, sel, sizeof(sel));
	if (t->next == WATCH_LIST) {
		snprintf(path, sizeof(path),
		    "/api/v1/namespaces/%s/secrets"
		    "?fieldSelector=metadata.name%%3D%s",
		    t->ns, sel);
		rc = kube_call_prepare(t->call, "GET", path, NULL, NULL, NULL, NULL, 30, 0);
	} else {
		tmo = WATCH_TIMEOUT_MIN_S + (long)(rnd(w) % WATCH_TIMEOUT_MIN_S);
		kube_escape(t->rv, rv, sizeof(rv));
		snprintf(path, sizeof(path),
		    "/api/v1/namespaces/%s/secrets"
		    "?fieldSelector=metadata.name%%3D%s&watch=1&resourceVersion=%s"
		    "&allowWatchBookmarks=true&timeoutSeconds=%ld",
		    t->ns, sel, rv, tmo);
		watch_parser_reset(t->parser);
		t->gone = t->stream_err = 0;
		t->watch_started = util_mono_ms();
		if (t->watches++ > 0)
			metrics_inc(MC_WATCH_RESTARTS);
		log_debug("watch %s: watching from resourceVersion %s", t->label, t->rv);
		rc = kube_call_prepare(
		    t->call, "GET", path, NULL, NULL, on_data, t, tmo + 30, WATCH_IDLE_S);
	}
	if (rc == -1 || kube_multi_add(w->multi, t->call) == -1) {
		fail_note(t, "cannot start a request: %s", kube_call_error(t->call));
		backoff(t, t->next, 0);
		return -1;
	}
	t->phase = t->next;
	return 0;
}

/* Short reason from a Status body, for logs. */
static void
status_reason(const struct kube_call *c, char *buf, size_t len)
{
	const struct sbuf *b = kube_call_body(c);
	cJSON             *doc;
	const cJSON       *m;

	snprintf(buf, len, "HTTP %ld", kube_call_status(c));
	if (b->len == 0 || (doc = cJSON_ParseWithLength((const char *)b->data, b->len)) == NULL)
		return;
	m = cJSON_GetObjectItemCaseSensitive(doc, "message");
	if (cJSON_IsString(m))
		snprintf(buf, len, "HTTP %ld: %.200s", kube_call_status(c), m->valuestring);
	secret_json_free(doc);
}

static void
list_done(struct target *t)
{
	const struct sbuf *b = kube_call_body(t->call);
	cJSON             *doc = NULL;
	const cJSON       *items, *item;
	const char        *rv;
	char               why[300];
	long               st;

	if (kube_call_result(t->call) == -1) {
		fail_note(t, "list: %s", kube_call_error(t->call));
		backoff(t, WATCH_LIST, 0);
		return;
	}
	if ((st = kube_call_status(t->call)) == 401 && !t->retried_401) {
		t->retried_401 = 1;
		soon(t, WATCH_LIST);
		return;
	}
	if (st != 200) {
		status_reason(t->call, why, sizeof(why));
		if (st == 403 || st == 404)
			access_failed(t, "list", st, why);
		else
			fail_note(t, "list: %s", why);
		backoff(t, WATCH_LIST, kube_call_retry_after(t->call) * 1000);
		return;
	}
	if ((doc = cJSON_ParseWithLength((const char *)b->data, b->len)) == NULL ||
	    !cJSON_IsArray(items = cJSON_GetObjectItemCaseSensitive(doc, "items"))) {
		fail_note(t, "list: the answer is not a SecretList");
		backoff(t, WATCH_LIST, 0);
		goto out;
	}
	/* The collection's resourceVersion is where the watch starts. */
	rv = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(doc, "metadata"), "resourceVersion"));
	snprintf(t->rv, sizeof(t->rv), "%s", rv != NULL ? rv : "");
	healthy(t);
	item = cJSON_GetArrayItem(items, 0);
	if (item != NULL)
		apply(t, item);
	else
		absent(t);
	t->listed_at = util_mono_ms();
	log_debug("watch %s: listed at resourceVersion %s", t->label, t->rv);
	soon(t, WATCH_STREAM);
out:
	secret_json_free(doc);
}

static void
stream_done(struct target *t)
{
	char    why[300];
	int64_t now = util_mono_ms(), lived = now - t->watch_started;
	int     r = kube_call_result(t->call);
	long    st = kube_call_status(t->call);

	if (atomic_load(&t->w->stop))
		return;
	if (t->gone || st == 410) {
		log_info(
		    "watch %s: resourceVersion %s expired (410 Gone); relisting", t->label, t->rv);
		/* A fresh list that is already gone again: do not spin. */
		if (now - t->listed_at < WATCH_SHORT_MS)
			backoff(t, WATCH_LIST, 0);
		else
			soon(t, WATCH_LIST);
		return;
	}
	if (r == -1) {
		fail_note(t, "watch: %s", kube_call_error(t->call));
		backoff(t, WATCH_STREAM, 0);
		return;
	}
	if (st == 401 && !t->retried_401) {
		t->retried_401 = 1;
		soon(t, WATCH_STREAM);
		return;
	}
	if (st / 100 == 2 && !t->stream_err) {
		if (lived < WATCH_SHORT_MS && watch_parser_events(t->parser) == 0) {
			fail_note(t, "watch ended at once without events");
			backoff(t, WATCH_LIST, 0);
		} else
			soon(t, WATCH_STREAM); /* timeoutSeconds elapsed: resume */
		return;
	}
	if (st == 429) {
		fail_note(t, "watch: HTTP 429 (too many requests)");
		backoff(t, WATCH_STREAM, kube_call_retry_after(t->call) * 1000);
		return;
	}
	if (st / 100 != 2) {
		status_reason(t->call, why, sizeof(why));
		if (st == 403 || st == 404)
			access_failed(t, "watch", st, why);
		else
			fail_note(t, "watch: %s", why);
	}
	backoff(t, WATCH_LIST, kube_call_retry_after(t->call) * 1000);
}

static void *
watcher(void *arg)
{
	struct watch     *w = arg;
	struct kube_call *done[WATCH_MAX_TARGETS];
	struct target    *t;
	int64_t           now, wait;
	int               i, j, n;

	while (!atomic_load(&w->stop)) {
		if (atomic_exchange(&w->resync, 0)) {
			for (i = 0; i < w->nt; i++) {
				t = &w->t[i];
				if (t->phase != WATCH_BACKOFF)
					kube_multi_remove(w->multi, t->call);
				t->applied_rv[0] = '\0';
				soon(t, WATCH_LIST);
			}
			credsrc_invalidate(w->cs);
		}
		now = util_mono_ms();
		wait = 1000;
		for (i = 0; i < w->nt; i++) {
			t = &w->t[i];
			if (t->phase == WATCH_BACKOFF && now >= t->due)
				start(t);
			if (t->phase == WATCH_BACKOFF && t->due - now < wait)
				wait = t->due - now < 0 ? 0 : t->due - now;
		}
		if ((n = kube_multi_run(w->multi, (int)wait, done, WATCH_MAX_TARGETS)) == -1) {
			log_warnx("watch: the transfer driver failed");
			usleep(200000);
			continue;
		}
		for (j = 0; j < n; j++) {
			for (i = 0; i < w->nt; i++) {
				t = &w->t[i];
				if (t->call != done[j])
					continue;
				if (t->phase == WATCH_LIST)
					list_done(t);
				else if (t->phase == WATCH_STREAM)
					stream_done(t);
			}
		}
	}
	for (i = 0; i < w->nt; i++)
		kube_multi_remove(w->multi, w->t[i].call);
	return NULL;
}

struct watch *
watch_new(struct kube *k, const struct config *cfg, struct credsrc *cs, unsigned expect, char *err,
    size_t errlen)
{
	struct watch  *w;
	struct target *t;
	const char    *spec[2] = { cfg->ca_secret, cfg->tls_secret };
	const char    *setting[2] = { "CA_SECRET", "TLS_SECRET" };
	size_t         o = 0;
	int            i;

	if ((w = calloc(1, sizeof(*w))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	w->k = k;
	w->cs = cs;
	w->expect = expect;
	atomic_init(&w->stop, 0);
	atomic_init(&w->resync, 0);
	w->rng = (uint64_t)util_real_ms() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)w;
	if (w->rng == 0)
		w->rng = 1;
	for (i = 0; i < 2; i++) {
		if (spec[i] == NULL || *spec[i] == '\0')
			continue;
		t = &w->t[w->nt];
		t->w = w;
		t->kind = i == 0 ? SECRET_CA : SECRET_TLS;
		if (kube_object_ref(spec[i], kube_namespace(k), t->ns, t->name) == -1) {
			snprintf(err, errlen, "%s: \"%s\" is not a valid name or namespace/name",
			    setting[i], spec[i]);
			goto fail;
		}
		{
			char label[sizeof(t->label)];

			snprintf(label, sizeof(label), "Secret %s/%s", t->ns, t->name);
			memcpy(t->label, label, sizeof(label));
		}
		if ((t->call = kube_call_new(k, &w->stop)) == NULL ||
		    (t->parser = watch_parser_new(on_event, t)) == NULL) {
			snprintf(err, errlen, "out of memory");
			w->nt++;
			goto fail;
		}
		t->phase = WATCH_BACKOFF;
		t->next = WATCH_LIST;
		w->groups |= secret_groups(t->kind);
		o += (size_t)snprintf(
		    w->desc + o, sizeof(w->desc) - o, "%s%s", o ? ", " : "", t->label);
		w->nt++;
	}
	if (w->nt == 2 && strcmp(w->t[0].label, w->t[1].label) == 0) {
		snprintf(err, errlen, "TLS_SECRET: must name a different Secret than CA_SECRET");
		goto fail;
	}
	if ((w->multi = kube_multi_new()) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	return w;
fail:
	watch_free(w);
	return NULL;
}

unsigned
watch_groups(const struct watch *w)
{
	return w->groups;
}

const char *
watch_describe(const struct watch *w)
{
	return w->desc;
}

int
watch_start(struct watch *w)
{
	if (util_thread_start(&w->thr, UTIL_STACK_LARGE, watcher, w) != 0) {
		log_warnx("watch: cannot start the watcher thread");
		return -1;
	}
	w->running = 1;
	return 0;
}

void
watch_resync(struct watch *w)
{
	if (w == NULL)
		return;
	atomic_store(&w->resync, 1);
	if (w->multi != NULL)
		kube_multi_wakeup(w->multi);
}

void
watch_free(struct watch *w)
{
	int i;

	if (w == NULL)
		return;
	atomic_store(&w->stop, 1);
	if (w->running) {
		kube_multi_wakeup(w->multi);
		pthread_join(w->thr, NULL);
	}
	for (i = 0; i < w->nt; i++) {
		if (w->multi != NULL && w->t[i].call != NULL)
			kube_multi_remove(w->multi, w->t[i].call);
		kube_call_free(w->t[i].call);
		watch_parser_free(w->t[i].parser);
	}
	kube_multi_free(w->multi);
	free(w);
}
