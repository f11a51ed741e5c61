/*
 * fuzz_watch.c: the Kubernetes watch-stream parser (watch_feed()) and, for
 * each event it delivers, the Secret decoder the watcher runs on it.
 *
 * Input: the first byte seeds the chunking; the rest is the stream. The
 * stream is fed twice: in one piece, and cut into pieces of 1 to 64 bytes
 * (mid-line, mid-UTF-8, mid-base64). Both feeds must agree: same return
 * code, same number and sequence of events. That is the parser's contract
 * ("any split").
 *
 * The same bytes, read six at a time, then drive the watcher's state machine
 * (watchfsm.c) through any sequence of inputs (started, failed to start,
 * ended with any status and flags, events, resyncs, time jumps), checking
 * its invariants after every step: a valid phase, a backoff within its
 * bounds, a delay that matches `due`, the old state untouched (purity), and
 * the actions each input may produce.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "creds.h"
#include "fuzzpki.h"
#include "secret.h"
#include "watch.h"
#include "watchfsm.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct trace {
	size_t   n;
	uint64_t h; /* FNV-1a over event types and decode outcomes */
};

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzzpki_quiet();
	return 0;
}

static void
mix(struct trace *t, unsigned v)
{
	t->h = (t->h ^ v) * 1099511628211ULL;
}

static int
on_event(enum watch_evtype type, const struct cJSON *obj, void *arg)
{
	struct trace      *t = arg;
	struct creds_input in;
	const char        *name, *ns, *rv, *uid;
	char               err[256];
	int                k, rc;

	if (type >= WATCH_EV__MAX || obj == NULL)
		abort();
	t->n++;
	mix(t, (unsigned)type);
	secret_meta(obj, &name, &ns, &rv, &uid);
	if (name == NULL || ns == NULL || rv == NULL || uid == NULL)
		abort();
	for (k = 0; k < SECRET__MAX; k++) {
		creds_input_init(&in);
		err[0] = '\0';
		rc = secret_decode(obj, (enum secret_kind)k, "fuzz/secret", &in, err, sizeof(err));
		if (rc == -1 && err[0] == '\0')
			abort(); /* a refusal must say why */
		mix(t, (unsigned)(rc + 2));
		creds_input_free(&in);
	}
	return 0;
}

static int
feed(const uint8_t *data, size_t size, unsigned seed, struct trace *t)
{
	struct watch_parser *p;
	size_t               off = 0, n;
	int                  rc = 0;

	memset(t, 0, sizeof(*t));
	t->h = 1469598103934665603ULL;
	if ((p = watch_parser_new(on_event, t)) == NULL)
		abort();
	while (off < size && rc == 0) {
		if (seed == 0)
			n = size - off;
		else {
			seed = seed * 1103515245u + 12345u;
			n = 1 + (seed >> 16) % 64;
			if (n > size - off)
				n = size - off;
		}
		rc = watch_feed(p, data + off, n);
		off += n;
	}
	if (watch_parser_events(p) != t->n)
		abort();
	watch_parser_free(p);
	return rc;
}

/* The checks after one step from `old` with `in` to `st`, `out`. */
static void
fsm_check(const struct watchfsm *old, const struct watchfsm_input *in, const struct watchfsm *st,
    const struct watchfsm_step *out)
{
	const int64_t max_delay = (int64_t)WATCH_RETRY_AFTER_MAX_S * 1000 > WATCH_BACKOFF_MAX_MS
	    ? (int64_t)WATCH_RETRY_AFTER_MAX_S * 1000
	    : WATCH_BACKOFF_MAX_MS;

	if (st->phase >= WATCH__MAX || out->action >= WFA__MAX)
		abort();
	if (st->phase == WATCH_BACKOFF && st->next != WATCH_LIST && st->next != WATCH_STREAM)
		abort();
	if (st->backoff_ms != 0 &&
	    (st->backoff_ms < WATCH_BACKOFF_MIN_MS || st->backoff_ms > WATCH_BACKOFF_MAX_MS))
		abort();
	if (out->delay_ms < 0 || out->delay_ms > max_delay)
		abort();
	if (st->phase == WATCH_BACKOFF && old->phase != WATCH_BACKOFF &&
	    st->due != in->now + out->delay_ms)
		abort();
	switch (out->action) {
	case WFA_LISTED:
		/* Only a LIST that answered 200 with a SecretList; the watch follows at once. */
		if (in->kind != WFI_DONE || old->phase != WATCH_LIST || in->status != 200 ||
		    !in->list_ok || in->transport_failed || st->next != WATCH_STREAM ||
		    out->delay_ms != 0 || st->retried_401)
			abort();
		break;
	case WFA_EXPIRED:
	case WFA_SHORT:
	case WFA_THROTTLED:
		if (in->kind != WFI_DONE || old->phase != WATCH_STREAM)
			abort();
		break;
	case WFA_NOT_A_LIST:
		if (in->kind != WFI_DONE || old->phase != WATCH_LIST || in->status != 200)
			abort();
		break;
	case WFA_NOT_STARTED:
		if (in->kind != WFI_START_FAILED || old->phase != WATCH_BACKOFF)
			abort();
		break;
	case WFA_TRANSPORT:
		if (in->kind != WFI_DONE || !in->transport_failed)
			abort();
		break;
	case WFA_ACCESS:
		if (in->status != 403 && in->status != 404)
			abort();
		break;
	default: break;
	}
	/* Every answer that is not a first 401 or a success ends in a wait for the next request. */
	if (in->kind == WFI_DONE && old->phase != WATCH_BACKOFF && st->phase != WATCH_BACKOFF)
		abort();
	if (in->kind == WFI_RESYNC &&
	    (st->phase != WATCH_BACKOFF || st->next != WATCH_LIST || out->delay_ms != 0))
		abort();
}

/* Drives the state machine with the input read six bytes at a time. */
static void
fsm_walk(const uint8_t *d, size_t n)
{
	static const long statuses[] = { 0, 200, 201, 204, 302, 401, 403, 404, 410, 429, 500, 503 };
	struct watchfsm   st, copy, keep, again;
	struct watchfsm_input in;
	struct watchfsm_step  out, out2;
	int64_t               now = 1000;

	watchfsm_init(&st);
	for (; n >= 6; d += 6, n -= 6) {
		memset(&in, 0, sizeof(in));
		in.kind = (enum watchfsm_input_kind)(d[0] % WFI__MAX);
		now += (int64_t)d[1] * (d[0] & 0x80 ? 1000 : 10); /* up to about 4 minutes */
		in.now = now;
		in.rand = (uint64_t)d[2] << 8 | d[3];
		in.status = d[4] < 0xc0 ? statuses[d[4] % (sizeof(statuses) / sizeof(statuses[0]))]
					: (long)d[4] * 3;
		in.transport_failed = d[5] & 1;
		in.list_ok = (d[5] >> 1) & 1;
		in.gone = (d[5] >> 2) & 1;
		in.stream_err = (d[5] >> 3) & 1;
		in.events = (d[5] >> 4) & 3;
		in.retry_after_s = d[5] & 0x40 ? (d[5] & 0x80 ? 1L << 40 : (long)(d[3] % 90)) : 0;
		copy = st;
		keep = st;
		watchfsm_step(&copy, &in, &st, &out);
		/* Pure: the old state stays as it was, and the same input decides the same. */
		watchfsm_step(&copy, &in, &again, &out2);
		if (memcmp(&copy, &keep, sizeof(keep)) != 0 ||
		    memcmp(&again, &st, sizeof(st)) != 0 || out2.action != out.action ||
		    out2.delay_ms != out.delay_ms)
			abort();
		fsm_check(&copy, &in, &st, &out);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct trace whole, cut;
	int          rw, rc;

	if (size < 1)
		return 0;
	rw = feed(data + 1, size - 1, 0, &whole);
	rc = feed(data + 1, size - 1, (unsigned)data[0] | 0x100u, &cut);
	if (rw != rc || whole.n != cut.n || whole.h != cut.h)
		abort();
	fsm_walk(data + 1, size - 1);
	return 0;
}
