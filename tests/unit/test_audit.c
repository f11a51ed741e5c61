/*
 * test_audit.c: flood summaries (mirrors the summary part of src/audit.c):
 * requests that ended before their message get one line per source and
 * interval, never one each, and the table stays bounded.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "audit.h"
#include "log.h"
#include "testutil.h"

static int
count(const char *hay, const char *needle)
{
	int n = 0;

	while ((hay = strstr(hay, needle)) != NULL) {
		n++;
		hay += strlen(needle);
	}
	return n;
}

static void
two_sources(void)
{
	int i;

	log_init(LOG_JSON, LOG_INFO);
	for (i = 0; i < 500; i++)
		audit_note_reset("192.0.2.1");
	audit_note_reset("2001:db8::7");
	audit_flush_summaries(0); /* the interval is not over: nothing yet */
	audit_flush_summaries(1);
	audit_flush_summaries(1); /* nothing pending: nothing more */
}

Test(audit, one_summary_line_per_source)
{
	const char *out = tu_capture_stderr(two_sources);

	cr_assert_eq(count(out, "\n"), 2, "two lines, got: %s", out);
	cr_assert_eq(count(out, "\"msg\":\"audit summary\""), 2);
	cr_assert_not_null(
	    strstr(out, "\"detail\":\"500 requests from 192.0.2.1 reset before a CSR\""));
	cr_assert_not_null(
	    strstr(out, "\"detail\":\"1 requests from 2001:db8::7 reset before a CSR\""));
	cr_assert_not_null(strstr(out, "\"reason\":\"ResetBeforeCSR\""));
}

static void
many_sources(void)
{
	char ip[32];
	int  i;

	log_init(LOG_JSON, LOG_INFO);
	for (i = 0; i < 100; i++) {
		snprintf(ip, sizeof(ip), "10.0.0.%d", i);
		audit_note_reset(ip);
	}
	audit_flush_summaries(1);
}

Test(audit, sources_beyond_the_table_are_summed_as_other)
{
	const char *out = tu_capture_stderr(many_sources);

	cr_assert_eq(count(out, "\"msg\":\"audit summary\""), 33, "32 named + other");
	cr_assert_not_null(strstr(out, "\"detail\":\"68 requests from other reset before a CSR\""));
}
