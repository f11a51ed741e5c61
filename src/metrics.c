/*
 * metrics.c: atomic counters and the Prometheus text rendering.
 *
 * DESIGN
 * metrics_render() appends one block per family group, each from its own
 * static render_*() function, so a new family is one new function and one
 * call. The process_* families are read from /proc at scrape time
 * (procstat.c), like every Prometheus client library does.
 *
 * Threads: any. No locks: every value is a relaxed atomic; a scrape may see
 * a histogram mid-update, which Prometheus tolerates.
 * Processes: after metrics_share() (main, before the fork) the values are in
 * a MAP_SHARED mapping seen by both the network side and the keeper.
 * Owns: the counters (process-wide, or shared by the two processes).
 */
#include "metrics.h"

#include <sys/mman.h>

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "procstat.h"

/*
 * Every value lives in one struct. metrics_share() moves it into a shared
 * anonymous mapping before the keeper is forked, so that what the keeper
 * counts (credential reloads, watch restarts, Events) shows on the network
 * side's /metrics: lock-free atomics work across processes on one mapping.
 */
struct metrics_state {
	atomic_uint_fast64_t requests[AK__MAX];
	atomic_uint_fast64_t counters[MC__MAX];
	atomic_uint_fast64_t buckets[METRICS_NBUCKETS + 1];
	atomic_uint_fast64_t sum_us;
	atomic_uint_fast64_t gen;
	atomic_llong         ca_expiry, tls_expiry;
	atomic_int           serving;
	atomic_int           reload_ok[MS__MAX];
	atomic_llong         reload_when[MS__MAX]; /* 0: no reload from that source yet */
	atomic_uint_fast64_t fd_counts[MFD__MAX];
	atomic_llong         fd_gauges[MFG__MAX];
};

static struct metrics_state  local;
static struct metrics_state *M = &local;

static const char *const source_label[MS__MAX] = {
	[MS_CA_SECRET] = "ca_secret",
	[MS_TLS_SECRET] = "tls_secret",
	[MS_FILES] = "files",
};

int
metrics_share(void)
{
	struct metrics_state *m;

	if (M != &local)
		return 0;
	m = mmap(NULL, sizeof(*m), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return -1;
	memcpy(m, &local, sizeof(*m)); /* nothing runs concurrently yet */
	M = m;
	return 0;
}

void
metrics_fd_inc(enum metric_fd c)
{
	if (c < MFD__MAX)
		atomic_fetch_add_explicit(&M->fd_counts[c], 1, memory_order_relaxed);
}

void
metrics_fd_gauge_add(enum metric_fd_gauge g, int64_t d)
{
	if (g < MFG__MAX)
		atomic_fetch_add_explicit(&M->fd_gauges[g], (long long)d, memory_order_relaxed);
}

void
metrics_fd_gauge_set(enum metric_fd_gauge g, int64_t v)
{
	if (g < MFG__MAX)
		atomic_store_explicit(&M->fd_gauges[g], (long long)v, memory_order_relaxed);
}

uint64_t
metrics_fd_count(enum metric_fd c)
{
	return c < MFD__MAX ? atomic_load(&M->fd_counts[c]) : 0;
}

int64_t
metrics_fd_gauge(enum metric_fd_gauge g)
{
	return g < MFG__MAX ? atomic_load(&M->fd_gauges[g]) : 0;
}

/* Upper bounds in seconds of the signing-latency histogram buckets. */
static const double bounds[METRICS_NBUCKETS] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
	0.01, 0.025, 0.05, 0.1, 0.25, 1 };

void
metrics_request(enum audit_kind k)
{
	if (k < AK__MAX)
		atomic_fetch_add_explicit(&M->requests[k], 1, memory_order_relaxed);
}

uint64_t
metrics_request_count(enum audit_kind k)
{
	return k < AK__MAX ? atomic_load(&M->requests[k]) : 0;
}

void
metrics_sign_latency_us(int64_t us)
{
	int i;

	if (us < 0)
		us = 0;
	for (i = 0; i < METRICS_NBUCKETS; i++)
		if ((double)us / 1e6 <= bounds[i])
			break;
	atomic_fetch_add_explicit(&M->buckets[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&M->sum_us, (uint64_t)us, memory_order_relaxed);
}

void
metrics_inc(enum metric_counter c)
{
	if (c < MC__MAX)
		atomic_fetch_add_explicit(&M->counters[c], 1, memory_order_relaxed);
}

void
metrics_set_creds(uint64_t g, long long ca, long long tls)
{
	atomic_store(&M->gen, g);
	atomic_store(&M->ca_expiry, ca);
	atomic_store(&M->tls_expiry, tls);
}

void
metrics_reload(enum metric_source src, int ok, long long when)
{
	if (src >= MS__MAX)
		return;
	atomic_store(&M->reload_ok[src], ok ? 1 : 0);
	atomic_store(&M->reload_when[src], when > 0 ? when : 1);
}

void
metrics_reload_unchanged(enum metric_source src, long long when)
{
	if (src >= MS__MAX)
		return;
	if (atomic_load(&M->reload_when[src]) != 0 && atomic_load(&M->reload_ok[src]) == 1)
		return;
	metrics_reload(src, 1, when);
}

void
metrics_set_serving(int v)
{
	atomic_store(&M->serving, v);
}

int
metrics_serving(void)
{
	return atomic_load(&M->serving);
}

static int addf(struct sbuf *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
addf(struct sbuf *out, const char *fmt, ...)
{
	char    line[512];
	va_list ap;
	int     n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line))
		return -1;
	return sbuf_add(out, line, (size_t)n);
}

/* The front door's counters and gauges, one family per question. */
static int
render_frontdoor(struct sbuf *o)
{
	static const struct {
		const char *family, *label;
	} names[MFD__MAX] = {
		[MFD_ACCEPTED] = { "connections", "accepted" },
		[MFD_REFUSED_TOTAL] = { "connections", "refused_max_connections" },
		[MFD_REFUSED_SOURCE] = { "connections", "refused_per_source" },
		[MFD_ACCEPT_FD_LIMIT] = { "accept_errors", "fd_limit" },
		[MFD_ACCEPT_ERROR] = { "accept_errors", "other" },
		[MFD_HANDSHAKE_FAILED] = { "closed", "handshake_failed" },
		[MFD_HANDSHAKE_TIMEOUT] = { "closed", "handshake_timeout" },
		[MFD_NO_H2] = { "closed", "no_alpn_h2" },
		[MFD_FIRST_REQUEST_TIMEOUT] = { "closed", "first_request_timeout" },
		[MFD_LIFETIME] = { "closed", "max_connection_age" },
		[MFD_EVICTED] = { "closed", "evicted" },
		[MFD_HANDOFF_FAILED] = { "closed", "handoff_failed" },
		[MFD_GUARD_BAD_PREFACE] = { "closed", "h2_bad_preface" },
		[MFD_GUARD_PROTOCOL] = { "closed", "h2_protocol" },
		[MFD_GUARD_HEADER_BLOCK] = { "closed", "h2_header_block" },
		[MFD_GUARD_STREAMS] = { "closed", "h2_streams" },
		[MFD_GUARD_RST_RATE] = { "closed", "h2_rst_rate" },
		[MFD_GUARD_PRE_REQUEST] = { "closed", "h2_bytes_before_request" },
		[MFD_HANDSHAKES] = { "handshakes", NULL },
		[MFD_RESET_BEFORE_CSR] = { "requests_reset_before_csr", NULL },
	};
	static const struct {
		const char *family, *key, *help;
	} families[] = {
		{ "connections", "result", "Client connections by admission result." },
		{ "accept_errors", "error",
		    "accept() errors (fd_limit: EMFILE/ENFILE, survived)." },
		{ "closed", "reason", "Client connections closed by the front door, by reason." },
		{ "handshakes", NULL, "TLS handshakes completed with ALPN h2." },
		{ "requests_reset_before_csr", NULL,
		    "Requests that ended before their message (summarised in the audit log)." },
	};
	static const struct {
		const char *name, *help;
	} gauges[MFG__MAX] = {
		[MFG_OPEN] = { "open_connections", "Client connections open." },
		[MFG_HANDSHAKING] = { "handshaking_connections",
		    "Client connections still in their TLS handshake." },
		[MFG_ACCEPTING] = { "accepting",
		    "1 while the front door accepts connections, 0 while it backs off." },
	};
	size_t f;
	int    i, rc = 0;

	for (f = 0; f < sizeof(families) / sizeof(families[0]); f++) {
		rc |= addf(o,
		    "# HELP talos_csr_signer_frontdoor_%s_total %s\n"
		    "# TYPE talos_csr_signer_frontdoor_%s_total counter\n",
		    families[f].family, families[f].help, families[f].family);
		for (i = 0; i < MFD__MAX; i++) {
			if (strcmp(names[i].family, families[f].family) != 0)
				continue;
			if (names[i].label == NULL)
				rc |= addf(o, "talos_csr_signer_frontdoor_%s_total %llu\n",
				    names[i].family,
				    (unsigned long long)atomic_load(&M->fd_counts[i]));
			else
				rc |=
				    addf(o, "talos_csr_signer_frontdoor_%s_total{%s=\"%s\"} %llu\n",
					names[i].family, families[f].key, names[i].label,
					(unsigned long long)atomic_load(&M->fd_counts[i]));
		}
	}
	for (i = 0; i < MFG__MAX; i++)
		rc |= addf(o,
		    "# HELP talos_csr_signer_frontdoor_%s %s\n"
		    "# TYPE talos_csr_signer_frontdoor_%s gauge\n"
		    "talos_csr_signer_frontdoor_%s %lld\n",
		    gauges[i].name, gauges[i].help, gauges[i].name, gauges[i].name,
		    (long long)atomic_load(&M->fd_gauges[i]));
	return rc;
}

static int
render_requests(struct sbuf *o)
{
	uint64_t cum = 0;
	int      i, rc = 0;

	rc |= addf(o,
	    "# HELP talos_csr_signer_requests_total Certificate requests by result.\n"
	    "# TYPE talos_csr_signer_requests_total counter\n");
	for (i = 0; i < AK__MAX; i++) {
		if (audit_is_creds((enum audit_kind)i))
			continue;
		rc |= addf(o, "talos_csr_signer_requests_total{result=\"%s\"} %llu\n",
		    audit_result_label((enum audit_kind)i),
		    (unsigned long long)atomic_load(&M->requests[i]));
	}
	rc |= addf(o,
	    "# HELP talos_csr_signer_signing_duration_seconds Time from handing a CSR to the "
	    "keeper to its answer (queue, verification, signing).\n"
	    "# TYPE talos_csr_signer_signing_duration_seconds histogram\n");
	for (i = 0; i < METRICS_NBUCKETS; i++) {
		cum += atomic_load(&M->buckets[i]);
		rc |= addf(o, "talos_csr_signer_signing_duration_seconds_bucket{le=\"%g\"} %llu\n",
		    bounds[i], (unsigned long long)cum);
	}
	cum += atomic_load(&M->buckets[METRICS_NBUCKETS]);
	rc |= addf(o,
	    "talos_csr_signer_signing_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
	    "talos_csr_signer_signing_duration_seconds_sum %.6f\n"
	    "talos_csr_signer_signing_duration_seconds_count %llu\n",
	    (unsigned long long)cum, (double)atomic_load(&M->sum_us) / 1e6,
	    (unsigned long long)cum);
	return rc;
}

static int
render_credentials(struct sbuf *o)
{
	uint64_t g = atomic_load(&M->gen);
	int      i, rc = 0;

	rc |= addf(o,
	    "# HELP talos_csr_signer_credential_generation Generation of the credentials in use "
	    "(0: none yet).\n"
	    "# TYPE talos_csr_signer_credential_generation gauge\n"
	    "talos_csr_signer_credential_generation %llu\n",
	    (unsigned long long)g);
	rc |= addf(o,
	    "# HELP talos_csr_signer_certificate_expiry_timestamp_seconds When a certificate in "
	    "use expires (ca: the issuing CA, serving: the gRPC serving certificate).\n"
	    "# TYPE talos_csr_signer_certificate_expiry_timestamp_seconds gauge\n");
	if (g > 0) /* no sample before the first credentials: no false expiry alert */
		rc |= addf(o,
		    "talos_csr_signer_certificate_expiry_timestamp_seconds{certificate=\"ca\"} "
		    "%lld\n"
		    "talos_csr_signer_certificate_expiry_timestamp_seconds{certificate=\"serving\"}"
		    " "
		    "%lld\n",
		    (long long)atomic_load(&M->ca_expiry), (long long)atomic_load(&M->tls_expiry));
	rc |= addf(o,
	    "# HELP talos_csr_signer_credential_last_reload_success Whether the latest reload "
	    "from each source was applied (1) or refused, deleted or missing (0).\n"
	    "# TYPE talos_csr_signer_credential_last_reload_success gauge\n");
	for (i = 0; i < MS__MAX; i++)
		if (atomic_load(&M->reload_when[i]) != 0)
			rc |= addf(o,
			    "talos_csr_signer_credential_last_reload_success{source=\"%s\"} %d\n",
			    source_label[i], atomic_load(&M->reload_ok[i]));
	rc |= addf(o,
	    "# HELP talos_csr_signer_credential_last_reload_timestamp_seconds When the latest "
	    "reload from each source happened.\n"
	    "# TYPE talos_csr_signer_credential_last_reload_timestamp_seconds gauge\n");
	for (i = 0; i < MS__MAX; i++)
		if (atomic_load(&M->reload_when[i]) != 0)
			rc |= addf(o,
			    "talos_csr_signer_credential_last_reload_timestamp_seconds{source=\"%"
			    "s\"} "
			    "%lld\n",
			    source_label[i], (long long)atomic_load(&M->reload_when[i]));
	return rc;
}

static int
render_counters(struct sbuf *o)
{
	static const char *const cnames[MC__MAX][2] = {
		{ "talos_csr_signer_credential_reloads_total{result=\"success\"}", NULL },
		{ "talos_csr_signer_credential_reloads_total{result=\"failure\"}", NULL },
		{ "talos_csr_signer_watch_restarts_total",
		    "Watch streams restarted (errors, 410 Gone, timeouts)." },
		{ "talos_csr_signer_events_posted_total", "Kubernetes Events posted." },
		{ "talos_csr_signer_events_dropped_total",
		    "Kubernetes Events dropped (queue full or capped)." },
		{ "talos_csr_signer_token_format_warnings_total",
		    "Credential loads with a token that does not look like a Talos token "
		    "([a-z0-9]{6}.[a-z0-9]{16})." },
	};
	int i, rc = 0;

	rc |= addf(o,
	    "# HELP talos_csr_signer_credential_reloads_total Credential reloads by result.\n"
	    "# TYPE talos_csr_signer_credential_reloads_total counter\n");
	for (i = 0; i < MC__MAX; i++) {
		if (cnames[i][1] != NULL) {
			const char *n = cnames[i][0];
			rc |= addf(o, "# HELP %s %s\n# TYPE %s counter\n", n, cnames[i][1], n);
		}
		rc |= addf(
		    o, "%s %llu\n", cnames[i][0], (unsigned long long)atomic_load(&M->counters[i]));
	}
	return rc;
}

/* The process_* families of the Prometheus client libraries; none if /proc is unreadable. */
static int
render_process(struct sbuf *o)
{
	struct procstat ps;
	static const struct {
		const char *name, *type, *help;
	} fam[] = {
		{ "process_cpu_seconds_total", "counter",
		    "Total user and system CPU time spent in seconds." },
		{ "process_resident_memory_bytes", "gauge", "Resident memory size in bytes." },
		{ "process_start_time_seconds", "gauge",
		    "Start time of the process since unix epoch in seconds." },
		{ "process_open_fds", "gauge", "Number of open file descriptors." },
		{ "process_max_fds", "gauge", "Maximum number of open file descriptors." },
	};
	double v[5];
	int    i, rc = 0;

	if (procstat_read(&ps) == -1)
		return 0;
	v[0] = ps.cpu_seconds;
	v[1] = ps.resident_bytes;
	v[2] = ps.start_time;
	v[3] = ps.open_fds;
	v[4] = ps.max_fds;
	for (i = 0; i < 5; i++)
		rc |= addf(o, "# HELP %s %s\n# TYPE %s %s\n%s %.15g\n", fam[i].name, fam[i].help,
		    fam[i].name, fam[i].type, fam[i].name, v[i]);
	return rc;
}

int
metrics_render(struct sbuf *o)
{
	int rc = 0;

	rc |= addf(o,
	    "# HELP talos_csr_signer_build_info Build information.\n"
	    "# TYPE talos_csr_signer_build_info gauge\n"
	    "talos_csr_signer_build_info{version=\"%s\",commit=\"%s\"} 1\n",
	    TCS_VERSION, TCS_COMMIT);
	rc |= render_requests(o);
	rc |= render_credentials(o);
	rc |= render_counters(o);
	rc |= render_frontdoor(o);
	rc |= render_process(o);
	return rc ? -1 : 0;
}
