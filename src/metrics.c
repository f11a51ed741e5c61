/*
 * metrics.c: atomic counters and the Prometheus text rendering.
 *
 * Threads: any. No locks: every value is a relaxed atomic; a scrape may see
 * a histogram mid-update, which Prometheus tolerates.
 */
#include "metrics.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

static atomic_uint_fast64_t requests[AK__MAX];
static atomic_uint_fast64_t counters[MC__MAX];
static atomic_uint_fast64_t buckets[METRICS_NBUCKETS + 1];
static atomic_uint_fast64_t sum_us;
static atomic_uint_fast64_t gen;
static atomic_llong         ca_expiry, tls_expiry;
static atomic_int           serving;

/* Upper bounds in seconds of the signing-latency histogram buckets. */
static const double bounds[METRICS_NBUCKETS] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
	0.01, 0.025, 0.05, 0.1, 0.25, 1 };

void
metrics_request(enum audit_kind k)
{
	if (k < AK__MAX)
		atomic_fetch_add_explicit(&requests[k], 1, memory_order_relaxed);
}

uint64_t
metrics_request_count(enum audit_kind k)
{
	return k < AK__MAX ? atomic_load(&requests[k]) : 0;
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
	atomic_fetch_add_explicit(&buckets[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&sum_us, (uint64_t)us, memory_order_relaxed);
}

void
metrics_inc(enum metric_counter c)
{
	if (c < MC__MAX)
		atomic_fetch_add_explicit(&counters[c], 1, memory_order_relaxed);
}

void
metrics_set_creds(uint64_t g, long long ca, long long tls)
{
	atomic_store(&gen, g);
	atomic_store(&ca_expiry, ca);
	atomic_store(&tls_expiry, tls);
}

void
metrics_set_serving(int v)
{
	atomic_store(&serving, v);
}

int
metrics_serving(void)
{
	return atomic_load(&serving);
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

int
metrics_render(struct sbuf *o)
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
	uint64_t cum = 0;
	int      i, rc = 0;

	rc |= addf(o,
	    "# HELP talos_csr_signer_build_info Build information.\n"
	    "# TYPE talos_csr_signer_build_info gauge\n"
	    "talos_csr_signer_build_info{version=\"%s\",commit=\"%s\"} 1\n",
	    TCS_VERSION, TCS_COMMIT);
	rc |= addf(o,
	    "# HELP talos_csr_signer_requests_total Certificate requests by result.\n"
	    "# TYPE talos_csr_signer_requests_total counter\n");
	for (i = 0; i < AK__MAX; i++) {
		if (audit_is_creds((enum audit_kind)i))
			continue;
		rc |= addf(o, "talos_csr_signer_requests_total{result=\"%s\"} %llu\n",
		    audit_result_label((enum audit_kind)i),
		    (unsigned long long)atomic_load(&requests[i]));
	}
	rc |= addf(o,
	    "# HELP talos_csr_signer_rate_limited_requests_total Requests refused by the rate "
	    "limit.\n"
	    "# TYPE talos_csr_signer_rate_limited_requests_total counter\n"
	    "talos_csr_signer_rate_limited_requests_total %llu\n",
	    (unsigned long long)atomic_load(&requests[AK_RATE_LIMITED]));
	rc |= addf(o,
	    "# HELP talos_csr_signer_signing_duration_seconds Time to verify a CSR and sign it.\n"
	    "# TYPE talos_csr_signer_signing_duration_seconds histogram\n");
	for (i = 0; i < METRICS_NBUCKETS; i++) {
		cum += atomic_load(&buckets[i]);
		rc |= addf(o, "talos_csr_signer_signing_duration_seconds_bucket{le=\"%g\"} %llu\n",
		    bounds[i], (unsigned long long)cum);
	}
	cum += atomic_load(&buckets[METRICS_NBUCKETS]);
	rc |= addf(o,
	    "talos_csr_signer_signing_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
	    "talos_csr_signer_signing_duration_seconds_sum %.6f\n"
	    "talos_csr_signer_signing_duration_seconds_count %llu\n",
	    (unsigned long long)cum, (double)atomic_load(&sum_us) / 1e6, (unsigned long long)cum);
	rc |= addf(o,
	    "# HELP talos_csr_signer_credential_generation Generation of the credentials in use.\n"
	    "# TYPE talos_csr_signer_credential_generation gauge\n"
	    "talos_csr_signer_credential_generation %llu\n",
	    (unsigned long long)atomic_load(&gen));
	rc |= addf(o,
	    "# HELP talos_csr_signer_ca_expiry_timestamp_seconds When the issuing CA certificate "
	    "expires.\n"
	    "# TYPE talos_csr_signer_ca_expiry_timestamp_seconds gauge\n"
	    "talos_csr_signer_ca_expiry_timestamp_seconds %lld\n",
	    (long long)atomic_load(&ca_expiry));
	rc |= addf(o,
	    "# HELP talos_csr_signer_serving_cert_expiry_timestamp_seconds When the serving "
	    "certificate expires.\n"
	    "# TYPE talos_csr_signer_serving_cert_expiry_timestamp_seconds gauge\n"
	    "talos_csr_signer_serving_cert_expiry_timestamp_seconds %lld\n",
	    (long long)atomic_load(&tls_expiry));
	rc |= addf(o,
	    "# HELP talos_csr_signer_credential_reloads_total Credential reloads by result.\n"
	    "# TYPE talos_csr_signer_credential_reloads_total counter\n");
	for (i = 0; i < MC__MAX; i++) {
		if (cnames[i][1] != NULL) {
			const char *n = cnames[i][0];
			rc |= addf(o, "# HELP %s %s\n# TYPE %s counter\n", n, cnames[i][1], n);
		}
		rc |= addf(
		    o, "%s %llu\n", cnames[i][0], (unsigned long long)atomic_load(&counters[i]));
	}
	return rc ? -1 : 0;
}
