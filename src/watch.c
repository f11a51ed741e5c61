/*
 * watch.c: the Secret watcher thread and the watch-stream parser.
 *
 * DESIGN
 * One thread (started by watch_start(), stopped by watch_free()) drives one
 * kube_multi with one kube_call per watched Secret, so that both Secrets are
 * followed at once without a thread each. Each target's phase (LIST, WATCH,
 * BACKOFF) and every decision about a request that ended (401, 410, 429, a
 * watch that ended at once, backoff and jitter) belong to the pure state
 * machine in watchfsm.c; this file does the I/O (curl through kube.c, JSON)
 * and carries out the action the machine returns:
 *   - LIST gives the collection resourceVersion to watch from and the object;
 *   - WATCH carries allowWatchBookmarks and timeoutSeconds random in
 *     [300, 600); every event and bookmark advances the resume point.
 * Each target registers with the credential assembler as its own source.
 * Decoding happens here (secret.c); the decoded Secret, or the fact that it
 * could not be decoded, was deleted or is missing, goes to the assembler,
 * which alone logs, counts and audits credential outcomes. This file reports
 * only the transport: failures (once per change of state, not per retry),
 * recovery, a 403/404 as SecretAccessFailed, and /readyz's waiting text.
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
#include "watchfsm.h"

#define WATCH_TIMEOUT_MIN_S 300 /* timeoutSeconds in [300, 600) like client-go */
#define WATCH_IDLE_S        200 /* bookmarks come about every minute */
#define WATCH_MAX_TARGETS   2

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

struct target {
	struct watch          *w;
	enum secret_kind       kind;
	char                   ns[KUBE_NS_MAX], name[KUBE_NAME_MAX];
	char                   ref[KUBE_NS_MAX + KUBE_NAME_MAX + 2];   /* "ns/name" */
	char                   label[KUBE_NS_MAX + KUBE_NAME_MAX + 9]; /* "Secret ns/name" */
	struct credsrc_source *src;
	struct kube_call      *call;
	struct watch_parser   *parser;
	struct watchfsm        fsm;
	char                   rv[128]; /* resume point, opaque */
	int                    watches; /* streams started, for the restart metric */

	/* Set by the event callback during a stream. */
	int gone, stream_err;

	/* What was applied, to skip repeats after a relist. */
	char applied_uid[64], applied_rv[128];
	int  missing;       /* reported as absent or deleted */
	char last_err[256]; /* logged failure, to log changes only */
};

struct watch {
	struct kube       *k;
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

/* Feeds one input to the target's state machine; returns what to do. */
static struct watchfsm_step
step(struct target *t, struct watchfsm_input *in)
{
	struct watchfsm_step out;

	in->now = util_mono_ms();
	in->rand = rnd(t->w);
	watchfsm_step(&t->fsm, in, &t->fsm, &out);
	if (t->fsm.phase == WATCH_BACKOFF && out.delay_ms > 0)
		log_debug("watch %s: %s in %lld ms", t->label, watchfsm_phase_name(t->fsm.next),
		    (long long)out.delay_ms);
	return out;
}

static void
step_kind(struct target *t, enum watchfsm_input_kind kind)
{
	struct watchfsm_input in;

	memset(&in, 0, sizeof(in));
	in.kind = kind;
	step(t, &in);
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
	credsrc_waiting(t->src, waiting);
	return 1;
}

/*
 * A 403 or 404 from the API server: a missing RBAC verb, a wrong namespace
 * or a Secret name typo. Posts a Warning Event naming the Secret and the
 * verb the ServiceAccount needs (once per change; retries back off). This is
 * about access, not about credentials: the assembler hears nothing of it.
 */
static void
access_failed(struct target *t, const char *verb, long status, const char *why)
{
	struct audit_rec ar;
	char             note[1024];

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

/* The source answers again: says so once, clears the /readyz text. */
static void
healthy(struct target *t)
{
	if (t->last_err[0] != '\0') {
		log_info("watch %s: recovered", t->label);
		t->last_err[0] = '\0';
		credsrc_waiting(t->src, "");
	}
}

/* Decodes one Secret object and delivers it; the assembler reports the outcome. */
static void
apply(struct target *t, const cJSON *obj)
{
	struct creds_input in;
	const char        *rv, *uid, *version;
	char               err[512];

	secret_meta(obj, NULL, NULL, &rv, &uid);
	if (*rv != '\0' && strcmp(rv, t->applied_rv) == 0 && strcmp(uid, t->applied_uid) == 0)
		return; /* the same object again (a relist) */
	snprintf(t->applied_rv, sizeof(t->applied_rv), "%s", rv);
	snprintf(t->applied_uid, sizeof(t->applied_uid), "%s", uid);
	if (t->missing) {
		log_info("watch %s: the Secret exists again", t->label);
		t->missing = 0;
	}
	version = *rv != '\0' ? rv : NULL;
	creds_input_init(&in);
	if (secret_decode(obj, t->kind, t->ref, &in, err, sizeof(err)) == -1)
		credsrc_fault(t->src, CREDSRC_UNREADABLE, version, err);
	else
		credsrc_submit(t->src, &in, version, err, sizeof(err));
	creds_input_free(&in);
}

/* The Secret was deleted (a DELETED event) or is absent (an empty LIST): once. */
static void
gone_away(struct target *t, enum credsrc_fault why, const char *rv)
{
	t->applied_rv[0] = t->applied_uid[0] = '\0';
	if (t->missing)
		return;
	t->missing = 1;
	credsrc_fault(t->src, why, rv != NULL && *rv != '\0' ? rv : NULL, NULL);
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
		gone_away(t, CREDSRC_DELETED, t->rv);
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
	step_kind(t, WFI_EVENT);
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

/* Short reason from a Status body, for logs. */
static void
status_reason(const struct kube_call *c, char *buf, size_t len)
{
	const struct sbuf *b = kube_call_body(c);
	char               msg[256];

	secret_status_message(b->data, b->len, msg, sizeof(msg));
	if (msg[0] != '\0')
		snprintf(buf, len, "HTTP %ld: %.200s", kube_call_status(c), msg);
	else
		snprintf(buf, len, "HTTP %ld", kube_call_status(c));
}

/* Reports what the state machine decided about the request that ended (`verb`: list, watch). */
static void
report(struct target *t, const char *verb, enum watchfsm_action a)
{
	char why[300];

	switch (a) {
	case WFA_EXPIRED:
		log_info(
		    "watch %s: resourceVersion %s expired (410 Gone); relisting", t->label, t->rv);
		break;
	case WFA_NOT_STARTED:
		fail_note(t, "cannot start a request: %s", kube_call_error(t->call));
		break;
	case WFA_TRANSPORT: fail_note(t, "%s: %s", verb, kube_call_error(t->call)); break;
	case WFA_ACCESS:
		status_reason(t->call, why, sizeof(why));
		access_failed(t, verb, kube_call_status(t->call), why);
		break;
	case WFA_HTTP:
		status_reason(t->call, why, sizeof(why));
		fail_note(t, "%s: %s", verb, why);
		break;
	case WFA_NOT_A_LIST: fail_note(t, "list: the answer is not a SecretList"); break;
	case WFA_SHORT: fail_note(t, "watch ended at once without events"); break;
	case WFA_THROTTLED: fail_note(t, "watch: HTTP 429 (too many requests)"); break;
	case WFA_NONE:
	case WFA_LISTED:
	default: break;
	}
}

static int
start(struct target *t)
{
	struct watch *w = t->w;
	char          path[2048], sel[512], rv[400];
	long          tmo;
	int           rc;

	kube_escape(t->name, sel, sizeof(sel));
	if (t->fsm.next == WATCH_LIST) {
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
		if (t->watches++ > 0)
			metrics_inc(MC_WATCH_RESTARTS);
		log_debug("watch %s: watching from resourceVersion %s", t->label, t->rv);
		rc = kube_call_prepare(
		    t->call, "GET", path, NULL, NULL, on_data, t, tmo + 30, WATCH_IDLE_S);
	}
	if (rc == -1 || kube_multi_add(w->multi, t->call) == -1) {
		struct watchfsm_input in;

		memset(&in, 0, sizeof(in));
		in.kind = WFI_START_FAILED;
		report(t, "", step(t, &in).action);
		return -1;
	}
	step_kind(t, WFI_STARTED);
	return 0;
}

/* The common part of a finished request's input. */
static void
done_input(const struct target *t, struct watchfsm_input *in)
{
	memset(in, 0, sizeof(*in));
	in->kind = WFI_DONE;
	in->transport_failed = kube_call_result(t->call) == -1;
	in->status = kube_call_status(t->call);
	in->retry_after_s = kube_call_retry_after(t->call);
}

static void
list_done(struct target *t)
{
	const struct sbuf    *b = kube_call_body(t->call);
	cJSON                *doc = NULL;
	const cJSON          *items = NULL, *item;
	const char           *rv;
	struct watchfsm_input in;
	struct watchfsm_step  out;

	done_input(t, &in);
	if (!in.transport_failed && in.status == 200 &&
	    (doc = cJSON_ParseWithLength((const char *)b->data, b->len)) != NULL)
		in.list_ok = cJSON_IsArray(items = cJSON_GetObjectItemCaseSensitive(doc, "items"));
	out = step(t, &in);
	if (out.action != WFA_LISTED) {
		report(t, "list", out.action);
		goto out;
	}
	/* The collection's resourceVersion is where the watch starts. */
	rv = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(doc, "metadata"), "resourceVersion"));
	snprintf(t->rv, sizeof(t->rv), "%s", rv != NULL ? rv : "");
	healthy(t);
	if ((item = cJSON_GetArrayItem(items, 0)) != NULL)
		apply(t, item);
	else
		gone_away(t, CREDSRC_MISSING, NULL);
	log_debug("watch %s: listed at resourceVersion %s", t->label, t->rv);
out:
	secret_json_free(doc); /* a SecretList: wiped */
}

static void
stream_done(struct target *t)
{
	struct watchfsm_input in;

	if (atomic_load(&t->w->stop))
		return;
	done_input(t, &in);
	in.gone = t->gone;
	in.stream_err = t->stream_err;
	in.events = watch_parser_events(t->parser);
	report(t, "watch", step(t, &in).action);
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
				if (t->fsm.phase != WATCH_BACKOFF)
					kube_multi_remove(w->multi, t->call);
				t->applied_rv[0] = '\0';
				step_kind(t, WFI_RESYNC);
			}
			/* The assembler's "unchanged" memory is one for all sources. */
			if (w->nt > 0)
				credsrc_invalidate(w->t[0].src);
		}
		now = util_mono_ms();
		wait = 1000;
		for (i = 0; i < w->nt; i++) {
			t = &w->t[i];
			if (t->fsm.phase == WATCH_BACKOFF && now >= t->fsm.due)
				start(t);
			if (t->fsm.phase == WATCH_BACKOFF && t->fsm.due - now < wait)
				wait = t->fsm.due - now < 0 ? 0 : t->fsm.due - now;
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
				if (t->fsm.phase == WATCH_LIST)
					list_done(t);
				else if (t->fsm.phase == WATCH_STREAM)
					stream_done(t);
			}
		}
	}
	for (i = 0; i < w->nt; i++)
		kube_multi_remove(w->multi, w->t[i].call);
	return NULL;
}

struct watch *
watch_new(struct kube *k, const struct config *cfg, struct credsrc *cs, char *err, size_t errlen)
{
	struct watch  *w;
	struct target *t;
	const char    *spec[2] = { cfg->ca_secret, cfg->tls_secret };
	const char    *setting[2] = { "CA_SECRET", "TLS_SECRET" };
	int            i;

	if ((w = calloc(1, sizeof(*w))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	w->k = k;
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
		watchfsm_init(&t->fsm);
		if (kube_object_ref(spec[i], kube_namespace(k), t->ns, t->name) == -1) {
			snprintf(err, errlen, "%s: \"%s\" is not a valid name or namespace/name",
			    setting[i], spec[i]);
			goto fail;
		}
		{
			char ref[sizeof(t->ref)], label[sizeof(t->label)];

			snprintf(ref, sizeof(ref), "%s/%s", t->ns, t->name);
			snprintf(label, sizeof(label), "Secret %s", ref);
			memcpy(t->ref, ref, sizeof(ref));
			memcpy(t->label, label, sizeof(label));
		}
		if ((t->call = kube_call_new(k, &w->stop)) == NULL ||
		    (t->parser = watch_parser_new(on_event, t)) == NULL) {
			snprintf(err, errlen, "out of memory");
			w->nt++;
			goto fail;
		}
		w->nt++;
	}
	if (w->nt == 2 && strcmp(w->t[0].ref, w->t[1].ref) == 0) {
		snprintf(err, errlen, "TLS_SECRET: must name a different Secret than CA_SECRET");
		goto fail;
	}
	{
		char desc[sizeof(w->desc)]; /* not in place: the labels live in *w too */

		snprintf(desc, sizeof(desc), "%s%s%s", w->nt > 0 ? w->t[0].label : "",
		    w->nt > 1 ? ", " : "", w->nt > 1 ? w->t[1].label : "");
		memcpy(w->desc, desc, sizeof(desc));
	}
	for (i = 0; i < w->nt; i++) {
		t = &w->t[i];
		if ((t->src = credsrc_register(cs, secret_groups(t->kind), t->label,
			 t->kind == SECRET_CA ? MS_CA_SECRET : MS_TLS_SECRET, err, errlen)) == NULL)
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
