/*
 * metrics.h: process-wide counters and gauges, lock-free, for /metrics.
 *
 * Any thread updates them with relaxed atomics; the HTTP thread renders
 * them in the Prometheus text exposition format.
 */
#ifndef TCS_METRICS_H
#define TCS_METRICS_H

#include <stdint.h>

#include "audit.h"
#include "util.h"

#define METRICS_NBUCKETS 12

enum metric_counter {
	MC_RELOAD_OK,
	MC_RELOAD_FAIL,
	MC_WATCH_RESTARTS,
	MC_EVENTS_POSTED,
	MC_EVENTS_DROPPED,
	MC_TOKEN_FORMAT, /* credentials published with a token not shaped like Talos's */
	MC__MAX
};

/* Where a credential reload came from (the `source` label). */
enum metric_source {
	MS_CA_SECRET,  /* CA_SECRET, api mode */
	MS_TLS_SECRET, /* TLS_SECRET, api mode */
	MS_FILES,      /* the mounted files, files mode */
	MS__MAX
};

/* Front door (frontdoor.c): connection outcomes, by the reason a connection ended. */
enum metric_fd {
	MFD_ACCEPTED,         /* connections accepted and admitted */
	MFD_REFUSED_TOTAL,    /* over MAX_CONNECTIONS */
	MFD_REFUSED_SOURCE,   /* over MAX_CONNECTIONS_PER_SOURCE */
	MFD_ACCEPT_FD_LIMIT,  /* accept() hit EMFILE/ENFILE (reserve descriptor used) */
	MFD_ACCEPT_ERROR,     /* any other accept() error */
	MFD_HANDSHAKE_FAILED, /* TLS handshake failed */
	MFD_HANDSHAKE_TIMEOUT,
	MFD_NO_H2, /* handshake without ALPN h2 */
	MFD_FIRST_REQUEST_TIMEOUT,
	MFD_LIFETIME,       /* closed at MAX_CONNECTION_AGE + grace */
	MFD_EVICTED,        /* unproven, closed to admit a newer connection at the cap */
	MFD_HANDOFF_FAILED, /* the inner connection to gRPC could not be made */
	MFD_GUARD_BAD_PREFACE,
	MFD_GUARD_PROTOCOL,
	MFD_GUARD_HEADER_BLOCK,
	MFD_GUARD_STREAMS,
	MFD_GUARD_RST_RATE,
	MFD_GUARD_PRE_REQUEST,
	MFD_HANDSHAKES,       /* TLS handshakes completed */
	MFD_RESET_BEFORE_CSR, /* requests that ended before their message (summarised) */
	MFD__MAX
};

enum metric_fd_gauge {
	MFG_OPEN,        /* client connections open */
	MFG_HANDSHAKING, /* of which still in the TLS handshake */
	MFG_ACCEPTING,   /* 1 while the front door accepts, 0 while it backs off or stopped */
	MFG__MAX
};

/*
 * Moves every value into a shared anonymous mapping, so that a process
 * forked afterwards (the keeper) updates the same counters. Main thread,
 * before any other thread or process exists. 0 or -1.
 */
int metrics_share(void);

void metrics_fd_inc(enum metric_fd);
void metrics_fd_gauge_add(enum metric_fd_gauge, int64_t delta);
void metrics_fd_gauge_set(enum metric_fd_gauge, int64_t value);
/* Values (tests and the front door's own log). */
uint64_t metrics_fd_count(enum metric_fd);
int64_t  metrics_fd_gauge(enum metric_fd_gauge);

/* Counts a finished request by its audit kind. */
void metrics_request(enum audit_kind);
/* Records one signing duration in microseconds. */
void metrics_sign_latency_us(int64_t us);
void metrics_inc(enum metric_counter);
/*
 * Records the outcome of the latest reload from one source at Unix time
 * `when`: ok 1 (applied, or unchanged), 0 (refused, deleted or missing: the
 * last good credentials keep serving). Sets the per-source gauges only; the
 * reload counters are metrics_inc()'s.
 */
void metrics_reload(enum metric_source, int ok, long long when);
/*
 * A re-read from `src` that found what is already serving: a no-op, unless
 * the source's latest outcome was a failure (or there was none yet); then it
 * records a success at `when` (the source recovered).
 */
void metrics_reload_unchanged(enum metric_source src, long long when);
/* Credential gauges, set by the credential publisher. */
void metrics_set_creds(uint64_t gen, long long ca_not_after, long long tls_not_after);
/* Sets the readiness bits: gRPC bound. */
void metrics_set_serving(int);
int  metrics_serving(void);
/* Appends the exposition text to `out`. 0 or -1. */
int metrics_render(struct sbuf *out);
/* Value of a request counter (tests). */
uint64_t metrics_request_count(enum audit_kind);

#endif /* TCS_METRICS_H */
