/*
 * watchfsm.h: the decisions of the Secret watcher, without curl.
 *
 * One watched Secret cycles through WATCH_LIST (a LIST is in flight),
 * WATCH_STREAM (a WATCH is in flight) and WATCH_BACKOFF (waiting until `due`
 * to start `next`). What happens when a request ends (401, 410, 429, 403,
 * a watch that ended at once, a transport error) is decided here, as a pure
 * function of (state, input) -> (new state, action, delay): no clock, no
 * randomness and no I/O of its own (the caller passes the time and a random
 * number for the jitter). watch.c does the I/O and carries out the action.
 *
 * The rules (client-go's Reflector reduced to one object):
 *   - a LIST that answers 200 with a SecretList: apply it, watch at once;
 *   - a clean end of a WATCH resumes at once from the last resourceVersion,
 *     unless it lasted under WATCH_SHORT_MS with no event (back off, relist);
 *   - 410 Gone (an ERROR event or the status) relists, at once unless the
 *     LIST itself is younger than WATCH_SHORT_MS (then back off: no spin);
 *   - a 401 retries once at once (kube.c has marked the token stale, so the
 *     retry re-reads it); a second one is an HTTP error;
 *   - a transport error or a 429 backs off and re-watches (a LIST is
 *     retried as a LIST); other HTTP errors back off and relist;
 *   - backoff: 0.8 s doubling to 30 s, jittered down by up to a quarter,
 *     reset after two quiet minutes, never shorter than Retry-After (capped).
 */
#ifndef TCS_WATCHFSM_H
#define TCS_WATCHFSM_H

#include <stddef.h>
#include <stdint.h>

#define WATCH_BACKOFF_MIN_MS    800
#define WATCH_BACKOFF_MAX_MS    30000
#define WATCH_BACKOFF_RESET_MS  (2 * 60 * 1000)
#define WATCH_SHORT_MS          1000
#define WATCH_RETRY_AFTER_MAX_S 600 /* a larger Retry-After is taken as this */

enum watch_phase { WATCH_LIST, WATCH_STREAM, WATCH_BACKOFF, WATCH__MAX };

/*
 * The state of one watched Secret. Change it only through watchfsm_step().
 * The 64-bit fields come first so that the struct has no padding (tests and
 * the fuzzer compare states with memcmp()).
 */
struct watchfsm {
	int64_t          due;           /* monotonic ms */
	int64_t          last_fail;     /* when the current backoff step was taken */
	int64_t          listed_at;     /* when the last LIST succeeded */
	int64_t          watch_started; /* when the current WATCH started */
	enum watch_phase phase;         /* LIST or STREAM in flight, or BACKOFF */
	enum watch_phase next;          /* in BACKOFF: LIST or STREAM, started at `due` */
	int              backoff_ms;    /* the current backoff step; 0 before any failure */
	int              retried_401;   /* the one immediate 401 retry is spent */
};

enum watchfsm_input_kind {
	WFI_STARTED,      /* the request for `next` was started */
	WFI_START_FAILED, /* it could not be started */
	WFI_DONE,         /* the request in flight ended; the response fields say how */
	WFI_EVENT,        /* the stream delivered an event: the source is healthy */
	WFI_RESYNC,       /* relist now (SIGHUP); the caller cancelled any request */
	WFI__MAX
};

struct watchfsm_input {
	enum watchfsm_input_kind kind;
	int64_t                  now;  /* monotonic ms */
	uint64_t                 rand; /* any random value, for the jitter */
	/* WFI_DONE only: */
	int    transport_failed; /* no HTTP answer (refused, reset, timed out) */
	long   status;           /* the HTTP status */
	long   retry_after_s;    /* Retry-After in seconds, 0 if none */
	int    list_ok;          /* a LIST's 200 body is a SecretList */
	int    gone;             /* a WATCH delivered an ERROR event with code 410 */
	int    stream_err; /* a WATCH delivered another ERROR or unparsable bytes (reported) */
	size_t events;     /* events a WATCH delivered */
};

enum watchfsm_action {
	WFA_NONE,        /* nothing to report */
	WFA_LISTED,      /* the LIST answered: apply its object, or report it missing */
	WFA_EXPIRED,     /* 410 Gone: the resume point expired; relisting */
	WFA_NOT_STARTED, /* the request could not be started: report */
	WFA_TRANSPORT,   /* report the transport error */
	WFA_ACCESS,      /* 403 or 404: report, and say which RBAC verb or name is wrong */
	WFA_HTTP,        /* another HTTP error: report the Status message */
	WFA_NOT_A_LIST,  /* a LIST's 200 body is not a SecretList: report */
	WFA_SHORT,       /* the WATCH ended at once without an event: report */
	WFA_THROTTLED,   /* 429: report */
	WFA__MAX
};

struct watchfsm_step {
	enum watchfsm_action action;
	int64_t              delay_ms; /* when the new state is BACKOFF: due - now */
};

/* The initial state: BACKOFF, due at once, next LIST. */
void watchfsm_init(struct watchfsm *);

/*
 * Decides: writes the state after `in` to *next (which may be st) and what
 * to do to *out. Pure; any thread. An input that does not fit the state (a
 * WFI_DONE while nothing is in flight) leaves the state as it is.
 */
void watchfsm_step(const struct watchfsm *st, const struct watchfsm_input *in,
    struct watchfsm *next, struct watchfsm_step *out);

/* "list", "watch", "backoff". */
const char *watchfsm_phase_name(enum watch_phase);
/* "none", "listed", "expired", ... */
const char *watchfsm_action_name(enum watchfsm_action);

#endif /* TCS_WATCHFSM_H */
