/*
 * httpd.h: the plain-HTTP operability listener (libmicrohttpd):
 *
 *   GET /healthz   200 "ok" while the process runs, unless the self-probe
 *                  of the gRPC port (probe.h) has failed continuously for
 *                  HEALTH_PROBE_FAIL_AFTER: then 503, so a deaf process is
 *                  restarted
 *   GET /readyz    200 when a credential snapshot is loaded, it is within
 *                  its validity window, the gRPC port is bound and the
 *                  last self-probe passed; 503 with the reason otherwise
 *   GET /metrics   the Prometheus text exposition (metrics_render())
 *
 * Probes never touch the signing path: they read atomics and take one
 * reference on the current snapshot to look at two timestamps. The listener
 * runs on libmicrohttpd's own internal thread; nothing else here is shared.
 * Without libmicrohttpd at build time (no HAVE_MHD), httpd_start() refuses a
 * non-empty HTTP_ADDR with a one-line reason.
 */
#ifndef TCS_HTTPD_H
#define TCS_HTTPD_H

#include <stddef.h>

struct credstore;
struct httpd;
struct probe;

/* The answer of /readyz, exposed for tests. */
struct httpd_readiness {
	int  ready;       /* 1/0 */
	char reason[640]; /* why not ready, or "ready" */
};

/*
 * Parses `addr` (":8081", "127.0.0.1:8081", "[::1]:8081"; port 0 picks a free
 * one) and starts serving. `store` must outlive the server. An empty `addr`
 * disables the listener: returns 0 with *out set to NULL. Returns 0 with a
 * new server in *out (stop with httpd_stop()), or -1 with a one-line reason
 * naming HTTP_ADDR in err. Main thread.
 */
int httpd_start(
    const char *addr, struct credstore *store, struct httpd **out, char *err, size_t errlen);
/*
 * Makes /healthz, /readyz and /metrics consult `p` (NULL: no self-probe).
 * `p` must outlive the server or be unset first. Main thread; `h` may be NULL.
 */
void httpd_set_probe(struct httpd *h, struct probe *p);
/* The bound TCP port (useful with port 0). */
int httpd_port(const struct httpd *);
/* Stops the listener, joins its thread and frees it. NULL is fine. Main thread. */
void httpd_stop(struct httpd *);

/*
 * Computes readiness from the store, the wall clock `now` (seconds) and
 * metrics_serving(). Any thread; takes and drops one snapshot reference.
 */
void httpd_readiness(struct credstore *, long long now, struct httpd_readiness *);

/* Parses an HTTP_ADDR value into host ("" = every address) and port; 0 or -1. */
int httpd_parse_addr(const char *addr, char *host, size_t hostlen, int *port);

/* libmicrohttpd's version string, or "none" (for --version). */
const char *httpd_mhd_version(void);

#endif /* TCS_HTTPD_H */
