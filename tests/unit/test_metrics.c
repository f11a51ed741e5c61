/*
 * test_metrics.c: counters move, the histogram is cumulative, and the
 * rendering is well-formed Prometheus text (mirrors src/metrics.c). The
 * real prometheus_client parser checks the live /metrics in tests/ops.
 * Criterion runs each test in its own process, so every test starts at 0.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>

#include "audit.h"
#include "metrics.h"
#include "util.h"

static char *
render(void)
{
	struct sbuf b;
	char       *s;

	sbuf_init(&b, 1024 * 1024);
	cr_assert_eq(metrics_render(&b), 0);
	s = strdup(b.data ? (const char *)b.data : "");
	sbuf_free(&b);
	return s;
}

/* The value of the sample line that starts with `name` (labels included), or -1. */
static double
sample(const char *text, const char *name)
{
	const char *p = text;
	size_t      n = strlen(name);

	while ((p = strstr(p, name)) != NULL) {
		if ((p == text || p[-1] == '\n') && p[n] == ' ')
			return strtod(p + n + 1, NULL);
		p += n;
	}
	return -1;
}

Test(metrics, every_family_is_present)
{
	static const char *const families[] = {
		"talos_csr_signer_build_info",
		"talos_csr_signer_requests_total",
		"talos_csr_signer_signing_duration_seconds",
		"talos_csr_signer_credential_generation",
		"talos_csr_signer_certificate_expiry_timestamp_seconds",
		"talos_csr_signer_credential_last_reload_success",
		"talos_csr_signer_credential_last_reload_timestamp_seconds",
		"process_cpu_seconds_total",
		"process_resident_memory_bytes",
		"process_start_time_seconds",
		"process_open_fds",
		"process_max_fds",
		"talos_csr_signer_credential_reloads_total",
		"talos_csr_signer_watch_restarts_total",
		"talos_csr_signer_events_posted_total",
		"talos_csr_signer_events_dropped_total",
	};
	char  *t = render(), want[160];
	size_t i;

	for (i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
		snprintf(want, sizeof(want), "# TYPE %s ", families[i]);
		cr_assert(strstr(t, want) != NULL, "missing %s", families[i]);
		snprintf(want, sizeof(want), "# HELP %s ", families[i]);
		cr_assert(strstr(t, want) != NULL, "no HELP for %s", families[i]);
	}
	free(t);
}

/* Exposition-format sanity: one TYPE per family, samples after their TYPE, values numeric. */
Test(metrics, rendering_is_well_formed)
{
	char  *t, *line, *save = NULL, *copy;
	char   families[64][128];
	size_t nfam = 0, i;

	metrics_request(AK_ISSUED);
	metrics_sign_latency_us(1234);
	t = render();
	copy = strdup(t);
	cr_assert_eq(t[strlen(t) - 1], '\n', "the text must end with a newline");
	for (line = strtok_r(copy, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		char   name[128], *sp, *end;
		size_t n;

		if (strncmp(line, "# TYPE ", 7) == 0) {
			cr_assert_eq(sscanf(line + 7, "%127s", name), 1);
			for (i = 0; i < nfam; i++)
				cr_assert_str_neq(families[i], name, "TYPE %s twice", name);
			cr_assert_lt(nfam, 64);
			snprintf(families[nfam++], sizeof(families[0]), "%s", name);
			continue;
		}
		if (strncmp(line, "# HELP ", 7) == 0)
			continue;
		cr_assert_neq(line[0], '#', "unknown comment: %s", line);
		n = strcspn(line, "{ ");
		cr_assert_lt(n, sizeof(name));
		memcpy(name, line, n);
		name[n] = '\0';
		for (i = 0; name[i] != '\0'; i++)
			cr_assert(
			    isalnum((unsigned char)name[i]) || name[i] == '_', "name %s", name);
		/* The sample must belong to an already declared family. */
		for (i = 0; i < nfam; i++) {
			size_t fl = strlen(families[i]);

			if (strncmp(name, families[i], fl) == 0 &&
			    (name[fl] == '\0' || strcmp(name + fl, "_bucket") == 0 ||
				strcmp(name + fl, "_sum") == 0 || strcmp(name + fl, "_count") == 0))
				break;
		}
		cr_assert_lt(i, nfam, "sample %s before (or without) its TYPE", name);
		sp = strrchr(line, ' ');
		cr_assert_not_null(sp);
		strtod(sp + 1, &end);
		cr_assert_eq(*end, '\0', "value of \"%s\" is not a number", line);
	}
	free(copy);
	free(t);
}

Test(metrics, request_counters_move_by_result)
{
	char *t;

	metrics_request(AK_ISSUED);
	metrics_request(AK_ISSUED);
	metrics_request(AK_AUTH_FAILED);
	metrics_request(AK_POLICY_DENIED);
	metrics_request(AK_RATE_LIMITED);
	metrics_request(AK_RATE_LIMITED);
	metrics_request(AK_RATE_LIMITED);
	metrics_request(AK__MAX); /* ignored, not a crash */
	cr_assert_eq(metrics_request_count(AK_ISSUED), 2);
	t = render();
	cr_assert_eq(sample(t, "talos_csr_signer_requests_total{result=\"issued\"}"), 2);
	cr_assert_eq(sample(t, "talos_csr_signer_requests_total{result=\"unauthenticated\"}"), 1);
	cr_assert_eq(sample(t, "talos_csr_signer_requests_total{result=\"policy_denied\"}"), 1);
	cr_assert_eq(sample(t, "talos_csr_signer_requests_total{result=\"invalid_csr\"}"), 0);
	cr_assert_eq(sample(t, "talos_csr_signer_requests_total{result=\"rate_limited\"}"), 3);
	/* One counter says it: no undocumented duplicate family. */
	cr_assert_null(strstr(t, "rate_limited_requests_total"));
	/* Credential events are not requests. */
	cr_assert_null(strstr(t, "result=\"credentials_rotated\""));
	free(t);
}

Test(metrics, latency_histogram_is_cumulative)
{
	char *t;

	metrics_sign_latency_us(50);      /* <= 100 us */
	metrics_sign_latency_us(3000);    /* <= 5 ms */
	metrics_sign_latency_us(2000000); /* beyond 1 s: +Inf only */
	metrics_sign_latency_us(-5);      /* clamped to 0 */
	t = render();
	cr_assert_eq(
	    sample(t, "talos_csr_signer_signing_duration_seconds_bucket{le=\"0.0001\"}"), 2);
	cr_assert_eq(
	    sample(t, "talos_csr_signer_signing_duration_seconds_bucket{le=\"0.0025\"}"), 2);
	cr_assert_eq(
	    sample(t, "talos_csr_signer_signing_duration_seconds_bucket{le=\"0.005\"}"), 3);
	cr_assert_eq(sample(t, "talos_csr_signer_signing_duration_seconds_bucket{le=\"1\"}"), 3);
	cr_assert_eq(sample(t, "talos_csr_signer_signing_duration_seconds_bucket{le=\"+Inf\"}"), 4);
	cr_assert_eq(sample(t, "talos_csr_signer_signing_duration_seconds_count"), 4);
	cr_assert_float_eq(
	    sample(t, "talos_csr_signer_signing_duration_seconds_sum"), 2.00305, 1e-6);
	free(t);
}

Test(metrics, credential_gauges_and_counters)
{
	char *t;

	metrics_set_creds(7, 2000000000LL, 1900000000LL);
	metrics_inc(MC_RELOAD_OK);
	metrics_inc(MC_RELOAD_FAIL);
	metrics_inc(MC_RELOAD_FAIL);
	metrics_inc(MC_WATCH_RESTARTS);
	metrics_inc(MC_EVENTS_POSTED);
	metrics_inc(MC_EVENTS_DROPPED);
	metrics_inc(MC__MAX); /* ignored */
	t = render();
	cr_assert_eq(sample(t, "talos_csr_signer_credential_generation"), 7);
	cr_assert_eq(
	    sample(t, "talos_csr_signer_certificate_expiry_timestamp_seconds{certificate=\"ca\"}"),
	    2000000000.0);
	cr_assert_eq(sample(t,
			 "talos_csr_signer_certificate_expiry_timestamp_seconds{certificate="
			 "\"serving\"}"),
	    1900000000.0);
	cr_assert_eq(sample(t, "talos_csr_signer_credential_reloads_total{result=\"success\"}"), 1);
	cr_assert_eq(sample(t, "talos_csr_signer_credential_reloads_total{result=\"failure\"}"), 2);
	cr_assert_eq(sample(t, "talos_csr_signer_watch_restarts_total"), 1);
	cr_assert_eq(sample(t, "talos_csr_signer_events_posted_total"), 1);
	cr_assert_eq(sample(t, "talos_csr_signer_events_dropped_total"), 1);
	free(t);
}

Test(metrics, no_expiry_sample_before_the_first_credentials)
{
	char *t = render();

	cr_assert_eq(sample(t, "talos_csr_signer_credential_generation"), 0);
	cr_assert_not_null(
	    strstr(t, "# TYPE talos_csr_signer_certificate_expiry_timestamp_seconds"));
	cr_assert_null(strstr(t, "talos_csr_signer_certificate_expiry_timestamp_seconds{"),
	    "a 0 expiry would page as 'expired'");
	free(t);
}

Test(metrics, last_reload_per_source)
{
	char *t = render();

	/* No source has reported: no sample (files mode has no Secrets). */
	cr_assert_null(strstr(t, "talos_csr_signer_credential_last_reload_success{"));
	free(t);
	metrics_reload(MS_CA_SECRET, 1, 1700000000LL);
	metrics_reload(MS_TLS_SECRET, 1, 1700000001LL);
	metrics_reload(MS_TLS_SECRET, 0, 1700000050LL); /* the Secret was deleted */
	metrics_reload(MS__MAX, 0, 1);                  /* ignored */
	t = render();
	cr_assert_eq(
	    sample(t, "talos_csr_signer_credential_last_reload_success{source=\"ca_secret\"}"), 1);
	cr_assert_eq(
	    sample(t, "talos_csr_signer_credential_last_reload_success{source=\"tls_secret\"}"), 0);
	cr_assert_eq(sample(t,
			 "talos_csr_signer_credential_last_reload_timestamp_seconds{source="
			 "\"tls_secret\"}"),
	    1700000050.0);
	cr_assert_null(strstr(t, "source=\"files\""));
	free(t);
	/* An unchanged re-read is a no-op after a success, a recovery after a failure. */
	metrics_reload_unchanged(MS_CA_SECRET, 1700000099LL);
	metrics_reload_unchanged(MS_TLS_SECRET, 1700000100LL);
	t = render();
	cr_assert_eq(sample(t,
			 "talos_csr_signer_credential_last_reload_timestamp_seconds{source="
			 "\"ca_secret\"}"),
	    1700000000.0);
	cr_assert_eq(
	    sample(t, "talos_csr_signer_credential_last_reload_success{source=\"tls_secret\"}"), 1);
	cr_assert_eq(sample(t,
			 "talos_csr_signer_credential_last_reload_timestamp_seconds{source="
			 "\"tls_secret\"}"),
	    1700000100.0);
	free(t);
}

Test(metrics, process_families_are_this_process)
{
	char  *t = render();
	double start = sample(t, "process_start_time_seconds");

	cr_assert_gt(sample(t, "process_resident_memory_bytes"), 1024 * 1024);
	cr_assert_geq(sample(t, "process_open_fds"), 3);
	cr_assert_gt(sample(t, "process_max_fds"), sample(t, "process_open_fds"));
	cr_assert_geq(sample(t, "process_cpu_seconds_total"), 0);
	cr_assert(start > 1.6e9 && start <= (double)time(NULL) + 1, "start time %f", start);
	free(t);
}

Test(metrics, serving_flag)
{
	cr_assert_eq(metrics_serving(), 0);
	metrics_set_serving(1);
	cr_assert_eq(metrics_serving(), 1);
	metrics_set_serving(0);
	cr_assert_eq(metrics_serving(), 0);
}

Test(metrics, render_fails_cleanly_when_the_buffer_is_too_small)
{
	struct sbuf b;

	sbuf_init(&b, 64);
	cr_assert_eq(metrics_render(&b), -1);
	sbuf_free(&b);
}

Test(metrics, front_door_counters_and_gauges)
{
	char *t;

	metrics_fd_inc(MFD_ACCEPTED);
	metrics_fd_inc(MFD_ACCEPTED);
	metrics_fd_inc(MFD_GUARD_RST_RATE);
	metrics_fd_inc(MFD__MAX); /* out of range: ignored */
	metrics_fd_gauge_add(MFG_OPEN, 3);
	metrics_fd_gauge_add(MFG_OPEN, -1);
	metrics_fd_gauge_set(MFG_ACCEPTING, 1);
	cr_assert_eq(metrics_fd_count(MFD_ACCEPTED), 2);
	cr_assert_eq(metrics_fd_gauge(MFG_OPEN), 2);
	t = render();
	cr_assert_eq(
	    sample(t, "talos_csr_signer_frontdoor_connections_total{result=\"accepted\"}"), 2);
	cr_assert_eq(
	    sample(t, "talos_csr_signer_frontdoor_closed_total{reason=\"h2_rst_rate\"}"), 1);
	cr_assert_eq(
	    sample(t, "talos_csr_signer_frontdoor_closed_total{reason=\"h2_header_block\"}"), 0);
	cr_assert_eq(sample(t, "talos_csr_signer_frontdoor_open_connections"), 2);
	cr_assert_eq(sample(t, "talos_csr_signer_frontdoor_accepting"), 1);
	cr_assert_not_null(strstr(t, "# TYPE talos_csr_signer_frontdoor_closed_total counter\n"));
	free(t);
}

Test(metrics, resets_before_a_csr_are_counted_and_summarised)
{
	char *t;
	int   i;

	for (i = 0; i < 5; i++)
		audit_note_reset("192.0.2.9");
	audit_flush_summaries(1);
	t = render();
	cr_assert_eq(sample(t, "talos_csr_signer_frontdoor_requests_reset_before_csr_total"), 5);
	free(t);
}
