/*
 * events.c: the events thread, its non-blocking queue, aggregation and cap.
 *
 * DESIGN
 * Producers are every thread that calls audit_emit(): gRPC workers, the
 * watcher, the file watcher, main. events_sink() copies the record (strings
 * only, no secrets) into a bounded multi-producer queue (Vyukov's array
 * queue: one compare-and-swap per enqueue, no lock, a full queue fails at
 * once) and pokes an eventfd. The one consumer is the events thread, which
 * alone owns everything else: the series cache, the token bucket and its
 * kube_call (its own curl handle). It turns each record into an
 * events.k8s.io/v1 Event:
 *   - identical records (type, reason, related, note) within
 *     EVENTS_SERIES_IDLE_MS form one series: the first is created, the
 *     second patches series.count = 2 at once, later ones only bump a local
 *     count that is patched at most every EVENTS_PATCH_MS and once more when
 *     the series goes quiet (client-go's EventSeries, with shorter periods);
 *   - every create and every patch takes a token from a bucket of
 *     EVENTS_BURST refilled one per EVENTS_REFILL_MS; a new Event without a
 *     token is dropped and counted, a patch without one waits. Requests and
 *     credential changes have one bucket each, so a flood of bad requests
 *     cannot crowd out a CredentialsInvalid.
 * Records of kinds that are log-only (Unavailable, InternalError) are not
 * posted. On shutdown the thread gets EVENTS_FLUSH_MS to post what is
 * queued, then its transfer is aborted.
 */
#include "events.h"

#include <sys/eventfd.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/sha.h>
#include <cjson/cJSON.h>

#include "config.h"
#include "kube.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#define EVENTS_RELATED_MAX (KUBE_NS_MAX + KUBE_NAME_MAX + 8)

/* A queued record: copies of the strings, cut to size. */
struct ev_rec {
	enum audit_kind kind;
	int64_t         real_us;
	char            note[EVENTS_NOTE_MAX + 1];
	char            related[EVENTS_RELATED_MAX];
};

struct cell {
	atomic_size_t seq;
	struct ev_rec rec;
};

struct bucket {
	double  tokens;
	int64_t ms;
};

struct series {
	int           used;
	int           creds; /* which bucket it draws from */
	unsigned char key[SHA256_DIGEST_LENGTH];
	char          name[KUBE_NAME_MAX]; /* the Event on the server */
	int           count;               /* occurrences seen */
	int           posted;              /* count the server has */
	int64_t       last_ms;             /* monotonic, last occurrence */
	int64_t       last_us;             /* wall clock, last occurrence */
	int64_t       patch_ms;            /* monotonic, last create or patch */
};

typedef int (*send_fn)(
    struct events *, const char *method, const char *path, const char *body, long *status);

struct events {
	struct kube      *k;
	struct kube_call *call;
	send_fn           send;

	/* Identity, fixed at start. */
	char ns[KUBE_NS_MAX]; /* where Events are written */
	char reg_kind[8];     /* "Pod" or "Secret" */
	char reg_name[KUBE_NAME_MAX];
	char reg_uid[64];
	char instance[129];

	/* The queue (any thread enqueues, the events thread dequeues). */
	struct cell   q[EVENTS_QUEUE];
	atomic_size_t head, tail;
	int           efd;

	/* Events thread only. */
	struct series ser[EVENTS_SERIES_MAX];
	struct bucket bk[2]; /* [0] requests, [1] credential changes */
	uint64_t      nameseq;
	long          last_status;
	uint64_t      posted, patched, dropped;

	pthread_t       thr;
	int             running;
	atomic_int      stopping, hard;
	pthread_mutex_t mtx;
	pthread_cond_t  cv;
	int             exited;
};

/* ------------------------------------------------------------------ queue */

static void
queue_init(struct events *e)
{
	size_t i;

	for (i = 0; i < EVENTS_QUEUE; i++)
		atomic_init(&e->q[i].seq, i);
	atomic_init(&e->head, 0);
	atomic_init(&e->tail, 0);
}

/* Copies r into the queue; 0, or -1 when full. Any thread, lock-free. */
static int
queue_put(struct events *e, const struct ev_rec *r)
{
	struct cell *c;
	size_t       pos, seq;
	intptr_t     dif;

	pos = atomic_load_explicit(&e->tail, memory_order_relaxed);
	for (;;) {
		c = &e->q[pos % EVENTS_QUEUE];
		seq = atomic_load_explicit(&c->seq, memory_order_acquire);
		dif = (intptr_t)seq - (intptr_t)pos;
		if (dif == 0) {
			if (atomic_compare_exchange_weak_explicit(&e->tail, &pos, pos + 1,
				memory_order_relaxed, memory_order_relaxed))
				break;
		} else if (dif < 0)
			return -1; /* full */
		else
			pos = atomic_load_explicit(&e->tail, memory_order_relaxed);
	}
	c->rec = *r;
	atomic_store_explicit(&c->seq, pos + 1, memory_order_release);
	return 0;
}

/* Takes the oldest record into *r; 0, or -1 when empty. Consumer only. */
static int
queue_get(struct events *e, struct ev_rec *r)
{
	struct cell *c;
	size_t       pos = atomic_load_explicit(&e->head, memory_order_relaxed);

	c = &e->q[pos % EVENTS_QUEUE];
	if (atomic_load_explicit(&c->seq, memory_order_acquire) != pos + 1)
		return -1;
	*r = c->rec;
	atomic_store_explicit(&e->head, pos + 1, memory_order_relaxed);
	atomic_store_explicit(&c->seq, pos + EVENTS_QUEUE, memory_order_release);
	return 0;
}

/* ------------------------------------------------------------------- note */

/* Appends printable text; returns the new offset (bounded by len - 1). */
static size_t
put(char *buf, size_t len, size_t o, const char *s)
{
	for (; s != NULL && *s != '\0' && o + 1 < len; s++)
		buf[o++] = ((unsigned char)*s < 0x20 || *s == 0x7f) ? '?' : *s;
	buf[o] = '\0';
	return o;
}

char *
events_note(const struct audit_rec *r, char *buf, size_t len)
{
	size_t o = 0, i, lim;
	int    high = 0;

	if (len == 0)
		return buf;
	buf[0] = '\0';
	if (!audit_is_creds(r->kind)) {
		o = put(buf, len, o, "peer ");
		o = put(buf, len, o, r->peer && *r->peer ? r->peer : "-");
		if (r->cn != NULL && *r->cn) {
			o = put(buf, len, o, ", CN ");
			o = put(buf, len, o, r->cn);
		} else if (r->cn != NULL) {
			o = put(buf, len, o, ", no CN"); /* a CSR with an empty subject */
		}
		if (r->nsans > 0) {
			o = put(buf, len, o, ", SANs [");
			for (i = 0; i < r->nsans; i++) {
				if (i > 0)
					o = put(buf, len, o, " ");
				o = put(buf, len, o, r->sans[i]);
			}
			o = put(buf, len, o, "]");
		}
		if (r->serial != NULL && *r->serial) {
			o = put(buf, len, o, ", serial ");
			o = put(buf, len, o, r->serial);
		}
		if (r->key_type != NULL && *r->key_type) {
			o = put(buf, len, o, ", key ");
			o = put(buf, len, o, r->key_type);
		}
		if (r->org_removed)
			o = put(buf, len, o, ", O removed");
		if (r->message != NULL && *r->message)
			o = put(buf, len, o, ": ");
	}
	o = put(buf, len, o, r->message);

	/*
	 * The server counts bytes after replacing invalid UTF-8 with U+FFFD
	 * (3 bytes each): with any non-ASCII byte, leave room for that.
	 */
	for (i = 0; i < o; i++)
		if ((unsigned char)buf[i] >= 0x80)
			high = 1;
	lim = high ? EVENTS_NOTE_MAX / 3 : EVENTS_NOTE_MAX;
	if (o > lim) {
		o = lim;
		while (o > 0 && ((unsigned char)buf[o] & 0xc0) == 0x80)
			o--; /* do not cut a UTF-8 sequence */
		buf[o] = '\0';
	}
	return buf;
}

/* ------------------------------------------------------------------- body */

static void
micro_time(int64_t us, char *buf, size_t len)
{
	time_t    t = (time_t)(us / 1000000);
	struct tm tm;
	char      d[24];

	gmtime_r(&t, &tm);
	strftime(d, sizeof(d), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%.19s.%06dZ", d, (int)(us % 1000000));
}

static int64_t
real_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static const char *
action_of(enum audit_kind k)
{
	switch (k) {
	case AK_ISSUED: return "Issue";
	case AK_CREDS_ROTATED:
	case AK_CREDS_INVALID:
	case AK_CREDS_WARNING: return "Reload";
	case AK_SECRET_ACCESS: return "Watch";
	default: return "Reject";
	}
}

/* Returns the JSON of a new Event (caller frees), or NULL. */
static char *
event_body(const struct events *e, const struct ev_rec *r, const char *name)
{
	cJSON *o, *md, *reg, *rel;
	char   t[40], ns[KUBE_NS_MAX], nm[KUBE_NAME_MAX], *s = NULL;

	if ((o = cJSON_CreateObject()) == NULL)
		return NULL;
	micro_time(r->real_us, t, sizeof(t));
	cJSON_AddStringToObject(o, "apiVersion", "events.k8s.io/v1");
	cJSON_AddStringToObject(o, "kind", "Event");
	md = cJSON_AddObjectToObject(o, "metadata");
	cJSON_AddStringToObject(md, "name", name);
	cJSON_AddStringToObject(md, "namespace", e->ns);
	cJSON_AddStringToObject(o, "eventTime", t);
	cJSON_AddStringToObject(o, "reportingController", EVENTS_CONTROLLER);
	cJSON_AddStringToObject(o, "reportingInstance", e->instance);
	cJSON_AddStringToObject(o, "action", action_of(r->kind));
	cJSON_AddStringToObject(o, "reason", audit_reason(r->kind));
	cJSON_AddStringToObject(o, "type", audit_is_warning(r->kind) ? "Warning" : "Normal");
	cJSON_AddStringToObject(o, "note", r->note);
	reg = cJSON_AddObjectToObject(o, "regarding");
	cJSON_AddStringToObject(reg, "apiVersion", "v1");
	cJSON_AddStringToObject(reg, "kind", e->reg_kind);
	cJSON_AddStringToObject(reg, "namespace", e->ns);
	cJSON_AddStringToObject(reg, "name", e->reg_name);
	if (e->reg_uid[0] != '\0')
		cJSON_AddStringToObject(reg, "uid", e->reg_uid);
	if (strncmp(r->related, "Secret ", 7) == 0 &&
	    kube_object_ref(r->related + 7, e->ns, ns, nm) == 0) {
		rel = cJSON_AddObjectToObject(o, "related");
		cJSON_AddStringToObject(rel, "apiVersion", "v1");
		cJSON_AddStringToObject(rel, "kind", "Secret");
		cJSON_AddStringToObject(rel, "namespace", ns);
		cJSON_AddStringToObject(rel, "name", nm);
	}
	s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return s;
}

static char *
series_body(int count, int64_t last_us)
{
	char   t[40], *s;
	cJSON *o, *se;

	if ((o = cJSON_CreateObject()) == NULL)
		return NULL;
	micro_time(last_us, t, sizeof(t));
	se = cJSON_AddObjectToObject(o, "series");
	cJSON_AddNumberToObject(se, "count", count);
	cJSON_AddStringToObject(se, "lastObservedTime", t);
	s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return s;
}

/* ------------------------------------------------------ aggregation, cap */

static int
is_creds(enum audit_kind k)
{
	return audit_is_creds(k);
}

/*
 * Takes a token from the bucket of the record's class. Credential changes
 * have their own bucket, so a flood of requests cannot crowd them out.
 */
static int
take_token(struct events *e, int creds, int64_t now)
{
	struct bucket *b = &e->bk[creds ? 1 : 0];

	if (b->ms == 0) {
		b->tokens = EVENTS_BURST;
		b->ms = now;
	}
	b->tokens += (double)(now - b->ms) / EVENTS_REFILL_MS;
	if (b->tokens > EVENTS_BURST)
		b->tokens = EVENTS_BURST;
	b->ms = now;
	if (b->tokens < 1.0)
		return 0;
	b->tokens -= 1.0;
	return 1;
}

static void
drop(struct events *e, const char *why)
{
	e->dropped++;
	metrics_inc(MC_EVENTS_DROPPED);
	log_debug("events: dropped an Event: %s", why);
}

/* Notes a failed request once per distinct status. */
static void
request_failed(struct events *e, const char *what, long status)
{
	if (status != e->last_status && status != 0)
		log_warnx("events: %s failed: HTTP %ld", what, status);
	else if (status != e->last_status)
		log_warnx("events: %s failed: no answer from the API server", what);
	e->last_status = status;
}

static void
key_of(const struct ev_rec *r, unsigned char key[SHA256_DIGEST_LENGTH])
{
	unsigned char buf[1 + EVENTS_RELATED_MAX + EVENTS_NOTE_MAX + 2];
	size_t        a = strlen(r->related) + 1, b = strlen(r->note) + 1;

	buf[0] = (unsigned char)r->kind;
	memcpy(buf + 1, r->related, a);
	memcpy(buf + 1 + a, r->note, b);
	SHA256(buf, 1 + a + b, key);
}

/* PATCHes the series count when due (or `force`); needs a token. */
static void
series_flush(struct events *e, struct series *s, int64_t now, int force)
{
	char path[512], *body;
	long status = 0;

	if (!s->used || s->count <= s->posted || s->name[0] == '\0')
		return;
	if (!force && s->posted >= 2 && now - s->patch_ms < EVENTS_PATCH_MS)
		return;
	if (!take_token(e, s->creds, now))
		return; /* try again later */
	if ((body = series_body(s->count, s->last_us)) == NULL)
		return;
	snprintf(
	    path, sizeof(path), "/apis/events.k8s.io/v1/namespaces/%s/events/%s", e->ns, s->name);
	if (e->send(e, "PATCH", path, body, &status) == 0 && status / 100 == 2) {
		s->posted = s->count;
		s->patch_ms = now;
		e->patched++;
		e->last_status = status;
	} else if (status == 404) {
		s->used = 0; /* expired on the server: the next one starts anew */
	} else {
		request_failed(e, "patching an Event series", status);
		s->patch_ms = now;
	}
	free(body);
}

static struct series *
series_slot(struct events *e)
{
	struct series *s, *lru = &e->ser[0];
	int            i;

	for (i = 0; i < EVENTS_SERIES_MAX; i++) {
		s = &e->ser[i];
		if (!s->used)
			return s;
		if (s->last_ms < lru->last_ms)
			lru = s;
	}
	return lru; /* its unposted count is lost; it was aggregated, not dropped */
}

/* Handles one dequeued record at monotonic time `now`. */
static void
process(struct events *e, const struct ev_rec *r, int64_t now)
{
	unsigned char  key[SHA256_DIGEST_LENGTH];
	struct series *s = NULL;
	char           name[KUBE_NAME_MAX], path[256], *body;
	long           status = 0;
	int            i;

	if (r->kind == AK_UNAVAILABLE || r->kind == AK_INTERNAL || r->kind >= AK__MAX)
		return;
	key_of(r, key);
	for (i = 0; i < EVENTS_SERIES_MAX; i++)
		if (e->ser[i].used && memcmp(e->ser[i].key, key, sizeof(key)) == 0)
			s = &e->ser[i];
	if (s != NULL && now - s->last_ms < EVENTS_SERIES_IDLE_MS) {
		s->count++;
		s->last_ms = now;
		s->last_us = r->real_us;
		series_flush(e, s, now, 0);
		return;
	}
	if (s != NULL) {
		series_flush(e, s, now, 1);
		s->used = 0;
	}
	if (!take_token(e, is_creds(r->kind), now)) {
		drop(e, "rate cap");
		return;
	}
	snprintf(name, sizeof(name), "%.200s.%llx", e->reg_name,
	    (unsigned long long)(r->real_us * 1000 + (int64_t)(e->nameseq++ % 1000)));
	if ((body = event_body(e, r, name)) == NULL) {
		drop(e, "out of memory");
		return;
	}
	snprintf(path, sizeof(path), "/apis/events.k8s.io/v1/namespaces/%s/events", e->ns);
	if (e->send(e, "POST", path, body, &status) == 0 && status / 100 == 2) {
		e->posted++;
		e->last_status = status;
		metrics_inc(MC_EVENTS_POSTED);
		s = series_slot(e);
		memset(s, 0, sizeof(*s));
		s->used = 1;
		s->creds = is_creds(r->kind);
		memcpy(s->key, key, sizeof(key));
		snprintf(s->name, sizeof(s->name), "%s", name);
		s->count = s->posted = 1;
		s->last_ms = s->patch_ms = now;
		s->last_us = r->real_us;
	} else if (status != 409) {
		request_failed(e, "creating an Event", status);
		drop(e, "request failed");
	}
	free(body);
}

/* Patches due series and finishes quiet ones. */
static void
periodic(struct events *e, int64_t now, int final)
{
	struct series *s;
	int            i;

	for (i = 0; i < EVENTS_SERIES_MAX; i++) {
		s = &e->ser[i];
		if (!s->used)
			continue;
		if (final || now - s->last_ms >= EVENTS_SERIES_IDLE_MS) {
			series_flush(e, s, now, 1);
			if (!final)
				s->used = 0;
		} else
			series_flush(e, s, now, 0);
	}
}

/* ----------------------------------------------------------------- thread */

static int
kube_send(struct events *e, const char *method, const char *path, const char *body, long *status)
{
	int rc;

	rc = kube_request(e->call, method, path,
	    strcmp(method, "PATCH") == 0 ? "application/merge-patch+json" : "application/json",
	    body);
	*status = rc == 0 ? kube_call_status(e->call) : 0;
	return rc;
}

static void *
events_thread(void *arg)
{
	struct events *e = arg;
	struct ev_rec *r;
	struct pollfd  pfd;
	uint64_t       v;
	int64_t        deadline = -1;

	if ((r = malloc(sizeof(*r))) == NULL) {
		log_warnx("events: out of memory; Events disabled");
		goto out;
	}
	for (;;) {
		if (atomic_load(&e->stopping) && deadline < 0)
			deadline = util_mono_ms() + EVENTS_FLUSH_MS;
		while (queue_get(e, r) == 0) {
			process(e, r, util_mono_ms());
			if (atomic_load(&e->hard))
				break;
		}
		if (deadline >= 0) {
			periodic(e, util_mono_ms(), 1);
			break;
		}
		periodic(e, util_mono_ms(), 0);
		pfd = (struct pollfd){ .fd = e->efd, .events = POLLIN };
		if (poll(&pfd, 1, 1000) > 0)
			while (read(e->efd, &v, sizeof(v)) > 0)
				;
	}
out:
	free(r);
	pthread_mutex_lock(&e->mtx);
	e->exited = 1;
	pthread_cond_signal(&e->cv);
	pthread_mutex_unlock(&e->mtx);
	return NULL;
}

void
events_sink(const struct audit_rec *a, void *arg)
{
	struct events *e = arg;
	struct ev_rec  r;
	uint64_t       one = 1;
	ssize_t        w;

	if (a->kind == AK_UNAVAILABLE || a->kind == AK_INTERNAL || a->kind >= AK__MAX)
		return;
	r.kind = a->kind;
	r.real_us = real_us();
	events_note(a, r.note, sizeof(r.note));
	snprintf(r.related, sizeof(r.related), "%s", a->related ? a->related : "");
	if (queue_put(e, &r) == -1) {
		metrics_inc(MC_EVENTS_DROPPED);
		return;
	}
	if (e->efd >= 0)
		w = write(e->efd, &one, sizeof(one));
	(void)w;
}

static struct events *
events_alloc(void)
{
	struct events *e;

	if ((e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	queue_init(e);
	e->efd = -1;
	atomic_init(&e->stopping, 0);
	atomic_init(&e->hard, 0);
	pthread_mutex_init(&e->mtx, NULL);
	pthread_cond_init(&e->cv, NULL);
	return e;
}

struct events *
events_new(struct kube *k, const struct config *cfg, char *err, size_t errlen)
{
	struct events *e;
	const char    *spec;
	char           host[128];

	if ((e = events_alloc()) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	e->k = k;
	e->send = kube_send;
	if (cfg->pod_name != NULL && *cfg->pod_name != '\0') {
		snprintf(e->reg_kind, sizeof(e->reg_kind), "Pod");
		if (kube_object_ref(cfg->pod_name,
			cfg->pod_namespace && *cfg->pod_namespace ? cfg->pod_namespace
								  : kube_namespace(k),
			e->ns, e->reg_name) == -1 ||
		    strchr(cfg->pod_name, '/') != NULL) {
			snprintf(err, errlen, "POD_NAME/POD_NAMESPACE: not a valid Pod name");
			goto fail;
		}
		snprintf(e->reg_uid, sizeof(e->reg_uid), "%s", cfg->pod_uid ? cfg->pod_uid : "");
		snprintf(e->instance, sizeof(e->instance), "%s", cfg->pod_name);
	} else {
		/* Outside a Pod: the Events are about the watched Secret. */
		spec = cfg->ca_secret && *cfg->ca_secret ? cfg->ca_secret : cfg->tls_secret;
		snprintf(e->reg_kind, sizeof(e->reg_kind), "Secret");
		if (spec == NULL ||
		    kube_object_ref(spec, kube_namespace(k), e->ns, e->reg_name) == -1) {
			snprintf(
			    err, errlen, "POD_NAME: needed for Events (no Secret to fall back on)");
			goto fail;
		}
		if (gethostname(host, sizeof(host)) == -1)
			snprintf(host, sizeof(host), "unknown");
		host[sizeof(host) - 1] = '\0';
		snprintf(e->instance, sizeof(e->instance), "%s", host);
		log_info("events: POD_NAME not set; Events regard %s/%s", e->ns, e->reg_name);
	}
	if ((e->call = kube_call_new(k, &e->hard)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if ((e->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		goto fail;
	}
	return e;
fail:
	events_free(e);
	return NULL;
}

int
events_start(struct events *e)
{
	if (util_thread_start(&e->thr, UTIL_STACK_MEDIUM, events_thread, e) != 0) {
		log_warnx("events: cannot start the events thread");
		return -1;
	}
	e->running = 1;
	return 0;
}

void
events_free(struct events *e)
{
	struct timespec ts;
	uint64_t        one = 1;
	ssize_t         w;

	if (e == NULL)
		return;
	if (e->running) {
		atomic_store(&e->stopping, 1);
		w = write(e->efd, &one, sizeof(one));
		(void)w;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += EVENTS_FLUSH_MS / 1000 + 1;
		pthread_mutex_lock(&e->mtx);
		while (!e->exited)
			if (pthread_cond_timedwait(&e->cv, &e->mtx, &ts) == ETIMEDOUT)
				break;
		pthread_mutex_unlock(&e->mtx);
		atomic_store(&e->hard, 1); /* aborts a transfer within a second */
		pthread_join(e->thr, NULL);
		log_debug("events: %llu posted, %llu series patches, %llu dropped",
		    (unsigned long long)e->posted, (unsigned long long)e->patched,
		    (unsigned long long)e->dropped);
	}
	kube_call_free(e->call);
	if (e->efd >= 0)
		close(e->efd);
	pthread_cond_destroy(&e->cv);
	pthread_mutex_destroy(&e->mtx);
	free(e);
}
