/*
 * test_events.c: the events queue, notes, Event bodies, series aggregation
 * and the token-bucket cap (mirrors src/events.c). The file is included so
 * that the static pieces can be driven with a fake sender and a fake clock
 * (STYLE.md section 8); nothing else in tcs_core refers to events.o, so the
 * library's copy is never linked in beside this one.
 */
#define _GNU_SOURCE /* pthread_tryjoin_np */
#include "../../src/events.c"

#include <regex.h>

#include <criterion/criterion.h>

/* ----------------------------------------------------------- fake sender */

struct sent {
	char  method[8];
	char  path[256];
	char *body;
};

static struct sent sent[4096];
static int         nsent;
static long        reply = 201;

static int
fake_send(struct events *e, const char *method, const char *path, const char *body, long *status)
{
	(void)e;
	cr_assert_lt(nsent, 4096);
	snprintf(sent[nsent].method, sizeof(sent[nsent].method), "%s", method);
	snprintf(sent[nsent].path, sizeof(sent[nsent].path), "%s", path);
	sent[nsent].body = strdup(body);
	nsent++;
	*status = strcmp(method, "PATCH") == 0 && reply == 201 ? 200 : reply;
	return 0;
}

static void
reset_sent(void)
{
	int i;

	for (i = 0; i < nsent; i++)
		free(sent[i].body);
	nsent = 0;
	reply = 201;
}

static struct events *
test_events(void)
{
	struct events *e = events_alloc();

	cr_assert_not_null(e);
	e->send = fake_send;
	snprintf(e->ns, sizeof(e->ns), "tcs");
	snprintf(e->reg_kind, sizeof(e->reg_kind), "Pod");
	snprintf(e->reg_name, sizeof(e->reg_name), "talos-csr-signer-7d9f-abcde");
	snprintf(e->reg_uid, sizeof(e->reg_uid), "1c0ffee0-0000-4000-8000-000000000001");
	snprintf(e->instance, sizeof(e->instance), "talos-csr-signer-7d9f-abcde");
	reset_sent();
	return e;
}

static void
rec(struct ev_rec *r, enum audit_kind k, const char *note, const char *related)
{
	memset(r, 0, sizeof(*r));
	r->kind = k;
	r->real_us = 1795000000123456LL; /* 2026-11-18T... */
	snprintf(r->note, sizeof(r->note), "%s", note);
	snprintf(r->related, sizeof(r->related), "%s", related ? related : "");
}

static const char *
jstr(const cJSON *o, const char *a, const char *b)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, a);

	if (b != NULL)
		v = cJSON_GetObjectItemCaseSensitive(v, b);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ------------------------------------------------------------------ queue */

Test(events, queue_is_bounded_fifo_and_never_blocks)
{
	struct events *e = events_alloc();
	struct ev_rec  r, out;
	int            i;

	for (i = 0; i < EVENTS_QUEUE; i++) {
		rec(&r, AK_ISSUED, "", NULL);
		snprintf(r.note, sizeof(r.note), "n%d", i);
		cr_assert_eq(queue_put(e, &r), 0, "slot %d", i);
	}
	cr_assert_eq(queue_put(e, &r), -1, "full: fails at once");
	for (i = 0; i < EVENTS_QUEUE; i++) {
		char want[16];

		cr_assert_eq(queue_get(e, &out), 0);
		snprintf(want, sizeof(want), "n%d", i);
		cr_assert_str_eq(out.note, want);
	}
	cr_assert_eq(queue_get(e, &out), -1, "empty");
	/* Wrap-around keeps working. */
	for (i = 0; i < 3 * EVENTS_QUEUE; i++) {
		cr_assert_eq(queue_put(e, &r), 0);
		cr_assert_eq(queue_get(e, &out), 0);
	}
	events_free(e);
}

struct prod {
	struct events *e;
	int            id, ok, full;
};

static void *
producer(void *arg)
{
	struct prod  *p = arg;
	struct ev_rec r;
	int           i;

	for (i = 0; i < 20000; i++) {
		rec(&r, AK_AUTH_FAILED, "", NULL);
		snprintf(r.note, sizeof(r.note), "%d:%d", p->id, i);
		if (queue_put(p->e, &r) == 0)
			p->ok++;
		else
			p->full++;
	}
	return NULL;
}

Test(events, queue_under_concurrent_producers_loses_nothing_it_accepted)
{
	struct events *e = events_alloc();
	struct prod    p[4];
	pthread_t      th[4];
	struct ev_rec  out;
	int            i, got = 0, accepted = 0, last[4] = { -1, -1, -1, -1 }, id, seq;
	int            done = 0, joined[4] = { 0, 0, 0, 0 };

	for (i = 0; i < 4; i++) {
		p[i] = (struct prod){ .e = e, .id = i };
		pthread_create(&th[i], NULL, producer, &p[i]);
	}
	/* Consume while they produce; per-producer order must hold. */
	while (!done) {
		while (queue_get(e, &out) == 0) {
			cr_assert_eq(sscanf(out.note, "%d:%d", &id, &seq), 2);
			cr_assert_gt(seq, last[id], "producer %d out of order", id);
			last[id] = seq;
			got++;
		}
		done = 1;
		for (i = 0; i < 4; i++) {
			if (!joined[i] && pthread_tryjoin_np(th[i], NULL) == 0)
				joined[i] = 1;
			if (!joined[i])
				done = 0;
		}
	}
	while (queue_get(e, &out) == 0)
		got++;
	for (i = 0; i < 4; i++)
		accepted += p[i].ok;
	cr_assert_eq(got, accepted);
	cr_assert_eq(accepted + p[0].full + p[1].full + p[2].full + p[3].full, 4 * 20000);
	events_free(e);
}

/* ------------------------------------------------------------------- note */

Test(events, note_carries_peer_cn_sans_serial_and_no_control_characters)
{
	const char *const sans[] = { "10.0.0.5", "worker-1\n" };
	struct audit_rec  a = {
		 .kind = AK_ISSUED,
		 .peer = "10.0.0.5",
		 .cn = "worker-1",
		 .sans = sans,
		 .nsans = 2,
		 .serial = "6f1e2d3c4b5a69788796a5b4c3d2e1f0",
		 .key_type = "ed25519",
		 .org_removed = 1,
		 .message = "signed",
	};
	char buf[EVENTS_NOTE_MAX + 1];

	events_note(&a, buf, sizeof(buf));
	cr_assert_str_eq(buf,
	    "peer 10.0.0.5, CN worker-1, SANs [10.0.0.5 worker-1?], serial "
	    "6f1e2d3c4b5a69788796a5b4c3d2e1f0, key ed25519, O removed: signed");

	/* An empty subject reads "no CN", not "CN : invalid token". */
	a = (struct audit_rec){
		.kind = AK_AUTH_FAILED, .peer = "10.0.0.6", .cn = "", .message = "invalid token"
	};
	events_note(&a, buf, sizeof(buf));
	cr_assert_str_eq(buf, "peer 10.0.0.6, no CN: invalid token");

	a = (struct audit_rec){ .kind = AK_CREDS_INVALID,
		.message = "Secret tcs/x: key token is missing" };
	events_note(&a, buf, sizeof(buf));
	cr_assert_str_eq(buf, "Secret tcs/x: key token is missing");
}

Test(events, note_is_cut_to_the_api_limit_on_a_utf8_boundary)
{
	char             big[4000], buf[EVENTS_NOTE_MAX + 1];
	struct audit_rec a = { .kind = AK_INVALID_CSR, .peer = "::1" };
	size_t           i;

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	a.message = big;
	events_note(&a, buf, sizeof(buf));
	cr_assert_eq(strlen(buf), EVENTS_NOTE_MAX);
	/* Non-ASCII: room for the server's U+FFFD replacement, no torn sequence. */
	for (i = 0; i + 2 < sizeof(big) - 1; i += 2) {
		big[i] = (char)0xc3;
		big[i + 1] = (char)0xbc;
	}
	events_note(&a, buf, sizeof(buf));
	cr_assert_leq(strlen(buf), EVENTS_NOTE_MAX / 3);
	cr_assert_neq((unsigned char)buf[strlen(buf) - 1], 0xc3, "torn UTF-8 sequence");
}

/* ------------------------------------------------------------------- body */

Test(events, first_event_is_a_valid_events_k8s_io_v1_object)
{
	struct events *e = test_events();
	struct ev_rec  r;
	cJSON         *o;
	regex_t        re;

	rec(&r, AK_CREDS_INVALID,
	    "new credentials refused: Secret tcs/talos-ca: key token is missing",
	    "Secret tcs/talos-ca");
	process(e, &r, 1000);
	cr_assert_eq(nsent, 1);
	cr_assert_str_eq(sent[0].method, "POST");
	cr_assert_str_eq(sent[0].path, "/apis/events.k8s.io/v1/namespaces/tcs/events");
	o = cJSON_Parse(sent[0].body);
	cr_assert_not_null(o);
	cr_assert_str_eq(jstr(o, "apiVersion", NULL), "events.k8s.io/v1");
	cr_assert_str_eq(jstr(o, "kind", NULL), "Event");
	cr_assert_str_eq(jstr(o, "metadata", "namespace"), "tcs");
	cr_assert(strncmp(jstr(o, "metadata", "name"), "talos-csr-signer-7d9f-abcde.", 28) == 0);
	cr_assert_str_eq(jstr(o, "type", NULL), "Warning");
	cr_assert_str_eq(jstr(o, "reason", NULL), "CredentialsInvalid");
	cr_assert_str_eq(jstr(o, "action", NULL), "Reload");
	cr_assert_str_eq(jstr(o, "reportingController", NULL), "talos-csr-signer");
	cr_assert_str_eq(jstr(o, "reportingInstance", NULL), "talos-csr-signer-7d9f-abcde");
	cr_assert_str_eq(jstr(o, "note", NULL), r.note);
	cr_assert_str_eq(jstr(o, "regarding", "kind"), "Pod");
	cr_assert_str_eq(jstr(o, "regarding", "name"), "talos-csr-signer-7d9f-abcde");
	cr_assert_str_eq(jstr(o, "regarding", "uid"), "1c0ffee0-0000-4000-8000-000000000001");
	cr_assert_str_eq(jstr(o, "related", "kind"), "Secret");
	cr_assert_str_eq(jstr(o, "related", "namespace"), "tcs");
	cr_assert_str_eq(jstr(o, "related", "name"), "talos-ca");
	cr_assert_null(
	    cJSON_GetObjectItemCaseSensitive(o, "series"), "a first event has no series");
	cr_assert_null(cJSON_GetObjectItemCaseSensitive(o, "deprecatedCount"));
	/* MicroTime: RFC 3339 with exactly six fractional digits, UTC. */
	cr_assert_eq(
	    regcomp(&re, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}Z$",
		REG_EXTENDED),
	    0);
	cr_assert_eq(regexec(&re, jstr(o, "eventTime", NULL), 0, NULL, 0), 0, "%s",
	    jstr(o, "eventTime", NULL));
	cr_assert(strstr(jstr(o, "eventTime", NULL), ".123456Z") != NULL);
	regfree(&re);
	cJSON_Delete(o);

	/* A request record is Normal/Issue and has no related object. */
	rec(&r, AK_ISSUED, "peer 10.0.0.5, CN w1, serial 01", NULL);
	process(e, &r, 1000);
	cr_assert_eq(nsent, 2);
	o = cJSON_Parse(sent[1].body);
	cr_assert_str_eq(jstr(o, "type", NULL), "Normal");
	cr_assert_str_eq(jstr(o, "reason", NULL), "CertificateIssued");
	cr_assert_str_eq(jstr(o, "action", NULL), "Issue");
	cr_assert_null(cJSON_GetObjectItemCaseSensitive(o, "related"));
	cr_assert_str_neq(jstr(o, "metadata", "name"), "", "names differ");
	cJSON_Delete(o);
	/* Log-only kinds are not posted. */
	rec(&r, AK_UNAVAILABLE, "no credentials yet", NULL);
	process(e, &r, 1000);
	rec(&r, AK_INTERNAL, "boom", NULL);
	process(e, &r, 1000);
	cr_assert_eq(nsent, 2);
	reset_sent();
	events_free(e);
}

/* ----------------------------------------------------- series and the cap */

Test(events, repeats_become_one_series_patched_rarely)
{
	struct events *e = test_events();
	struct ev_rec  r;
	cJSON         *o;
	char           name[KUBE_NAME_MAX], want[300];
	int            i;

	rec(&r, AK_AUTH_FAILED, "peer 10.0.0.9: invalid token", NULL);
	process(e, &r, 1000);
	cr_assert_eq(nsent, 1);
	o = cJSON_Parse(sent[0].body);
	snprintf(name, sizeof(name), "%s", jstr(o, "metadata", "name"));
	cJSON_Delete(o);

	/* The second occurrence patches count 2 at once. */
	process(e, &r, 1500);
	cr_assert_eq(nsent, 2);
	cr_assert_str_eq(sent[1].method, "PATCH");
	snprintf(want, sizeof(want), "/apis/events.k8s.io/v1/namespaces/tcs/events/%s", name);
	cr_assert_str_eq(sent[1].path, want);
	o = cJSON_Parse(sent[1].body);
	cr_assert_eq(
	    cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "series"), "count")
		->valueint,
	    2);
	cr_assert_not_null(jstr(o, "series", "lastObservedTime"));
	cJSON_Delete(o);

	/* 98 more within the patch interval: no request at all. */
	for (i = 0; i < 98; i++)
		process(e, &r, 2000 + i);
	cr_assert_eq(nsent, 2);
	periodic(e, 5000, 0);
	cr_assert_eq(nsent, 2, "not yet due");
	periodic(e, 1500 + EVENTS_PATCH_MS, 0);
	cr_assert_eq(nsent, 3);
	o = cJSON_Parse(sent[2].body);
	cr_assert_eq(
	    cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "series"), "count")
		->valueint,
	    100);
	cJSON_Delete(o);
	periodic(e, 1500 + 2 * EVENTS_PATCH_MS, 0);
	cr_assert_eq(nsent, 3, "nothing new: no patch");

	/* After the series went quiet, the same record starts a new Event. */
	periodic(e, 2100 + EVENTS_SERIES_IDLE_MS, 0);
	process(e, &r, 3000 + EVENTS_SERIES_IDLE_MS);
	cr_assert_eq(nsent, 4);
	cr_assert_str_eq(sent[3].method, "POST");

	/* A different note is a different series. */
	rec(&r, AK_AUTH_FAILED, "peer 10.0.0.10: invalid token", NULL);
	process(e, &r, 3000 + EVENTS_SERIES_IDLE_MS);
	cr_assert_eq(nsent, 5);
	cr_assert_str_eq(sent[4].method, "POST");
	reset_sent();
	events_free(e);
}

Test(events, a_flood_is_capped_by_the_token_bucket_and_drops_are_counted)
{
	struct events *e = test_events();
	struct ev_rec  r;
	int            i, posts = 0;

	for (i = 0; i < 1000; i++) {
		rec(&r, AK_INVALID_CSR, "", NULL);
		snprintf(r.note, sizeof(r.note), "peer 10.1.%d.%d: failed to decode CSR", i / 250,
		    i % 250);
		process(e, &r, 100000);
	}
	cr_assert_eq(nsent, EVENTS_BURST);
	cr_assert_eq(e->dropped, 1000 - EVENTS_BURST);
	/* The bucket refills one per EVENTS_REFILL_MS. */
	for (i = 0; i < 100; i++) {
		rec(&r, AK_INVALID_CSR, "", NULL);
		snprintf(r.note, sizeof(r.note), "later %d", i);
		process(e, &r, 100000 + 10 * EVENTS_REFILL_MS);
	}
	for (i = 0; i < nsent; i++)
		posts += strcmp(sent[i].method, "POST") == 0;
	cr_assert_eq(posts, EVENTS_BURST + 10);
	/* Credential Events have their own bucket: the flood did not use it up. */
	rec(&r, AK_CREDS_INVALID, "new credentials refused", "Secret tcs/talos-ca");
	process(e, &r, 100000 + 10 * EVENTS_REFILL_MS);
	cr_assert_str_eq(sent[nsent - 1].method, "POST");
	cr_assert(strstr(sent[nsent - 1].body, "CredentialsInvalid") != NULL);
	reset_sent();
	events_free(e);
}

Test(events, server_errors_are_handled)
{
	struct events *e = test_events();
	struct ev_rec  r;

	/* 404 on a series patch: forget it; the next repeat creates anew. */
	rec(&r, AK_RATE_LIMITED, "peer 10.0.0.1: rate limited", NULL);
	process(e, &r, 1000);
	reply = 404;
	process(e, &r, 1100);
	cr_assert_eq(nsent, 2);
	cr_assert_str_eq(sent[1].method, "PATCH");
	reply = 201;
	process(e, &r, 1200);
	cr_assert_eq(nsent, 3);
	cr_assert_str_eq(sent[2].method, "POST");

	/* A refused create is a drop. */
	reply = 403;
	rec(&r, AK_POLICY_DENIED, "peer 10.0.0.2: too many SANs", NULL);
	process(e, &r, 1300);
	cr_assert_eq(e->dropped, 1);
	/* 409 AlreadyExists is not. */
	reply = 409;
	rec(&r, AK_POLICY_DENIED, "peer 10.0.0.3: too many SANs", NULL);
	process(e, &r, 1300);
	cr_assert_eq(e->dropped, 1);
	reset_sent();
	events_free(e);
}

Test(events, sink_copies_the_record_and_counts_a_full_queue)
{
	struct events   *e = events_alloc();
	struct audit_rec a = {
		.kind = AK_ISSUED, .peer = "10.0.0.5", .cn = "w", .related = "Secret tcs/talos-ca"
	};
	struct ev_rec out;
	char          peer[16];
	int           i;

	snprintf(peer, sizeof(peer), "10.0.0.5");
	a.peer = peer;
	events_sink(&a, e);
	memset(peer, 0, sizeof(peer)); /* the caller's strings may go away at once */
	cr_assert_eq(queue_get(e, &out), 0);
	cr_assert(strstr(out.note, "peer 10.0.0.5") != NULL, "%s", out.note);
	cr_assert_str_eq(out.related, "Secret tcs/talos-ca");
	a.peer = "10.0.0.6";
	a.kind = AK_UNAVAILABLE;
	events_sink(&a, e);
	cr_assert_eq(queue_get(e, &out), -1, "log-only kinds are not queued");
	a.kind = AK_ISSUED;
	for (i = 0; i < EVENTS_QUEUE + 10; i++)
		events_sink(&a, e); /* returns even when full */
	for (i = 0; queue_get(e, &out) == 0; i++)
		;
	cr_assert_eq(i, EVENTS_QUEUE);
	events_free(e);
}
