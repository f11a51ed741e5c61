/*
 * probe.h: the self-probe of the gRPC port, so that /healthz tells the truth.
 *
 * A thread dials the daemon's own gRPC listener every few seconds and does
 * what a worker's first round trip does: TCP connect, TLS handshake
 * (OpenSSL client, ALPN h2 required, any serving certificate accepted: the
 * probe asks "does the door open", not "is the certificate right"), then the
 * HTTP/2 connection preface and a SETTINGS frame, and it waits for the
 * server's SETTINGS. No request is sent, so no audit record is written.
 *
 * A process whose listener has gone deaf (accept loop dead, cores pinned by
 * a hostile peer) fails this probe while its HTTP port still answers;
 * /healthz then fails once the probe has failed continuously for a set time,
 * and Kubernetes restarts the container. /readyz reports the last result.
 *
 * The verdicts are pure functions of (state, now) in probe_state_*, unit
 * tested without sockets; the thread only feeds them.
 */
#ifndef TCS_PROBE_H
#define TCS_PROBE_H

#include <stddef.h>
#include <stdint.h>

struct credstore;
struct probe;
struct sbuf;

/* What the probe has seen so far. All times in milliseconds (monotonic). */
struct probe_state {
	int      runs;          /* 0 until the first probe has finished */
	int      last_ok;       /* 1/0: outcome of the last probe */
	int64_t  failing_since; /* start of the current failure streak; -1 if none */
	int64_t  last_at;       /* when the last probe finished */
	int64_t  last_ms;       /* how long it took */
	uint64_t ok_total, fail_total, skipped_total;
	char     why[128]; /* reason of the last failure, or "" */
};

/* An empty state: no probe yet, no failure streak. */
void probe_state_init(struct probe_state *);
/*
 * Records one probe that finished at `now` after `took` ms: `ok` 1/0 with a
 * reason when 0. A success ends the failure streak; a failure starts one
 * unless one is running.
 */
void probe_state_record(struct probe_state *, int64_t now, int64_t took, int ok, const char *why);
/*
 * Records a probe not run because there is nothing to probe yet (no
 * credentials, listener not bound): ends any failure streak, since a daemon
 * waiting for its first Secret is not deaf, and leaves readiness to others.
 */
void probe_state_skip(struct probe_state *, int64_t now);
/*
 * Liveness: 1 unless the probe has failed continuously for at least
 * `fail_after` ms at `now`. Fills `why` (may be NULL) when 0.
 */
int probe_state_alive(
    const struct probe_state *, int64_t now, int64_t fail_after, char *why, size_t whylen);
/* Readiness: 1 if the last probe passed. Fills `why` when 0 ("pending" before the first). */
int probe_state_ready(const struct probe_state *, char *why, size_t whylen);

/* Settings of the probe thread (milliseconds). */
struct probe_params {
	int64_t interval;   /* between probes; 0 disables the probe */
	int64_t timeout;    /* for one probe, connect to SETTINGS */
	int64_t fail_after; /* /healthz fails after this long failing */
};

/*
 * Starts the probe thread against `host` (an IP literal; "" means 127.0.0.1)
 * and `port`. Probes only while `store` holds a snapshot. Returns 0 with the
 * probe in *out (NULL when params->interval is 0), or -1. Main thread.
 */
int probe_start(const char *host, int port, struct credstore *store,
    const struct probe_params *params, struct probe **out);
/* Stops and joins the thread, frees the probe. NULL is fine. Main thread. */
void probe_stop(struct probe *);
/* A consistent copy of the state. Any thread. */
void probe_get(struct probe *, struct probe_state *out);
/* Liveness and readiness at the current monotonic time. Any thread. */
int probe_alive(struct probe *, char *why, size_t whylen);
int probe_ready(struct probe *, char *why, size_t whylen);
/* Appends the probe's Prometheus metrics to `out`. 0 or -1. Any thread. */
int probe_render(struct probe *, struct sbuf *out);
/*
 * The address to probe for a LISTEN_ADDRESS value: its first entry, with the
 * wildcards ("", 0.0.0.0, ::) replaced by loopback (127.0.0.1, ::1).
 */
void probe_target(const char *listen_address, char *host, size_t hostlen);
/*
 * One probe, synchronously: connect, TLS with ALPN h2, HTTP/2 preface and
 * SETTINGS, wait for the server's SETTINGS, within `timeout_ms`. Returns 0,
 * or -1 with a one-line reason in `why`. Any thread (exposed for tests).
 */
int probe_once(const char *host, int port, int64_t timeout_ms, char *why, size_t whylen);

#endif /* TCS_PROBE_H */
