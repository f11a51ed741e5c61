/*
 * test_watch.c: the watch-stream parser under every chunking, and the name
 * and query helpers the watcher builds its requests with (mirrors
 * src/watch.c; kube_object_ref/kube_escape live in src/kube.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <cjson/cJSON.h>

#include "kube.h"
#include "secret.h"
#include "watch.h"

/* What the callback saw, flattened to text so runs can be compared. */
struct seen {
	char log[8192];
	int  n;
	int  stop_at; /* return -1 on this event number (1-based), 0: never */
};

static int
record(enum watch_evtype t, const cJSON *obj, void *arg)
{
	struct seen *s = arg;
	const char  *rv;
	const cJSON *data, *v, *code;
	size_t       o = strlen(s->log);

	secret_meta(obj, NULL, NULL, &rv, NULL);
	o += (size_t)snprintf(s->log + o, sizeof(s->log) - o, "%s rv=%s", watch_evtype_name(t), rv);
	if ((data = cJSON_GetObjectItemCaseSensitive(obj, "data")) != NULL)
		cJSON_ArrayForEach(v, data) o += (size_t)snprintf(
		    s->log + o, sizeof(s->log) - o, " %s=%s", v->string, v->valuestring);
	if ((code = cJSON_GetObjectItemCaseSensitive(obj, "code")) != NULL)
		o += (size_t)snprintf(s->log + o, sizeof(s->log) - o, " code=%d", code->valueint);
	snprintf(s->log + o, sizeof(s->log) - o, ";");
	s->n++;
	return s->stop_at == s->n ? -1 : 0;
}

/* A realistic stream: events, a bookmark, UTF-8, CRLF, a blank line, an ERROR. */
static const char stream[] =
    "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Secret\",\"apiVersion\":\"v1\",\"metadata\":"
    "{\"name\":\"talos-ca\",\"namespace\":\"tcs\",\"resourceVersion\":\"101\",\"annotations\":"
    "{\"note\":\"gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x94\x91\"}},\"data\":{\"token\":"
    "\"YWJjZGVmLjAxMjM0NTY3ODlhYmNkZWY=\",\"tls.crt\":\"LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t\"},"
    "\"type\":\"Opaque\"}}\n"
    "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Secret\",\"apiVersion\":\"v1\",\"metadata\":"
    "{\"resourceVersion\":\"150\",\"annotations\":{\"k8s.io/initial-events-end\":\"true\"}}}}\r\n"
    "\n"
    "{\"type\":\"MODIFIED\",\"object\":{\"kind\":\"Secret\",\"metadata\":{\"name\":\"talos-ca\","
    "\"resourceVersion\":\"151\"},\"data\":{\"token\":\"enp6enp6LjAxMjM0NTY3ODlhYmNkZWY=\"}}}\n"
    "{\"type\":\"DELETED\",\"object\":{\"kind\":\"Secret\",\"metadata\":{\"name\":\"talos-ca\","
    "\"resourceVersion\":\"152\"}}}\n"
    "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},"
    "\"status\":\"Failure\",\"message\":\"too old resource version: 1 (152)\",\"reason\":"
    "\"Expired\",\"code\":410}}\n";

static void
run_split(const char *buf, size_t len, const size_t *cuts, size_t ncuts, struct seen *s)
{
	struct watch_parser *p = watch_parser_new(record, s);
	size_t               prev = 0, i;

	cr_assert_not_null(p);
	for (i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : len;

		cr_assert_eq(watch_feed(p, buf + prev, end - prev), 0, "cut at %zu", end);
		prev = end;
	}
	cr_assert_eq(watch_parser_events(p), 5);
	watch_parser_free(p);
}

Test(watch, whole_stream_in_one_piece)
{
	struct seen s = { .n = 0 };

	run_split(stream, sizeof(stream) - 1, NULL, 0, &s);
	cr_assert_eq(s.n, 5);
	cr_assert_str_eq(s.log,
	    "ADDED rv=101 token=YWJjZGVmLjAxMjM0NTY3ODlhYmNkZWY= "
	    "tls.crt=LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t;"
	    "BOOKMARK rv=150;"
	    "MODIFIED rv=151 token=enp6enp6LjAxMjM0NTY3ODlhYmNkZWY=;"
	    "DELETED rv=152;"
	    "ERROR rv= code=410;");
}

Test(watch, every_two_way_split_and_byte_by_byte_give_the_same_events)
{
	struct seen ref = { .n = 0 }, s;
	size_t      len = sizeof(stream) - 1, cut, i, *cuts;

	run_split(stream, len, NULL, 0, &ref);
	/* Includes cuts mid-UTF-8 (the annotation), mid-base64 and mid-CRLF. */
	for (cut = 1; cut < len; cut++) {
		memset(&s, 0, sizeof(s));
		run_split(stream, len, &cut, 1, &s);
		cr_assert_str_eq(s.log, ref.log, "split at %zu", cut);
	}
	cuts = calloc(len, sizeof(*cuts));
	for (i = 0; i + 1 < len; i++)
		cuts[i] = i + 1;
	memset(&s, 0, sizeof(s));
	run_split(stream, len, cuts, len - 1, &s);
	cr_assert_str_eq(s.log, ref.log);
	free(cuts);
}

Test(watch, pseudo_random_splits)
{
	struct seen ref = { .n = 0 }, s;
	size_t      len = sizeof(stream) - 1, cuts[16], n, i;
	unsigned    seed = 12345;
	int         round;

	run_split(stream, len, NULL, 0, &ref);
	for (round = 0; round < 500; round++) {
		n = 0;
		for (i = 1; i < len && n < 16; i += 1 + (size_t)(rand_r(&seed) % 97))
			cuts[n++] = i;
		memset(&s, 0, sizeof(s));
		run_split(stream, len, cuts, n, &s);
		cr_assert_str_eq(s.log, ref.log, "round %d", round);
	}
}

Test(watch, a_partial_line_waits_for_its_newline)
{
	struct seen          s = { .n = 0 };
	struct watch_parser *p = watch_parser_new(record, &s);
	const char          *line =
	    "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"9\"}}}";

	cr_assert_eq(watch_feed(p, line, strlen(line)), 0);
	cr_assert_eq(s.n, 0, "no event before the newline");
	cr_assert_eq(watch_feed(p, "\n", 1), 0);
	cr_assert_eq(s.n, 1);
	cr_assert_str_eq(s.log, "BOOKMARK rv=9;");
	/* reset drops a partial line */
	cr_assert_eq(watch_feed(p, line, 10), 0);
	watch_parser_reset(p);
	cr_assert_eq(watch_parser_events(p), 0);
	cr_assert_eq(watch_feed(p, line, strlen(line)), 0);
	cr_assert_eq(watch_feed(p, "\n", 1), 0);
	cr_assert_eq(s.n, 2);
	watch_parser_free(p);
}

Test(watch, malformed_lines_end_the_stream)
{
	static const char *const bad[] = {
		"{\"type\":\"ADDED\",\"object\":{}\n", /* truncated JSON */
		"not json at all\n",
		"{\"type\":\"EXPLODED\",\"object\":{}}\n", /* unknown type */
		"{\"type\":\"ADDED\"}\n",                  /* no object */
		"{\"type\":7,\"object\":{}}\n",            /* type not a string */
		"[1,2,3]\n",
	};
	struct seen          s;
	struct watch_parser *p;
	size_t               i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&s, 0, sizeof(s));
		p = watch_parser_new(record, &s);
		cr_assert_eq(watch_feed(p, bad[i], strlen(bad[i])), -1, "case %zu", i);
		cr_assert_eq(s.n, 0);
		watch_parser_free(p);
	}
}

Test(watch, an_oversized_event_is_refused_without_growing_forever)
{
	struct seen          s = { .n = 0 };
	struct watch_parser *p = watch_parser_new(record, &s);
	char                *chunk = malloc(64 * 1024);
	size_t               fed = 0;
	int                  rc = 0;
	const char          *head = "{\"type\":\"ADDED\",\"object\":{\"x\":\"";

	memset(chunk, 'A', 64 * 1024);
	cr_assert_eq(watch_feed(p, head, strlen(head)), 0);
	while (rc == 0 && fed < 2 * (size_t)WATCH_MAX_EVENT) {
		rc = watch_feed(p, chunk, 64 * 1024);
		fed += 64 * 1024;
	}
	cr_assert_eq(rc, -1);
	cr_assert(fed <= (size_t)WATCH_MAX_EVENT + 64 * 1024, "stopped at %zu", fed);
	cr_assert_eq(s.n, 0);
	/* After a reset the parser works again. */
	watch_parser_reset(p);
	cr_assert_eq(watch_feed(p, stream, sizeof(stream) - 1), 0);
	cr_assert_eq(s.n, 5);
	watch_parser_free(p);
	free(chunk);
}

Test(watch, callback_can_stop_the_stream)
{
	struct seen          s = { .n = 0, .stop_at = 2 };
	struct watch_parser *p = watch_parser_new(record, &s);

	cr_assert_eq(watch_feed(p, stream, sizeof(stream) - 1), -1);
	cr_assert_eq(s.n, 2, "nothing after the event that said stop");
	watch_parser_free(p);
}

Test(watch, event_type_names)
{
	cr_assert_str_eq(watch_evtype_name(WATCH_ADDED), "ADDED");
	cr_assert_str_eq(watch_evtype_name(WATCH_ERROR), "ERROR");
	cr_assert_str_eq(watch_evtype_name(WATCH_EV__MAX), "UNKNOWN");
}

Test(watch, object_references)
{
	char ns[KUBE_NS_MAX], name[KUBE_NAME_MAX], big[400];

	cr_assert_eq(kube_object_ref("talos-ca", "kube-system", ns, name), 0);
	cr_assert_str_eq(ns, "kube-system");
	cr_assert_str_eq(name, "talos-ca");
	cr_assert_eq(kube_object_ref("tcs/apid.serving-cert", "default", ns, name), 0);
	cr_assert_str_eq(ns, "tcs");
	cr_assert_str_eq(name, "apid.serving-cert");
	cr_assert_eq(kube_object_ref("Talos-CA", "default", ns, name), -1, "upper case");
	cr_assert_eq(kube_object_ref("a/b/c", "default", ns, name), -1);
	cr_assert_eq(kube_object_ref("/x", "default", ns, name), -1, "empty namespace");
	cr_assert_eq(kube_object_ref("ns/", "default", ns, name), -1, "empty name");
	cr_assert_eq(
	    kube_object_ref("my.ns/x", "default", ns, name), -1, "a namespace has no dots");
	cr_assert_eq(kube_object_ref("x&watch=1", "default", ns, name), -1, "no query injection");
	cr_assert_eq(kube_object_ref("-x", "default", ns, name), -1);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	cr_assert_eq(kube_object_ref(big, "default", ns, name), -1, "longer than 253");
}

Test(watch, query_escaping)
{
	char buf[64];

	cr_assert_str_eq(kube_escape("talos-ca.v1_x~", buf, sizeof(buf)), "talos-ca.v1_x~");
	cr_assert_str_eq(kube_escape("a=b&c d/+", buf, sizeof(buf)), "a%3Db%26c%20d%2F%2B");
	cr_assert_str_eq(kube_escape("abcdef", buf, 4), "", "too long: empty, not truncated");
}
