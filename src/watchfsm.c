/*
 * watchfsm.c: the watcher's state machine (see watchfsm.h for the rules).
 *
 * DESIGN
 * One function, watchfsm_step(), takes the state of one watched Secret and
 * one input (a request started, ended, an event, a resync) and returns the
 * next state, the action to report and the delay before the next request.
 * Time and jitter come in with the input, so every transition is testable
 * (tests/unit/test_watchfsm.c) and fuzzable (fuzz/fuzz_watch.c) without a
 * server.
 *
 * Threads: any; no state of its own. Owns nothing.
 */
#include "watchfsm.h"

_Static_assert(
    sizeof(struct watchfsm) == 4 * sizeof(int64_t) + 2 * sizeof(enum watch_phase) + 2 * sizeof(int),
    "struct watchfsm has padding");

void
watchfsm_init(struct watchfsm *st)
{
	*st = (struct watchfsm){ .phase = WATCH_BACKOFF, .next = WATCH_LIST };
}

const char *
watchfsm_phase_name(enum watch_phase p)
{
	static const char *const names[WATCH__MAX] = {
		[WATCH_LIST] = "list",
		[WATCH_STREAM] = "watch",
		[WATCH_BACKOFF] = "backoff",
	};

	return p < WATCH__MAX ? names[p] : "unknown";
}

const char *
watchfsm_action_name(enum watchfsm_action a)
{
	static const char *const names[WFA__MAX] = {
		[WFA_NONE] = "none",
		[WFA_LISTED] = "listed",
		[WFA_EXPIRED] = "expired",
		[WFA_NOT_STARTED] = "not_started",
		[WFA_TRANSPORT] = "transport",
		[WFA_ACCESS] = "access",
		[WFA_HTTP] = "http",
		[WFA_NOT_A_LIST] = "not_a_list",
		[WFA_SHORT] = "short",
		[WFA_THROTTLED] = "throttled",
	};

	return a < WFA__MAX ? names[a] : "unknown";
}

/* Starts `nx` at once. */
static void
soon(struct watchfsm *s, enum watch_phase nx, const struct watchfsm_input *in,
    struct watchfsm_step *out)
{
	s->phase = WATCH_BACKOFF;
	s->next = nx;
	s->due = in->now;
	out->delay_ms = 0;
}

/*
 * Starts `nx` after the next jittered backoff step, and no sooner than
 * `ra` seconds (an HTTP answer's Retry-After; 0 for none).
 */
static void
backoff(struct watchfsm *s, enum watch_phase nx, long ra, const struct watchfsm_input *in,
    struct watchfsm_step *out)
{
	int64_t d, min_ms = 0;

	if (s->backoff_ms <= 0 || in->now - s->last_fail >= WATCH_BACKOFF_RESET_MS)
		s->backoff_ms = WATCH_BACKOFF_MIN_MS;
	else if ((s->backoff_ms *= 2) > WATCH_BACKOFF_MAX_MS)
		s->backoff_ms = WATCH_BACKOFF_MAX_MS;
	s->last_fail = in->now;
	/* Jitter downwards: [0.75, 1] x the step, so 30 s stays the ceiling. */
	d = s->backoff_ms - (int64_t)(in->rand % (uint64_t)(s->backoff_ms / 4 + 1));
	if (ra > 0)
		min_ms =
		    (int64_t)(ra > WATCH_RETRY_AFTER_MAX_S ? WATCH_RETRY_AFTER_MAX_S : ra) * 1000;
	if (d < min_ms)
		d = min_ms;
	s->phase = WATCH_BACKOFF;
	s->next = nx;
	s->due = in->now + d;
	out->delay_ms = d;
}

static enum watchfsm_action
http_error(long status)
{
	return status == 403 || status == 404 ? WFA_ACCESS : WFA_HTTP;
}

static void
list_done(struct watchfsm *s, const struct watchfsm_input *in, struct watchfsm_step *out)
{
	if (in->transport_failed) {
		out->action = WFA_TRANSPORT;
		backoff(s, WATCH_LIST, 0, in, out);
	} else if (in->status == 401 && !s->retried_401) {
		s->retried_401 = 1;
		soon(s, WATCH_LIST, in, out);
	} else if (in->status != 200) {
		out->action = http_error(in->status);
		backoff(s, WATCH_LIST, in->retry_after_s, in, out);
	} else if (!in->list_ok) {
		out->action = WFA_NOT_A_LIST;
		backoff(s, WATCH_LIST, 0, in, out);
	} else {
		out->action = WFA_LISTED;
		s->retried_401 = 0;
		s->listed_at = in->now;
		soon(s, WATCH_STREAM, in, out);
	}
}

static void
stream_done(struct watchfsm *s, const struct watchfsm_input *in, struct watchfsm_step *out)
{
	int ok = in->status / 100 == 2;

	if (in->gone || in->status == 410) {
		out->action = WFA_EXPIRED;
		/* A fresh list that is already gone again: do not spin. */
		if (in->now - s->listed_at < WATCH_SHORT_MS)
			backoff(s, WATCH_LIST, 0, in, out);
		else
			soon(s, WATCH_LIST, in, out);
	} else if (in->transport_failed) {
		out->action = WFA_TRANSPORT;
		backoff(s, WATCH_STREAM, 0, in, out);
	} else if (in->status == 401 && !s->retried_401) {
		s->retried_401 = 1;
		soon(s, WATCH_STREAM, in, out);
	} else if (ok && !in->stream_err) {
		if (in->now - s->watch_started < WATCH_SHORT_MS && in->events == 0) {
			out->action = WFA_SHORT;
			backoff(s, WATCH_LIST, 0, in, out);
		} else
			soon(s, WATCH_STREAM, in, out); /* timeoutSeconds elapsed: resume */
	} else if (in->status == 429) {
		out->action = WFA_THROTTLED;
		backoff(s, WATCH_STREAM, in->retry_after_s, in, out);
	} else {
		/* An HTTP error, or an ERROR event or bad bytes already reported. */
		if (!ok)
			out->action = http_error(in->status);
		backoff(s, WATCH_LIST, in->retry_after_s, in, out);
	}
}

void
watchfsm_step(const struct watchfsm *st, const struct watchfsm_input *in, struct watchfsm *next,
    struct watchfsm_step *out)
{
	struct watchfsm s = *st;

	out->action = WFA_NONE;
	out->delay_ms = s.phase == WATCH_BACKOFF && s.due > in->now ? s.due - in->now : 0;
	switch (in->kind) {
	case WFI_STARTED:
		if (s.phase != WATCH_BACKOFF || (s.next != WATCH_LIST && s.next != WATCH_STREAM))
			break;
		s.phase = s.next;
		if (s.phase == WATCH_STREAM)
			s.watch_started = in->now;
		out->delay_ms = 0;
		break;
	case WFI_START_FAILED:
		if (s.phase != WATCH_BACKOFF)
			break;
		out->action = WFA_NOT_STARTED;
		backoff(&s, s.next == WATCH_STREAM ? WATCH_STREAM : WATCH_LIST, 0, in, out);
		break;
	case WFI_DONE:
		if (s.phase == WATCH_LIST)
			list_done(&s, in, out);
		else if (s.phase == WATCH_STREAM)
			stream_done(&s, in, out);
		break;
	case WFI_EVENT: s.retried_401 = 0; break;
	case WFI_RESYNC: soon(&s, WATCH_LIST, in, out); break;
	default: break;
	}
	*next = s;
}
