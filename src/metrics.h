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
