/*
 * test_watchfsm.c: every transition of the watcher's state machine, without
 * a server (mirrors src/watchfsm.c). Time and jitter are inputs, so each
 * case states exactly what happens and when.
 */
#include <stdint.h>
#include <string.h>

#include <criterion/criterion.h>

#include "watchfsm.h"

#define T0 1000000 /* an arbitrary monotonic start, ms */

static struct watchfsm_input
in_kind(enum watchfsm_input_kind kind, int64_t now)
{
	struct watchfsm_input in;

	memset(&in, 0, sizeof(in));
	in.kind = kind;
	in.now = now;
	return in;
}

static struct watchfsm_input
done(int64_t now, long status)
{
	struct watchfsm_input in = in_kind(WFI_DONE, now);

	in.status = status;
	return in;
}

static struct watchfsm_step
go(struct watchfsm *st, struct watchfsm_input in)
{
	struct watchfsm_step out;

	watchfsm_step(st, &in, st, &out);
	return out;
}

/* A state with `phase` in flight, listed and watching since long ago. */
static struct watchfsm
in_flight(enum watch_phase phase)
{
	struct watchfsm st;

	watchfsm_init(&st);
	st.next = phase;
	go(&st, in_kind(WFI_STARTED, T0 - 60000));
	st.listed_at = T0 - 60000;
	cr_assert_eq(st.phase, phase);
	return st;
}

/* Asserts a backoff to `next` of the first step (800 ms, jittered to [600, 800]). */
static void
first_backoff(const struct watchfsm *st, struct watchfsm_step out, enum watch_phase next)
{
	cr_assert_eq(st->phase, WATCH_BACKOFF);
	cr_assert_eq(st->next, next, "next %s", watchfsm_phase_name(st->next));
	cr_assert_eq(st->backoff_ms, WATCH_BACKOFF_MIN_MS);
	cr_assert(
	    out.delay_ms >= 600 && out.delay_ms <= 800, "delay %lld", (long long)out.delay_ms);
	cr_assert_eq(st->due, T0 + out.delay_ms);
}

static void
at_once(const struct watchfsm *st, struct watchfsm_step out, enum watch_phase next)
{
	cr_assert_eq(st->phase, WATCH_BACKOFF);
	cr_assert_eq(st->next, next, "next %s", watchfsm_phase_name(st->next));
	cr_assert_eq(out.delay_ms, 0);
	cr_assert_eq(st->due, T0);
}

Test(watchfsm, starts_with_a_list_at_once)
{
	struct watchfsm st;

	watchfsm_init(&st);
	cr_assert_eq(st.phase, WATCH_BACKOFF);
	cr_assert_eq(st.next, WATCH_LIST);
	cr_assert_eq(st.due, 0);
	cr_assert_eq(st.backoff_ms, 0);
	cr_assert_eq(st.retried_401, 0);
}

Test(watchfsm, started_enters_the_phase_and_a_watch_notes_its_start)
{
	struct watchfsm      st;
	struct watchfsm_step out;

	watchfsm_init(&st);
	out = go(&st, in_kind(WFI_STARTED, T0));
	cr_assert_eq(st.phase, WATCH_LIST);
	cr_assert_eq(out.action, WFA_NONE);
	st.phase = WATCH_BACKOFF;
	st.next = WATCH_STREAM;
	go(&st, in_kind(WFI_STARTED, T0 + 5));
	cr_assert_eq(st.phase, WATCH_STREAM);
	cr_assert_eq(st.watch_started, T0 + 5);
	/* Not waiting: a stray STARTED changes nothing. */
	go(&st, in_kind(WFI_STARTED, T0 + 9));
	cr_assert_eq(st.phase, WATCH_STREAM);
	cr_assert_eq(st.watch_started, T0 + 5);
}

Test(watchfsm, a_request_that_cannot_start_backs_off_and_keeps_its_kind)
{
	struct watchfsm      st;
	struct watchfsm_step out;

	watchfsm_init(&st);
	st.next = WATCH_STREAM;
	out = go(&st, in_kind(WFI_START_FAILED, T0));
	cr_assert_eq(out.action, WFA_NOT_STARTED);
	first_backoff(&st, out, WATCH_STREAM);
	/* While a request is in flight, START_FAILED is not possible: ignored. */
	st = in_flight(WATCH_LIST);
	out = go(&st, in_kind(WFI_START_FAILED, T0));
	cr_assert_eq(out.action, WFA_NONE);
	cr_assert_eq(st.phase, WATCH_LIST);
}

Test(watchfsm, list_ok_watches_at_once_and_clears_the_401_retry)
{
	struct watchfsm       st = in_flight(WATCH_LIST);
	struct watchfsm_input in = done(T0, 200);
	struct watchfsm_step  out;

	st.retried_401 = 1;
	in.list_ok = 1;
	out = go(&st, in);
	cr_assert_eq(out.action, WFA_LISTED);
	at_once(&st, out, WATCH_STREAM);
	cr_assert_eq(st.listed_at, T0);
	cr_assert_eq(st.retried_401, 0);
}

Test(watchfsm, list_transport_error_backs_off_and_relists)
{
	struct watchfsm       st = in_flight(WATCH_LIST);
	struct watchfsm_input in = done(T0, 0);
	struct watchfsm_step  out;

	in.transport_failed = 1;
	in.retry_after_s = 30; /* not an HTTP answer: ignored */
	out = go(&st, in);
	cr_assert_eq(out.action, WFA_TRANSPORT);
	first_backoff(&st, out, WATCH_LIST);
}

Test(watchfsm, list_401_retries_once_at_once_then_backs_off)
{
	struct watchfsm      st = in_flight(WATCH_LIST);
	struct watchfsm_step out;

	out = go(&st, done(T0, 401));
	cr_assert_eq(out.action, WFA_NONE, "a stale token is not worth a warning");
	at_once(&st, out, WATCH_LIST);
	cr_assert_eq(st.retried_401, 1);
	go(&st, in_kind(WFI_STARTED, T0));
	out = go(&st, done(T0, 401));
	cr_assert_eq(out.action, WFA_HTTP);
	first_backoff(&st, out, WATCH_LIST);
	cr_assert_eq(st.retried_401, 1, "spent until a success");
}

Test(watchfsm, list_403_and_404_are_access_errors_others_http)
{
	static const struct {
		long                 status;
		enum watchfsm_action want;
	} cases[] = { { 403, WFA_ACCESS }, { 404, WFA_ACCESS }, { 500, WFA_HTTP },
		{ 429, WFA_HTTP }, { 410, WFA_HTTP }, { 302, WFA_HTTP } };
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct watchfsm      st = in_flight(WATCH_LIST);
		struct watchfsm_step out = go(&st, done(T0, cases[i].status));

		cr_assert_eq(out.action, cases[i].want, "status %ld: %s", cases[i].status,
		    watchfsm_action_name(out.action));
		first_backoff(&st, out, WATCH_LIST);
	}
}

Test(watchfsm, list_200_that_is_not_a_list_backs_off)
{
	struct watchfsm      st = in_flight(WATCH_LIST);
	struct watchfsm_step out = go(&st, done(T0, 200));

	cr_assert_eq(out.action, WFA_NOT_A_LIST);
	first_backoff(&st, out, WATCH_LIST);
}

Test(watchfsm, retry_after_is_a_floor_and_is_capped)
{
	struct watchfsm       st = in_flight(WATCH_LIST);
	struct watchfsm_input in = done(T0, 503);
	struct watchfsm_step  out;

	in.retry_after_s = 5;
	out = go(&st, in);
	cr_assert_eq(out.delay_ms, 5000);
	cr_assert_eq(st.due, T0 + 5000);
	st = in_flight(WATCH_LIST);
	in.retry_after_s = 1L << 40;
	out = go(&st, in);
	cr_assert_eq(out.delay_ms, (int64_t)WATCH_RETRY_AFTER_MAX_S * 1000);
}

Test(watchfsm, stream_410_relists_at_once_or_backs_off_after_a_fresh_list)
{
	struct watchfsm       st = in_flight(WATCH_STREAM);
	struct watchfsm_input in = done(T0, 200);
	struct watchfsm_step  out;

	in.gone = 1; /* an ERROR event with code 410 */
	out = go(&st, in);
	cr_assert_eq(out.action, WFA_EXPIRED);
	at_once(&st, out, WATCH_LIST);

	st = in_flight(WATCH_STREAM);
	out = go(&st, done(T0, 410)); /* the HTTP status */
	cr_assert_eq(out.action, WFA_EXPIRED);
	at_once(&st, out, WATCH_LIST);

	/* Gone again right after a list: do not spin. */
	st = in_flight(WATCH_STREAM);
	st.listed_at = T0 - (WATCH_SHORT_MS - 1);
	out = go(&st, in);
	cr_assert_eq(out.action, WFA_EXPIRED);
	first_backoff(&st, out, WATCH_LIST);
}

Test(watchfsm, stream_transport_error_backs_off_and_rewatches)
{
	struct watchfsm       st = in_flight(WATCH_STREAM);
	struct watchfsm_input in = done(T0, 0);
	struct watchfsm_step  out;

	in.transport_failed = 1;
	out = go(&st, in);
	cr_assert_eq(out.action, WFA_TRANSPORT);
	first_backoff(&st, out, WATCH_STREAM);
}

Test(watchfsm, stream_401_retries_once_then_relists)
{
	struct watchfsm      st = in_flight(WATCH_STREAM);
	struct watchfsm_step out;

	out = go(&st, done(T0, 401));
	cr_assert_eq(out.action, WFA_NONE);
	at_once(&st, out, WATCH_STREAM);
	go(&st, in_kind(WFI_STARTED, T0));
	out = go(&st, done(T0, 401));
	cr_assert_eq(out.action, WFA_HTTP);
	first_backoff(&st, out, WATCH_LIST);
}

Test(watchfsm, an_event_makes_the_401_retry_available_again)
{
	struct watchfsm      st = in_flight(WATCH_STREAM);
	struct watchfsm_step out;

	go(&st, done(T0, 401));
	go(&st, in_kind(WFI_STARTED, T0));
	cr_assert_eq(st.retried_401, 1);
	out = go(&st, in_kind(WFI_EVENT, T0 + 10));
	cr_assert_eq(out.action, WFA_NONE);
	cr_assert_eq(st.retried_401, 0);
	cr_assert_eq(st.phase, WATCH_STREAM, "an event changes no phase");
	out = go(&st, done(T0, 401));
	at_once(&st, out, WATCH_STREAM);
}

Test(watchfsm, stream_clean_end_resumes_at_once)
{
	struct watchfsm      st = in_flight(WATCH_STREAM);
	struct watchfsm_step out = go(&st, done(T0, 200));

	cr_assert_eq(out.action, WFA_NONE);
	at_once(&st, out, WATCH_STREAM);
}

Test(watchfsm, stream_that_ends_at_once_without_events_backs_off_and_relists)
{
	struct watchfsm       st = in_flight(WATCH_STREAM);
	struct watchfsm_input in = done(T0, 200);
	struct watchfsm_step  out;

	st.watch_started = T0 - (WATCH_SHORT_MS - 1);
	out = go(&st, in);
	cr_assert_eq(out.action, WFA_SHORT);
	first_backoff(&st, out, WATCH_LIST);

	/* As short, but with an event: a normal end. */
	st = in_flight(WATCH_STREAM);
	st.watch_started = T0 - 10;
	in.events = 1;
	out = go(&st, in);
	cr_assert_eq(out.action, WFA_NONE);
	at_once(&st, out, WATCH_STREAM);

	/* Exactly WATCH_SHORT_MS long without events: not short. */
	st = in_flight(WATCH_STREAM);
	st.watch_started = T0 - WATCH_SHORT_MS;
	in.events = 0;
	out = go(&st, in);
	at_once(&st, out, WATCH_STREAM);
}

Test(watchfsm, stream_429_backs_off_and_rewatches_no_sooner_than_retry_after)
{
	struct watchfsm       st = in_flight(WATCH_STREAM);
	struct watchfsm_input in = done(T0, 429);
	struct watchfsm_step  out;

	out = go(&st, in);
	cr_assert_eq(out.action, WFA_THROTTLED);
	first_backoff(&st, out, WATCH_STREAM);
	st = in_flight(WATCH_STREAM);
	in.retry_after_s = 7;
	out = go(&st, in);
	cr_assert_eq(out.action, WFA_THROTTLED);
	cr_assert_eq(out.delay_ms, 7000);
	cr_assert_eq(st.next, WATCH_STREAM);
}

Test(watchfsm, stream_http_errors_back_off_and_relist)
{
	struct watchfsm       st = in_flight(WATCH_STREAM);
	struct watchfsm_input in = done(T0, 403);
	struct watchfsm_step  out;

	out = go(&st, in);
	cr_assert_eq(out.action, WFA_ACCESS);
	first_backoff(&st, out, WATCH_LIST);
	st = in_flight(WATCH_STREAM);
	out = go(&st, done(T0, 404));
	cr_assert_eq(out.action, WFA_ACCESS);
	st = in_flight(WATCH_STREAM);
	in = done(T0, 500);
	in.retry_after_s = 3;
	out = go(&st, in);
	cr_assert_eq(out.action, WFA_HTTP);
	cr_assert_eq(st.next, WATCH_LIST);
	cr_assert_eq(out.delay_ms, 3000);
}

Test(watchfsm, stream_error_event_already_reported_backs_off_and_relists)
{
	struct watchfsm       st = in_flight(WATCH_STREAM);
	struct watchfsm_input in = done(T0, 200);
	struct watchfsm_step  out;

	in.stream_err = 1;
	in.events = 3;
	out = go(&st, in);
	cr_assert_eq(out.action, WFA_NONE, "the event callback reported it");
	first_backoff(&st, out, WATCH_LIST);
}

Test(watchfsm, resync_relists_at_once_from_any_phase)
{
	enum watch_phase p;

	for (p = WATCH_LIST; p <= WATCH_STREAM; p++) {
		struct watchfsm      st = in_flight(p);
		struct watchfsm_step out = go(&st, in_kind(WFI_RESYNC, T0));

		cr_assert_eq(out.action, WFA_NONE);
		at_once(&st, out, WATCH_LIST);
	}
	{
		struct watchfsm      st;
		struct watchfsm_step out;

		watchfsm_init(&st);
		st.next = WATCH_STREAM;
		st.due = T0 + 20000; /* in a long backoff */
		out = go(&st, in_kind(WFI_RESYNC, T0));
		at_once(&st, out, WATCH_LIST);
	}
}

Test(watchfsm, a_result_while_nothing_is_in_flight_is_ignored)
{
	struct watchfsm      st, before;
	struct watchfsm_step out;

	watchfsm_init(&st);
	st.next = WATCH_STREAM;
	st.due = T0 + 500;
	before = st;
	out = go(&st, done(T0, 500));
	cr_assert_eq(out.action, WFA_NONE);
	cr_assert_eq(memcmp(&st, &before, sizeof(st)), 0);
	cr_assert_eq(out.delay_ms, 500, "the pending backoff is reported unchanged");
}

Test(watchfsm, backoff_doubles_to_the_ceiling_and_resets_after_quiet)
{
	struct watchfsm       st = in_flight(WATCH_STREAM);
	struct watchfsm_input in;
	struct watchfsm_step  out;
	static const int      steps[] = { 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000 };
	int64_t               now = T0;
	size_t                i;

	for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		in = done(now, 0);
		in.transport_failed = 1;
		in.rand = 0; /* no jitter */
		out = go(&st, in);
		cr_assert_eq(out.delay_ms, steps[i], "step %zu: %lld", i, (long long)out.delay_ms);
		cr_assert_eq(st.backoff_ms, steps[i]);
		go(&st, in_kind(WFI_STARTED, st.due));
		now = st.due + 10;
	}
	/* Jitter takes at most a quarter off. */
	in = done(now, 0);
	in.transport_failed = 1;
	in.rand = 30000 / 4; /* the largest reduction */
	out = go(&st, in);
	cr_assert_eq(out.delay_ms, 30000 - 30000 / 4);
	go(&st, in_kind(WFI_STARTED, st.due));
	/* Two quiet minutes after the last failure: back to the first step. */
	in = done(st.last_fail + WATCH_BACKOFF_RESET_MS, 0);
	in.transport_failed = 1;
	in.rand = 0;
	out = go(&st, in);
	cr_assert_eq(out.delay_ms, WATCH_BACKOFF_MIN_MS);
}

Test(watchfsm, any_jitter_stays_within_the_bounds)
{
	uint64_t r;

	for (r = 0; r < 5000; r += 7) {
		struct watchfsm       st = in_flight(WATCH_STREAM);
		struct watchfsm_input in = done(T0, 0);
		struct watchfsm_step  out;

		in.transport_failed = 1;
		in.rand = r * 0x9e3779b97f4a7c15ULL;
		out = go(&st, in);
		cr_assert(
		    out.delay_ms >= 600 && out.delay_ms <= 800, "%lld", (long long)out.delay_ms);
	}
}

Test(watchfsm, the_input_state_is_not_changed_when_next_is_elsewhere)
{
	struct watchfsm       st = in_flight(WATCH_LIST), before = st, after;
	struct watchfsm_input in = done(T0, 200);
	struct watchfsm_step  out;

	in.list_ok = 1;
	watchfsm_step(&st, &in, &after, &out);
	cr_assert_eq(memcmp(&st, &before, sizeof(st)), 0, "pure: the old state stays");
	cr_assert_eq(after.next, WATCH_STREAM);
}

Test(watchfsm, names)
{
	cr_assert_str_eq(watchfsm_phase_name(WATCH_LIST), "list");
	cr_assert_str_eq(watchfsm_phase_name(WATCH_STREAM), "watch");
	cr_assert_str_eq(watchfsm_phase_name(WATCH_BACKOFF), "backoff");
	cr_assert_str_eq(watchfsm_phase_name(WATCH__MAX), "unknown");
	cr_assert_str_eq(watchfsm_action_name(WFA_THROTTLED), "throttled");
	cr_assert_str_eq(watchfsm_action_name(WFA__MAX), "unknown");
}
